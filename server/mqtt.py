"""Readings in over MQTT: devices publish the HTTP body (one reading or a batch) to
``sensorcast/<device>/readings``, and every server process subscribes through the shared
subscription ``$share/<group>/sensorcast/+/readings``, so the broker hands each message
to exactly one process however many processes and instances share a Redis. The group
is kept in that Redis (``share_group``): servers of another Redis on the same broker (a
second ``make run --data``) have a group of their own and get every message too, rather
than a share of this one's that its Redis would never hold.

A message goes through the same edge as ``POST /api/readings``: ``readings.validate``
(the topic's device is the bound device, so a body naming another one is refused) and
the same ``store.add_readings`` call, with its idempotence (``boot`` + ``seq``), rate
limits, events and alerts. Who may publish to which topic is the broker's job
(``deploy/mosquitto/``).

Nothing the broker held is lost: messages come at QoS 1 and are acknowledged only once
stored (paho's ``manual_ack``), in a persistent session (``clean_start`` false, a
session expiry) under a client id that the next process in the same place takes again:
``<MQTT_CLIENT_ID>-<slot>``, the slot being the lowest one no live process on this host
holds (a lock file in ``var/``, freed the moment its holder dies). A restarted worker
thus resumes its predecessor's session, and gets what was queued for it meanwhile; a
session whose slot no process takes back is taken over and emptied by another process
(``mqtt_sessions.py``).

A reading without ``ts`` gets the time its message reached this process, not the time it
is stored: over its rate limit, or while Redis is away, a device's messages wait here
unacknowledged and are tried again, in order, when the wait is over; other devices go on.
QoS 1 messages in hand are bounded by the receive maximum; QoS 0 ones past
``held_per_topic`` are dropped (and counted), as are messages the server refuses. A
message the server refuses (bad JSON, a bad field, too large, another device, a device
whose tokens were revoked: its broker login outlives them) is logged once and
acknowledged, since sending it again would not help. After a reconnect the
broker sends again whatever was not acknowledged: held copies from the old connection
are let go, and ``boot`` + ``seq`` make a reading stored just before a crash stored once.

The broker deals one device's messages out to several processes (and to a session left
behind until it is taken over: ``mqtt_sessions.py``), so a boot's readings may be stored
out of ``seq`` order, each once all the same: the server keeps which of a device's recent
seqs it stored (``retries.py``), so a seq stored after a higher one is not taken for a
retry, and does not overwrite the device's latest values.
"""
import base64
import collections
import hashlib
import logging
import queue
import secrets
import threading
import time
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
import redis
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from .loglimit import LinesPerMinute
from .metrics import CONFLICT, FORBIDDEN, HELD, INVALID, REVOKED, TOO_LARGE, count_refused
from .readings import DEVICE_ID, InvalidReading, parse_json, validate
from .ratelimit import RateLimited
from .store import Conflict, TokenRevoked, add_readings

log = logging.getLogger(__name__)

TOPIC_ROOT = "sensorcast"
SHARE_GROUP = "sensorcast"  # and the group of a Redis whose servers subscribed before groups were kept
SHARE_GROUP_KEY = "mqtt-share-group"
SESSIONS = "mqtt-sessions"  # client id -> when its process last said it holds it (mqtt_sessions.py)
SERVER_USER = "sensorcast.server"  # not a device id (a dot), so no device can take its name
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
KEEPALIVE = 30
RETRY_DELAY = 0.5  # seconds between tries to reach a broker that is away: its restart drops what comes before
MAX_BACKOFF = 5  # seconds: a broker that answers but refuses the login is tried ever more slowly, up to this


def readings_topic(device):
    return f"{TOPIC_ROOT}/{device}/readings"


def topic_device(topic):
    """The device a readings topic names, or None when it names none we could store."""
    root, _, rest = topic.partition("/")
    device, _, leaf = rest.partition("/")
    return device if root == TOPIC_ROOT and leaf == "readings" and DEVICE_ID.match(device) else None


