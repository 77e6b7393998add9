"""The systemd units as systemd itself reads them: `systemd-analyze verify` and `security`.

There is no running systemd here (and none is needed): both commands load unit files offline.
verify insists that ExecStart= names an existing executable, so the units are checked from a
copy whose ExecStart= points at a stand-in; everything else is the file from systemd/.
SYSTEMD_UNIT_PATH=<dir>: puts the copies (and the mariadb drop-in) ahead of the host's units,
so the host's own mariadb.service is read together with our drop-in.
"""
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from broker import ROOT  # noqa: E402
UNITS = ROOT / "systemd"
MAX_EXPOSURE = 2.0


def systemd_analyze(*args, unit_path=None):
    env = dict(os.environ, SYSTEMD_LOG_COLOR="0", SYSTEMD_PAGER="")
    if unit_path:
        env["SYSTEMD_UNIT_PATH"] = f"{unit_path}:"  # trailing ":" keeps the host's unit directories
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, env=env, timeout=120)


def parse_unit(text):
    """systemd's own rules: sections, repeated keys, an empty assignment resets the list."""
    sections, current = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        values = current.setdefault(key.strip(), [])
        if value.strip():
            values.append(value.strip())
        else:
            values.clear()
    return sections


def stage_units(tmp_path, service_text=None, dropin_text=None):
    """Copies of the units; unless given its text, the service's ExecStart= points at a stand-in."""
    units = tmp_path / "units"
    (units / "mariadb.service.d").mkdir(parents=True)
    if service_text is None:
        stub = tmp_path / "keybrokerd"
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
        service_text = (UNITS / "keybroker.service").read_text().replace("/usr/sbin/keybrokerd", str(stub))
    (units / "keybroker.service").write_text(service_text)
    shutil.copy(UNITS / "keybroker.socket", units / "keybroker.socket")
    (units / "mariadb.service.d" / "keybroker.conf").write_text(
        dropin_text or (UNITS / "mariadb-keybroker.conf").read_text())
    return units


def exposure(unit_file):
    r = systemd_analyze("security", "--offline=yes", "--no-pager", str(unit_file))
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    assert m, f"no rating in systemd-analyze security output:\n{r.stdout}\n{r.stderr}"
    return float(m.group(1)), r


def test_units_verify_without_a_diagnostic(tmp_path):
    units = stage_units(tmp_path)
    r = systemd_analyze("verify", str(units / "keybroker.socket"), str(units / "keybroker.service"),
                        unit_path=units)
    assert r.returncode == 0, r.stderr
    # verify exits 0 on unknown keys and bad values ("…, ignoring"): any line is a finding.
    assert r.stdout + r.stderr == ""


def test_verify_rejects_a_broken_unit(tmp_path):
    """Proves the check above can fail: a missing executable and an unknown key are reported."""
    service = (UNITS / "keybroker.service").read_text()
    service = service.replace("ExecStart=/usr/sbin/keybrokerd", "ExecStart=/nonexistent/keybrokerd")
    service = service.replace("[Service]", "[Service]\nProtectSystm=strict", 1)
    units = stage_units(tmp_path)
    (units / "keybroker.service").write_text(service)
    r = systemd_analyze("verify", str(units / "keybroker.service"), unit_path=units)
    assert r.returncode != 0
    assert "/nonexistent/keybrokerd" in r.stderr
    assert "ProtectSystm" in r.stderr


def test_mariadb_reads_the_dropin_cleanly(tmp_path):
    mariadb_unit = Path("/lib/systemd/system/mariadb.service")
    assert mariadb_unit.exists(), "mariadb-server is not installed; run `make deps`"
    units = stage_units(tmp_path)
    r = systemd_analyze("verify", "mariadb.service", unit_path=units)
    ours = [line for line in (r.stdout + r.stderr).splitlines() if "keybroker" in line]
    assert ours == []

    # The same run with a broken copy of the drop-in names it: the drop-in really is read.
    bad = tmp_path / "bad"
    units = stage_units(bad, dropin_text=(UNITS / "mariadb-keybroker.conf").read_text() + "Wnats=x.socket\n")
    r = systemd_analyze("verify", "mariadb.service", unit_path=units)
    assert "mariadb.service.d/keybroker.conf" in r.stdout + r.stderr


def test_dropin_orders_mariadb_after_the_socket():
    unit = parse_unit((UNITS / "mariadb-keybroker.conf").read_text())["Unit"]
    assert "keybroker.socket" in unit["Wants"]
    after = " ".join(unit["After"]).split()
    assert "keybroker.socket" in after and "keybroker.service" in after
    # Requires= on the socket or any dependency on the service would let a broker problem
    # keep MariaDB from starting at all, or start the broker on every MariaDB start.
    assert "Requires" not in unit and "BindsTo" not in unit


def test_security_rating_at_most_2():
    rating, r = exposure(UNITS / "keybroker.service")
    assert rating <= MAX_EXPOSURE, r.stdout


def test_security_rating_of_a_weak_unit_is_reported(tmp_path):
    """The rating is measured, not assumed: the unit without its sandbox rates far above 2.0."""
    keep = ("[", "Description", "Type", "ExecStart", "User", "Group", "StateDirectory", "Restart")
    lines = [l for l in (UNITS / "keybroker.service").read_text().splitlines()
             if l.startswith(keep) or not l or l.startswith("#")]
    weak = tmp_path / "keybroker.service"
    weak.write_text("\n".join(lines) + "\n")
    rating, r = exposure(weak)
    assert rating > MAX_EXPOSURE, r.stdout


