"""Home Assistant discovery, as Home Assistant sees it: a real Mosquitto with the shipped
configuration and ACL, real gunicorn servers, and a client logged in as Home Assistant's
user, subscribed to what Home Assistant subscribes to. The discovery messages are held to
Home Assistant's documented MQTT discovery schema for sensors
(https://www.home-assistant.io/integrations/sensor.mqtt/)."""
import json
import re
import secrets
import time

import paho.mqtt.client as paho
import pytest
import requests
from jinja2.sandbox import SandboxedEnvironment
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from server.devices import delete, describe
from server.homeassistant import GROUP
from server.store import READINGS
from tests.conftest import eventually
from tests.mqtt_broker import Broker, Publisher, needs_mosquitto

pytestmark = needs_mosquitto

HA_USER = "home.assistant"  # deploy/mosquitto/acl's
CONFIG_TOPIC = re.compile(r"\Ahomeassistant/sensor/(?:[a-zA-Z0-9_-]+/)?[a-zA-Z0-9_-]+/config\Z")
SENSOR_KEYS = {  # every option an MQTT sensor takes, as documented
    "availability", "availability_mode", "availability_template", "availability_topic", "default_entity_id",
    "device", "device_class", "enabled_by_default", "encoding", "entity_category", "entity_picture",
    "expire_after", "force_update", "icon", "json_attributes_template", "json_attributes_topic",
    "last_reset_value_template", "name", "object_id", "options", "origin", "payload_available",
    "payload_not_available", "platform", "qos", "state_class", "state_topic", "suggested_display_precision",
    "unique_id", "unit_of_measurement", "value_template"}
DEVICE_KEYS = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
               "model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device"}
UNITS = {"temperature": {"°C", "°F", "K"}, "humidity": {"%"},  # what these device classes accept
         "pressure": {"Pa", "kPa", "hPa", "mbar", "bar", "cbar", "mmHg", "inHg", "psi"},
         "voltage": {"µV", "mV", "V", "kV", "MV"}, "signal_strength": {"dB", "dBm"},
         "duration": {"d", "h", "min", "s", "ms"}, "data_size": {"bit", "kbit", "B", "kB", "KiB", "MB", "MiB"},
         "carbon_dioxide": {"ppm"}, "pm25": {"µg/m³"}, "pm10": {"µg/m³"}, "illuminance": {"lx"}}
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}


@pytest.fixture
def broker(tmp_path):
    running = Broker(tmp_path)
    running.add_user(HA_USER)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def ha_server(start_server, broker, tmp_path, redis_client):
    """A server publishing discovery to ``broker``, once its MQTT client is up and a
    publisher follows ``readings`` (whatever is stored from then on is published)."""
    def start(**settings):
        settings.setdefault("MQTT_CLIENT_ID", f"test-{tmp_path.name}")
        server = start_server(MQTT_URL=broker.url(), **settings)
        eventually(lambda: server.health().get("mqtt") == "up", timeout=60)
        eventually(lambda: redis_client.exists(READINGS) and GROUP in
                   [group["name"] for group in redis_client.xinfo_groups(READINGS)], timeout=60)
        return server
    return start


@pytest.fixture
def home_assistant(broker):
    """Home Assistant's MQTT client: start one, or another later."""
    clients = []

    def connect():
        clients.append(HomeAssistant(broker))
        return clients[-1]

    yield connect
    for client in clients:
        client.close()


