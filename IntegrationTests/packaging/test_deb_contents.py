"""`make deb`: two packages, lintian clean, with the files, modes, conffiles and dependencies a DBA
expects (issue 14)."""
import re
import subprocess
from pathlib import Path

from conftest import VERSION

from broker import ROOT  # noqa: E402

BROKER_FILES = {
    "./usr/sbin/keybrokerd": "-rwxr-xr-x",
    "./usr/bin/keybrokerctl": "-rwxr-xr-x",
    "./etc/keybroker/keybroker.toml": "-rw-r--r--",
    "./lib/systemd/system/keybroker.socket": "-rw-r--r--",
    "./lib/systemd/system/keybroker.service": "-rw-r--r--",
    "./lib/systemd/system/mariadb.service.d/keybroker.conf": "-rw-r--r--",
    "./usr/lib/sysusers.d/keybroker.conf": "-rw-r--r--",
    "./usr/lib/tmpfiles.d/keybroker.conf": "-rw-r--r--",
    "./usr/share/selinux/packages/keybroker.pp": "-rw-r--r--",
    "./usr/share/selinux/devel/include/contrib/keybroker.if": "-rw-r--r--",
    "./usr/share/man/man5/keybroker.toml.5.gz": "-rw-r--r--",
    "./usr/share/man/man8/keybrokerd.8.gz": "-rw-r--r--",
    "./usr/share/man/man8/keybrokerctl.8.gz": "-rw-r--r--",
    "./usr/share/doc/keybroker/copyright": "-rw-r--r--",
    "./usr/share/doc/keybroker/changelog.Debian.gz": "-rw-r--r--",
    "./usr/share/doc/keybroker/setup.md": "-rw-r--r--",
    "./usr/share/lintian/overrides/keybroker": "-rw-r--r--",
}
PLUGIN_FILES = {
    "./usr/lib/mysql/plugin/keybroker_key_management.so": "-rw-r--r--",
    "./etc/mysql/mariadb.conf.d/50-keybroker_key_management.cnf": "-rw-r--r--",
    "./usr/share/man/man7/keybroker_key_management.7.gz": "-rw-r--r--",
    "./usr/share/doc/mariadb-plugin-keybroker/copyright": "-rw-r--r--",
    "./usr/share/doc/mariadb-plugin-keybroker/changelog.Debian.gz": "-rw-r--r--",
    "./usr/share/lintian/overrides/mariadb-plugin-keybroker": "-rw-r--r--",
}
# What the daemon may link: the C libraries it was written against, nothing of Swift's.
BROKER_LIBRARIES = {"libc6", "libcurl4", "libssl3", "libsystemd0", "libgcc-s1", "libstdc++6", "zlib1g"}


def contents(deb):
    """{path: mode string} of the regular files and symlinks in a .deb, and its directories."""
    out = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    files, dirs = {}, {}
    for line in out.splitlines():
        mode, owner, _size, _date, _time, path = line.split(None, 5)
        path = path.split(" -> ")[0]
        assert owner == "root/root", f"{path} is owned by {owner}"
        (dirs if mode.startswith("d") else files)[path.rstrip("/")] = mode
    return files, dirs


def field(deb, name):
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True).stdout.strip()


def test_packages_are_named_for_version_and_architecture(debs):
    assert debs.version == f"{VERSION}-1"
    for deb, package in [(debs.broker, "keybroker"), (debs.plugin, "mariadb-plugin-keybroker")]:
        assert field(deb, "Package") == package
        assert field(deb, "Version") == debs.version
        assert field(deb, "Architecture") == debs.arch


def test_broker_package_files_and_modes(debs):
    files, dirs = contents(debs.broker)
    for path, mode in BROKER_FILES.items():
        assert path in files, f"{path} missing from {debs.broker.name}:\n" + "\n".join(sorted(files))
        assert files[path] == mode, f"{path}: {files[path]}, expected {mode}"
    unexpected = [p for p in files if p not in BROKER_FILES and not p.startswith("./usr/share/doc/keybroker/")]
    assert unexpected == [], unexpected
    for path, mode in {**files, **dirs}.items():
        assert mode[8] != "w", f"{path} is writable by others ({mode})"
        assert "s" not in mode, f"{path} is setuid/setgid ({mode})"
    assert all(mode == "drwxr-xr-x" for mode in dirs.values()), dirs
    # Nothing secret ships: the master key is made on the host, in postinst.
    assert not any(p.startswith("./etc/credstore") or p.startswith("./var/lib/keybroker") for p in {**files, **dirs})


