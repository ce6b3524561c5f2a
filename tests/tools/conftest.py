"""An emulated board on loopback, driven by the real mpremote; the release key boards trust."""
import pytest

from tools.emulator import start
from tools.release import release_key as make_release_key


@pytest.fixture
def emulated_board(tmp_path):
    board, port = start(tmp_path / "flash", tmp_path / "hardware.json")
    board.port = f"socket://127.0.0.1:{port}"
    yield board
    board.power_off()


@pytest.fixture
def release_key(tmp_path):
    """The operator's release key, as ``make provision`` makes it on first use."""
    return make_release_key(tmp_path / "release-key.pem")
