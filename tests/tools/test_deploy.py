"""From a bare board to readings on the dashboard, with the real mpremote: provision, deploy."""
import json
import os
import shutil
import subprocess

import pytest

from server import ROOT
from tests.conftest import eventually
from tests.firmware.conftest import node_settings
from tools.deploy import FIRMWARE, LIBRARY


def make(*args, env=None):
    return subprocess.run(["make", "-s", *args], cwd=ROOT, capture_output=True, text=True, env=env)


def provision(board, server, redis_server, monkeypatch, port=None, *settings):
    """make provision, answering its questions through the environment."""
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("WIFI_SSID", "lab")
    monkeypatch.setenv("WIFI_PASSWORD", "secret-password")
    monkeypatch.setenv("RELEASE_KEY", str(board.flash.parent / "release-key.pem"))  # not the operator's
    return make("provision", f"PORT={port or board.port}", "DEVICE=attic", f"SERVER={server.url}", *settings,
                env=dict(os.environ))


def test_provision_writes_settings_whose_token_the_server_accepts(emulated_board, live_server,
                                                                  redis_server, monkeypatch):
    result = provision(emulated_board, live_server, redis_server, monkeypatch)
    assert result.returncode == 0, result.stdout + result.stderr

    settings = json.loads((emulated_board.flash / "settings.json").read_text())
    assert settings["device"] == "attic" and settings["server"] == live_server.url
    assert settings["wifi_ssid"] == "lab" and settings["wifi_password"] == "secret-password"
    assert (settings["sensor"], settings["pin"]) == ("dht22", 4)  # the defaults
    answer = live_server.post("/api/readings", settings["token"], json={"temperature": 20})
    assert answer.status_code == 201
    tracked = subprocess.run(["git", "grep", "-l", settings["token"]], cwd=ROOT, capture_output=True)
    assert tracked.stdout == b""


def test_provision_writes_the_sensor_and_pin_it_is_given_and_refuses_a_sensor_it_does_not_know(
        emulated_board, live_server, redis_server, monkeypatch):
    result = provision(emulated_board, live_server, redis_server, monkeypatch, None, "SENSOR=thermistor", "PIN=34")
    assert result.returncode == 0, result.stdout + result.stderr
    settings = json.loads((emulated_board.flash / "settings.json").read_text())
    assert (settings["sensor"], settings["pin"]) == ("thermistor", 34)

    refused = provision(emulated_board, live_server, redis_server, monkeypatch, None, "SENSOR=bme280")
    assert refused.returncode != 0 and "invalid choice: 'bme280'" in refused.stderr


def test_a_board_provisioned_again_holds_the_only_token_that_works(emulated_board, live_server,
                                                                  redis_server, monkeypatch):
    """As when a token leaked, or a new board takes a dead one's place: the old token is
    refused once the board has the new one, and not before."""
    provision(emulated_board, live_server, redis_server, monkeypatch)
    first = json.loads((emulated_board.flash / "settings.json").read_text())["token"]

    missed = provision(emulated_board, live_server, redis_server, monkeypatch, port="socket://127.0.0.1:9")
    assert missed.returncode != 0
    assert live_server.post("/api/readings", first, json={"temperature": 20}).status_code == 201

    again = provision(emulated_board, live_server, redis_server, monkeypatch)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "its 1 earlier token(s) no longer work" in again.stdout  # the one made for the missed board went
    second = json.loads((emulated_board.flash / "settings.json").read_text())["token"]
    assert live_server.post("/api/readings", first, json={"temperature": 21}).status_code == 401
    assert live_server.post("/api/readings", second, json={"temperature": 22}).status_code == 201


@pytest.mark.parametrize("server", ["192.168.1.20:5000", "http://192.168.1.20:5OOO", "ftp://192.168.1.20"])
def test_provision_refuses_a_server_address_the_board_could_not_post_to(emulated_board, redis_server, monkeypatch,
                                                                       server):
    result = provision(emulated_board, type("Server", (), {"url": server}), redis_server, monkeypatch)

    assert result.returncode == 2 and "SERVER must be the server's address as the board reaches it" in result.stderr
    assert not (emulated_board.flash / "settings.json").exists()