class HomeAssistant:
    """Subscribed as Home Assistant is (discovery, then each entity's state and availability
    topics): keeps every message in order, with its retain flag as published."""

    def __init__(self, broker):
        self.messages = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"ha-{secrets.token_hex(4)}",
                                  protocol=paho.MQTTv5)
        self.client.username_pw_set(HA_USER, broker.passwords[HA_USER])
        self.client.on_message = lambda client, userdata, message: self.messages.append(
            (message.topic, message.payload.decode(), message.retain))
        subscribed = []
        self.client.on_subscribe = lambda *args: subscribed.append(True)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        options = SubscribeOptions(qos=1, retainAsPublished=True)
        self.client.subscribe([("homeassistant/#", options), ("sensorcast/+/state", options),
                               ("sensorcast/+/status", options)])
        eventually(lambda: subscribed)

    def retained(self):
        """Topic -> payload, as the broker keeps them now (an empty payload: none)."""
        kept = {}
        for topic, payload, _ in list(self.messages):
            kept[topic] = payload
        return {topic: payload for topic, payload in kept.items() if payload}

    def configs(self, device=None):
        return {topic: json.loads(payload) for topic, payload in self.retained().items()
                if topic.endswith("/config") and (device is None or f"/sensorcast_{device}/" in topic)}

    def states(self, device):
        return [json.loads(payload) for topic, payload, _ in list(self.messages)
                if topic == f"sensorcast/{device}/state" and payload]

    def statuses(self, device):
        return [payload for topic, payload, _ in list(self.messages) if topic == f"sensorcast/{device}/status"]

    def value(self, config):
        """What Home Assistant makes the sensor's state: ``value_template`` rendered as it
        renders it (a sandboxed Jinja) on the last message on ``state_topic``; None for
        unknown, which a numeric sensor (one with a state class) makes of ``None``."""
        template = SandboxedEnvironment().from_string(config["value_template"])
        rendered = template.render(value_json=json.loads(self.retained()[config["state_topic"]]))
        assert config["state_class"] and rendered, "Home Assistant would keep the state it had"
        return None if rendered == "None" else json.loads(rendered)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def check_sensor_config(topic, config):
    """Hold one discovery message to Home Assistant's MQTT sensor schema."""
    assert CONFIG_TOPIC.match(topic), topic
    assert set(config) <= SENSOR_KEYS, set(config) - SENSOR_KEYS
    for key in ("state_topic", "availability_topic"):
        assert isinstance(config[key], str) and not {"+", "#"} & set(config[key]), config
    assert isinstance(config["unique_id"], str) and config["unique_id"]
    assert config.get("state_class", "measurement") in STATE_CLASSES
    assert config.get("entity_category", "diagnostic") == "diagnostic"  # a sensor takes no other
    if "device_class" in config:
        assert config["unit_of_measurement"] in UNITS[config["device_class"]], config
    assert config["payload_available"] == "online" and config["payload_not_available"] == "offline"
    device = config["device"]  # a device block needs unique_id, and identifiers or connections
    assert set(device) <= DEVICE_KEYS, set(device) - DEVICE_KEYS
    assert isinstance(device["identifiers"], list) and device["identifiers"]
    assert all(isinstance(identifier, str) and identifier for identifier in device["identifiers"])
    assert config["origin"]["name"]


def sensors(home_assistant, device):
    """``device``'s sensors by metric: the topic each config names it by."""
    return {topic.split("/")[-2]: config for topic, config in home_assistant.configs(device).items()}


