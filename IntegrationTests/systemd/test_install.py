"""`make install DESTDIR=… PREFIX=…` and `make uninstall` with the same arguments, as a packager
runs them: the staged tree holds what a user expects, with safe modes, the staged units and
sysusers/tmpfiles entries work, and uninstall leaves nothing behind.

The binaries come from .build/debug (`make test` builds them first); `-o build` keeps these runs
from starting a second `swift build`.
"""
import os
import re
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

from broker import KEYBROKERCTL, KEYBROKERD
from test_systemd_units import MAX_EXPOSURE, exposure, stage_units, systemd_analyze

from broker import ROOT  # noqa: E402


def make(target, destdir, prefix, *extra):
    # The SELinux module is built next to the staging tree, not in the shared build/selinux.
    selinux_build = Path(destdir).parent / "selinux-build"
    # `make install` builds an optimised, statically linked release; the layout tested here is the
    # same with the debug binaries `make test` already built, so the tests skip that long build.
    r = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "-o", "build", "-o", "release", target,
                        f"RELEASE_BIN_DIR={ROOT / '.build' / 'debug'}",
                        f"DESTDIR={destdir}", f"PREFIX={prefix}", f"SELINUX_BUILD_DIR={selinux_build}", *extra],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"make {target}:\n{r.stdout}\n{r.stderr}"
    return r


def tree(root):
    """Every path below root, relative, with its mode."""
    return {str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in sorted(root.rglob("*"))}


def expected_files(prefix):
    p = prefix.lstrip("/")
    return {
        f"{p}/sbin/keybrokerd": 0o755,
        f"{p}/bin/keybrokerctl": 0o755,
        f"{p}/lib/systemd/system/keybroker.socket": 0o644,
        f"{p}/lib/systemd/system/keybroker.service": 0o644,
        f"{p}/lib/systemd/system/mariadb.service.d/keybroker.conf": 0o644,
        f"{p}/lib/sysusers.d/keybroker.conf": 0o644,
        f"{p}/lib/tmpfiles.d/keybroker.conf": 0o644,
        "usr/share/selinux/packages/keybroker.pp": 0o644,
        "usr/share/selinux/devel/include/contrib/keybroker.if": 0o644,
        "etc/keybroker/keybroker.toml.example": 0o644,
        f"{p}/share/doc/keybroker/setup.md": 0o644,
        f"{p}/share/man/man8/keybrokerd.8": 0o644,
        f"{p}/share/man/man8/keybrokerctl.8": 0o644,
        f"{p}/share/man/man5/keybroker.toml.5": 0o644,
        f"{p}/share/man/man7/keybroker_key_management.7": 0o644,
    }


@pytest.fixture(params=["/usr/local", "/usr"])
def staged(request, tmp_path):
    assert KEYBROKERD.exists() and KEYBROKERCTL.exists(), \
        f"{KEYBROKERD} is not built; run `make test` (it builds first)"
    dest = tmp_path / "dest"
    prefix = request.param
    make("install", dest, prefix)
    yield dest, prefix
    # Each test ends with the tree it found; uninstall runs in test_uninstall_leaves_nothing.


def test_installed_files_and_modes(staged):
    dest, prefix = staged
    files = {path: mode for path, mode in tree(dest).items() if (dest / path).is_file()}
    for path, mode in expected_files(prefix).items():
        assert path in files, f"{path} was not installed"
        assert files[path] == mode, f"{path}: mode {oct(files[path])}, expected {oct(mode)}"
    for path, mode in tree(dest).items():
        full = dest / path
        assert not mode & stat.S_IWOTH, f"{path} is writable by others"
        assert not mode & (stat.S_ISUID | stat.S_ISGID), f"{path} is setuid/setgid"
        if full.is_dir():
            assert mode == 0o755, f"directory {path} has mode {oct(mode)}"


