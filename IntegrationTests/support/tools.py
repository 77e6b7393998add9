"""The C test tools (kbload, plugin_harness), built by `make test-tools` (mk/tools.mk)."""
import subprocess

from broker import ROOT

TOOLS_DIR = ROOT / "build" / "tools"


def c_tool(name):
    """Builds the C test tools when they are missing or stale and returns the path of one."""
    subprocess.run(["make", "-s", "-C", str(ROOT), "test-tools"], check=True)
    binary = TOOLS_DIR / name
    assert binary.exists(), f"make test-tools did not build {binary}"
    return binary