def test_every_device_and_metric_is_announced_as_home_assistant_documents_it(ha_server, home_assistant, broker,
                                                                              token_for, redis_client):
    server = ha_server()
    ha = home_assistant()
    reading = {"temperature": 21.5, "humidity": 40.2, "pressure": 1013.2, "rssi": -61, "uptime": 3600,
               "heap": 81920, "dropped": 2, "co2": 412, "pm25": 8.5, "pm10": 14, "illuminance": 320, "lux": 310,
               "items": 7, "fw": "1.4.0"}  # items: a dict's method's name too
    assert server.post("/api/readings", token_for("kitchen"), json=reading).status_code == 201
    broker.add_user("attic")
    attic = Publisher(broker, "attic")  # over MQTT: announced all the same
    attic.publish(json.dumps({"temperature": 15.25, "boot": "b", "seq": 1}), "attic")
    attic.close()
    metrics = set(reading) - {"fw"}
    eventually(lambda: set(sensors(ha, "kitchen")) == metrics
               and set(sensors(ha, "attic")) == {"temperature"}
               and ha.states("kitchen") and ha.states("attic"), timeout=60)

    configs = ha.configs()
    for topic, config in configs.items():
        check_sensor_config(topic, config)
    assert len({config["unique_id"] for config in configs.values()}) == len(configs) == len(metrics) + 1
    kitchen = sensors(ha, "kitchen")
    for metric, config in kitchen.items():
        assert ha.value(config) == reading[metric]  # the state message and template really carry it
    assert ha.value(sensors(ha, "attic")["temperature"]) == 15.25
    for device in ("kitchen", "attic"):  # each state, the first of a new device too, says which reading it is
        stored = [entry_id for entry_id, _ in redis_client.xrange(f"readings:{device}")]
        assert all(state["id"] in stored and state["ts"] > 1.7e9 for state in ha.states(device))
    assert {metric: (config.get("device_class"), config.get("unit_of_measurement"), config["state_class"],
                     config.get("entity_category")) for metric, config in kitchen.items()} == {
        "temperature": ("temperature", "°C", "measurement", None),
        "humidity": ("humidity", "%", "measurement", None),
        "pressure": ("pressure", "hPa", "measurement", None),
        "rssi": ("signal_strength", "dBm", "measurement", "diagnostic"),
        "uptime": ("duration", "s", "measurement", "diagnostic"),
        "heap": ("data_size", "B", "measurement", "diagnostic"),
        "dropped": (None, "readings", "total_increasing", "diagnostic"),
        "co2": ("carbon_dioxide", "ppm", "measurement", None),
        "pm25": ("pm25", "µg/m³", "measurement", None),
        "pm10": ("pm10", "µg/m³", "measurement", None),
        "illuminance": ("illuminance", "lx", "measurement", None),
        "lux": ("illuminance", "lx", "measurement", None),
        "items": (None, None, "measurement", None)}
    names = {metric: config["name"] for metric, config in kitchen.items()}
    assert [names[metric] for metric in ("co2", "pm25", "pm10", "rssi", "lux", "heap")] == [
        "CO2", "PM2.5", "PM10", "WiFi signal", "Lux", "Heap"]
    assert kitchen["temperature"]["device"] == {"identifiers": ["sensorcast-kitchen"], "name": "kitchen",
                                                "manufacturer": "Sensorcast", "model": "Sensorcast",
                                                "sw_version": "1.4.0"}
    assert len({json.dumps(config["device"]) for config in kitchen.values()}) == 1  # one device, its sensors
    assert kitchen["temperature"]["availability_topic"] == "sensorcast/kitchen/status"
    assert ha.retained()["sensorcast/kitchen/status"] == ha.retained()["sensorcast/attic/status"] == "online"

    later = home_assistant()  # one that starts now finds it all, retained
    eventually(lambda: later.configs() == ha.configs() and "sensorcast/kitchen/state" in later.retained())
    assert all(retain for _, _, retain in later.messages + ha.messages)

    describe(redis_client, "kitchen", {"name": "Kitchen"})  # a label: announced again
    eventually(lambda: {config["device"]["name"] for config in sensors(ha, "kitchen").values()} == {"Kitchen"})
    assert server.post("/api/readings", token_for("kitchen"), json={"battery": 3.7}).status_code == 201
    eventually(lambda: "battery" in sensors(ha, "kitchen") and ha.states("kitchen")[-1].get("battery") == 3.7)
    battery = sensors(ha, "kitchen")["battery"]
    assert (battery["device_class"], battery["unit_of_measurement"]) == ("voltage", "V")
    assert ha.value(sensors(ha, "kitchen")["temperature"]) == 21.5  # the state keeps every metric's latest
    assert [config["unique_id"] for config in ha.configs().values()].count("sensorcast-kitchen-battery") == 1


def test_a_metric_the_device_stopped_sending_becomes_unknown_while_the_others_stay_current(ha_server,
                                                                                       home_assistant, token_for):
    server = ha_server()  # OFFLINE_AFTER 600 s: a metric left out that long becomes unknown
    ha = home_assistant()
    token = token_for("kitchen")
    now = time.time()

    def post(reading):
        assert server.post("/api/readings", token, json=reading).status_code == 201
        eventually(lambda: ha.states("kitchen") and ha.states("kitchen")[-1]["ts"] == reading["ts"], timeout=60)
        return {metric: ha.value(config) for metric, config in sensors(ha, "kitchen").items()}

    assert post({"temperature": 20.5, "humidity": 55.0, "battery": 3.9, "ts": now - 900}) == {
        "temperature": 20.5, "humidity": 55.0, "battery": 3.9}
    # the humidity sensor swapped out; the battery sent now and then: 500 s is not long enough
    assert post({"temperature": 21.0, "battery": 3.8, "ts": now - 400}) == {
        "temperature": 21.0, "humidity": 55.0, "battery": 3.8}
    assert post({"temperature": 21.5, "ts": now}) == {"temperature": 21.5, "humidity": None, "battery": 3.8}
    assert ha.states("kitchen")[-1]["humidity"] is None
    assert ha.retained()["sensorcast/kitchen/status"] == "online"  # the device is there: only humidity is not
    assert post({"humidity": 48.0, "ts": now + 1}) == {"temperature": 21.5, "humidity": 48.0, "battery": 3.8}


