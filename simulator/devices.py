"""Fake sensor nodes that behave like the firmware: same payload, same ``boot``/``seq``,
same bounded buffer sent as one batch after a Wi-Fi dropout or a server outage.

Signals are believable: a daily temperature curve with noise and a per-device offset,
humidity moving against it, the odd failed sensor read, and Wi-Fi dropouts.
"""
import json
import math
import secrets
import threading
import time
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
import requests
from paho.mqtt.enums import CallbackAPIVersion

from server import DEFAULTS
from server.homeassistant import status_topic
from server.mqtt import DEFAULT_PORTS, pace_reconnects, readings_topic
from server.readings import validate

FIRMWARE_VERSION = "sim-0.1.0"
DAY = 24 * 3600
BATCH = 20
REFUSED = (400, 413, 415, 422)  # as the firmware does: never accepted, so dropped
PAUSE = (429, 503, 507)  # busy, full, or over the device's rate: kept, and sent after Retry-After
DEFAULT_PAUSE = 5  # seconds, when a pause has no Retry-After, or one that is not a number
LONGEST_PAUSE = 120  # as the firmware caps it: the server asks for seconds, and a forged hour would silence a device
# seconds from a reconnect to the first reading published over MQTT, as the firmware's
# _SETTLE_MS: a restarted broker drops what it takes before the server's processes, back
# within a second, subscribe again (README, MQTT)
SETTLE = 2.0


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
        self.boot = secrets.token_hex(4)  # a start's, as the firmware's: never the same, whatever the seed
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

    def start_new_boot(self):
        """The server holds other readings at a boot and seq of this one's (409): the readings
        still pending get a new boot id and seqs from 1, and the next follow, as the firmware does."""
        self.boot, self.seq = secrets.token_hex(4), 0
        for reading in self.pending:
            self.seq += 1
            reading["boot"], reading["seq"] = self.boot, self.seq

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
        self.sent = self.failed = self.waited = 0  # waited: the times a device was asked to wait
        self.unreachable = None  # why the last upload did not reach the server; None once one did

    @property
    def buffered(self):
        return sum(len(device.pending) for device in self.devices)

    @property
    def dropped(self):
        """Readings the devices' full buffers let go, oldest first, as the firmware's do."""
        return sum(device.dropped for device in self.devices)

    def step(self, now, clock, uptime):
        """One interval: every device reads (at simulated ``clock``), buffers, and uploads.
        A device whose token is refused leaves the fleet: returns the refusals (AuthRefused)."""
        online = []
        for device in self.devices:
            values = device.measure(clock)
            if values is not None:
                device.keep(device.reading(values, now, uptime))
            if device.wifi_up():
                online.append(device)
        return self._upload(online, now)

    def finish(self, now):
        """The run is over: every Wi-Fi is back, and what the devices buffered in their
        dropouts goes up (but to a server that asked them to wait); returns the refusals."""
        return self._upload(self.devices, now)

    def _upload(self, devices, now):
        refusals = []
        for device in list(devices):
            if now >= device.resume_at:
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
            except requests.RequestException as error:
                self.failed += 1
                self.unreachable = f"cannot reach {self.url} ({type(error).__name__})"
                return
            self.unreachable = None
            if answer.status_code in (401, 403):
                raise AuthRefused(f"{device.name}: the server refused its token ({answer.status_code}): "
                                  "revoked, or not this device's; it stops, any others go on")
            if answer.status_code == 409:
                device.start_new_boot()
                self.failed += 1
                continue
            if answer.status_code in PAUSE:
                device.resume_at = now + pause_asked(answer.headers)
                self.waited += 1
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
    """The seconds a 429, 503 or 507 asks a device to wait: its Retry-After, at most LONGEST_PAUSE;
    DEFAULT_PAUSE if that is not a number of seconds (an HTTP date, garbage, NaN)."""
    try:
        seconds = float(headers.get("Retry-After", DEFAULT_PAUSE))
    except ValueError:
        return DEFAULT_PAUSE
    return min(seconds, LONGEST_PAUSE) if seconds >= 0 else DEFAULT_PAUSE