def test_socket_is_where_the_plugin_looks_and_only_mysql_may_connect():
    sock = parse_unit((UNITS / "keybroker.socket").read_text())["Socket"]
    # keybroker_key_management_socket defaults to this path.
    assert sock["ListenStream"] == ["/run/keybroker/keybroker.sock"]
    assert sock["SocketMode"] == ["0660"] and sock["SocketGroup"] == ["mysql"]
    assert sock["RemoveOnStop"] == ["yes"]
    assert sock.get("Accept", ["no"]) == ["no"]


def test_service_lifecycle_and_limits():
    svc = parse_unit((UNITS / "keybroker.service").read_text())["Service"]
    assert svc["Type"] == ["notify"]
    assert svc["User"] == ["keybroker"]
    assert svc["ExecStart"] == ["/usr/sbin/keybrokerd --config /etc/keybroker/keybroker.toml"]
    assert svc["Restart"] == ["on-failure"]
    assert svc["StateDirectory"] == ["keybroker"] and svc["StateDirectoryMode"] == ["0700"]
    assert svc["ConfigurationDirectory"] == ["keybroker"]
    assert svc["UMask"] == ["0077"]
    assert svc["LimitCORE"] == ["0"]
    memlock = svc["LimitMEMLOCK"][0]
    assert memlock.endswith("M") and int(memlock[:-1]) >= 64
    watchdog = svc["WatchdogSec"][0]
    assert watchdog.endswith("s") and 5 <= int(watchdog[:-1]) <= 300


def test_configuration_errors_are_not_restarted():
    svc = parse_unit((UNITS / "keybroker.service").read_text())["Service"]
    # keybrokerd exits 78 (EX_CONFIG) for a broken configuration, 1 for failures that may pass.
    assert svc["RestartPreventExitStatus"] == ["78"]
    assert svc["Restart"] == ["on-failure"]


def test_credentials_match_the_config_and_survive_a_missing_file():
    svc = parse_unit((UNITS / "keybroker.service").read_text())["Service"]
    creds = dict(v.split(":", 1) for v in svc["LoadCredential"])
    assert set(creds) == {"aws-credentials", "local-master-key"}
    for source in creds.values():
        # systemd 252 fails the whole unit when an absolute LoadCredential= path is missing; a
        # bare name is looked up in /etc/credstore, /run/credstore, /usr/lib/credstore and skipped
        # when absent, so an AWS-only host need not create a local master key.
        assert not source.startswith("/") and "/" not in source
        assert source.startswith("keybroker.")
    example = tomllib.loads((ROOT / "etc" / "keybroker.toml.example").read_text())
    assert example["instances"]["default"]["master_key_credential"] in creds


class SyscallGroups:
    """systemd's own expansion of @groups, from `systemd-analyze syscall-filter`."""

    def __init__(self):
        self.groups = {}

    def expand(self, name):
        if not name.startswith("@"):
            return {name}
        if name not in self.groups:
            out = systemd_analyze("syscall-filter", "--no-pager", name).stdout
            self.groups[name] = set()
            for line in out.splitlines()[1:]:
                line = line.strip()
                if line and not line.startswith("#"):
                    self.groups[name] |= self.expand(line)
        return self.groups[name]


def allowed_syscalls(groups=None):
    """The system calls keybroker.service's SystemCallFilter= lines leave allowed."""
    groups = groups or SyscallGroups()
    filters = parse_unit((UNITS / "keybroker.service").read_text())["Service"]["SystemCallFilter"]
    assert not filters[0].startswith("~"), "the first SystemCallFilter= must be an allow list"
    allowed = set()
    for entry in filters:
        names = set().union(*(groups.expand(n) for n in entry.lstrip("~").split()))
        if entry.startswith("~"):
            allowed -= names
        else:
            allowed |= names
    return allowed


# What the Swift runtime calls outside the filter and copes with being refused (EPERM):
# libdispatch's setpriority() for its QoS classes.
TOLERATED_DENIALS = {"setpriority"}


def test_system_call_filter_keeps_what_keybrokerd_calls():
    """mlock/munlock (locked key memory), prctl (PR_SET_DUMPABLE), prlimit64 (glibc's setrlimit and
    getrlimit), madvise, epoll, eventfd, fsync and renames must survive the filter."""
    svc = parse_unit((UNITS / "keybroker.service").read_text())["Service"]
    groups = SyscallGroups()
    allowed = allowed_syscalls(groups)
    needed = {"mlock", "munlock", "madvise", "mmap", "munmap", "mprotect", "prctl", "prlimit64",
              "epoll_create1", "epoll_ctl", "epoll_wait", "eventfd2", "socket", "connect", "accept4",
              "getsockopt", "sendmsg", "recvmsg", "fsync", "fdatasync", "renameat2", "rename",
              "openat", "getrandom", "clone3", "futex"}
    assert needed - allowed == set()
    # What the rating counts on: @resources and @privileged are gone.
    assert not (groups.expand("@resources") | groups.expand("@privileged")) & allowed
    # Refused calls fail with EPERM instead of killing the daemon (see TOLERATED_DENIALS).
    assert svc["SystemCallErrorNumber"] == ["EPERM"]
    assert svc["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert svc["MemoryDenyWriteExecute"] == ["yes"]
    assert svc["CapabilityBoundingSet"] == [] and "CapabilityBoundingSet" in svc
