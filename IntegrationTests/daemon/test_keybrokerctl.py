"""keybrokerctl against a running daemon: output and exit statuses (issue 2)."""
import os
import re
import stat

import pytest


def test_latest_prints_version_and_fingerprint(broker):
    r = broker.ctl("latest", "1")
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"key 1 version 1 \(256 bits, fingerprint [0-9a-f]{16}\)\n", r.stdout), r.stdout


def test_socket_option_before_the_subcommand(broker):
    from broker import KEYBROKERCTL
    import subprocess
    r = subprocess.run([str(KEYBROKERCTL), "--socket", broker.socket, "latest", "1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("key 1 version")


def test_get_key_reveal_matches_fingerprint_and_version(broker):
    import hashlib
    r = broker.ctl("get-key", "2", "--reveal")
    assert r.returncode == 0, r.stderr
    first, key_hex = r.stdout.splitlines()
    assert len(key_hex) == 64
    assert hashlib.sha256(bytes.fromhex(key_hex)).hexdigest()[:16] in first
    r = broker.ctl("get-key", "2", "--version", "1", "--reveal")
    assert r.stdout.splitlines()[1] == key_hex


def test_get_key_without_reveal_does_not_print_the_key(broker):
    r = broker.ctl("get-key", "2")
    assert r.returncode == 0
    assert len(r.stdout.splitlines()) == 1


def test_rotate_one_and_all(broker):
    broker.ctl("latest", "3", check=True)
    r = broker.ctl("rotate", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "key 3 now at version 2\n"
    r = broker.ctl("rotate", "--all")
    assert r.returncode == 0
    assert "key 3 now at version 3" in r.stdout
    assert broker.ctl("get-key", "3", "--version", "1").returncode == 0


def test_status_and_list(broker):
    broker.ctl("latest", "4", check=True)
    r = broker.ctl("status")
    assert r.returncode == 0, r.stderr
    assert "instance default: provider local" in r.stdout
    r = broker.ctl("status", "--json")
    assert '"instances"' in r.stdout
    r = broker.ctl("list")
    assert r.returncode == 0
    assert "4\t1" in r.stdout.splitlines()


def test_errors_exit_1_with_one_line(broker):
    r = broker.ctl("get-key", "1", "--version", "99")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "NOT_FOUND" in r.stderr
    r = broker.ctl("--instance", "nope", "latest", "1")
    assert r.returncode == 1 and "DENIED" in r.stderr


def test_unreachable_socket_exits_1_with_a_hint(broker, tmp_path):
    r = broker.ctl("--socket", str(tmp_path / "absent.sock"), "status")
    assert r.returncode == 1
    assert "is keybrokerd running?" in r.stderr


@pytest.mark.parametrize("args", [["latest"], ["latest", "x"], ["latest", "0"], ["rotate"], ["rotate", "1", "--all"],
                                  ["frobnicate"], ["get-key", "1", "--version", "0"]])
def test_usage_errors_exit_2(broker, args):
    r = broker.ctl(*args)
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    assert r.stderr.strip()


def test_init_local_creates_a_private_key_and_never_overwrites(broker, tmp_path):
    path = tmp_path / "m.key"
    r = broker.ctl("init-local", "--master-key", str(path))
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert re.fullmatch(r"[0-9a-f]{64}\n", text)
    r = broker.ctl("init-local", "--master-key", str(path))
    assert r.returncode == 1 and "never replaces" in r.stderr
    assert path.read_text() == text


def test_config_file_finds_the_socket(broker):
    # broker.ctl passes --config; no --socket needed
    assert broker.ctl("status").returncode == 0
