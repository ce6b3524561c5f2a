"""The simulator against the real server, and the same payload as the firmware's."""
import json
import random
import re
import subprocess
import sys
import threading
import time

from server import ROOT
from server.auth import revoke_tokens, token_device
from server.mqtt import SERVER_USER
from server.readings import validate
from simulator import __main__ as cli
from simulator.devices import Device, Fleet, MqttFleet
from tests.conftest import eventually
from tests.firmware.conftest import Board, mqtt_server, node_settings  # noqa: F401 (a fixture)
from tests.firmware.test_mqtt import StatusWatcher
from tests.mqtt_broker import needs_mosquitto


def test_simulated_readings_arrive_on_the_stream(live_server, token_for):
    browser = live_server.stream()
    token = token_for("sim-1")

    assert cli.main(["--url", live_server.url, "--token", token, "--devices", "1", "--interval", "0.2",
                 "--duration", "1", "--seed", "4"]) == 0

    reading = browser.next_reading()["data"]
    assert reading["device"] == "sim-1" and 5 < reading["temperature"] < 40


def test_the_simulator_and_the_firmware_send_the_same_payload(tmp_path):
    board = Board(tmp_path / "flash")
    board.configure(**node_settings("http://127.0.0.1:9", "", watchdog=0))
    firmware = json.loads(board.python_last_line(
        "import json, node, settings; n = node.Node(settings.load(), None); "
        "n.wifi.up(lambda: None); r = n.reading({'temperature': 21.5, 'humidity': 40.0}); "
        "n.uplink.add(r); print(json.dumps(r))"))  # the uplink stamps boot and seq
    device = Device("kitchen", "t", random.Random(1))
    simulated = device.reading({"temperature": 21.5, "humidity": 40.0}, firmware["ts"], 0)

    assert sorted(simulated) == sorted(firmware)
    assert all(type(simulated[key]) is type(firmware[key]) for key in firmware if key != "ts")
    for reading in (firmware, simulated):
        assert validate(reading, firmware["ts"], 1, 300)


def test_a_local_run_makes_its_own_tokens_once(redis_server, redis_client, monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", redis_server.url)

    first = cli.local_tokens(["sim-1", "sim-2"], tmp_path)
    again = cli.local_tokens(["sim-1", "sim-2"], tmp_path)

    assert first == again
    assert [token_device(redis_client, first[name]) for name in first] == ["sim-1", "sim-2"]
    cli.local_tokens(["sim-1"], tmp_path)  # a run of fewer devices keeps the others' tokens for the next
    assert cli.local_tokens(["sim-1", "sim-2"], tmp_path) == first


@needs_mosquitto
def test_simulated_readings_published_over_mqtt_are_stored_once(broker, mqtt_server, capsys):
    status = StatusWatcher(broker, "sim-2")

    assert cli.main(["--transport", "mqtt", "--mqtt-url", broker.url(), "--devices", "2", "--interval", "0.2",
                     "--duration", "2", "--seed", "4"]) == 0

    assert "over mqtt" in capsys.readouterr().out
    for name in ("sim-1", "sim-2"):
        eventually(lambda: len(mqtt_server.history(name)) >= 5)
        seqs = [reading["seq"] for reading in mqtt_server.history(name)]
        assert seqs == list(range(1, len(seqs) + 1))
    eventually(lambda: status.said() == ["online", "offline"])  # as Home Assistant hears it
    status.close()


class Run:
    """``make simulate``'s loop over ``fleet``, a step every ``interval`` seconds in a thread of its own."""

    def __init__(self, fleet, interval=0.1):
        self.fleet, self.interval = fleet, interval
        self.stopping = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._steps)
        self.thread.start()

    def _steps(self):
        start = time.time()
        try:
            while not self.stopping.wait(self.interval):
                now = time.time()
                assert self.fleet.step(now, clock=now, uptime=now - start) == []
        except Exception as error:  # the run crashed: the test says how
            self.error = error

    def going(self):
        if self.error:
            raise self.error
        return True

    def stop(self):
        self.stopping.set()
        self.thread.join()
        self.going()