def test_availability_goes_offline_with_the_offline_sweep_and_online_with_the_next_reading(ha_server,
                                                                                           home_assistant, token_for):
    server = ha_server(OFFLINE_AFTER=1)
    ha = home_assistant()
    token = token_for("kitchen")
    assert server.post("/api/readings", token, json={"temperature": 20}).status_code == 201
    eventually(lambda: ha.statuses("kitchen")[:2] == ["online", "offline"], timeout=60)
    assert server.post("/api/readings", token, json={"temperature": 21}).status_code == 201
    eventually(lambda: ha.statuses("kitchen")[:3] == ["online", "offline", "online"], timeout=60)
    eventually(lambda: ha.value(sensors(ha, "kitchen")["temperature"]) == 21)


def test_a_deleted_device_loses_its_entities_and_a_hidden_one_keeps_them(ha_server, home_assistant, token_for,
                                                                          redis_client):
    server = ha_server()
    ha = home_assistant()
    for device in ("kitchen", "attic"):
        assert server.post("/api/readings", token_for(device), json={"temperature": 20, "humidity": 50}).ok
    eventually(lambda: len(ha.configs()) == 4 and ha.retained().get("sensorcast/attic/status") == "online",
               timeout=60)
    kitchen_topics = set(ha.configs("kitchen"))

    assert delete(redis_client, "kitchen")
    everything_of_kitchen = kitchen_topics | {"sensorcast/kitchen/state", "sensorcast/kitchen/status"}
    eventually(lambda: everything_of_kitchen <= {topic for topic, payload, retain in ha.messages
                                                 if payload == "" and retain})
    assert not ha.configs("kitchen")
    assert set(ha.configs()) == set(ha.configs("attic")) and len(ha.configs()) == 2
    later = home_assistant()  # the broker keeps nothing of it
    eventually(lambda: len(later.configs()) == 2)
    assert not [topic for topic in later.retained() if "kitchen" in topic]

    describe(redis_client, "attic", {"hidden": True})  # off the dashboard: Home Assistant is another matter
    assert server.post("/api/readings", token_for("attic"), json={"temperature": 22.5, "humidity": 50}).ok
    eventually(lambda: ha.value(sensors(ha, "attic")["temperature"]) == 22.5)
    assert len(ha.configs("attic")) == 2 and ha.retained()["sensorcast/attic/status"] == "online"
    assert not [payload for topic, payload, _ in ha.messages if "attic" in topic and payload == ""]

    assert server.post("/api/readings", token_for("kitchen"), json={"temperature": 19}).ok  # back as new
    eventually(lambda: set(sensors(ha, "kitchen")) == {"temperature"})


def state_ids(ha, device):
    return [state["id"] for state in ha.states(device) if "id" in state]


def stored_ids(redis_client, device):
    return [entry_id for entry_id, _ in redis_client.xrange(f"readings:{device}")]


def published_in_order(ha, redis_client, device):
    """Each state published once, in the order stored, the last one the last reading's:
    the server publishes a device's latest, so readings read in one go make one state."""
    published, stored = state_ids(ha, device), stored_ids(redis_client, device)
    return published[-1:] == stored[-1:] and sorted(set(published), key=stored.index) == published


def test_two_server_processes_publish_each_state_once(ha_server, home_assistant, token_for, redis_client):
    servers = [ha_server(), ha_server()]
    ha = home_assistant()
    devices = ["kitchen", "attic", "cellar"]
    tokens = {device: token_for(device) for device in devices}
    for seq in range(1, 16):
        for number, device in enumerate(devices):
            reading = {"temperature": 20 + seq / 10, "boot": "b", "seq": seq}
            assert servers[(seq + number) % 2].post("/api/readings", tokens[device], json=reading).status_code == 201
    for device in devices:
        eventually(lambda: published_in_order(ha, redis_client, device), timeout=60,
                   seen=lambda: f"published {state_ids(ha, device)}, stored {stored_ids(redis_client, device)}")
        assert [state["temperature"] for state in ha.states(device)][-1] == 21.5


