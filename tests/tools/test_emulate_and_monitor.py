"""make emulate gives ports that mpremote and make monitor use like USB ports."""
import json
import shutil
import subprocess
import sys
import threading

from server import ROOT
from tests.conftest import eventually
from tests.firmware.conftest import mqtt_settings, node_settings
from tests.mqtt_broker import needs_mosquitto
from tools.deploy import LIBRARY
from tools.run import free_port


def test_emulate_prints_a_port_per_board_that_mpremote_talks_to(tmp_path):
    emulator = subprocess.Popen([sys.executable, "-m", "tools.emulator", "--boards", "2", "--dir", str(tmp_path)],
                                cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        ports = [emulator.stdout.readline().split("PORT=")[1].split()[0] for _ in range(2)]
        answers = [subprocess.run([sys.executable, "-m", "mpremote", "connect", port, "exec", "print(6 * 7)"],
                                  capture_output=True, text=True, timeout=30).stdout for port in ports]
    finally:
        emulator.terminate()
        emulator.wait()

    assert len(set(ports)) == 2 and answers == ["42\n", "42\n"]


def test_monitor_shows_the_running_nodes_log(emulated_board):
    for source in (ROOT / "firmware").glob("*.py"):
        shutil.copy(source, emulated_board.flash)
    (emulated_board.flash / "settings.json").write_text(
        json.dumps(node_settings("http://127.0.0.1:9", "", interval=0.3, watchdog=0)))
    emulated_board.power_off()
    emulated_board.power_on()

    monitor = subprocess.Popen([sys.executable, "-m", "tools.monitor", "--port", emulated_board.port],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True)
    give_up = threading.Timer(60, monitor.terminate)
    give_up.start()
    try:
        shown = next((line for line in monitor.stdout if "upload failed" in line), None)
    finally:
        give_up.cancel()
        monitor.terminate()
        monitor.wait()

    assert shown, "the monitor never showed the node's failed upload"


def test_monitor_says_in_a_line_that_a_port_cannot_be_opened(tmp_path):
    nobody = f"socket://127.0.0.1:{free_port()}"

    monitor = subprocess.run([sys.executable, "-m", "tools.monitor", "--port", nobody], cwd=ROOT,
                             capture_output=True, text=True, timeout=30)

    assert monitor.returncode == 1 and "Traceback" not in monitor.stderr
    assert monitor.stderr.startswith(f"monitor: cannot open {nobody}: ")


@needs_mosquitto
def test_an_emulated_board_finds_its_lib_as_a_board_does_and_publishes_over_mqtt(emulated_board, broker,
                                                                                 mqtt_server, token_for):
    """umqtt.simple is in the board's /lib, where ``make deploy`` puts it: not beside the firmware."""
    for source in (ROOT / "firmware").glob("*.py"):
        shutil.copy(source, emulated_board.flash)
    shutil.copytree(LIBRARY, emulated_board.flash / "lib")
    server = mqtt_server()
    (emulated_board.flash / "settings.json").write_text(
        json.dumps(mqtt_settings(broker, server.url, token_for("kitchen"), watchdog=0)))
    emulated_board.power_off()
    emulated_board.power_on()

    eventually(lambda: server.history("kitchen"), timeout=60)