def broker_credentials(user):
    """A random password for ``user`` and its line for Mosquitto 2's password file
    (PBKDF2-SHA512, the ``$7$`` format ``mosquitto_passwd`` writes; the password's 32
    random bytes are its strength, so Mosquitto's own 101 iterations are kept)."""
    password = secrets.token_urlsafe(32)
    salt, iterations = secrets.token_bytes(12), 101
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    encoded = [base64.b64encode(part).decode() for part in (salt, digest)]
    return password, f"{user}:$7${iterations}${encoded[0]}${encoded[1]}"


def broker_client(config, client_id, **options):
    """A paho MQTT 5 client for ``MQTT_URL``'s broker, with its login and TLS, that
    reconnects after a loss (``pace_reconnects``)."""
    url = urlsplit(config["MQTT_URL"])
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5, **options)
    if url.username:
        client.username_pw_set(unquote(url.username), unquote(url.password or ""))
    if url.scheme == "mqtts":
        client.tls_set(ca_certs=config["MQTT_CA_FILE"] or None)
    pace_reconnects(client)
    return client


def pace_reconnects(client):
    """Try a broker that cannot be reached again every ``RETRY_DELAY`` (a refused connect
    costs nothing), so that the client is back within that of the broker's return; one that
    answers (and then refuses the login, or drops the connection) from ``RETRY_DELAY``
    doubling to ``MAX_BACKOFF``. Set on paho's ``on_connect_fail`` and ``on_socket_open``."""
    most = [None]

    def pace(longest):
        if most[0] != longest:  # setting it starts paho's doubling again
            most[0] = longest
            client.reconnect_delay_set(RETRY_DELAY, longest)

    client.on_connect_fail = lambda client, userdata: pace(RETRY_DELAY)
    client.on_socket_open = lambda client, userdata, sock: pace(MAX_BACKOFF)
    pace(MAX_BACKOFF)


class Refusals:
    """A broker's refusals of a connection, each logged once until it says something else or
    takes the connection: a wrong password is refused at every try, for as long as it is wrong."""

    def __init__(self):
        self.last = None

    def is_new(self, reason_code):
        """Whether ``reason_code`` is a refusal not logged yet (then log it)."""
        new, self.last = str(reason_code) != self.last, str(reason_code)
        return new

    def accepted(self):
        self.last = None


def share_group(redis_client):
    """The shared subscription's group of the servers of this Redis: ``sensorcast-`` and
    a random part, made by the first one to ask (``sensorcast`` for a Redis that kept MQTT
    sessions before, so that its sessions' subscription stays the one they have)."""
    group = redis_client.get(SHARE_GROUP_KEY)
    if group is None:
        made = SHARE_GROUP if redis_client.exists(SESSIONS) else f"{SHARE_GROUP}-{secrets.token_hex(4)}"
        redis_client.set(SHARE_GROUP_KEY, made, nx=True)
        group = redis_client.get(SHARE_GROUP_KEY)
    return group


def subscription(group):
    return f"$share/{group}/{TOPIC_ROOT}/+/readings"


def connect_in_background(client, url, **options):
    """Connect ``client`` to the broker at ``url`` (a urlsplit) from paho's own thread."""
    client.connect_async(url.hostname, url.port or DEFAULT_PORTS[url.scheme], keepalive=KEEPALIVE, **options)
    client.loop_start()


def disconnect(client):
    client.disconnect()
    client.loop_stop()


