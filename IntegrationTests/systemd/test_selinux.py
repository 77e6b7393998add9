"""The SELinux module: built from the tree by `make selinux` with Debian's refpolicy headers, then
linked into Debian's own policy (base + mysql modules from selinux-policy-default) the way
`semodule -i` would, and the result queried for what the issue promises: init starts keybrokerd
in keybroker_t, mysqld_t may connect to its socket, and keybroker_t reaches only HTTP(S) and DNS.

No SELinux kernel is needed: everything here works on policy files.
"""
import shutil
import subprocess
from pathlib import Path

import pytest

from broker import ROOT  # noqa: E402
DEBIAN_POLICY = Path("/usr/share/selinux/default")


def make_selinux(build_dir, src_dir=None):
    args = ["make", "--no-print-directory", "-C", str(ROOT), "selinux", f"SELINUX_BUILD_DIR={build_dir}"]
    if src_dir:
        args.append(f"SELINUX_SRC_DIR={src_dir}")
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def run(*args, check=True):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300)
    if check:
        assert r.returncode == 0, f"{' '.join(map(str, args))}:\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def module_pp(tmp_path_factory):
    build = tmp_path_factory.mktemp("selinux-build")
    r = make_selinux(build)
    assert r.returncode == 0, r.stdout + r.stderr
    pp = build / "keybroker.pp"
    assert pp.stat().st_size > 0
    return pp


def link_with_debian_policy(tmp_path, pp):
    """base + mysql + our module → kernel policy, as semodule would build it."""
    assert (DEBIAN_POLICY / "base.pp.bz2").exists(), "selinux-policy-default is not installed; run `make deps`"
    parts = []
    for name in ("base", "mysql"):
        out = tmp_path / f"{name}.pp"
        out.write_bytes(subprocess.run(["bzcat", DEBIAN_POLICY / f"{name}.pp.bz2"], capture_output=True,
                                       check=True).stdout)
        parts.append(out)
    linked = tmp_path / "linked.pp"
    r = run("semodule_link", "-o", linked, *parts, pp, check=False)
    if r.returncode != 0:
        return None, r
    policy = tmp_path / "policy.bin"
    r = run("semodule_expand", linked, policy, check=False)
    return (policy if r.returncode == 0 else None), r


def rules(policy, *args):
    out = run("sesearch", *args, policy).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def test_module_builds_from_the_tree(module_pp):
    assert module_pp.name == "keybroker.pp"


def test_a_call_to_a_missing_interface_fails_the_build(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "selinux", src)
    with open(src / "keybroker.te", "a") as te:
        te.write("\nkeybroker_no_such_interface(keybroker_t)\n")
    r = make_selinux(tmp_path / "build", src_dir=src)
    assert r.returncode != 0
    assert "keybroker_no_such_interface" in r.stdout + r.stderr
    assert not (tmp_path / "build" / "keybroker.pp").exists()


@pytest.fixture(scope="module")
def policy(module_pp, tmp_path_factory):
    policy, r = link_with_debian_policy(tmp_path_factory.mktemp("linked"), module_pp)
    assert policy, r.stdout + r.stderr
    return policy


def test_module_links_into_debians_policy(policy):
    assert policy.stat().st_size > 0


