"""The package tests build the packages once per session: `make deb` (and, for the upgrade, the
same tree with the next package revision) into .build-packaging/, `make rpm` likewise. The first
build compiles the optimised daemon (.build/release); later ones reuse it."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from broker import ROOT  # noqa: E402

WORK = ROOT / ".build-packaging"
VERSION = re.search(r'public static let number = "([^"]+)"',
                    (ROOT / "Sources/Broker/KeybrokerVersion.swift").read_text()).group(1)


def make(*args, timeout=3600, env=None):
    r = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args], capture_output=True, text=True,
                       timeout=timeout, env={**os.environ, **(env or {})})
    assert r.returncode == 0, f"make {' '.join(args)} failed:\n{r.stdout[-6000:]}\n{r.stderr[-6000:]}"
    return r


class Debs:
    def __init__(self, dist, revision):
        self.dist = dist
        self.version = f"{VERSION}-{revision}"
        arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
        self.arch = arch
        self.broker = dist / f"keybroker_{self.version}_{arch}.deb"
        self.plugin = dist / f"mariadb-plugin-keybroker_{self.version}_{arch}.deb"


def build_debs(revision, env=None):
    dist = WORK / f"dist-{revision}"
    for old in dist.glob("*"):
        old.unlink()
    r = make("deb", f"DIST_DIR={dist}", f"DEB_REVISION={revision}", env=env)
    debs = Debs(dist, revision)
    debs.log = r.stdout + r.stderr
    assert debs.broker.exists() and debs.plugin.exists(), sorted(p.name for p in dist.iterdir())
    return debs


@pytest.fixture(scope="session")
def debs():
    """Version N of both packages, built from this tree."""
    return build_debs(1)


@pytest.fixture(scope="session")
def next_debs(debs):
    """Version N+1: the same tree, the next package revision. Compressed with gzip -1 instead of
    xz: the same contents, built in a fraction of the time (xz of the two binaries is most of it)."""
    return build_debs(2, env={"DPKG_DEB_COMPRESSOR_TYPE": "gzip", "DPKG_DEB_COMPRESSOR_LEVEL": "1"})
