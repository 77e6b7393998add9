import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from broker import Broker  # noqa: E402


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """One broker per test module, on the local provider, started once."""
    b = Broker(tmp_path_factory.mktemp("broker"))
    b.start()
    yield b
    b.stop()
