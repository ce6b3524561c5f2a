"""Readings up to the server through an MQTT broker (``transport: mqtt``), with
micropython-lib's umqtt.simple: the HTTP uplink's buffer, batches, boot + seq stamping and
retries (uplink.py), with only the delivery of a batch replaced. A batch is published at
QoS 1 to ``sensorcast/<device>/readings``, the body it would POST, and leaves the buffer
only once the broker's PUBACK came; a connection that fails is closed and made again at the
next cycle, the readings waiting meanwhile. A batch whose PUBACK was lost is published
again, and the server stores it once by its boot + seq. The broker tells nothing of what
the server made of a reading, so poisoning (uplink.py) cannot be seen over MQTT.

Each connection leaves a last will, ``offline`` retained at QoS 1 on
``sensorcast/<device>/status``, which the broker publishes the moment the board drops off
(its connection closed without a goodbye, or its keepalive missed), and publishes ``online``
there, retained, as soon as it is up. A cycle that publishes nothing pings the broker now
and then, which keeps the board online and finds a dead connection.

Readings go out only _SETTLE_MS after each connect: a broker that has just restarted
acknowledges readings and drops them until the server's processes have subscribed again
(Mosquitto 2.0.11: see the README), and they reconnect within a second of its return.

Firmware updates and their reports still go over HTTP (``Uplink.call``) to ``server``, so
an MQTT node keeps the token. node.py imports this module only for ``transport: mqtt``
(settings.py checked the broker's settings): the HTTP node's heap never holds it or umqtt.
"""
import json
import time

from micropython import const
from umqtt.simple import MQTTClient, MQTTException

from uplink import Uplink

_READINGS_TOPIC = const("sensorcast/%s/readings")
_STATUS_TOPIC = const("sensorcast/%s/status")
_KEEPALIVE_INTERVALS = const(3)  # the broker's keepalive is this many reading intervals,
_MIN_KEEPALIVE = const(60)  # and at least a minute; a quiet cycle pings after a third of it
_BAD_LOGIN = const((4, 5))  # CONNACK codes: bad user name or password, not authorised
_SETTLE_MS = const(2000)  # from a connect to the first reading published: the server is back first
# How umqtt.simple fails: socket errors (a timeout, a reset, OSError(-1) at the end of the
# stream), a refused connection, and its asserts and indexing on a short or odd answer.
FAILURES = (OSError, MQTTException, AssertionError, IndexError, TypeError)


class TimedSocket:
    """The broker's socket with every read bounded by the timeout. umqtt.simple makes its
    socket blocking for good after its first read: a broker that went silent would then
    hang the board until the watchdog reset it, and the buffered readings with it."""

    def __init__(self, sock, timeout):
        self.sock = sock
        sock.settimeout(timeout)

    def read(self, size):
        data = self.sock.read(size)
        if data is None:  # a timeout on the Unix port; an ESP raises OSError(ETIMEDOUT)
            raise OSError(110)
        return data

    def write(self, data, size=None):
        return self.sock.write(data) if size is None else self.sock.write(data, size)

    def setblocking(self, flag):
        pass

    def close(self):
        self.sock.close()


class MqttUplink(Uplink):
    def __init__(self, settings, capacity, log):
        Uplink.__init__(self, settings["server"], settings["token"], capacity, settings["timeout"], log)
        device = settings["device"]
        self.readings_topic = _READINGS_TOPIC % device
        self.status_topic = _STATUS_TOPIC % device
        self.keepalive = max(_MIN_KEEPALIVE, int(_KEEPALIVE_INTERVALS * settings["interval"]))
        self.client = MQTTClient("node." + device, settings["mqtt_host"], settings["mqtt_port"],
                                 settings["mqtt_user"] or device, settings["mqtt_password"], self.keepalive)
        self.client.set_last_will(self.status_topic, "offline", True, 1)
        self.connected = False
        self.last_sent = 0

    def send(self):
        """Connect if need be and publish what is pending; True when nothing is left."""
        if not self.connected and not self.connect():
            return False
        if self.pending:
            return Uplink.send(self)
        if time.ticks_diff(time.ticks_ms(), self.last_sent) >= self.keepalive * 1000 // 3:
            try:
                self.client.ping()
                self.client.wait_msg()  # its PINGRESP
            except FAILURES as error:
                return self.failed("mqtt: keepalive ping", error)
            self.last_sent = time.ticks_ms()
        return True

    def deliver(self, batch):
        """Publish ``batch`` at QoS 1: all of it done once the broker's PUBACK came, none on a failure."""
        try:
            self.client.publish(self.readings_topic, json.dumps(batch), False, 1)
        except FAILURES as error:
            return self.failed("mqtt: upload", error)
        self.last_sent = time.ticks_ms()
        self.posted += len(batch)
        self.away = False
        return len(batch)

    def connect(self):
        """Connect with the last will, then say ``online``; False (logged) when that failed."""
        self.log("mqtt: connecting to %s:%d" % (self.client.server, self.client.port))
        try:
            self.client.connect(True, self.timeout)
            self.client.sock = TimedSocket(self.client.sock, self.timeout)
            self.client.publish(self.status_topic, "online", True, 1)
        except MQTTException as error:  # the broker said no, with the CONNACK code
            self.auth_refused = error.args[0] in _BAD_LOGIN
            return self.failed("mqtt: login (CONNACK %d)" % error.args[0], error)
        except FAILURES as error:
            return self.failed("mqtt: connecting", error)
        self.log("mqtt: online")
        self.connected, self.auth_refused = True, False
        time.sleep_ms(_SETTLE_MS)
        self.last_sent = time.ticks_ms()
        return True

    def failed(self, what, error):
        """Log ``what`` failed, drop the connection (made again at the next cycle); 0."""
        self.log("%s failed: %r" % (what, error))
        self.connected, self.away = False, True
        if self.client.sock:
            self.client.sock.close()
            self.client.sock = None
        return 0