def test_a_board_running_the_firmware_goes_on_with_its_new_settings_once_provisioned(
        emulated_board, live_server, redis_server, token_for, monkeypatch):
    for source in FIRMWARE.glob("*.py"):
        shutil.copy(source, emulated_board.flash)
    (emulated_board.flash / "settings.json").write_text(json.dumps(node_settings(live_server.url, token_for("kitchen"))))
    emulated_board.power_on()
    eventually(lambda: live_server.history("kitchen"))

    result = provision(emulated_board, live_server, redis_server, monkeypatch)

    assert result.returncode == 0, result.stdout + result.stderr
    eventually(lambda: live_server.history("attic"), timeout=60)  # not halted at the REPL till a deploy


def test_deploy_copies_the_firmware_intact_and_the_board_starts_posting(emulated_board, live_server,
                                                                        redis_server, monkeypatch):
    provision(emulated_board, live_server, redis_server, monkeypatch)
    settings_file = emulated_board.flash / "settings.json"
    settings = json.loads(settings_file.read_text())
    settings.update(sensor="thermistor", pin=34, chip="esp32", interval=0.5, watchdog=0)
    settings_file.write_text(json.dumps(settings))
    left_by_an_update = {  # one stuck on trial, say: the deployed firmware must not be judged as that release
        "ota.json": '{"state": "trial", "version": "0.9.0", "boots": 1, "files": [["node.py", true]]}',
        "ota-failed.json": '{"version": "0.8.0", "reason": "boom", "reported": true}',
        "ota-backoff.json": '{"failures": 1, "until": 4102444800}', "staging/led.py": "", "previous/node.py": ""}
    for name, text in left_by_an_update.items():
        (emulated_board.flash / name).parent.mkdir(exist_ok=True)
        (emulated_board.flash / name).write_text(text)
    browser = live_server.stream()

    result = make("deploy", f"PORT={emulated_board.port}")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].startswith("deploy: done; the board restarts into it. Next: make monitor")
    assert not [name for name in left_by_an_update if (emulated_board.flash / name).exists()]  # a deploy starts afresh
    for source in FIRMWARE.glob("*.py"):
        assert (emulated_board.flash / source.name).read_bytes() == source.read_bytes()
    umqtt = emulated_board.flash / "lib" / "umqtt" / "simple.py"  # where `mpremote mip install` puts it
    assert umqtt.read_bytes() == (LIBRARY / "umqtt" / "simple.py").read_bytes()
    reading = browser.next_reading()["data"]
    assert reading["device"] == "attic" and abs(reading["temperature"] - 25) < 0.1

    again = make("deploy", f"PORT={emulated_board.port}")
    assert again.stdout.count("Up to date") == len(list(FIRMWARE.glob("*.py"))) + len(list(LIBRARY.rglob("*.py")))


def test_a_precompiled_deploy_runs_too(emulated_board, live_server, redis_server, monkeypatch):
    """Its modules name their files as the board does (node.py, umqtt/simple.py), never by the
    checkout's path, which the board's heap would hold for every module."""
    provision(emulated_board, live_server, redis_server, monkeypatch)
    (emulated_board.flash / "node.py").write_text("# left by an earlier deploy of sources")
    settings = json.loads((emulated_board.flash / "settings.json").read_text())
    settings.update(sensor="thermistor", pin=34, chip="esp32", interval=0.5, watchdog=0)
    (emulated_board.flash / "settings.json").write_text(json.dumps(settings))

    result = make("deploy", f"PORT={emulated_board.port}", "MPY=1")

    assert result.returncode == 0, result.stderr
    assert (emulated_board.flash / "node.mpy").exists() and not (emulated_board.flash / "node.py").exists()
    umqtt = emulated_board.flash / "lib" / "umqtt"
    assert (umqtt / "simple.mpy").exists() and not (umqtt / "simple.py").exists()
    for module in (emulated_board.flash / "node.mpy", umqtt / "simple.mpy"):
        assert str(ROOT).encode() not in module.read_bytes()
    eventually(lambda: live_server.history("attic"))