def test_nothing_secret_is_installed(staged):
    """Keys and credentials are the admin's to create; an install never ships one."""
    dest, _ = staged
    assert not (dest / "etc/credstore").exists()
    assert sorted(p.name for p in (dest / "etc/keybroker").iterdir()) == ["keybroker.toml.example"]
    example = (dest / "etc/keybroker/keybroker.toml.example").read_text()
    assert not re.search(r"\b[0-9a-fA-F]{64}\b", example), "a master key in the example config"
    assert not re.search(r"AKIA[0-9A-Z]{16}", example), "an AWS access key in the example config"
    config = tomllib.loads(example)
    assert config["instances"]["default"]["provider"] == "local"


def test_example_config_is_accepted_by_keybrokerd(staged, tmp_path):
    """What a user does first: copy the example, create the key, run --check."""
    dest, _ = staged
    text = (dest / "etc/keybroker/keybroker.toml.example").read_text()
    state = tmp_path / "state"
    text = text.replace('state_dir = "/var/lib/keybroker"', f'state_dir = "{state}"')
    config = tmp_path / "keybroker.toml"
    config.write_text(text)
    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    r = subprocess.run([str(KEYBROKERCTL), "init-local", "--master-key", str(creds / "local-master-key")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(KEYBROKERD), "--check", "--config", str(config)], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, CREDENTIALS_DIRECTORY=str(creds)))
    assert r.returncode == 0, r.stdout + r.stderr


def test_installed_units_name_the_installed_binary_and_still_verify(staged, tmp_path):
    dest, prefix = staged
    units = dest / prefix.lstrip("/") / "lib/systemd/system"
    service = (units / "keybroker.service").read_text()
    assert f"ExecStart={prefix}/sbin/keybrokerd --config /etc/keybroker/keybroker.toml" in service
    assert f"Documentation=file:{prefix}/share/doc/keybroker/setup.md" in service
    rating, r = exposure(units / "keybroker.service")
    assert rating <= MAX_EXPOSURE, r.stdout
    # verify needs ExecStart= to exist on this host: point it into the staged tree.
    staged_bin = dest / prefix.lstrip("/") / "sbin/keybrokerd"
    copy = stage_units(tmp_path, service_text=service.replace(f"{prefix}/sbin/keybrokerd", str(staged_bin)))
    r = systemd_analyze("verify", str(copy / "keybroker.socket"), str(copy / "keybroker.service"),
                        unit_path=copy)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stderr


def test_sysusers_and_tmpfiles_entries_apply(staged, tmp_path):
    dest, prefix = staged
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\n")
    lib = dest / prefix.lstrip("/") / "lib"
    with open(lib / "sysusers.d/keybroker.conf") as f:
        r = subprocess.run(["systemd-sysusers", f"--root={root}", "-"], stdin=f, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    users = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    assert "keybroker" in users
    uid, shell = int(users["keybroker"][2]), users["keybroker"][6]
    assert 0 < uid < 1000 and shell.endswith("nologin")
    assert "keybroker" in {line.split(":")[0] for line in (root / "etc/group").read_text().splitlines()}
    with open(lib / "tmpfiles.d/keybroker.conf") as f:
        r = subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", "-"], stdin=f,
                           capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    credstore = (root / "etc/credstore").stat()
    assert stat.S_IMODE(credstore.st_mode) == 0o700 and credstore.st_uid == 0


def test_selinux_package_is_a_module_package(staged, tmp_path):
    dest, _ = staged
    pp = dest / "usr/share/selinux/packages/keybroker.pp"
    r = subprocess.run(["semodule_unpackage", str(pp), str(tmp_path / "m.mod"), str(tmp_path / "m.fc")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "keybroker_exec_t" in (tmp_path / "m.fc").read_text()


def test_uninstall_leaves_nothing(staged):
    dest, prefix = staged
    make("uninstall", dest, prefix)
    assert tree(dest) == {}, "left behind after uninstall"


def test_install_keeps_and_uninstall_spares_the_admins_config(tmp_path):
    dest = tmp_path / "dest"
    config = dest / "etc/keybroker/keybroker.toml"
    config.parent.mkdir(parents=True)
    config.write_text("# the admin's own\n")
    make("install", dest, "/usr")
    assert config.read_text() == "# the admin's own\n"
    make("uninstall", dest, "/usr")
    assert set(tree(dest)) == {"etc", "etc/keybroker", "etc/keybroker/keybroker.toml"}