def caught_up(redis_client):
    """The publisher has read and acknowledged every reading stored so far."""
    group = next(group for group in redis_client.xinfo_groups(READINGS) if group["name"] == GROUP)
    newest = redis_client.xinfo_stream(READINGS)["last-generated-id"]
    return group["pending"] == 0 and group["last-delivered-id"] == newest


def test_a_reading_stored_late_never_moves_home_assistant_back(ha_server, home_assistant, token_for,
                                                                redis_client):
    server = ha_server()
    ha = home_assistant()
    token = token_for("kitchen")
    assert server.post("/api/readings", token, json={"temperature": 25.0, "boot": "c3", "seq": 200}).ok
    eventually(lambda: [state["temperature"] for state in ha.states("kitchen")] == [25.0], timeout=60)
    assert server.post("/api/readings", token, json={"temperature": 19.0, "boot": "c3", "seq": 199}).ok  # late
    eventually(lambda: caught_up(redis_client))
    assert server.post("/api/readings", token_for("attic"), json={"temperature": 15}).ok  # published after it
    eventually(lambda: ha.states("attic"))

    devices = requests.get(server.url + "/api/devices", timeout=5).json()["devices"]
    assert [device["temperature"] for device in devices if device["device"] == "kitchen"] == [25.0]
    assert ha.value(sensors(ha, "kitchen")["temperature"]) == 25.0
    assert [state["temperature"] for state in ha.states("kitchen")] == [25.0]  # not 19.0 even for a moment
    latest, shown = server.history("kitchen")[0], ha.states("kitchen")[-1]  # seq 200's, stored first
    assert (shown["ts"], shown["id"]) == (latest["ts"], latest["id"])


def test_a_device_stored_before_any_publisher_ran_shows_its_latest_reading_not_its_newest_entry(
        ha_server, start_server, home_assistant, token_for):
    http_only = start_server()
    token = token_for("kitchen")
    assert http_only.post("/api/readings", token, json={"temperature": 25.0, "boot": "c3", "seq": 200}).ok
    assert http_only.post("/api/readings", token, json={"temperature": 19.0, "boot": "c3", "seq": 199}).ok  # late
    ha = home_assistant()
    ha_server()
    eventually(lambda: ha.states("kitchen"), timeout=60)
    latest = next(reading for reading in http_only.history("kitchen") if reading["seq"] == 200)
    assert [(state["temperature"], state["ts"], state["id"]) for state in ha.states("kitchen")] == \
        [(25.0, latest["ts"], latest["id"])]


def test_a_restarted_server_publishes_what_was_stored_while_it_was_away(ha_server, start_server, home_assistant,
                                                                       token_for, redis_client):
    publisher, http_only = ha_server(), start_server()
    ha = home_assistant()
    token = token_for("kitchen")
    assert http_only.post("/api/readings", token, json={"temperature": 20}).status_code == 201
    eventually(lambda: len(state_ids(ha, "kitchen")) == 1, timeout=60)
    publisher.stop()
    for value in range(5):
        assert http_only.post("/api/readings", token, json={"temperature": 21 + value}).status_code == 201
    ha_server()
    eventually(lambda: published_in_order(ha, redis_client, "kitchen"), timeout=60)
    assert ha.value(sensors(ha, "kitchen")["temperature"]) == 25


def test_a_broker_that_lost_what_it_kept_gets_every_device_announced_again_without_a_new_reading(
        ha_server, home_assistant, token_for, broker):
    """Mosquitto restarted without its database (a crash before its autosave, a new
    broker): the quiet devices' entities must not vanish from Home Assistant until each
    posts again."""
    server = ha_server()
    for device in ("kitchen", "attic"):
        assert server.post("/api/readings", token_for(device), json={"temperature": 20.5}).status_code == 201
    ha = home_assistant()
    eventually(lambda: len(ha.retained()) == 6, timeout=60)  # each device's config, state and status
    announced = ha.retained()

    broker.stop()
    (broker.folder / "mosquitto.db").unlink()
    broker.start()

    eventually(lambda: server.health().get("mqtt") == "up", timeout=60)
    later = home_assistant()
    eventually(lambda: later.retained() == announced, timeout=60)
