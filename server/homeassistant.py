"""Home Assistant MQTT discovery: with ``MQTT_URL`` set, every device and metric the
server knows shows up in Home Assistant by itself, whether the device posts over HTTP or
MQTT. All retained, at QoS 1, by the server's broker user (the README has the payloads):
``<HOMEASSISTANT_PREFIX>/sensor/sensorcast_<device>/<metric>/config`` per sensor (sent
again when it changes; empty removes the entity), ``sensorcast/<device>/state`` after each
reading that ``device:<id>`` holds as the latest (its values, ``ts`` and entry ``id``: readings
of one boot may be stored out of seq order, and a late one must not move an entity back),
``sensorcast/<device>/status`` (``online``/``offline``, as the firmware's last will).

One process at a time publishes: the holder of ``homeassistant-lease`` (as the webhook's).
It reads ``readings`` as the one consumer of the group ``homeassistant`` and acknowledges
an entry only once the broker has confirmed every message it caused: each state is
published once however many processes run, and the next holder resumes where the last
stopped. What was published of each device is kept in ``homeassistant:<device>``. Labels,
deletes and offline come as ``device`` events on ``sse``; on taking the lease and every
``resync_seconds`` the holder compares every device anyway, so nothing missed while no
process listened stays wrong; a device whose status topic the broker no longer holds (it
lost its retained messages: a restart without its database) is published whole again.
Only a delete removes a device's entities: hiding its card is the dashboard's business,
and Home Assistant keeps it.

A metric the device's readings have left out for ``OFFLINE_AFTER`` seconds (by their ``ts``;
a sensor swapped out, say) is ``null`` in the state, which Home Assistant's MQTT sensor shows
as unknown (a ``value_template`` rendering ``None``), while its other metrics stay current:
the device is still online, and one state topic serves all its sensors, so neither
availability nor ``expire_after`` could tell them apart. When each metric was last sent is
kept beside what was published (``seen:<metric>``).

A status topic's ``offline`` may be the board's last will: only a reading turns it back
``online``, but for an ``offline`` the broker kept from before the server subscribed (a
broker that restarts has sent every connected board's will) of a device Redis holds
online: that is published ``online`` again, as the dashboard shows it, rather than
leaving Home Assistant's entities unavailable until each board's next reading. A reading
publishes ``online`` before its state, then ``offline`` if the device is offline by now
(a late reading), so history stays in order.

Every process follows the status topics, leading or not, and with discovery off too
(``HOMEASSISTANT_PREFIX`` empty): a board's last will (an ``offline`` the broker passes on
as it comes, not one it kept from before) marks its device offline at once, as the offline
sweep would (``store.mark_dropped``: once however many processes hear it, and not when a
reading was stored since). The server's own ``offline`` carries ``SERVER_MARK``, so it is
never taken for a will. A broker that stops sends every board's will, then drops the
server too: a will is acted on ``will_grace`` seconds after it came, and not at all if the
connection it came by ended meanwhile, so a broker's restart takes no board offline.
"""
import json
import logging
import os
import queue
import secrets
import socket
import threading
import time
from urllib.parse import urlsplit

import redis
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .devices import labels
from .mqtt import TOPIC_ROOT, Refusals, broker_client, connect_in_background, disconnect
from .readings import DEVICE_ID, METRICS, NOT_METRICS, decode_fields
from .shards import shards_of
from .store import CHANNEL, DEVICES, READINGS, device_key, device_readings, known_devices, mark_dropped, meta_key
from .webhook import HOLD_LEASE

log = logging.getLogger(__name__)

GROUP = CONSUMER = "homeassistant"
LEASE = "homeassistant-lease"
ANNOUNCED = "homeassistant-devices"  # the devices with something published, so a delete is noticed
ONLINE, OFFLINE = "online", "offline"
# metric -> Home Assistant's device class, and the unit that class takes
DEVICE_CLASSES = {"temperature": ("temperature", "°C"), "humidity": ("humidity", "%"), "pressure": ("pressure", "hPa"),
                  "battery": ("voltage", "V"), "rssi": ("signal_strength", "dBm"), "uptime": ("duration", "s"),
                  "heap": ("data_size", "B"), "co2": ("carbon_dioxide", "ppm"), "pm25": ("pm25", "µg/m³"),
                  "pm10": ("pm10", "µg/m³"), "illuminance": ("illuminance", "lx"), "lux": ("illuminance", "lx")}
