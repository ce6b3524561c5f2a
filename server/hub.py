"""One Redis subscription per server process, fanned out to every stream client in it.

Stock flask-sse opens a subscription per browser and encodes each event once per
browser. Here one background thread (a greenlet under gunicorn's gevent worker) listens
on Redis, renders each event to bytes once into its channel's feed (``feed.py``), and
wakes that channel's clients once per batch; the hub yields between batches, so a
backfill of hundreds of readings never holds the worker. Heartbeats go through the
feeds too, so no client needs a timer of its own. Once a second it closes the clients
that fell behind or stalled. It caps streams per process and per client address, so
that open dashboards can never take the connections that uploads need. When the
subscription breaks, every client is closed: browsers reconnect and replay.
"""
import gc
import logging
import threading
import time

import redis
from flask import json
from flask_sse import Message

from .feed import Channel, Client
from .store import mark_offline, stream_id

log = logging.getLogger(__name__)

HEARTBEAT = b":heartbeat\n\n"
# Each round of wake-ups allocates a few objects per stream that live until the next
# round. With CPython's default first threshold (700) the young collections promote
# them, and every ~12 s a full collection of 10,000 streams' objects stops this process
# for 200 ms. A young generation of 100,000 lets them die young.
GC_THRESHOLDS = (100_000, 50, 100)


class HubUnavailable(redis.exceptions.ConnectionError):
    """The hub could not subscribe in time: Redis is away."""


class StreamLimit(Exception):
    """A new stream would pass a cap; ``per_address`` says which one."""

    def __init__(self, message, per_address):
        super().__init__(message)
        self.per_address = per_address


class Hub:
    poll_seconds = 1.0
    subscribe_timeout = 5.0
    dispatch_slice = 100

    def __init__(self, client, offline_after=600, heartbeat=15, max_streams=10_000,
                 max_streams_per_address=100, client_buffer=1024 * 1024, client_lag=30):
        self.redis = client
        self.offline_after = offline_after
        self.heartbeat = heartbeat
        self.max_streams = max_streams
        self.max_streams_per_address = max_streams_per_address
        self.client_buffer = client_buffer
        self.client_lag = client_lag
        self._channels = {}
        self._per_address = {}
        self._count = 0
        self._lock = threading.Lock()
        self._thread = None
        self._stopping = threading.Event()

    def join(self, name, address=None, connection=None):
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
            client = Client(channel, address, connection)
            channel.clients.add(client)
            self._count += 1
            self._per_address[address] = self._per_address.get(address, 0) + 1
            if self._thread is None:
                gc.set_threshold(*GC_THRESHOLDS)
                self._thread = threading.Thread(target=self._run, name="sse-hub", daemon=True)
                self._thread.start()
        if not channel.subscribed.wait(self.subscribe_timeout):
            self.leave(client)
            raise HubUnavailable("the live stream could not subscribe to Redis")
        return client

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
        """Close every client and end the subscription within ``poll_seconds``."""
        self._stopping.set()
        self._close_everyone()

    def _run(self):
        while not self._stopping.is_set():
            try:
                self._listen()
            except Exception as error:  # Redis away, or a bug: either way browsers reconnect
                log.warning("live stream stopped (%s); closing its clients", error,
                            exc_info=not isinstance(error, redis.exceptions.RedisError))
                self._close_everyone()
                time.sleep(self.poll_seconds)

    def _listen(self):
        pubsub, subscribed = self.redis.pubsub(), set()
        next_heartbeat = next_sweep = time.monotonic()
        cutoff = time.time() - self.offline_after
        try:
            while not self._stopping.is_set():
                subscribed = self._sync_subscriptions(pubsub, subscribed)
                timeout = self.poll_seconds
                for _ in range(self.dispatch_slice):
                    message = pubsub.get_message(timeout=timeout)
                    if message is None:
                        break
                    self._handle(message)
                    timeout = 0
                now = time.monotonic()
                self._wake_changed(now)
                time.sleep(0)  # let the woken clients write before the next slice
                if now >= next_heartbeat:
                    next_heartbeat = now + self.heartbeat
                    self._beat(now)
                if now >= next_sweep:
                    next_sweep = now + self.poll_seconds
                    self._sweep(now)
                    previous, cutoff = cutoff, time.time() - self.offline_after
                    mark_offline(self.redis, previous, cutoff)
        finally:
            pubsub.close()

    def _sync_subscriptions(self, pubsub, subscribed):
        """Subscribe to channels that gained clients, drop the ones that lost them all;
        returns the channels now subscribed."""
        with self._lock:
            for name, channel in list(self._channels.items()):
                if not channel.clients:
                    del self._channels[name]
            wanted = set(self._channels)
        if subscribed - wanted:
            pubsub.unsubscribe(*(subscribed - wanted))
        if wanted - subscribed:
            pubsub.subscribe(*(wanted - subscribed))
        return wanted

    def _handle(self, message):
        channel = self._channels.get(message["channel"])
        if channel is None:
            return
        if message["type"] == "subscribe":
            channel.subscribed.set()
        elif message["type"] == "message":
            try:
                event = Message(**json.loads(message["data"]))
            except (ValueError, TypeError):
                log.warning("ignored a message on %r that is not flask-sse's format: %.80r",
                            channel.name, message["data"])
                return
            channel.append(stream_id(event.id), str(event).encode(), time.monotonic())

    def _wake_changed(self, now):
        """Trim each feed that grew to its budget, then wake its clients."""
        for channel in list(self._channels.values()):
            if channel.dirty:
                channel.trim(self.client_buffer, now - self.client_lag)
                channel.wake()

    def _beat(self, now):
        for channel in list(self._channels.values()):
            channel.append(None, HEARTBEAT, now)
            channel.wake()

    def _sweep(self, now):
        """Close the clients left behind by their feed, or stalled in a write."""
        stalled_since = now - self.client_lag
        for channel in list(self._channels.values()):
            channel.trim(self.client_buffer, stalled_since)
            first = channel.first_seq
            for client in list(channel.clients):
                behind = client.cursor < first
                stalled = client.writing_since is not None and client.writing_since < stalled_since
                if behind or stalled:
                    log.info("closed a stream client from %s: %s", client.address,
                             "too far behind" if behind else f"a write stalled for {self.client_lag} s")
                    self.leave(client)
                    client.close()

    def _close_everyone(self):
        with self._lock:
            channels = list(self._channels.values())
            for channel in channels:
                channel.subscribed.clear()
        for channel in channels:
            for client in list(channel.clients):
                self.leave(client)
                client.close()
            channel.wake()