class Subscriber:
    """One process's MQTT client: connects in the background, reconnects with backoff
    (``broker_client``), stores what arrives from a thread of its own."""

    receive_maximum = 200  # QoS 1 messages in hand, unacknowledged, at most
    held_per_topic = 100  # QoS 0 messages waiting per topic, at most: past it they are dropped
    logged_per_minute = 10  # refusals logged per device and minute; the rest are only counted
    redis_retry_seconds = 1.0

    def __init__(self, redis_client, config, client_id):
        self.redis = redis_client
        self.config = config
        self.client_id = client_id
        self.url = urlsplit(config["MQTT_URL"])
        if self.url.scheme not in DEFAULT_PORTS or not self.url.hostname:
            raise ValueError("SENSORCAST_MQTT_URL: give mqtt://[user:password@]host[:port] or mqtts://…")
        self.connected = False
        self.stored_messages = 0  # by this process, since it started: how the broker shares the work
        self.generation = 0  # one more at each disconnect: what came before is sent again
        self.inbox = queue.Queue()
        self.stopping = threading.Event()
        self.redis_failing = False
        self.refusals_logged = LinesPerMinute(self.logged_per_minute)
        self.refusals = Refusals()  # of this process's own connection
        self.subscription = None  # once Redis has said which group (``share_group``)
        self.client = self._client()

    def _client(self):
        client = broker_client(self.config, self.client_id, manual_ack=True)
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_message, client.on_subscribe = self._on_message, self._on_subscribe
        return client

    def start(self):
        threading.Thread(target=self._work, name="mqtt-ingest", daemon=True).start()
        return self

    def _connect(self):
        """Connect once Redis says which group to subscribe with; False if stopped first."""
        while not self.stopping.is_set():
            try:
                self.subscription = subscription(share_group(self.redis))
            except redis.exceptions.RedisError as error:
                if not self.redis_failing:
                    log.warning("mqtt: Redis: %s; the broker is joined once it answers", error)
                self.redis_failing = True
                self.stopping.wait(self.redis_retry_seconds)
                continue
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self.config["MQTT_SESSION_EXPIRY"]
            properties.ReceiveMaximum = self.receive_maximum
            connect_in_background(self.client, self.url, clean_start=False, properties=properties)
            return True
        return False

    def stop(self):
        """Leave the broker, keeping the session: whoever takes this slot next resumes it."""
        self.stopping.set()
        disconnect(self.client)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            if self.refusals.is_new(reason_code):
                log.warning("mqtt: %s refused %s: %s; trying again every %d s, logged again once it says otherwise",
                            self.url.hostname, self.client_id, reason_code, MAX_BACKOFF)
            return
        self.refusals.accepted()
        log.info("mqtt: connected to %s as %s (session %s)", self.url.hostname, self.client_id,
                 "resumed" if flags.session_present else "new")
        client.subscribe(self.subscription,
                         options=SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        """Connected counts from here: the broker routes readings to this process now."""
        if any(code.is_failure for code in reason_codes):
            log.warning("mqtt: %s refused the subscription %r: %s", self.url.hostname, self.subscription,
                        reason_codes[0])
            return
        self.connected = True

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.generation += 1
        if self.connected and not self.stopping.is_set():
            log.warning("mqtt: lost %s (%s); reconnecting every %g s while it cannot be reached, backing off up "
                        "to %d s while it refuses", self.url.hostname, reason_code, RETRY_DELAY, MAX_BACKOFF)
        self.connected = False

    def _on_message(self, client, userdata, message):
        self.inbox.put((self.generation, message, time.time()))  # the time a reading without ts gets

    def _work(self):
        """Store messages in the order they came, per topic; a topic that must wait (rate
        limit, Redis away) keeps its messages and waits alone."""
        pending = {}  # topic -> deque of (generation, message, Unix time it came)
        due = {}  # topic -> time.monotonic() when it may be tried again
        if not self._connect():
            return
        while not self.stopping.is_set():
            wait = min([1.0] + [when - time.monotonic() for when in due.values()])
            try:
                item = self.inbox.get(timeout=max(0.0, wait))
                while True:
                    self._hold(item, pending)
                    item = self.inbox.get_nowait()
            except queue.Empty:
                pass
            for topic in list(pending):
                if due.get(topic, 0) <= time.monotonic():
                    self._drain(topic, pending, due)
            self.tick(idle=not pending and self.inbox.empty())

    def _hold(self, item, pending):
        """Queue a message behind its topic's. QoS 1 ones are bounded by ``receive_maximum``;
        a QoS 0 one past ``held_per_topic`` is dropped, as nobody would send it again
        anyway, and one over ``MAX_CONTENT_LENGTH`` at once (the broker lets through up to
        its own, larger limit): a device flooding past its rate limit cannot fill the
        process's memory."""
        generation, message, _ = item
        limit = self.config["MAX_CONTENT_LENGTH"]
        if len(message.payload) > limit:
            self._refuse(message, topic_device(message.topic), TOO_LARGE, f"more than {limit} bytes")
            if generation == self.generation:
                self.client.ack(message.mid, message.qos)
            return
        held = pending.setdefault(message.topic, collections.deque())
        if message.qos == 0 and len(held) >= self.held_per_topic:
            self._refuse(message, topic_device(message.topic), HELD,
                         f"over its rate limit with {self.held_per_topic} messages waiting already")
        else:
            held.append(item)

    def tick(self, idle):
        """Called about once a second, and after each round of messages (``mqtt_sessions.py``)."""

    def _drain(self, topic, pending, due):
        messages = pending[topic]
        while messages:
            generation, message, arrived = messages[0]
            if generation == self.generation or message.qos == 0:  # else the broker sends it again
                try:
                    delay = self._handle(message, arrived)
                except Exception:  # a bug: the message is let go, never the subscriber
                    log.exception("mqtt: dropped a message on %r", message.topic)
                    delay = None
                if delay:
                    due[topic] = time.monotonic() + delay
                    return
                if generation == self.generation:  # else it comes again, and boot + seq tell
                    self.client.ack(message.mid, message.qos)
            messages.popleft()
        del pending[topic]
        due.pop(topic, None)

    def _handle(self, message, arrived):
        """Store one message, or drop it with a log line; returns the seconds to wait
        before it is tried again, or None when it is done with."""
        if message.retain or not message.payload:  # a retained copy, sent again on subscribing
            return None  # (stored when it came, as any reading), or a retained one cleared
        device = topic_device(message.topic)
        config = self.config
        try:
            if device is None:
                raise InvalidReading("topic", f"not {readings_topic('<device>')} with a device id of a-z 0-9 _ -")
            readings = validate(parse_json(message.payload), arrived, config["MAX_BATCH"], config["MAX_FUTURE"],
                                device)
            add_readings(self.redis, readings, time.time(), config, "mqtt")
        except RateLimited as error:
            return error.retry_after
        except InvalidReading as error:
            return self._refuse(message, device, INVALID, str(error))
        except PermissionError:
            return self._refuse(message, device, FORBIDDEN, "a reading names another device than the topic")
        except TokenRevoked:
            return self._refuse(message, device, REVOKED, "its tokens were revoked: `flask devices add` it again "
                                "to take its readings, or remove its broker login")
        except Conflict as error:
            return self._refuse(message, device, CONFLICT, str(error))
        except redis.exceptions.RedisError as error:
            if not self.redis_failing:
                log.warning("mqtt: Redis: %s; messages wait, tried again every %g s", error, self.redis_retry_seconds)
            self.redis_failing = True
            return self.redis_retry_seconds
        if self.redis_failing:
            log.info("mqtt: Redis is back")
        self.redis_failing = False
        self.stored_messages += 1
        return None

    def _refuse(self, message, device, reason, why):
        """Count a dropped message, and log it (``logged_per_minute`` of a device's at most)."""
        count_refused(self.redis, "mqtt", reason)
        turn = self.refusals_logged.take(device)
        if turn:
            log.warning("mqtt: dropped a message on %r from device %r: %r%s", message.topic, device, why,
                        "; its next ones this minute are counted (sensorcast_uploads_refused_total), not logged"
                        if turn == "last" else "")
