"""A maker sets ``transport: mqtt``: the real firmware, under MicroPython, publishes to a real
Mosquitto (deploy/mosquitto/'s configuration and ACL), a real server stores each reading
once, and the broker tells everyone at once when the board drops off."""
import socket
import threading

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from server.mqtt import SERVER_USER
from tests.conftest import eventually
from tests.firmware.conftest import mqtt_settings
from tests.mqtt_broker import needs_mosquitto

pytestmark = needs_mosquitto


def seqs(server, device="kitchen"):
    return [reading["seq"] for reading in server.history(device)]


class BrokerLink:
    """The network between the board and the broker: a TCP relay that the test cuts (its
    connections dropped, new ones closed at once) and restores."""

    def __init__(self, broker_port):
        self.broker_port = broker_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.relayed = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                board, _ = self.listener.accept()
            except OSError:  # closed
                return
            try:
                if not self.up:
                    raise ConnectionRefusedError("cut")
                broker = socket.create_connection(("127.0.0.1", self.broker_port))
            except OSError:  # cut, or the broker is down: the board's connection ends at once
                board.close()
                continue
            with self.lock:
                self.relayed += [board, broker]
            for source, sink in ((board, broker), (broker, board)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while data := source.recv(4096):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            end.close()

    def cut(self):
        self.up = False
        with self.lock:
            for end in self.relayed:
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.relayed = []

    def restore(self):
        self.up = True

    def close(self):
        self.cut()
        self.listener.close()


class StatusWatcher:
    """Home Assistant's view of a device's availability: a subscription to its status topic."""

    def __init__(self, broker, device="kitchen"):
        self.messages = []
        self.arrived = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"watcher-{len(broker.passwords)}")
        self.client.username_pw_set(SERVER_USER, broker.passwords[SERVER_USER])
        self.client.on_connect = lambda client, *args: client.subscribe(f"sensorcast/{device}/status", qos=1)
        self.client.on_message = lambda client, userdata, message: self.messages.append(
            (message.payload.decode(), message.retain))
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def said(self):
        return [payload for payload, _ in self.messages]

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def test_the_nodes_readings_arrive_over_mqtt_with_its_status(board, broker, mqtt_server, token_for):
    board.configure(**mqtt_settings(broker, mqtt_server.url, token_for("kitchen")))
    browser = mqtt_server.stream()

    board.start()
    reading = browser.next_reading()["data"]

    assert reading["device"] == "kitchen" and abs(reading["temperature"] - 25.0) < 0.1
    assert reading["seq"] == 1 and reading["fw"] and reading["heap"] > 0
    watcher = StatusWatcher(broker)  # comes later, and is told at once: retained
    eventually(lambda: watcher.messages == [("online", True)])
    watcher.close()


def test_readings_made_while_the_broker_is_away_are_stored_once_when_it_is_back(board, broker, mqtt_server,
                                                                                token_for):
    """The board keeps its readings while the broker is away. Mosquitto 2.0.11 acknowledges,
    and drops, what a restarted broker takes before the server has subscribed again: the
    board waits a moment after connecting, the server is back first."""
    link = BrokerLink(broker.port)
    board.configure(**mqtt_settings(broker, mqtt_server.url, token_for("kitchen"), interval=0.3,
                                    mqtt_port=link.port))
    board.start()
    eventually(lambda: len(seqs(mqtt_server)) >= 3)

    link.cut()
    broker.stop()
    board.wait_for("mqtt: connecting failed", count=20, timeout=120)
    broker.start()
    link.restore()  # the board may connect at once, before the server is subscribed again
    board.wait_for("mqtt: online", count=2, timeout=60)
    board.wait_for("led: ok", count=board.console().count("led: ok") + 1, timeout=60)  # all buffered is out
    board.stop()
    link.close()

    made_meanwhile = board.console().count("mqtt: connecting failed")  # a reading each
    eventually(lambda: len(seqs(mqtt_server)) >= 3 + made_meanwhile, timeout=60)
    stored = seqs(mqtt_server)
    assert stored == list(range(1, len(stored) + 1)), stored  # one boot: none lost, none twice, in order


def test_killing_the_board_makes_the_broker_say_it_is_offline(board, broker, mqtt_server, token_for):
    board.configure(**mqtt_settings(broker, mqtt_server.url, token_for("kitchen")))
    watcher = StatusWatcher(broker)
    board.start()
    eventually(lambda: watcher.said() == ["online"])
    eventually(lambda: seqs(mqtt_server))
    heard = len(watcher.messages)

    board.process.kill()  # a power cut, as the broker sees it: the connection ends without a goodbye

    # A board on a busy machine may have lost its connection and made it again just before
    # (each time it said offline, then online): what matters is what the kill makes it say.
    eventually(lambda: len(watcher.said()) > heard and watcher.said()[-1] == "offline",
               seen=lambda: f"{watcher.messages} and on the board's console:\n{board.console()}")
    watcher.close()
    later = StatusWatcher(broker)
    eventually(lambda: later.messages == [("offline", True)])  # retained for whoever asks later
    later.close()


def test_a_login_the_broker_refuses_is_a_fault_the_user_must_fix(board, broker, mqtt_server, token_for):
    board.configure(**mqtt_settings(broker, mqtt_server.url, token_for("kitchen"), mqtt_password="wrong"))
    board.start()
    console = board.wait_for("led: fault")
    assert "mqtt: login (CONNACK 5) failed" in console and "provision this device again" in console
