"""An emulated board on loopback, driven by the real mpremote."""
import pytest

from tools.emulator import start


@pytest.fixture
def emulated_board(tmp_path):
    board, port = start(tmp_path / "flash", tmp_path / "hardware.json")
    board.port = f"socket://127.0.0.1:{port}"
    yield board
    board.power_off()