def test_units_name_files_the_package_ships(debs, tmp_path):
    subprocess.run(["dpkg-deb", "-x", str(debs.broker), str(tmp_path)], check=True)
    for unit in ["keybroker.service", "keybroker.socket"]:
        text = (tmp_path / "lib/systemd/system" / unit).read_text()
        for path in re.findall(r"^(?:Documentation=file:|ExecStart=)(\S+)", text, re.M):
            assert (tmp_path / path.lstrip("/")).exists(), f"{unit} names {path}, which the package lacks"


def test_plugin_package_files_and_modes(debs):
    files, dirs = contents(debs.plugin)
    assert files == PLUGIN_FILES, files
    assert all(mode == "drwxr-xr-x" for mode in dirs.values()), dirs


def test_conffiles(debs):
    def conffiles(deb):
        r = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True, check=True)
        out = subprocess.run(["tar", "-xOf", "-", "./conffiles"], input=r.stdout, capture_output=True, check=True)
        return out.stdout.decode().split()
    assert conffiles(debs.broker) == ["/etc/keybroker/keybroker.toml"]
    assert conffiles(debs.plugin) == ["/etc/mysql/mariadb.conf.d/50-keybroker_key_management.cnf"]


def test_daemon_needs_nothing_from_the_swift_toolchain(debs, tmp_path):
    subprocess.run(["dpkg-deb", "-x", str(debs.broker), str(tmp_path)], check=True)
    needed = subprocess.run(["readelf", "-d", str(tmp_path / "usr/sbin/keybrokerd")], capture_output=True, text=True,
                            check=True).stdout
    libs = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", needed)
    toolchain = [lib for lib in libs if "swift" in lib.lower() or "Foundation" in lib or "dispatch" in lib]
    assert libs and toolchain == [], libs
    assert "RUNPATH" not in needed and "RPATH" not in needed, needed
    assert b"/opt/swift" not in (tmp_path / "usr/sbin/keybrokerd").read_bytes()


def test_depends_only_on_what_it_links(debs):
    depends = field(debs.broker, "Depends")
    names = {re.match(r"\s*([a-z0-9.+-]+)", alt).group(1) for dep in depends.split(",") for alt in dep.split("|")}
    # misc:Depends of dh_installsysusers: the sysusers.d entry is applied by systemd-sysusers.
    sysusers = {"systemd", "systemd-standalone-sysusers", "systemd-sysusers"}
    assert names - sysusers <= BROKER_LIBRARIES, depends
    assert {"libc6", "libcurl4", "libssl3", "libsystemd0"} <= names, depends


def test_plugin_depends_on_the_server_series_it_was_built_for(debs):
    built = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libmariadbd-dev"], capture_output=True, text=True,
                           check=True).stdout
    series = re.match(r"(\d+:)?(\d+)\.(\d+)", built)
    nxt = f"{series.group(1) or ''}{series.group(2)}.{int(series.group(3)) + 1}~"
    depends = [d.strip() for d in field(debs.plugin, "Depends").split(",")]
    assert f"mariadb-server (>= {built})" in depends, depends
    assert f"mariadb-server (<< {nxt})" in depends, depends
    assert f"keybroker (= {debs.version})" in depends, depends


def test_the_packaged_snippet_is_commented_out(debs, tmp_path):
    subprocess.run(["dpkg-deb", "-x", str(debs.plugin), str(tmp_path)], check=True)
    text = (tmp_path / "etc/mysql/mariadb.conf.d/50-keybroker_key_management.cnf").read_text()
    settings = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert settings == ["[mariadbd]"], settings
    assert "#plugin_load_add = keybroker_key_management" in text
    assert "#innodb_encrypt_tables = ON" in text


def lintian(*debs):
    r = subprocess.run(["lintian", "--fail-on", "none", "--display-info", "--show-overrides", *map(str, debs)],
                       capture_output=True, text=True, timeout=900)
    return r.stdout + r.stderr


def test_lintian_has_no_errors_and_no_unexplained_warnings(debs):
    out = lintian(debs.broker, debs.plugin)
    tags = [line for line in out.splitlines() if re.match(r"^[EWIXPO]: ", line)]
    assert not [t for t in tags if t.startswith(("E: ", "W: "))], out
    # Overridden tags are printed with O:; each override in the tree says why on the line above.
    for overrides in (ROOT / "debian").glob("*.lintian-overrides"):
        lines = overrides.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip() and not line.startswith("#"):
                assert i > 0 and lines[i - 1].startswith("#"), f"{overrides.name}: override without a reason: {line}"
    Path(debs.dist / "lintian.txt").write_text(out)