def test_a_requirement_the_policy_lacks_fails_the_link(tmp_path):
    """Proves the link check: a module built fine but asking for a type Debian's policy lacks."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "selinux", src)
    with open(src / "keybroker.te", "a") as te:
        te.write("\ngen_require(`\n\ttype keybroker_missing_peer_t;\n')\n"
                 "allow keybroker_t keybroker_missing_peer_t:file read;\n")
    assert make_selinux(tmp_path / "build", src_dir=src).returncode == 0
    policy, r = link_with_debian_policy(tmp_path, tmp_path / "build" / "keybroker.pp")
    assert policy is None
    assert "keybroker_missing_peer_t" in r.stdout + r.stderr


def test_file_contexts_are_valid_in_the_policy(policy, module_pp, tmp_path):
    run("semodule_unpackage", module_pp, tmp_path / "k.mod", tmp_path / "k.fc")
    fc = (tmp_path / "k.fc").read_text()
    labels = {line.split()[0]: line.split()[-1] for line in fc.splitlines()
              if line.startswith("/")}
    assert labels["/usr/sbin/keybrokerd"].split(":")[2] == "keybroker_exec_t"
    assert labels["/run/keybroker(/.*)?"].split(":")[2] == "keybroker_runtime_t"
    assert labels["/var/lib/keybroker(/.*)?"].split(":")[2] == "keybroker_var_lib_t"
    assert labels["/etc/keybroker(/.*)?"].split(":")[2] == "keybroker_conf_t"
    assert labels[r"/etc/credstore/keybroker\..*"].split(":")[2] == "keybroker_cred_t"
    # setfiles -c rejects any context whose type the linked policy does not define.
    run("setfiles", "-c", policy, tmp_path / "k.fc")


def test_init_starts_keybrokerd_in_its_domain(policy):
    assert rules(policy, "-T", "-s", "init_t", "-t", "keybroker_exec_t", "-c", "process") == [
        "type_transition init_t keybroker_exec_t:process keybroker_t;"]


def test_mysqld_may_connect_to_the_socket(policy):
    assert "allow mysqld_t keybroker_t:unix_stream_socket connectto;" in rules(
        policy, "-A", "-s", "mysqld_t", "-t", "keybroker_t", "-c", "unix_stream_socket")
    sock = " ".join(rules(policy, "-A", "-s", "mysqld_t", "-t", "keybroker_runtime_t", "-c", "sock_file"))
    assert "write" in sock


def test_keybroker_reaches_only_http_and_dns(policy):
    connect = rules(policy, "-A", "-s", "keybroker_t", "-c", "tcp_socket", "-p", "name_connect")
    # Conditional rules carry "[ boolean ]:True"; unconditional ones are what always applies.
    always = {r.split()[2].split(":")[0] for r in connect if "[" not in r}
    assert always == {"http_port_t", "dns_port_t"}
    assert not rules(policy, "-A", "-s", "keybroker_t", "-c", "tcp_socket", "-p", "name_bind")
    assert not rules(policy, "-A", "-s", "keybroker_t", "-c", "udp_socket", "-p", "name_bind")


def test_keybroker_has_no_capabilities_and_no_executable_memory(policy):
    assert rules(policy, "-A", "-s", "keybroker_t", "-c", "capability") == []
    assert rules(policy, "-A", "-s", "keybroker_t", "-c", "process", "-p", "execmem") == []


def test_keybroker_writes_only_its_state(policy):
    writable = rules(policy, "-A", "-s", "keybroker_t", "-c", "file", "-p", "write")
    targets = {r.split()[2].split(":")[0] for r in writable}
    # keybroker_t: its own /proc entries; init_tmpfs_t: systemd's StandardInputText memfd.
    assert targets == {"keybroker_var_lib_t", "keybroker_t", "init_tmpfs_t"}, writable


def test_master_keys_at_rest_are_readable_by_the_broker_and_systemd_only(policy):
    """keybroker_cred_t is an auth file: apart from unconfined domains, only keybroker_t and
    init_t (which copies LoadCredential= sources) read it; not mysqld_t, not package scripts."""
    readers = {r.split()[1] for r in rules(policy, "-A", "-t", "keybroker_cred_t", "-c", "file", "-p", "read")}
    assert readers == {"keybroker_t", "init_t", "files_unconfined_type"}, readers
    for secret in ("keybroker_cred_t", "keybroker_var_lib_t", "keybroker_conf_t"):
        assert rules(policy, "-A", "-s", "mysqld_t", "-t", secret, "-c", "file", "-p", "read") == []
