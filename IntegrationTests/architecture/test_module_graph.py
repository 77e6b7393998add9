"""The module graph: Package.swift, the sources' imports and docs/architecture.md agree, and imports
point down the layers (issue 12). Runs `swift package dump-package`, so it reads Package.swift as
SwiftPM does."""
import json
import os
import re
import shutil
import subprocess

import pytest

from broker import BIN_DIR, ROOT

# Modules of the toolchain and the system: never declared in Package.swift.
SYSTEM_MODULES = {"Glibc", "Foundation", "Synchronization", "XCTest", "Dispatch", "_Concurrency"}
LAYERS = ["system", "foundations", "memory", "clients", "keys", "providers", "server", "configuration", "executables", "tests"]
IMPORT = re.compile(r"^\s*(?:@\w+\s+)*import\s+(?:(?:struct|class|enum|protocol|func|var|let|typealias)\s+)?(\w+)", re.M)


def swift():
    return shutil.which("swift") or "/opt/swift/usr/bin/swift"


@pytest.fixture(scope="module")
def package():
    out = subprocess.run([swift(), "package", "dump-package"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def declared(target):
    names = set()
    for dependency in target["dependencies"]:
        for kind in ("byName", "product", "target"):
            if kind in dependency:
                names.add(dependency[kind][0])
    return names


def source_dir(target):
    if target.get("path"):
        return ROOT / target["path"]
    return ROOT / ("Tests" if target["type"] == "test" else "Sources") / target["name"]


def imported(target):
    modules = set()
    for path in source_dir(target).rglob("*.swift"):
        modules |= set(IMPORT.findall(path.read_text()))
    return modules - SYSTEM_MODULES


def documented():
    """The table of docs/architecture.md: module → (layer, may import)."""
    rows = {}
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`") and cells[1] in LAYERS:
            rows[cells[0].strip("`")] = (cells[1], set(re.findall(r"`([^`]+)`", cells[2])))
    return rows


def test_every_target_declares_exactly_what_its_sources_import(package):
    problems = []
    for target in package["targets"]:
        if not any(source_dir(target).rglob("*.swift")):
            continue  # a C module: its header includes system headers only
        name, want, have = target["name"], declared(target), imported(target)
        if have - want:
            problems.append(f"{name} imports {sorted(have - want)} without declaring them in Package.swift")
        if want - have:
            problems.append(f"{name} declares {sorted(want - have)} in Package.swift but no source imports them")
    assert not problems, "\n".join(problems)


def test_architecture_md_lists_every_module_with_its_package_swift_dependencies(package):
    rows = documented()
    products = {t["name"] for t in package["targets"] if t["type"] != "test"}
    assert set(rows) == products, f"docs/architecture.md and Package.swift name different modules: {sorted(set(rows) ^ products)}"
    for target in package["targets"]:
        if target["type"] == "test":
            continue
        assert rows[target["name"]][1] == declared(target), \
            f"{target['name']}: docs/architecture.md says {sorted(rows[target['name']][1])}, Package.swift {sorted(declared(target))}"


def test_imports_point_down_the_layers(package):
    rows = documented()
    for target in package["targets"]:
        if target["type"] == "test":
            continue
        layer = LAYERS.index(rows[target["name"]][0])
        for dependency in declared(target) & set(rows):
            assert LAYERS.index(rows[dependency][0]) < layer, \
                f"{target['name']} ({LAYERS[layer]}) imports {dependency} ({rows[dependency][0]}), which is not below it"


def closure(package, name):
    targets = {t["name"]: t for t in package["targets"]}
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        for dependency in declared(targets[current]) if current in targets else ():
            if dependency not in seen:
                seen.add(dependency)
                todo.append(dependency)
    return seen


def test_no_product_module_uses_the_test_support(package):
    for target in package["targets"]:
        if target["type"] != "test" and target["name"] != "TestSupport":
            assert "TestSupport" not in closure(package, target["name"]), target["name"]


@pytest.mark.parametrize("module,forbidden", [
    ("Broker", {"TOMLKit", "AWSKMS", "KMS", "CKeybrokerCurl", "BrokerConfiguration"}),
    ("BrokerTests", {"TOMLKit", "AWSKMS", "CKeybrokerCurl", "BrokerConfiguration"}),
    ("keybrokerctl", {"AWSKMS", "AWSCore", "CKeybrokerCurl", "Broker"}),
    ("BrokerConfiguration", {"KeyStore", "KMS", "AWSKMS", "CKeybrokerCurl", "SecureMemory"}),
    ("KeyStore", {"KMS", "AWSKMS", "AWSCore", "Broker", "BrokerConfiguration"}),
    ("AWSCore", {"KeyStore", "KMS", "AWSKMS", "Broker", "BrokerConfiguration"}),
    # SystemSupport (the floor: JSON, hex) is allowed: it imports nothing, so the fuzzer still builds alone.
    ("BrokerProtocol", {"NIOPosix", "KeyStore", "SecureMemory", "CKeybrokerCrypto"}),
])
def test_what_a_module_must_not_pull_in(package, module, forbidden):
    assert not closure(package, module) & forbidden, f"{module} depends on {sorted(closure(package, module) & forbidden)}"


def test_keybrokerctl_does_not_link_libcurl_and_keybrokerd_does():
    def libraries(binary):
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout
    assert "libcurl" not in libraries(BIN_DIR / "keybrokerctl")
    assert "libcurl" in libraries(BIN_DIR / "keybrokerd")
    assert os.access(BIN_DIR / "keybroker-sigv4-check", os.X_OK)