@needs_mosquitto
def test_a_run_over_mqtt_across_a_broker_restart_delivers_every_reading_it_made_once(broker, mqtt_server):
    fleet = MqttFleet(broker.url(), ["sim-1", "sim-2"], random.Random(4))
    run = Run(fleet)
    eventually(lambda: run.going() and all(mqtt_server.history(device.name) for device in fleet.devices))

    broker.stop()
    eventually(lambda: run.going() and fleet.buffered >= 10)  # made meanwhile, kept
    broker.start()  # the devices and the server come back by themselves
    eventually(lambda: run.going() and fleet.buffered == 0, timeout=60)
    run.stop()
    fleet.finish(time.time())  # what a device in a Wi-Fi dropout of its own still holds
    fleet.close()

    assert fleet.buffered == 0 and fleet.sent == sum(device.seq for device in fleet.devices)
    for device in fleet.devices:
        eventually(lambda: len(mqtt_server.history(device.name)) >= device.seq)
        stored = [reading["seq"] for reading in mqtt_server.history(device.name)]
        assert stored == list(range(1, device.seq + 1)), stored  # none lost, none twice


def test_a_simulator_stopped_as_a_service_is_prints_its_summary_of_what_the_server_stored(live_server, token_for):
    simulator = subprocess.Popen([sys.executable, "-m", "simulator", "--url", live_server.url, "--token",
                                  token_for("sim-1"), "--devices", "1", "--interval", "0.2"],
                                 cwd=ROOT, stdout=subprocess.PIPE, text=True)
    eventually(lambda: len(live_server.history("sim-1")) >= 3)

    simulator.terminate()  # SIGTERM, as systemd or docker stop send it

    said = simulator.communicate(timeout=30)[0]
    sent, buffered = map(int, re.search(r"sent (\d+), still buffered (\d+),", said).groups())
    assert simulator.returncode == 0 and sent <= len(live_server.history("sim-1")) <= sent + buffered  # one cut short


@needs_mosquitto
def test_killing_the_simulator_makes_the_broker_say_its_devices_are_offline(broker):
    status = StatusWatcher(broker, "sim-2")
    simulator = subprocess.Popen([sys.executable, "-m", "simulator", "--transport", "mqtt", "--mqtt-url", broker.url(),
                                  "--devices", "2", "--interval", "0.2"], cwd=ROOT)
    try:
        eventually(lambda: status.said() == ["online"], timeout=60)
    finally:
        simulator.kill()  # its connections end without a goodbye: each device's last will says it
    simulator.wait()
    eventually(lambda: status.said() == ["online", "offline"])
    status.close()


@needs_mosquitto
def test_a_login_the_broker_refuses_stops_the_run_with_a_message(broker, capsys):
    url = broker.url().replace(broker.passwords[SERVER_USER], "wrong")
    assert cli.main(["--transport", "mqtt", "--mqtt-url", url, "--duration", "1"]) == 2
    assert "refused the login" in capsys.readouterr().err


def test_a_device_whose_token_is_revoked_stops_while_the_others_go_on(live_server, redis_server, redis_client,
                                                                      monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    run = {}
    simulator = threading.Thread(target=lambda: run.update(code=cli.main([
        "--url", live_server.url, "--data", str(tmp_path), "--devices", "2", "--interval", "0.2", "--duration", "8", "--seed", "4"])))
    simulator.start()
    eventually(lambda: live_server.history("sim-2"))

    revoke_tokens(redis_client, "sim-2")  # as the dashboard's Delete does, with "also revoke its token"
    revoked_at = len(live_server.history("sim-1"))
    simulator.join()

    assert run["code"] == 0
    said = capsys.readouterr().err
    assert "sim-2: the server refused its token (401): revoked" in said and "check --token" not in said
    assert len(live_server.history("sim-1")) > revoked_at + 5  # sim-1 went on


def test_a_simulated_device_started_again_with_its_seed_is_stored_as_a_new_start(live_server, token_for):
    token = token_for("sim-1")
    for run in range(2):
        assert cli.main(["--url", live_server.url, "--token", token, "--devices", "1", "--interval", "0.2",
                         "--duration", "1", "--seed", "4"]) == 0

    seqs = [reading["seq"] for reading in live_server.history("sim-1")]
    assert seqs.count(1) == 2 and len(seqs) >= 6  # two starts, each stored whole


def test_a_simulated_device_whose_seqs_a_stranger_took_goes_on_under_a_new_boot_and_loses_none(
        live_server, token_for):
    token = token_for("sim-1")
    fleet = Fleet(live_server.url, {"sim-1": token}, random.Random(4))
    [device] = fleet.devices
    assert live_server.post("/api/readings", token, json={"temperature": 99, "boot": device.boot, "seq": 1}).ok
    for n in range(3):
        device.keep(device.reading({"temperature": 20 + n}, time.time(), n))

    fleet.upload(device, time.time())

    assert not device.pending
    assert [reading["temperature"] for reading in live_server.history("sim-1")] == [99, 20, 21, 22]
