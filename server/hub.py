"""One Redis subscription per server process, fanned out to every stream client in it.

Stock flask-sse opens a subscription per browser and encodes each event once per
browser. Here one background thread (a greenlet under gunicorn's gevent worker) listens
on Redis, renders each event to bytes once into its channel's feed (``feed.py``), and
wakes that channel's clients once per batch; the hub yields between batches, so a
backfill of hundreds of readings never holds the worker. A lone event is sent at once;
while events keep coming, clients are woken at most every ``flush_seconds`` (50 ms) with
all that came meanwhile, so a busy fleet costs a browser a write or so per 50 ms rather
than one per reading. Heartbeats go through the feeds too, so no client needs a timer of
its own, and only to a channel that was quiet. Once a second it closes the clients that
fell behind, stalled, or lost the viewer's access they were opened with. It caps streams
per process and per client address, so that open dashboards can never take the
connections that uploads need.

A pub/sub message only partly received is waited for, never an error (redis-py uses a
poll's timeout as the read's). When the subscription breaks, the clients stay: the hub
subscribes again and fills the gap from the ``readings`` and ``alerts`` streams, as a
browser's replay would (``gap.py``). Meanwhile each client is told at once that events
have paused (a ``status`` event, ``{"live": false}``; ``{"live": true}`` once they come
again), so a dashboard says so rather than "live" over a silent stream. Only when Redis
stays away for ``recover_seconds``, or the gap outgrows the feed, are the clients closed,
to reconnect and replay.
"""
import gc
import logging
import threading
import time

import redis
from flask import json
from flask_sse import Message

from .feed import Channel, Client
from .gap import Gap
from .metrics import count
from .store import CHANNEL

log = logging.getLogger(__name__)

PAUSED = str(Message({"live": False}, type="status")).encode()
RESUMED = str(Message({"live": True}, type="status")).encode()
# Each round of wake-ups allocates a few objects per stream that live until the next
# round. With CPython's default first threshold (700) the young collections promote
# them, and every ~12 s a full collection of 10,000 streams' objects stops this process
# for 200 ms. A young generation of 100,000 lets them die young.
GC_THRESHOLDS = (100_000, 50, 100)


def heartbeat_event(seconds):
    """A quiet stream's heartbeat: an event, which a page hears (a comment it never would),
    saying every how many ``seconds`` one comes. A stream a NAT or a phone's network dropped
    without a word stays open to the browser for good: silence for a few heartbeats tells it."""
    return str(Message({"every": seconds}, type="heartbeat")).encode()


class HubUnavailable(redis.exceptions.ConnectionError):
    """The hub could not subscribe in time: Redis is away, or this process was too busy to hear it."""


class StreamLimit(Exception):
    """A new stream would pass a cap; ``per_address`` says which one."""

    def __init__(self, message, per_address):
        super().__init__(message)
        self.per_address = per_address


