"""What the plugin's tests share: the C test tools built once, and a misbehaving broker per test."""
import pytest

from misbehaving_broker import MisbehavingBroker
from plugin_driver import build_test_tools


@pytest.fixture(scope="session", autouse=True)
def tools():
    build_test_tools()


@pytest.fixture
def broker(tmp_path):
    b = MisbehavingBroker(tmp_path / "mb.sock").start()
    yield b
    b.stop()
