"""Fake sensor nodes that behave like the firmware: same payload, same ``boot``/``seq``,
same bounded buffer sent as one batch after a Wi-Fi dropout or a server outage.

Signals are believable: a daily temperature curve with noise and a per-device offset,
humidity moving against it, the odd failed sensor read, and Wi-Fi dropouts.
"""
import json
import math
import threading
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
import requests
from paho.mqtt.enums import CallbackAPIVersion

from server import DEFAULTS
from server.mqtt import DEFAULT_PORTS, readings_topic
from server.readings import validate

FIRMWARE_VERSION = "sim-0.1.0"
DAY = 24 * 3600
BATCH = 20
REFUSED = (400, 413, 415, 422)  # as the firmware does: never accepted, so dropped
PAUSE = (429, 503)  # busy, or over the device's rate: kept, and sent after Retry-After
DEFAULT_PAUSE = 5  # seconds, when a pause has no Retry-After, or one that is not a number
LONGEST_PAUSE = 120  # as the firmware caps it: the server asks for seconds, and a forged hour would silence a device


class AuthRefused(Exception):
    """The server refused a device's token, or the broker the login: no retry will help."""


class Device:
    buffer_size = 300
    sensor_fault_rate = 0.02
    dropout_rate = 0.01
    dropout_steps = (3, 12)

    def __init__(self, name, token, rng):
        self.name = name
        self.token = token
        self.rng = rng
        self.boot = "%08x" % rng.getrandbits(32)
        self.seq = 0
        self.offset = rng.uniform(-3, 3)
        self.pending = []
        self.dropped = 0
        self.offline_steps = 0
        self.resume_at = 0.0

    def measure(self, clock):
        """Temperature and humidity at simulated time ``clock``, or None for a failed read."""
        if self.rng.random() < self.sensor_fault_rate:
            return None
        day = math.sin(2 * math.pi * ((clock % DAY) / DAY - 0.375))  # warmest mid-afternoon
        temperature = 21 + self.offset + 4 * day + self.rng.gauss(0, 0.15)
        humidity = min(100.0, max(0.0, 50 - 2.5 * (temperature - 21) + self.rng.gauss(0, 0.8)))
        return {"temperature": round(temperature, 2), "humidity": round(humidity, 2)}

    def reading(self, values, now, uptime):
        """The firmware's payload for one reading (see firmware/node.py)."""
        self.seq += 1
        reading = {"device": self.name, "boot": self.boot, "seq": self.seq, "fw": FIRMWARE_VERSION,
                   "uptime": int(uptime), "heap": 30000 + self.rng.randrange(2000), **values,
                   "ts": round(now, 3), "rssi": self.rng.randrange(-80, -45)}
        if self.dropped:
            reading["dropped"] = self.dropped
        validate(reading, now, 1, DEFAULTS["MAX_FUTURE"])  # the server's own schema, checked once
        return reading

    def keep(self, reading):
        self.pending.append(reading)
        if len(self.pending) > self.buffer_size:
            self.pending.pop(0)
            self.dropped += 1

    def wifi_up(self):
        """False for this step when Wi-Fi is away (``offline_steps`` more steps to go)."""
        if not self.offline_steps and self.rng.random() < self.dropout_rate:
            self.offline_steps = self.rng.randint(*self.dropout_steps)
        if self.offline_steps:
            self.offline_steps -= 1
            return False
        return True


