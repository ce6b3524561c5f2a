"""One Redis subscription per server process, fanned out to every stream client in it.

Stock flask-sse opens a subscription per browser. Here a single background thread (a
greenlet under gunicorn's gevent worker) listens on Redis and copies each message into
each client's bounded queue. A client whose queue is full is too slow: it is closed,
and its browser reconnects and replays what it missed, so it never holds up the others
or grows memory. When the subscription itself breaks, every client is closed the same way.
"""
import logging
import queue
import threading
import time

import redis
from flask import json
from flask_sse import Message

from .store import mark_offline

log = logging.getLogger(__name__)


class HubUnavailable(redis.exceptions.ConnectionError):
    """The hub could not subscribe in time: Redis is away."""


class Client:
    """One stream's view of the hub: a bounded queue of messages and a closed flag."""

    def __init__(self, channel, queue_size):
        self.channel = channel
        self.queue = queue.Queue(maxsize=queue_size)
        self.closed = False

    def close(self):
        self.closed = True
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass


class Hub:
    queue_size = 256
    poll_seconds = 1.0
    subscribe_timeout = 5.0

    def __init__(self, client, offline_after):
        self.redis = client
        self.offline_after = offline_after
        self._clients = {}
        self._subscribed = {}
        self._lock = threading.Lock()
        self._thread = None
        self._stopping = threading.Event()

    def join(self, channel):
        """Register a client on ``channel``; returns once Redis delivers that channel to it."""
        client = Client(channel, self.queue_size)
        with self._lock:
            self._clients.setdefault(channel, set()).add(client)
            ready = self._subscribed.setdefault(channel, threading.Event())
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sse-hub", daemon=True)
                self._thread.start()
        if not ready.wait(self.subscribe_timeout):
            self.leave(client)
            raise HubUnavailable("the live stream could not subscribe to Redis")
        return client

    def leave(self, client):
        with self._lock:
            self._clients.get(client.channel, set()).discard(client)

    def client_count(self):
        with self._lock:
            return sum(len(clients) for clients in self._clients.values())

    def stop(self):
        """Close every client and end the subscription within ``poll_seconds``."""
        self._stopping.set()
        self._close_everyone()

    def _run(self):
        while not self._stopping.is_set():
            try:
                self._listen()
            except redis.exceptions.RedisError as error:
                log.warning("live stream lost Redis (%s); closing its clients", error)
                self._close_everyone()
                time.sleep(self.poll_seconds)

    def _listen(self):
        pubsub = self.redis.pubsub()
        cutoff = time.time() - self.offline_after
        try:
            while not self._stopping.is_set():
                self._subscribe_new_channels(pubsub)
                message = pubsub.get_message(timeout=self.poll_seconds)
                if message and message["type"] == "subscribe":
                    self._subscribed[message["channel"]].set()
                elif message and message["type"] == "message":
                    self._dispatch(message["channel"], message["data"])
                if time.time() - self.offline_after - cutoff >= self.poll_seconds:
                    previous, cutoff = cutoff, time.time() - self.offline_after
                    mark_offline(self.redis, previous, cutoff)
        finally:
            pubsub.close()

    def _subscribe_new_channels(self, pubsub):
        with self._lock:
            wanted = set(self._subscribed) - set(pubsub.channels)
        if wanted:
            pubsub.subscribe(*wanted)

    def _dispatch(self, channel, data):
        try:
            message = Message(**json.loads(data))
        except (ValueError, TypeError):
            log.warning("ignored a message on %r that is not flask-sse's format: %.80r", channel, data)
            return
        with self._lock:
            clients = list(self._clients.get(channel, ()))
        for client in clients:
            try:
                client.queue.put_nowait(message)
            except queue.Full:
                log.info("closed a stream client too slow to keep up")
                self.leave(client)
                client.close()

    def _close_everyone(self):
        with self._lock:
            clients = [c for channel_clients in self._clients.values() for c in channel_clients]
            self._clients.clear()
            for ready in self._subscribed.values():
                ready.clear()
        for client in clients:
            client.close()