NAMES = {"co2": "CO2", "pm25": "PM2.5", "pm10": "PM10", "rssi": "WiFi signal"}  # else the metric's, capitalized
COUNTERS = ("dropped",)  # only grow, but for a reset (a reboot): Home Assistant sums them right
DIAGNOSTICS = ("rssi", "uptime", "heap", "dropped")  # about the board, not what it measures
BATCH = 100
SERVER_MARK = ("sensorcast", "server")  # an MQTT 5 user property on what the server publishes


def announced_key(device):
    return f"homeassistant:{device}"


def state_topic(device):
    return f"{TOPIC_ROOT}/{device}/state"


def status_topic(device):
    return f"{TOPIC_ROOT}/{device}/status"


def config_topic(prefix, device, metric):
    return f"{prefix}/sensor/sensorcast_{device}/{metric}/config"


def sensor_config(device, metric, name, fw):
    """Home Assistant's discovery config of ``device``'s ``metric`` sensor."""
    device_class, unit = DEVICE_CLASSES.get(metric, (None, METRICS.get(metric, (None,))[0]))
    config = {
        "name": NAMES.get(metric) or metric.replace("_", " ").capitalize(),
        "unique_id": f"sensorcast-{device}-{metric}",  # a metric has no "-": the last one splits
        "state_topic": state_topic(device),
        "value_template": f"{{{{ value_json['{metric}'] }}}}",
        "state_class": "total_increasing" if metric in COUNTERS else "measurement",
        "availability_topic": status_topic(device),
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "device": dict({"identifiers": [f"sensorcast-{device}"], "name": name, "manufacturer": "Sensorcast",
                        "model": "Sensorcast"}, **({"sw_version": fw} if fw else {})),
        "origin": {"name": "Sensorcast"},
    }
    if device_class:
        config["device_class"] = device_class
    if unit:
        config["unit_of_measurement"] = unit
    if metric in DIAGNOSTICS:
        config["entity_category"] = "diagnostic"
    return config


class NotPublished(Exception):
    """The broker did not confirm a message in time: nothing is acknowledged, all is tried again."""


class Device:
    """One device as Redis has it now, and what was published of it (``announced``)."""

    def __init__(self, device, score, meta, latest, announced):
        self.id = device
        self.known = score is not None  # not deleted; a hidden card is still known
        self.name = labels(meta)["name"] or device
        self.fw = latest.get("fw")
        self.status = latest.get("status", ONLINE)
        self.latest = decode_fields({name: value for name, value in latest.items() if name not in NOT_METRICS})
        self.latest_reading = decode_fields({name: latest[name] for name in ("ts", "seq") if name in latest})
        self.announced = announced
        self.written = {}  # what to keep in ``homeassistant:<device>`` once the broker has it

    def is_latest(self, reading):
        """Whether ``device:<id>`` holds ``reading``'s values now: not if a later reading
        followed it, nor if it came late (a lower seq of the boot, which the store skips)."""
        seq = self.latest_reading.get("seq")  # a reading without one leaves the last one there
        return reading["ts"] == self.latest_reading.get("ts") and reading.get("seq", seq) == seq


