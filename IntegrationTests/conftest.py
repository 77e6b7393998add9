import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))

from broker import Broker  # noqa: E402


def shared_tmpdir(prefix):
    """A directory other uids can traverse (pytest's own tmp dirs are 0700), for tests whose
    peers run as another user."""
    path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(path, 0o755)
    return Path(path)


@pytest.fixture(scope="module")
def workdir():
    path = shared_tmpdir("keybroker-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def broker(workdir):
    """One broker per test module, on the local provider, started once."""
    b = Broker(workdir / "broker")
    b.start()
    yield b
    b.stop()