class MqttFleet(Fleet):
    """The same devices publishing to a broker instead (``--transport mqtt``), as the
    firmware's mqtt_uplink.py does: each device over a connection of its own, each batch at
    QoS 1 to ``sensorcast/<device>/readings``, kept until the broker's PUBACK came. While a
    device's connection is down (a broker restarting), its readings are buffered, as over a
    Wi-Fi dropout, and the connection is made again (as the server's are: ``pace_reconnects``), then
    left to ``SETTLE``; a batch in flight at the loss is then published again, as the
    firmware does (the server stores it once, by its boot + seq).
    Every connection uses one login, which must be allowed to publish for every device (the
    server's own, from SENSORCAST_MQTT_URL; or the device's with ``--devices 1``)."""

    def __init__(self, mqtt_url, names, rng, timeout=10):
        super().__init__("", dict.fromkeys(names), rng, timeout=timeout)
        url = urlsplit(mqtt_url)
        if url.scheme not in DEFAULT_PORTS or not url.hostname:
            raise ValueError("give the broker as mqtt://[user:password@]host[:port] or mqtts://…")
        run = f"{rng.getrandbits(32):08x}"
        self.connections = {}
        self.in_flight = {}  # device name -> (mid, batch, the connection's losses then): no PUBACK yet
        try:
            for device in self.devices:
                self.connections[device.name] = Connection(url, f"sensorcast-sim-{run}-{device.name}", device.name)
            refusals = {connection.refusal if connection.answered.wait(timeout) else "no answer"
                        for connection in self.connections.values()} - {None}
            if refusals:
                raise AuthRefused(f"the broker at {url.hostname} refused the login ({', '.join(sorted(refusals))})")
        except (AuthRefused, OSError):
            self.close()
            raise

    @property
    def buffered(self):
        return super().buffered + sum(len(batch) for _, batch, _ in self.in_flight.values())

    def upload(self, device, now):
        connection = self.connections[device.name]
        while device.pending or device.name in self.in_flight:
            if device.name not in self.in_flight:
                if not connection.ready():  # kept until it is back
                    self.failed += 1
                    return
                batch, device.pending = device.pending[:BATCH], device.pending[BATCH:]
                published = connection.client.publish(readings_topic(device.name), json.dumps(batch), qos=1)
                self.in_flight[device.name] = published.mid, batch, connection.losses
            mid, batch, losses = self.in_flight[device.name]
            if connection.losses != losses:  # paho sends it again at once, maybe to a broker that drops it
                connection.forget(mid)
                device.pending = batch + device.pending
                del self.in_flight[device.name]
                continue
            if not connection.acknowledged(mid, self.timeout):
                self.failed += 1
                return
            del self.in_flight[device.name]
            self.sent += len(batch)

    def close(self):
        for connection in self.connections.values():
            connection.close(self.timeout)


class Connection:
    """One simulated board's connection to the broker, as the firmware keeps it: a last
    will, ``offline`` retained at QoS 1 on ``sensorcast/<device>/status``, which the broker
    publishes the moment the connection ends without a goodbye; ``online`` there, retained,
    each time it is up; made again by paho's own thread after a loss."""

    def __init__(self, url, client_id, device):
        self.status_topic = status_topic(device)
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if url.username:
            self.client.username_pw_set(unquote(url.username), unquote(url.password or ""))
        if url.scheme == "mqtts":
            self.client.tls_set()
        self.client.will_set(self.status_topic, "offline", qos=1, retain=True)
        pace_reconnects(self.client)
        self.answered = threading.Event()
        self.refusal = None
        self.settled_at = 0.0  # time.monotonic() from which readings may go
        self.losses = 0  # connections lost so far
        self.changed = threading.Condition()  # a PUBACK came, or the connection went
        self.pubacks = set()  # mids of batches whose PUBACK came
        self.unawaited = set()  # mids whose PUBACK nobody waits for: ``online``, batches given up
        self.client.on_connect, self.client.on_disconnect = self._on_connect, self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.connect(url.hostname, url.port or DEFAULT_PORTS[url.scheme])
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.refusal = str(reason_code) if reason_code.is_failure else None
        if not self.refusal:  # its PUBACK comes after this returns, on this thread
            self.unawaited.add(client.publish(self.status_topic, "online", qos=1, retain=True).mid)
            if self.answered.is_set():  # back after a loss
                self.settled_at = time.monotonic() + SETTLE
        self.answered.set()

    def ready(self):
        """Whether readings may be published now: connected, and settled after a reconnect."""
        return self.client.is_connected() and time.monotonic() >= self.settled_at

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self.changed:
            self.losses += 1
            self.changed.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self.changed:
            if mid in self.unawaited:
                self.unawaited.remove(mid)
            else:
                self.pubacks.add(mid)
                self.changed.notify_all()

    def acknowledged(self, mid, timeout):
        """Whether the PUBACK of ``mid`` came, waiting up to ``timeout`` for it while connected."""
        with self.changed:
            self.changed.wait_for(lambda: mid in self.pubacks or not self.client.is_connected(), timeout)
            if mid not in self.pubacks:
                return False
            self.pubacks.remove(mid)
            return True

    def forget(self, mid):
        """Wait no more for the PUBACK of ``mid``."""
        with self.changed:
            if mid in self.pubacks:
                self.pubacks.remove(mid)
            else:
                self.unawaited.add(mid)

    def close(self, timeout):
        """Leave ``offline`` retained, as the last will would (a goodbye cancels the will):
        Home Assistant then shows the device unavailable at once, not online for good."""
        said = self.client.publish(self.status_topic, "offline", qos=1, retain=True)
        if said.rc == paho.MQTT_ERR_SUCCESS:
            said.wait_for_publish(timeout)
        self.client.disconnect()
        self.client.loop_stop()
