"""Which MQTT session each server process holds, and what becomes of a session whose
process is gone for good.

Mosquitto hands a share of a shared subscription's messages to every session in it,
connected or not, and keeps them queued for the absent ones. A process's session must
therefore outlive it only until someone takes it again. Each process takes the client id
``<MQTT_CLIENT_ID>-<slot>``, the lowest slot no live process on this host holds (a lock
file, freed the moment its holder dies), so a restarted worker resumes its predecessor's
session. Each says every second that it holds its session (the Redis hash
``mqtt-sessions``: client id -> Unix time). A session nobody has held for
``MQTT_ADOPT_AFTER`` seconds (an instance removed), or when it is a slot of this host that
no live process holds (a graceful reload, whose new workers started in other slots; fewer
workers than before) once the taker has run ``restart_grace`` seconds (the other workers
of a restart take their own slots back first), is taken over by one live process (the lease
``mqtt-adopting:<client id>``): it connects as that client id, unsubscribes, stores what
the session held, and ends it. Should its owner come back meanwhile, the broker
gives the session to the owner and the taker lets go: nothing is lost either way.
"""
import fcntl
import logging
import re
import socket
import time

import redis
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .mqtt import SESSIONS, Subscriber

log = logging.getLogger(__name__)

ADOPT_LEASE_SECONDS = 30  # renewed every second while the taker works: a taker that dies frees it soon

# KEYS: the sessions hash. ARGV: a client id, the time its holder last said so. Forgets
# the session unless its holder has spoken since.
_FORGET = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""


def adopting_key(client_id):
    return f"mqtt-adopting:{client_id}"


def slot_lock(folder, prefix, slot):
    """The lock file of ``slot``, opened and locked; None while a live process holds it."""
    handle = open(folder / f"mqtt-{re.sub(r'[^A-Za-z0-9_.-]', '_', prefix)}-{slot}.lock", "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return handle
    except BlockingIOError:
        handle.close()
        return None


def start_subscriber(redis_client, config, slot_folder):
    """The process's subscriber, under the client id of the lowest free slot on this host."""
    prefix = config["MQTT_CLIENT_ID"] or f"sensorcast-{socket.gethostname()}"
    slot_folder.mkdir(parents=True, exist_ok=True)
    slot = 0
    while not (lock := slot_lock(slot_folder, prefix, slot)):
        slot += 1
    return Owner(redis_client, config, prefix, slot, slot_folder, lock).start()


class Owner(Subscriber):
    """A process's own subscriber: says every second that it holds its session, and takes
    over the sessions nobody holds: at once those of a slot on this host whose lock is
    free (its process is gone) once it has run ``restart_grace`` seconds, after
    ``MQTT_ADOPT_AFTER`` seconds of silence the others."""

    restart_grace = 10.0  # seconds: time for the workers of a restart to start and take their slots

    def __init__(self, redis_client, config, prefix, slot, slot_folder, lock):
        super().__init__(redis_client, config, f"{prefix}-{slot}")
        self.prefix, self.slot_folder = prefix, slot_folder
        self.lock = lock  # held open: the slot is ours while this process lives
        self.next_beat = 0.0
        self.started = time.time()
        self.adopters = {}

    def stop(self):
        for adopter in self.adopters.values():
            adopter.stop()
        super().stop()

    def tick(self, idle):
        now = time.time()
        if now < self.next_beat:
            return
        self.next_beat = now + 1
        try:
            self.redis.hset(SESSIONS, self.client_id, repr(now))
            self._adopt_orphans(now)
        except redis.exceptions.RedisError as error:
            log.warning("mqtt: could not keep %s in %s: %s", self.client_id, SESSIONS, error)

    def _adopt_orphans(self, now):
        self.adopters = {client_id: adopter for client_id, adopter in self.adopters.items() if not adopter.done}
        for client_id, said in self.redis.hgetall(SESSIONS).items():
            if client_id == self.client_id or client_id in self.adopters:
                continue
            silent, lock = now - float(said), None
            slot = client_id.removeprefix(f"{self.prefix}-")
            if slot != client_id and slot.isdigit():  # a slot of this host
                if now - self.started < self.restart_grace:
                    continue
                lock = slot_lock(self.slot_folder, self.prefix, int(slot))
                if lock is None:
                    continue
            elif silent < self.config["MQTT_ADOPT_AFTER"]:
                continue
            if silent > self.config["MQTT_SESSION_EXPIRY"]:  # the broker has ended it by itself
                self.redis.register_script(_FORGET)(keys=[SESSIONS], args=[client_id, said])
            elif self.redis.set(adopting_key(client_id), self.client_id, nx=True, ex=ADOPT_LEASE_SECONDS):
                log.info("mqtt: %s takes over the session %s, silent for %.0f s", self.client_id, client_id, silent)
                self.adopters[client_id] = Adopter(self.redis, self.config, client_id, said, lock).start()
                continue
            if lock:
                lock.close()


class Adopter(Subscriber):
    """Empties a session its process left behind, then ends it."""

    drain_idle = 2.0  # seconds with nothing in hand and nothing arriving: the session is empty

    def __init__(self, redis_client, config, client_id, said, lock=None):
        super().__init__(redis_client, config, client_id)
        self.said = said
        self.lock = lock  # its slot's, when on this host: no process here takes it meanwhile
        self.done = False
        self.unsubscribed = False
        self.last_arrival = self.next_renewal = time.monotonic()
        self.client.on_unsubscribe = self._on_unsubscribe

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("mqtt: could not take over %s: %s", self.client_id, reason_code)
            self._let_go(client)
        elif not flags.session_present:  # gone already: end the one this connection made
            self._finish()
        else:
            client.unsubscribe(self.subscription)

    def _on_unsubscribe(self, client, userdata, mid, reason_codes, properties):
        self.unsubscribed = True
        self.last_arrival = time.monotonic()

    def _on_message(self, client, userdata, message):
        self.last_arrival = time.monotonic()
        super()._on_message(client, userdata, message)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        super()._on_disconnect(client, userdata, flags, reason_code, properties)
        if not self.done:
            log.info("mqtt: let go of %s (%s): its owner is back, or the broker went away", self.client_id,
                     reason_code)
            self._let_go(client)

    def _let_go(self, client):
        """Stop without ending the session; another try may follow after the lease."""
        self._end()
        client.disconnect()  # from a callback too: no reconnect follows

    def _end(self):
        self.done = True
        self.stopping.set()
        if self.lock:
            self.lock.close()

    def tick(self, idle):
        if self.unsubscribed and idle and time.monotonic() - self.last_arrival > self.drain_idle:
            self._finish()
        elif time.monotonic() >= self.next_renewal:
            self.next_renewal = time.monotonic() + 1
            try:
                self.redis.expire(adopting_key(self.client_id), ADOPT_LEASE_SECONDS)
            except redis.exceptions.RedisError as error:
                log.warning("mqtt: could not renew the lease on %s: %s", self.client_id, error)

    def _finish(self):
        self._end()
        properties = Properties(PacketTypes.DISCONNECT)
        properties.SessionExpiryInterval = 0  # the broker drops the session with this connection
        self.client.disconnect(properties=properties)
        try:
            self.redis.register_script(_FORGET)(keys=[SESSIONS], args=[self.client_id, self.said])
            self.redis.delete(adopting_key(self.client_id))
        except redis.exceptions.RedisError as error:
            log.warning("mqtt: could not forget %s: %s", self.client_id, error)
        log.info("mqtt: emptied and ended the session %s (%d messages stored)", self.client_id,
                 self.stored_messages)
