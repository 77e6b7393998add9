"""`make rpm` (keybroker.spec, Debian's rpmbuild): it builds, lists the right files with the
right modes, and requires only libraries (issue 14). Installing it needs a RHEL-family host,
which this machine is not (docs/building.md says which versions were not install-tested)."""
import re
import subprocess

import pytest
from conftest import VERSION, WORK, make

BROKER_FILES = {
    "/usr/sbin/keybrokerd": "-rwxr-xr-x",
    "/usr/bin/keybrokerctl": "-rwxr-xr-x",
    "/etc/keybroker": "drwxr-xr-x",
    "/etc/keybroker/keybroker.toml": "-rw-r--r--",
    "/usr/lib/systemd/system/keybroker.socket": "-rw-r--r--",
    "/usr/lib/systemd/system/keybroker.service": "-rw-r--r--",
    "/usr/lib/systemd/system/mariadb.service.d": "drwxr-xr-x",
    "/usr/lib/systemd/system/mariadb.service.d/keybroker.conf": "-rw-r--r--",
    "/usr/lib/sysusers.d/keybroker.conf": "-rw-r--r--",
    "/usr/lib/tmpfiles.d/keybroker.conf": "-rw-r--r--",
    "/usr/share/selinux/packages/keybroker.pp": "-rw-r--r--",
    "/usr/share/selinux/devel/include/contrib/keybroker.if": "-rw-r--r--",
}
BROKER_MAN = ["/usr/share/man/man5/keybroker.toml.5", "/usr/share/man/man8/keybrokerctl.8",
              "/usr/share/man/man8/keybrokerd.8"]
# rpm's own: its features (rpmlib), the scriptlets' shell, the dynamic loader's hash style and
# the packages' own config() marks. Everything else must be a library.
RPM_OWN = re.compile(r"^(rpmlib\(\w+\) <= [\d.-]+|/bin/sh|rtld\(GNU_HASH\)"
                     r"|config\((keybroker|mariadb-plugin-keybroker)\) = .*)$")
LIBRARY = re.compile(r"^(lib[\w+-]+|ld-linux-[\w-]+)\.so(\.\d+)*(\([\w.]*\))*(\(64bit\))?$")


@pytest.fixture(scope="module")
def rpms():
    dist = WORK / "rpm"
    for old in dist.glob("*"):
        old.unlink()
    make("rpm", f"DIST_DIR={dist}", f"RPM_BUILD_DIR={WORK / 'rpmbuild'}")
    found = {p.name.split(f"-{VERSION}-")[0]: p for p in dist.glob("*.rpm")}
    assert set(found) == {"keybroker", "mariadb-plugin-keybroker"}, sorted(p.name for p in dist.iterdir())
    return found


def query(rpm, *args):
    return subprocess.run(["rpm", "-qp", *args, str(rpm)], capture_output=True, text=True, check=True).stdout


def files_and_modes(rpm):
    out = query(rpm, "--qf", "[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]")
    result = {}
    for line in out.splitlines():
        mode, owner, path = line.split(" ", 2)
        assert owner == "root:root", line
        result[path] = mode
    return result


def test_broker_rpm_files_and_modes(rpms):
    files = files_and_modes(rpms["keybroker"])
    for path, mode in BROKER_FILES.items():
        assert files.get(path) == mode, f"{path}: {files.get(path)}, expected {mode}"
    assert [m for m in BROKER_MAN if not any(p.startswith(m) for p in files)] == []
    assert any(p.endswith("/doc/keybroker/setup.md") for p in files), sorted(files)
    for path, mode in files.items():
        assert mode[8] != "w" or mode.startswith("l"), f"{path}: {mode}"
        assert "s" not in mode, f"{path}: {mode}"
    config = query(rpms["keybroker"], "--configfiles").split()
    assert config == ["/etc/keybroker/keybroker.toml"], config


def test_plugin_rpm_files_and_modes(rpms):
    files = files_and_modes(rpms["mariadb-plugin-keybroker"])
    plugins = [p for p in files if p.endswith("/mariadb/plugin/keybroker_key_management.so")]
    assert len(plugins) == 1 and files[plugins[0]] == "-rwxr-xr-x", files
    assert files["/etc/my.cnf.d/keybroker_key_management.cnf"] == "-rw-r--r--"
    assert any(p.startswith("/usr/share/man/man7/keybroker_key_management.7") for p in files)


def test_broker_rpm_requires_only_libraries(rpms):
    requires = [r.strip() for r in query(rpms["keybroker"], "--requires").splitlines()]
    others = [r for r in requires if not RPM_OWN.match(r) and not LIBRARY.match(r)]
    assert others == [], others
    sonames = {r.split("(")[0] for r in requires if LIBRARY.match(r)}
    assert {"libc.so.6", "libcurl.so.4", "libcrypto.so.3", "libsystemd.so.0"} <= sonames, sonames
    assert not [s for s in sonames if "swift" in s.lower() or "Foundation" in s], sonames


def test_plugin_rpm_requires_libraries_the_broker_and_the_server(rpms):
    requires = [r.strip() for r in query(rpms["mariadb-plugin-keybroker"], "--requires").splitlines()]
    version = query(rpms["keybroker"], "--qf", "%{VERSION}-%{RELEASE}")
    others = [r for r in requires if not RPM_OWN.match(r) and not LIBRARY.match(r)]
    assert sorted(others) == sorted([f"keybroker = {version}", "mariadb-server"]), others


def test_scriptlets_load_the_selinux_module_and_relabel(rpms):
    scripts = query(rpms["keybroker"], "--scripts")
    assert "semodule -i /usr/share/selinux/packages/keybroker.pp" in scripts
    assert "restorecon -R /usr/sbin/keybrokerd" in scripts
    assert "semodule -r keybroker" in scripts
    assert "systemctl enable --now keybroker.socket" in scripts
    assert "systemctl try-restart keybroker.service" in scripts