class Hub:
    poll_seconds = 1.0
    read_timeout = 10.0  # for the rest of a message once its first bytes are in
    subscribe_timeout = 5.0  # a new stream's wait for its subscription while Redis is away
    busy_subscribe_timeout = 30.0  # and while Redis answers, but this process is slow to hear it
    recover_seconds = 10.0
    probe_seconds = 5.0  # a subscription quiet this long is pinged, and broken if that gets no answer as long
    dispatch_slice = 100
    flush_seconds = 0.05  # while events keep coming, a channel's clients are woken at most this often

    def __init__(self, client, heartbeat=15, max_streams=10_000, max_streams_per_address=100,
                 client_buffer=1024 * 1024, client_lag=30, allows=None):
        """``allows(access)`` says whether a client opened with ``access`` may still read."""
        self.redis = client
        self.heartbeat = heartbeat
        self.max_streams = max_streams
        self.max_streams_per_address = max_streams_per_address
        self.client_buffer = client_buffer
        self.client_lag = client_lag
        self.allows = allows
        self.gap = Gap(client, client_buffer)
        self._channels = {}
        self._per_address = {}
        self._count = 0
        self._lock = threading.Lock()
        self._thread = None
        self._stopping = threading.Event()
        self._broken_since = None
        self._gave_up = False
        self._viewers_unread = False

    def join(self, name, address=None, connection=None, access=None):
        """A new client of channel ``name``, once Redis delivers that channel to it.

        Raises ``StreamLimit`` past a cap and ``HubUnavailable`` when Redis is away.
        """
        with self._lock:
            if self._count >= self.max_streams:
                raise StreamLimit(f"this server process already serves {self.max_streams} streams", False)
            if self._per_address.get(address, 0) >= self.max_streams_per_address:
                raise StreamLimit(f"{address} already has {self.max_streams_per_address} streams open", True)
            channel = self._channels.get(name)
            if channel is None:
                channel = self._channels[name] = Channel(name)
            client = Client(channel, address, connection, access)
            channel.clients.add(client)
            self._count += 1
            self._per_address[address] = self._per_address.get(address, 0) + 1
            if self._thread is None:
                gc.set_threshold(*GC_THRESHOLDS)
                self._thread = threading.Thread(target=self._run, name="sse-hub", daemon=True)
                self._thread.start()
        try:
            self._wait_until_subscribed(channel)
        except HubUnavailable:
            self.leave(client)
            raise
        return client

    def _wait_until_subscribed(self, channel):
        """Wait for ``channel``'s subscription, or raise ``HubUnavailable``: after
        ``subscribe_timeout`` while the hub finds Redis away, but only after
        ``busy_subscribe_timeout`` while it is merely slow to hear Redis, as when
        thousands of browsers open their streams at once on a busy worker: they are
        served late rather than refused."""
        waited = 0.0
        while not channel.subscribed.wait(self.subscribe_timeout):
            waited += self.subscribe_timeout
            if self._broken_since is not None:
                raise HubUnavailable(f"the live stream could not subscribe to Redis within {waited:g} s")
            if waited >= self.busy_subscribe_timeout:
                raise HubUnavailable(f"the live stream's Redis subscription was not ready within {waited:g} s "
                                     f"(this process is too busy)")

    def leave(self, client):
        with self._lock:
            clients = client.channel.clients
            if client not in clients:
                return
            clients.discard(client)
            self._count -= 1
            remaining = self._per_address.pop(client.address) - 1
            if remaining:
                self._per_address[client.address] = remaining

    def client_count(self):
        return self._count

    def stop(self):
        """Close every client and end the subscription, which takes up to ``poll_seconds``
        (more while a command to Redis is under way): its client may be closed then."""
        self._stopping.set()
        self._close_everyone()
        if self._thread is not None:
            self._thread.join(self.poll_seconds + 10)

    def _run(self):
        while not self._stopping.is_set():
            try:
                self._listen()
            except Exception as error:  # Redis away, or a bug: subscribe again, or let browsers replay
                self._broke(error)
                time.sleep(min(self.poll_seconds, 0.1 + (time.monotonic() - self._broken_since) / 4))

    def _broke(self, error):
        """Say once that the subscription broke; past ``recover_seconds``, close the clients."""
        now = time.monotonic()
        if self._broken_since is None:
            self._broken_since, self._gave_up = now, False
            log.warning("live stream: the Redis subscription broke (%s); subscribing again", error,
                        exc_info=not isinstance(error, redis.exceptions.RedisError))
            self._pause(now)
        elif not self._gave_up and now - self._broken_since > self.recover_seconds:
            self._gave_up = True
            self.gap.forget()
            log.warning("live stream: no Redis subscription for %g s (%s); closed its %d clients, "
                        "which reconnect and replay", self.recover_seconds, error, self._close_everyone())

    def _pause(self, now):
        """Tell every client that events stopped coming; one that joins before they come
        again is told first thing (``Channel.paused_at``)."""
        for channel in list(self._channels.values()):
            if channel.paused_at is None:
                channel.paused_at = channel.next_seq
                channel.append(None, PAUSED, now)
        self._wake_changed(now)

    def _listen(self):
        pubsub, subscribed = self.redis.pubsub(), set()
        next_heartbeat = next_sweep = time.monotonic()
        next_wake = 0.0  # clients are woken no sooner
        heard, pinged = time.monotonic(), None  # when Redis last said anything here; when it was pinged since
        try:
            while not self._stopping.is_set():
                subscribed = self._sync_subscriptions(pubsub, subscribed)
                wait = max(0.0, next_wake - time.monotonic()) if self._changed() else self.poll_seconds
                for _ in range(self.dispatch_slice):
                    message = self._next_message(pubsub, wait)
                    if message is None:
                        break
                    heard, pinged = time.monotonic(), None
                    self._handle(message)
                    wait = max(0.0, next_wake - time.monotonic())  # gather what comes until the next wake
                now = time.monotonic()
                pinged = self._probe(pubsub, now, heard, pinged)
                if now >= next_wake and self._changed():
                    self._wake_changed(now)
                    next_wake = now + self.flush_seconds
                time.sleep(0)  # let the clients write before the next slice
                if now >= next_heartbeat:
                    next_heartbeat = now + self.heartbeat
                    self._beat(now)
                if now >= next_sweep:
                    next_sweep = now + self.poll_seconds
                    self._sweep(now, redis_answers=pinged is None and self._broken_since is None)
        finally:
            pubsub.close()

    def _probe(self, pubsub, now, heard, pinged):
        """Ping a subscription that Redis has said nothing on for ``probe_seconds``; no
        answer within as long again breaks it, as a closed connection does: a Redis that
        stopped, or that a network lost without a word, is found in seconds, not at the
        connection's health check. Returns when Redis was pinged, if it was."""
        if pubsub.connection is None or not pubsub.subscribed or now - heard < self.probe_seconds:
            return None
        if pinged is None:
            pubsub.ping()
            return now
        if now - pinged >= self.probe_seconds:
            raise redis.exceptions.TimeoutError(f"Redis answered no ping within {self.probe_seconds:g} s")
        return pinged

    def _next_message(self, pubsub, wait):
        """The next message, waiting up to ``wait`` for one to begin; once it has begun,
        its remaining bytes are waited for (up to ``read_timeout``)."""
        if pubsub.connection is None or not pubsub.subscribed:  # no channel now
            time.sleep(wait)
            return None
        if not pubsub.connection.can_read(timeout=wait):
            return None
        return pubsub.get_message(timeout=self.read_timeout)

    def _sync_subscriptions(self, pubsub, subscribed):
        """Subscribe to channels that gained clients, drop the ones that lost them all;
        returns the channels now subscribed."""
        with self._lock:
            for name, channel in list(self._channels.items()):
                if not channel.clients:
                    del self._channels[name]
            wanted = set(self._channels)
        if subscribed - wanted:
            if CHANNEL in subscribed - wanted:
                self.gap.forget()  # nobody follows it now: the next subscription starts afresh
            pubsub.unsubscribe(*(subscribed - wanted))
        if wanted - subscribed:
            pubsub.subscribe(*(wanted - subscribed))
        return wanted

    def _handle(self, message):
        channel = self._channels.get(message["channel"])
        if channel is None:
            return
        if message["type"] == "subscribe":
            if channel.name == CHANNEL:
                self._subscribed_to_readings(channel)  # may fail yet: a restarted Redis still loading its data
            self._broken_since = None
            if channel.paused_at is not None:
                channel.paused_at = None
                channel.append(None, RESUMED, time.monotonic())
            channel.subscribed.set()
        elif message["type"] == "message":
            try:
                event = Message(**json.loads(message["data"]))
            except (ValueError, TypeError):
                log.warning("ignored a message on %r that is not flask-sse's format: %.80r",
                            channel.name, message["data"])
                return
            if channel.name != CHANNEL:
                channel.append(None, str(event).encode(), time.monotonic())
                return
            entry = self.gap.entry_of(event)
            if self.gap.is_new(event, entry):
                self._append_live(channel, event, entry)

    def _append_live(self, channel, event, entry):
        """A live event into the readings' feed; a reading's (``entry``: its shard and entry
        id) id becomes where the feed stands once it is sent (positions.py)."""
        if entry is None:
            channel.append(None, str(event).encode(), time.monotonic())
            return
        position = self.gap.position()
        if len(position) > 1:
            event.data["id"], event.id = event.id, str(position)
        channel.append((*entry, position), str(event).encode(), time.monotonic())
        channel.position = position

    def _subscribed_to_readings(self, channel):
        """Note where live events begin; subscribed again after a break, first add what
        was published meanwhile."""
        if self.gap.is_open():
            if not self.gap.fill(channel):
                self.gap.forget()
                log.warning("live stream: more was published while the subscription was away than a feed "
                            "holds; closed its %d clients, which reconnect and replay",
                            self._close_everyone(CHANNEL))
        self.gap.mark()
        channel.position = self.gap.position()

    def _changed(self):
        return any(channel.dirty for channel in list(self._channels.values()))

    def _wake_changed(self, now):
        """Trim each feed that grew to its budget (keeping what came since the last wake),
        then wake its clients."""
        for channel in list(self._channels.values()):
            if channel.dirty:
                channel.trim(self.client_buffer, now - self.client_lag)
                channel.wake()

    def _beat(self, now):
        """A heartbeat to the clients of each channel that sent them nothing for ``heartbeat``
        seconds: a proxy keeps an idle stream open, and the write to a browser gone fails.
        A busy channel's events do both, and a crowd's worker is spared a round of writes."""
        beat = heartbeat_event(self.heartbeat)
        for channel in list(self._channels.values()):
            if not (channel.entries and channel.entries[-1][1] > now - self.heartbeat):
                channel.append(None, beat, now)
                channel.wake()

    def _sweep(self, now, redis_answers):
        """Close the clients left behind by their feed, stalled in a write, or whose
        viewer's access ended."""
        stalled_since = now - self.client_lag
        allowed = self._access_check(redis_answers)
        for channel in list(self._channels.values()):
            channel.trim(self.client_buffer, stalled_since)
            first, closed = channel.first_seq, False
            for client in list(channel.clients):
                if client.cursor < first:
                    reason, why = "behind", "too far behind"
                elif client.writing_since is not None and client.writing_since < stalled_since:
                    reason, why = "stalled", f"a write stalled for {self.client_lag} s"
                elif not allowed(client.access):
                    reason, why = "access", "its viewer's access ended"
                else:
                    continue
                log.info("closed a stream client from %s: %s", client.address, why)
                count(self.redis, f"closed:{reason}")
                self.leave(client)
                client.close()
                closed = True
            if closed:
                channel.wake()  # a closed client waiting for an event ends now

    def _access_check(self, redis_answers):
        """``allows``, or anything goes while it cannot be asked: asked only of a Redis that
        ``redis_answers`` (a read would wait out its timeout in this loop, and hold up finding
        the outage), and said once when that read fails. One that waited out its timeout
        (a Redis stopped, or lost by the network, in the quiet before a ping) breaks the
        subscription at once: a ping after it would take as long again to tell."""
        if self.allows is None or not redis_answers:
            return lambda access: True
        try:
            self.allows(None)  # reads the accounts now, once, rather than for the first client
        except redis.exceptions.TimeoutError:
            raise
        except redis.exceptions.RedisError as error:
            if not self._viewers_unread:  # once for the whole outage, not once a second
                log.warning("live stream: could not read the viewers (%s); checking again every %g s",
                            error, self.poll_seconds)
            self._viewers_unread = True
            return lambda access: True
        self._viewers_unread = False
        return self.allows

    def _close_everyone(self, only=None):
        """Close the clients (of channel ``only``, or all); returns how many."""
        with self._lock:
            channels = [channel for channel in self._channels.values() if only in (None, channel.name)]
            for channel in channels:
                channel.subscribed.clear()
                channel.paused_at = None  # whoever joins now waits for the subscription
        closed = 0
        for channel in channels:
            for client in list(channel.clients):
                self.leave(client)
                client.close()
                closed += 1
            channel.wake()
        return closed
