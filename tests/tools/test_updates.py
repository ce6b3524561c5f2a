"""A board on the wall updates itself from the server, and never bricks: a broken or
corrupted release is refused or rolled back, and a power cut at any step of an update
leaves a board that boots and posts. The emulated board runs the real boot.py, main.py
and a reset as a board does."""
import json
import shutil
import subprocess

import pytest
import requests

from server.firmware import file_key, store_release
from tests.conftest import eventually
from tests.firmware.conftest import node_settings
from tools.deploy import FIRMWARE
from tools.emulator import MICROPYTHON, micropython_env
from tools.release import release_files


@pytest.fixture
def board(emulated_board, live_server, token_for):
    """A board running today's firmware (0.1.0), posting to the live server."""
    for source in FIRMWARE.glob("*.py"):
        shutil.copy(source, emulated_board.flash)
    settings = node_settings(live_server.url, token_for("kitchen"), interval=0.3, heartbeat=0.3, watchdog=0)
    (emulated_board.flash / "settings.json").write_text(json.dumps(settings))
    emulated_board.power_off()
    emulated_board.power_on()
    eventually(lambda: live_server.history("kitchen"))
    return emulated_board


def publish(redis_client, version, source=FIRMWARE):
    return store_release(redis_client, version, release_files(version, source=source))


def device_state(live_server):
    [device] = [d for d in requests.get(live_server.url + "/api/devices", timeout=5).json()["devices"]
                if d["device"] == "kitchen"]
    return device


def running(live_server):
    return live_server.history("kitchen")[-1]["fw"]


def test_a_published_release_is_installed_and_posts_with_its_version(board, live_server, redis_client):
    settings = (board.flash / "settings.json").read_bytes()

    publish(redis_client, "0.2.0")

    eventually(lambda: running(live_server) == "0.2.0", timeout=60)
    eventually(lambda: device_state(live_server).get("fw_status") == "updated")
    assert device_state(live_server)["fw_target"] == "0.2.0"
    assert (board.flash / "settings.json").read_bytes() == settings
    assert (board.flash / "version.py").read_text() == 'VERSION = "0.2.0"\n'
    assert not (board.flash / "ota.json").exists() and not list((board.flash / "previous").iterdir())


def test_a_release_that_cannot_start_is_rolled_back_and_the_server_learns_why(board, live_server, redis_client,
                                                                             tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(FIRMWARE, broken)
    (broken / "node.py").write_text('raise RuntimeError("broken on purpose")\n' + (broken / "node.py").read_text())

    publish(redis_client, "0.3.0", broken)

    eventually(lambda: device_state(live_server).get("fw_status") == "failed", timeout=60)
    assert "broken on purpose" in device_state(live_server)["fw_error"]
    posted = len(live_server.history("kitchen"))
    eventually(lambda: len(live_server.history("kitchen")) > posted + 3)
    assert running(live_server) == "0.1.0"
    assert (board.flash / "node.py").read_bytes() == (FIRMWARE / "node.py").read_bytes()


def test_a_corrupted_download_is_refused(board, live_server, redis_client):
    manifest = publish(redis_client, "0.4.0")
    node = next(entry for entry in manifest["files"] if entry["path"] == "node.py")
    redis_client.set(file_key(node["sha256"]), "Y29ycnVwdGVk")  # "corrupted", base64

    eventually(lambda: device_state(live_server).get("fw_status") == "failed", timeout=60)

    assert "node.py: wrong size or SHA-256" in device_state(live_server)["fw_error"]
    assert running(live_server) == "0.1.0" and not (board.flash / "ota.json").exists()
    assert (board.flash / "node.py").read_bytes() == (FIRMWARE / "node.py").read_bytes()


class PowerCut:
    """Stands in for the loader's ``os``: the power goes after ``steps`` file operations."""
    code = """
import os, loader
class Cut:
    def __init__(self, steps):
        self.steps = steps
    def __getattr__(self, name):
        real = getattr(os, name)
        def step(*args):
            if name in ("rename", "remove", "mkdir"):
                if self.steps == 0:
                    raise SystemExit(9)
                self.steps -= 1
            return real(*args)
        return step
loader.os = Cut(%d)
loader.swap("0.2.0", %r)
"""


@pytest.mark.parametrize("steps", [0, 1, 2, 3, 5, 8, 11, 12, 16, 19, 20, 21, 30])  # 21: it completes
def test_a_power_cut_at_any_step_of_the_swap_leaves_a_board_that_boots_and_posts(board, live_server, steps):
    board.power_off()
    staging = board.flash / "staging"
    staging.mkdir()
    files = release_files("0.2.0")
    for name, content in files.items():
        (staging / name).write_bytes(content)
    cut = subprocess.run([str(MICROPYTHON), "-c", PowerCut.code % (steps, sorted(files))], cwd=board.flash,
                         env=micropython_env(board.flash, board.hardware_file), capture_output=True, text=True)
    assert cut.returncode in (0, 9), cut.stdout + cut.stderr
    posted = len(live_server.history("kitchen"))

    board.power_on()

    eventually(lambda: len(live_server.history("kitchen")) > posted + 2, timeout=60)
    version = running(live_server)
    assert version in ("0.1.0", "0.2.0")
    assert (board.flash / "version.py").read_text() == f'VERSION = "{version}"\n'


def test_a_power_cut_in_the_middle_of_a_download_is_harmless(board, live_server, redis_client):
    board.power_off()
    (board.flash / "staging").mkdir()
    (board.flash / "staging" / "node.py").write_bytes((FIRMWARE / "node.py").read_bytes()[:300])
    (board.flash / "ota.json.tmp").write_text('{"state": "sw')  # and a marker half written
    posted = len(live_server.history("kitchen"))

    board.power_on()
    eventually(lambda: len(live_server.history("kitchen")) > posted + 2, timeout=60)
    publish(redis_client, "0.2.0")

    eventually(lambda: running(live_server) == "0.2.0", timeout=60)