class Fleet:
    """N devices posting to one server; counts what was sent, is buffered, and failed."""

    def __init__(self, url, tokens, rng, session=None, timeout=10):
        self.url = url.rstrip("/") + "/api/readings"
        self.devices = [Device(name, token, rng) for name, token in tokens.items()]
        self.session = session or requests.Session()
        self.timeout = timeout
        self.sent = self.failed = 0

    @property
    def buffered(self):
        return sum(len(device.pending) for device in self.devices)

    def step(self, now, clock, uptime):
        """One interval: every device reads (at simulated ``clock``), buffers, and uploads.
        A device whose token is refused leaves the fleet: returns the refusals (AuthRefused)."""
        refusals = []
        for device in list(self.devices):
            values = device.measure(clock)
            if values is not None:
                device.keep(device.reading(values, now, uptime))
            if device.wifi_up() and now >= device.resume_at:
                try:
                    self.upload(device, now)
                except AuthRefused as refusal:
                    self.devices.remove(device)
                    refusals.append(refusal)
        return refusals

    def upload(self, device, now):
        while device.pending:
            batch = device.pending[:BATCH]
            try:
                answer = self.session.post(self.url, json=batch, timeout=self.timeout,
                                           headers={"Authorization": f"Bearer {device.token}"})
            except requests.RequestException:
                self.failed += 1
                return
            if answer.status_code in (401, 403):
                raise AuthRefused(f"{device.name}: the server refused its token ({answer.status_code}): "
                                  "revoked, or not this device's; it stops, any others go on")
            if answer.status_code in PAUSE:
                device.resume_at = now + pause_asked(answer.headers)
            if answer.status_code >= 300:
                self.failed += 1
                if answer.status_code not in REFUSED:
                    return
            else:
                self.sent += len(batch)
            device.pending = device.pending[len(batch):]

    def close(self):
        self.session.close()


def pause_asked(headers):
    """The seconds a 429 or 503 asks a device to wait: its Retry-After, at most LONGEST_PAUSE;
    DEFAULT_PAUSE if that is not a number of seconds (an HTTP date, garbage, NaN)."""
    try:
        seconds = float(headers.get("Retry-After", DEFAULT_PAUSE))
    except ValueError:
        return DEFAULT_PAUSE
    return min(seconds, LONGEST_PAUSE) if seconds >= 0 else DEFAULT_PAUSE


class MqttFleet(Fleet):
    """The same devices publishing to a broker instead (``--transport mqtt``), as the
    firmware's mqtt_uplink.py does: each batch at QoS 1 to ``sensorcast/<device>/readings``,
    kept until the broker's PUBACK came, and ``online`` retained on ``sensorcast/<device>/status``
    while it runs (``offline`` once it ends).
    One connection for all: its login must be allowed to publish for every device (the
    server's own, from SENSORCAST_MQTT_URL; or the device's with ``--devices 1``)."""

    def __init__(self, mqtt_url, names, rng, timeout=10):
        super().__init__("", dict.fromkeys(names), rng, timeout=timeout)
        url = urlsplit(mqtt_url)
        if url.scheme not in DEFAULT_PORTS or not url.hostname:
            raise ValueError("give the broker as mqtt://[user:password@]host[:port] or mqtts://…")
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"sensorcast-sim-{rng.getrandbits(32):08x}")
        if url.username:
            self.client.username_pw_set(unquote(url.username), unquote(url.password or ""))
        if url.scheme == "mqtts":
            self.client.tls_set()
        self.answered = threading.Event()
        self.refusal = None
        self.client.on_connect = self._on_connect
        self.client.connect(url.hostname, url.port or DEFAULT_PORTS[url.scheme])
        self.client.loop_start()
        if not self.answered.wait(timeout) or self.refusal:
            self.close()
            raise AuthRefused(f"the broker at {url.hostname} refused the login ({self.refusal or 'no answer'})")
        for device in self.devices:
            self.client.publish(f"sensorcast/{device.name}/status", "online", qos=1, retain=True)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.refusal = str(reason_code) if reason_code.is_failure else None
        self.answered.set()

    def upload(self, device, now):
        while device.pending:
            batch = device.pending[:BATCH]
            published = self.client.publish(readings_topic(device.name), json.dumps(batch), qos=1)
            try:
                published.wait_for_publish(self.timeout)
            except RuntimeError:  # not connected: paho sends it again once it is
                pass
            if not published.is_published():
                self.failed += 1
                return
            self.sent += len(batch)
            device.pending = device.pending[len(batch):]

    def close(self):
        """Leave ``offline`` retained for each device, as a board's last will does when it
        drops off: Home Assistant then shows them unavailable at once, not online for good."""
        if self.client.is_connected():
            said = [self.client.publish(f"sensorcast/{device.name}/status", "offline", qos=1, retain=True)
                    for device in self.devices]
            for message in said:
                message.wait_for_publish(self.timeout)
        self.client.disconnect()
        self.client.loop_stop()
