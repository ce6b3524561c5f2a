"""A board that drops off is offline at once: the broker publishes its last will, ``offline``
on ``sensorcast/<device>/status``, and the server marks the device offline as the offline
sweep would (its status, a ``device`` event, one ``offline`` alert), long before
``OFFLINE_AFTER`` (600 s here). A real Mosquitto with the shipped configuration and ACL,
two real gunicorn servers, and devices that connect as a board does."""
import json

import paho.mqtt.client as paho
import pytest
import requests
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from server.homeassistant import SERVER_MARK, announced_key, status_topic
from server.mqtt import SERVER_USER, readings_topic
from server.store import ALERTS
from tests.conftest import eventually
from tests.mqtt_broker import needs_mosquitto

pytestmark = needs_mosquitto


class Board:
    """A device's MQTT connection as the firmware makes it: its last will ``offline``, retained
    at QoS 1, then ``online`` retained; ``drop`` ends it without a goodbye (a power cut)."""

    def __init__(self, broker, device):
        password = broker.passwords.get(device) or broker.add_user(device)
        self.device = device
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"node.{device}")
        self.client.username_pw_set(device, password)
        self.client.will_set(status_topic(device), "offline", qos=1, retain=True)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.client.publish(status_topic(device), "online", qos=1, retain=True).wait_for_publish(10)

    def publish(self, reading):
        self.client.publish(readings_topic(self.device), json.dumps(reading), qos=1).wait_for_publish(10)

    def drop(self):
        self.client.loop_stop()
        self.client.socket().close()

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def board(broker):
    """Boards made by the test, each gone at its end: no paho thread outlives it."""
    made = []

    def make(device):
        made.append(Board(broker, device))
        return made[-1]

    yield make
    for each in made:
        each.close()


def publish_as_server(broker, device, payload):
    """``payload`` on ``device``'s status topic as the server publishes it (its login, its mark)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="another-holder", protocol=paho.MQTTv5)
    client.username_pw_set(SERVER_USER, broker.passwords[SERVER_USER])
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    properties = Properties(PacketTypes.PUBLISH)
    properties.UserProperty = SERVER_MARK
    client.publish(status_topic(device), payload, qos=1, retain=True, properties=properties).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def kept_status(broker, device):
    """The ``device``'s status the broker keeps: what Home Assistant reads as it subscribes."""
    kept = []
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="status-reader", protocol=paho.MQTTv5)
    client.username_pw_set(SERVER_USER, broker.passwords[SERVER_USER])
    client.on_message = lambda client, userdata, message: kept.append(message.payload.decode())
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    client.subscribe(status_topic(device), qos=1)
    eventually(lambda: kept)
    client.disconnect()
    client.loop_stop()
    return kept[0]


def online(server, device):
    devices = requests.get(server.url + "/api/devices", timeout=5).json()["devices"]
    return next(state["online"] for state in devices if state["device"] == device)


def offline_alerts(redis_client, device):
    alerts = [json.loads(fields["json"]) for _, fields in redis_client.xrange(ALERTS)]
    return [alert for alert in alerts if alert["device"] == device and alert["state"] == "offline"]


def following_statuses(broker, redis_client, processes, device):
    """Each server process's Home Assistant client is connected, so subscribed to the statuses
    (it subscribes as it connects), and one of them has published ``device`` (so it is ready)."""
    log = (broker.folder / "mosquitto.log").read_text()
    return log.count(" as sensorcast-ha-") >= processes and redis_client.exists(announced_key(device))


def test_a_boards_last_will_makes_its_device_offline_at_once_and_a_reading_brings_it_back(
        broker, mqtt_server, redis_client, board):
    servers = [mqtt_server(), mqtt_server()]
    browser = servers[1].stream()
    kitchen = board("kitchen")
    kitchen.publish({"temperature": 21.5, "boot": "a1", "seq": 1})
    eventually(lambda: following_statuses(broker, redis_client, 2, "kitchen"), timeout=60)
    assert online(servers[0], "kitchen") and browser.next_of("device")["data"]["status"] == "new"

    kitchen.drop()  # the broker publishes its will

    eventually(lambda: not online(servers[0], "kitchen"), timeout=10)  # not OFFLINE_AFTER's 600 s
    event = browser.next_of("device")["data"]
    assert (event["device"], event["status"]) == ("kitchen", "offline")
    assert not online(servers[1], "kitchen")
    assert 'sensorcast_device_online{device="kitchen"} 0.0' in requests.get(servers[0].url + "/metrics",
                                                                             timeout=5).text
    [alert] = offline_alerts(redis_client, "kitchen")  # one, from one of the two servers
    assert alert["ts"] == pytest.approx(redis_client.zscore("devices", "kitchen"), abs=0.01)  # as the sweep says

    kitchen = board("kitchen")  # back, and its next reading turns it online
    kitchen.publish({"temperature": 21.7, "boot": "a1", "seq": 2})
    event = browser.next_of("device")["data"]
    assert (event["device"], event["status"]) == ("kitchen", "online")
    assert online(servers[0], "kitchen") and len(offline_alerts(redis_client, "kitchen")) == 1
    browser.close()


def test_an_offline_the_server_published_is_no_last_will(broker, mqtt_server, redis_client, board):
    server = mqtt_server()
    browser = server.stream()
    kitchen, attic = board("kitchen"), board("attic")
    kitchen.publish({"temperature": 21.5})
    attic.publish({"temperature": 15.0})
    eventually(lambda: following_statuses(broker, redis_client, 1, "kitchen") and server.history("attic"),
               timeout=60)

    publish_as_server(broker, "kitchen", "offline")  # as a former publisher did, the sweep's
    attic.drop()  # comes after it: once it is offline, what came before was dealt with

    eventually(lambda: not online(server, "attic"))
    assert online(server, "kitchen") and not offline_alerts(redis_client, "kitchen")
    statuses = [browser.next_of("device")["data"] for _ in range(3)]
    assert [(event["device"], event["status"]) for event in statuses] == [
        ("kitchen", "new"), ("attic", "new"), ("attic", "offline")]
    browser.close()


def test_a_broker_that_restarts_takes_no_board_offline(broker, mqtt_server, redis_client, board):
    """Mosquitto sends every connected board's will as it stops: the server, dropped a moment
    later, takes none of them for a board's."""
    server = mqtt_server()
    kitchen = board("kitchen")
    kitchen.publish({"temperature": 21.5})
    eventually(lambda: following_statuses(broker, redis_client, 1, "kitchen"), timeout=60)

    broker.stop()
    broker.start()
    eventually(lambda: following_statuses(broker, redis_client, 2, "kitchen"), timeout=60)  # back on it
    eventually(lambda: kept_status(broker, "kitchen") == "online")  # not the will it kept: Home Assistant's too
    attic = board("attic")
    attic.publish({"temperature": 15.0})
    eventually(lambda: server.history("attic"), timeout=60)
    attic.drop()  # a board that drops off now is marked, and after what came before

    eventually(lambda: not online(server, "attic"))
    assert online(server, "kitchen") and not offline_alerts(redis_client, "kitchen")
    kitchen.drop()