class Discovery:
    lease_seconds = 10.0
    block_ms = 500
    resync_seconds = 60.0
    publish_timeout = 10.0
    retry_seconds = 1.0
    settle_seconds = 1.0  # after subscribing: the broker's retained statuses arrive meanwhile
    will_grace = 1.0  # seconds from a last will to the device marked offline, unless the broker went away

    def __init__(self, redis_client, config):
        self.redis = redis_client
        self.prefix = config["HOMEASSISTANT_PREFIX"]
        self.unknown_after = config["OFFLINE_AFTER"]
        self.me = f"{socket.gethostname()}-{os.getpid()}-{id(self)}"
        self.stopping = threading.Event()
        self.ready_at = None  # monotonic time from which the statuses the broker holds are known
        self.retained_status = {}  # device -> its status topic's payload on the broker
        self.kept_offline = set()  # devices whose offline the broker kept from before we subscribed
        self._hold = redis_client.register_script(HOLD_LEASE)
        self.url = urlsplit(config["MQTT_URL"])
        self.client = broker_client(config, f"sensorcast-ha-{secrets.token_hex(6)}")
        self.client.on_connect, self.client.on_disconnect = self._on_connect, self._on_disconnect
        self.client.on_subscribe, self.client.on_message = self._on_subscribe, self._on_status
        self.refusals = Refusals()
        self.wills = queue.Queue()  # (device, time its last will came, connection it came by): ``_mark_dropped``
        self.connection = 0  # one more at each disconnect

    def start(self):
        connect_in_background(self.client, self.url)
        threading.Thread(target=self._run, name="homeassistant", daemon=True).start()
        threading.Thread(target=self._mark_dropped, name="last-wills", daemon=True).start()
        return self

    def stop(self):
        self.stopping.set()
        disconnect(self.client)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            if self.refusals.is_new(reason_code):
                log.warning("home assistant: %s refused the connection: %s; trying again, logged again once it "
                            "says otherwise", self.url.hostname, reason_code)
        else:  # what the broker holds comes again, retained: nothing from before it went away stands
            self.refusals.accepted()
            self.retained_status.clear()
            self.kept_offline.clear()
            client.subscribe(status_topic("+"), qos=1)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.ready_at = None
        self.connection += 1

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if any(code.is_failure for code in reason_codes):
            log.warning("home assistant: %s refused %s: %s", self.url.hostname, status_topic("+"), reason_codes[0])
        else:
            self.ready_at = time.monotonic() + self.settle_seconds

    def _on_status(self, client, userdata, message):
        payload = message.payload.decode(errors="replace")
        self._note_status(message.topic, payload)
        device = message.topic.split("/")[1]
        if message.retain and payload == OFFLINE:
            self.kept_offline.add(device)
        if payload == OFFLINE and not message.retain and DEVICE_ID.match(device) \
                and SERVER_MARK not in getattr(message.properties, "UserProperty", []):
            self.wills.put((device, time.time(), self.connection))

    def _mark_dropped(self):
        """Mark the devices whose last will came offline (from a thread of its own: Redis
        may be slow or away, paho's thread must go on)."""
        while not self.stopping.is_set():
            try:
                device, came, connection = self.wills.get(timeout=self.retry_seconds)
            except queue.Empty:
                continue
            self.stopping.wait(max(0.0, came + self.will_grace - time.time()))
            if connection != self.connection:  # the broker went away: a restart, not the board
                continue
            try:
                if mark_dropped(self.redis, device, came):
                    log.info("home assistant: %s left its last will: offline", device)
            except redis.exceptions.RedisError as error:
                log.warning("home assistant: %s's last will: %s; the offline sweep will mark it", device, error)

    def _note_status(self, topic, payload):
        device = topic.split("/")[1]
        self.kept_offline.discard(device)
        if payload:
            self.retained_status[device] = payload
        else:
            self.retained_status.pop(device, None)

    def _ready(self):
        return self.ready_at is not None and time.monotonic() >= self.ready_at

    def _run(self):
        failing = False
        while not self.stopping.is_set():
            try:
                if not self._ready():
                    self.stopping.wait(self.retry_seconds)
                elif self.prefix and self._holds_lease():
                    self._lead()
                else:
                    self.stopping.wait(self.lease_seconds / 3)
                failing = False
            except (redis.exceptions.RedisError, NotPublished) as error:
                if not failing:
                    log.warning("home assistant: %s; trying again every %g s", error, self.retry_seconds)
                failing = True
                self.stopping.wait(self.retry_seconds)
            except Exception:  # a bug: logged, and tried again, never the end of the publisher
                log.exception("home assistant: publishing failed; trying again in %g s", self.retry_seconds)
                self.stopping.wait(self.retry_seconds)

    def _holds_lease(self):
        return not self.stopping.is_set() and self._hold(keys=[LEASE], args=[self.me, int(self.lease_seconds * 1000)])

    def _lead(self):
        """While this process holds the lease: bring the broker in line with Redis, then
        follow the readings and the device events."""
        for key in shards_of(self.redis).each(READINGS):
            try:
                self.redis.xgroup_create(key, GROUP, id="$", mkstream=True)
            except redis.exceptions.ResponseError:
                pass  # the group exists: another process made it
        events = self.redis.pubsub(ignore_subscribe_messages=True)
        events.subscribe(CHANNEL)  # before the comparison: no change falls between
        try:
            start, resync_at = "0", 0.0  # first what a holder before us read but did not acknowledge
            while self._ready() and self._holds_lease():
                if time.monotonic() >= resync_at:
                    self.sync({device for device, _ in known_devices(self.redis)} | self.redis.smembers(ANNOUNCED))
                    resync_at = time.monotonic() + self.resync_seconds
                if not self._follow(start):
                    start = ">"
                self.sync(changed_devices(events))
        finally:
            events.close()

    def _follow(self, start):
        """Publish a batch of readings from ``start`` and acknowledge it; False if there was none.
        Each shard's stream is read in turn (a cluster reads no two in one call), waiting on
        each for a share of ``block_ms`` while none had any."""
        keys = shards_of(self.redis).each(READINGS)
        read = {}  # stream -> its entries read
        for key in keys:
            block = self.block_ms // len(keys) if start == ">" and not any(read.values()) else None
            replies = self.redis.xreadgroup(GROUP, CONSUMER, {key: start}, count=BATCH, block=block) or []
            read[key] = [entry for _, stream_entries in replies for entry in stream_entries]
        entries = [entry for stream_entries in read.values() for entry in stream_entries]
        readings = {}
        for entry_id, fields in entries:  # fields is None for one trimmed since it was read
            try:
                if fields is not None and DEVICE_ID.match(fields.get("device", "")):
                    readings.setdefault(fields["device"], []).append((entry_id, decode_fields(fields)))
            except ValueError:  # written by someone else than the server
                log.warning("home assistant: skipped %s %s: not a reading", READINGS, entry_id)
        self.sync(readings, readings)
        for key, stream_entries in read.items():
            if stream_entries:
                self.redis.xack(key, GROUP, *(entry_id for entry_id, _ in stream_entries))
        return bool(entries)

    def sync(self, devices, readings=None):
        """Publish what ``devices`` need (with their new ``readings``: device -> [(id, reading)])
        and, once the broker has it all, remember it."""
        devices = sorted(devices)
        for first in range(0, len(devices), BATCH):
            views = self._load(devices[first:first + BATCH])
            messages = [message for view in views for message in self._messages(view, (readings or {}).get(view.id))]
            self._publish(messages)
            with self.redis.pipeline(transaction=False) as pipe:
                for view in views:
                    if not view.known and view.announced:
                        pipe.delete(announced_key(view.id))
                        pipe.srem(ANNOUNCED, view.id)
                    elif view.written:
                        pipe.hset(announced_key(view.id), mapping=view.written)
                        pipe.sadd(ANNOUNCED, view.id)
                pipe.execute()

    def _load(self, devices):
        with self.redis.pipeline(transaction=False) as pipe:
            for device in devices:
                pipe.zscore(shards_of(self.redis).key(device, DEVICES), device)
                pipe.hgetall(meta_key(self.redis, device))
                pipe.hgetall(device_key(self.redis, device))
                pipe.hgetall(announced_key(device))
            answers = pipe.execute()
        return [Device(device, *answers[4 * i:4 * i + 4]) for i, device in enumerate(devices)]

    def _messages(self, view, readings):
        """The (topic, payload) pairs that bring the broker in line with ``view``."""
        if not view.known:
            metrics = [field.removeprefix("config:") for field in view.announced if field.startswith("config:")]
            topics = [config_topic(self.prefix, view.id, metric) for metric in metrics]
            return [(topic, "") for topic in topics + [state_topic(view.id), status_topic(view.id)]] \
                if view.announced else []
        readings = readings or []
        held = self.retained_status.get(view.id)
        if held is None:  # a broker that lost what it kept (restarted without its database): all of it again
            view.announced = {field: value for field, value in view.announced.items() if field.startswith("seen:")}
        metrics = set(view.latest).union(*({name for name in reading if name not in NOT_METRICS}
                                           for _, reading in readings))
        if not metrics:
            return []
        messages = []
        for metric in sorted(metrics):
            payload = json.dumps(sensor_config(view.id, metric, view.name, view.fw), ensure_ascii=False)
            if view.announced.get(f"config:{metric}") != payload:
                messages.append((config_topic(self.prefix, view.id, metric), payload))
                view.written[f"config:{metric}"] = payload
        if (readings or view.id in self.kept_offline and view.status == ONLINE) and held != ONLINE:
            messages.append((status_topic(view.id), ONLINE))  # it was online when it sent them, or still is
            held = ONLINE
        values = self._current(view, readings)
        latest = [entry_id for entry_id, reading in readings if view.is_latest(reading)][-1:]
        if not latest and "state" not in view.announced:  # a first state with no reading in hand
            latest = self._stored_latest(view)
        state = latest and json.dumps(dict(values, ts=view.latest_reading["ts"], id=latest[0]))
        if state and state != view.announced.get("state"):  # else it is published, or will be once read
            messages.append((state_topic(view.id), state))
            view.written["state"] = state
        if held != view.status and (held is None or view.status == OFFLINE):  # and is it still?
            messages.append((status_topic(view.id), view.status))
        return messages

    def _stored_latest(self, view):
        """The id of the entry whose values ``device:<id>`` holds, among its history's newest
        (the newest may be a late reading, or one stored since ``view`` was loaded); none if
        it is not there: a reading stored since is published once read."""
        entries = self.redis.xrevrange(device_readings(self.redis, view.id), count=BATCH)
        return [entry_id for entry_id, fields in entries if view.is_latest(decode_fields(fields))][:1]

    def _current(self, view, readings):
        """``view``'s latest values, None for each metric its readings have left out for
        ``unknown_after`` seconds before its latest one; notes in ``view.written`` when each
        metric was last sent (one known from before such notes: as of the latest reading)."""
        now = float(view.latest_reading.get("ts", 0))
        seen = {field.removeprefix("seen:"): float(ts) for field, ts in view.announced.items()
                if field.startswith("seen:")}
        for _, reading in readings:
            for metric in reading.keys() - set(NOT_METRICS):
                seen[metric] = max(seen.get(metric, 0.0), float(reading["ts"]))
        values = {}
        for metric, value in view.latest.items():
            last = seen.setdefault(metric, now)
            if view.announced.get(f"seen:{metric}") != repr(last):
                view.written[f"seen:{metric}"] = repr(last)
            values[metric] = None if now - last > self.unknown_after else value
        return values

    def _publish(self, messages):
        """Publish every message, retained, and wait until the broker has confirmed each."""
        properties = Properties(PacketTypes.PUBLISH)
        properties.UserProperty = SERVER_MARK
        sent = [(topic, payload, self.client.publish(topic, payload, qos=1, retain=True, properties=properties))
                for topic, payload in messages]
        deadline = time.monotonic() + self.publish_timeout
        for topic, payload, info in sent:
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as error:
                raise NotPublished(f"{topic}: {error}") from None
            if not info.is_published():
                raise NotPublished(f"{topic}: the broker did not confirm it within {self.publish_timeout:g} s")
            if topic.endswith("/status"):
                self._note_status(topic, payload)


def changed_devices(events):
    """The devices that ``device`` events on ``sse`` have named since the last call."""
    devices = set()
    while (message := events.get_message(timeout=0)) is not None:
        if '"type":"reading"' in message["data"]:  # most of them, and never a device event
            continue
        try:
            event = json.loads(message["data"])
        except ValueError:
            continue  # not ours: anyone may publish there
        data = event.get("data") if isinstance(event, dict) and event.get("type") == "device" else None
        device = data.get("device") if isinstance(data, dict) else None
        if isinstance(device, str) and DEVICE_ID.match(device):
            devices.add(device)
    return devices
