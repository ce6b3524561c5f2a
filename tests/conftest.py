"""Fixtures that give every test real parts: a real Redis server, the real app, real
gunicorn processes, and an EventSource-like reader of ``/stream``."""
import json
import math
import random
import threading
import time

import pytest
import requests

from server import create_app
from server.auth import issue_token
from server import connections
from server.connections import client_for, connect
from server.embedded_redis import EmbeddedRedis
from server.store import device_readings
from tools.redis_cluster import RedisCluster
from tools.run import ServerProcess

TEST_SETTINGS = {"HEARTBEAT": 1, "OFFLINE_AFTER": 600}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_client(redis_server):
    """A client of the worker's Redis, emptied of what the test before left (in the
    background: a big history freed at once can hold Redis past a client's timeout)."""
    connections._stalled.clear()  # nor does a stall that test's Redis had hold this one's requests
    client = connect(redis_server.url)
    client.flushall(asynchronous=True)
    yield client
    client.connection_pool.disconnect()


class Cluster(RedisCluster):
    """A real Redis Cluster of three primaries, with the server's settings for it."""

    shards = 6

    def settings(self):
        return {"REDIS_CLUSTER": self.nodes, "REDIS_SHARDS": self.shards}

    def server(self, **settings):
        return LiveServer(f"redis://127.0.0.1:{self.ports[0]}/0", **self.settings(), **settings)

    def sharded_client(self):
        """A client as the server's, which knows the shards."""
        return client_for(dict(self.settings(), REDIS_URL="redis://", REDIS_SENTINELS="", WAIT_REPLICAS=0))


@pytest.fixture
def cluster(tmp_path):
    nodes = Cluster(tmp_path / "cluster")
    yield nodes
    nodes.stop()


@pytest.fixture
def replicated_cluster(tmp_path):
    """The same, each primary with a replica that takes over when it dies."""
    nodes = Cluster(tmp_path / "cluster", replicas=1)
    yield nodes
    nodes.stop()


@pytest.fixture
def app(redis_client, redis_server):
    app = create_app(dict(TEST_SETTINGS, REDIS_URL=redis_server.url, TESTING=True))
    yield app
    stop_hub(app)


def stop_hub(app):
    """End the live stream's Redis subscription of an app that opened one."""
    hub = app.extensions.get("sensorcast.hub")
    if hub:
        hub.stop()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def token_for(redis_client):
    """A device token, made as ``flask devices add`` makes it."""
    return lambda device: issue_token(redis_client, device)


def eventually(check, timeout=20, seen=None):
    """Wait until ``check()`` is true (it is asked every 0.1 s); ``seen()``, if given, says
    what was there instead when it never is."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"it never happened; instead: {seen()}" if seen else "it never happened"
        time.sleep(0.1)


class LiveServer(ServerProcess):
    """Our server as a browser or a board sees it."""

    def __init__(self, redis_url, **settings):
        super().__init__(redis_url, **dict(TEST_SETTINGS, **settings))

    def health(self):
        return requests.get(self.url + "/healthz", timeout=5).json()

    def post(self, path, token=None, headers=(), timeout=10, **kwargs):
        headers = dict(headers, **({"Authorization": f"Bearer {token}"} if token else {}))
        return requests.post(self.url + path, headers=headers, timeout=timeout, **kwargs)

    def history(self, device):
        answer = requests.get(f"{self.url}/api/devices/{device}/readings?limit=10000", timeout=5)
        return answer.json()["readings"] if answer.ok else []

    def stream(self, **headers):
        return EventStream(self.url + "/stream", headers)


@pytest.fixture
def start_server(redis_server, redis_client):
    servers = []

    def start(**kwargs):
        servers.append(LiveServer(redis_server.url, **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def live_server(start_server):
    return start_server()


class EventStream:
    """Reads ``text/event-stream`` the way a browser's EventSource does."""

    def __init__(self, url, headers, timeout=10):
        self.response = requests.get(url, headers=headers, stream=True, timeout=(3, timeout))
        self.lines = self.response.iter_lines(chunk_size=None, decode_unicode=True)
        self.heartbeats = 0
        self.events = self._events()

    def _events(self):
        """Each event as a dict with ``event``, ``data`` (parsed JSON) and ``id``."""
        event = {}
        for line in self.lines:
            if not line:
                if "data" in event:
                    event["data"] = json.loads(event["data"])
                    self.heartbeats += event.get("event") == "heartbeat"
                    yield event
                event = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                event[name] = value.lstrip(" ")

    def next_event(self):
        """The next event but a heartbeat."""
        for event in self.events:
            if event.get("event") != "heartbeat":
                return event
        raise EOFError("the stream ended")

    def skip_heartbeats(self, count):
        """Read until ``count`` heartbeats have arrived, the one a stream opens with first."""
        for _ in self.events:
            if self.heartbeats >= count:
                return
        raise EOFError("the stream ended")

    def next_of(self, kind):
        """The next event of type ``kind``, passing over the others."""
        while True:
            event = self.next_event()
            if event.get("event") == kind:
                return event

    def next_reading(self):
        return self.next_of("reading")

    def close(self):
        self.response.close()


class FollowingBrowser:
    """A browser's EventSource, in a thread: it reconnects whenever the stream ends or is
    refused, sending the last id it saw as ``Last-Event-ID``, and keeps every reading's event
    id (``ids``) and its device and own id (``readings``: in a cluster, not the event id).
    ``watching`` is set once its first stream is open: the server sends a stream's headers
    only once its hub receives live events, so nothing published after it is missed. With
    ``hang_up``, it closes each stream itself after a random while of up to that many
    seconds once it has an id (a phone on a flaky network), reconnecting at once."""

    retry_seconds = 0.2

    def __init__(self, url, hang_up=None):
        self.url = url
        self.hang_up = hang_up
        self.ids = []
        self.readings = []
        self.stopping = False
        self.watching = threading.Event()
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self):
        while not self.stopping:
            headers = {"Last-Event-ID": self.ids[-1]} if self.ids else {}
            hang_up_at = math.inf  # until it has an id to come back with, as the dashboard has from /api/devices
            if self.hang_up and self.ids:
                hang_up_at = time.monotonic() + random.uniform(0.01, self.hang_up)
            try:
                stream = EventStream(self.url + "/stream", headers)
                if stream.response.ok:
                    self.watching.set()
                while not self.stopping and stream.response.ok and time.monotonic() < hang_up_at:
                    event = stream.next_event()
                    if event.get("event") == "reading":
                        self.ids.append(event["id"])
                        self.readings.append((event["data"]["device"], event["data"].get("id", event["id"])))
                stream.close()
            except (EOFError, requests.RequestException):
                pass
            if time.monotonic() < hang_up_at:
                time.sleep(self.retry_seconds)

    def stop(self):
        self.stopping = True


class Device:
    """A device in a thread, as the firmware behaves: each reading has the next ``seq`` of
    one boot and is posted again until the server takes it (a retry is stored once); with
    ``batch``, that many readings a request, as a board sends what it buffered."""

    def __init__(self, url, token, batch=1):
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.batch = batch
        self.accepted = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._post, daemon=True)
        self.thread.start()

    def _post(self):
        while not self.stopping:
            readings = [{"temperature": 20 + n % 10, "boot": "chaos", "seq": n + 1}
                        for n in range(self.accepted, self.accepted + self.batch)]
            try:
                answer = requests.post(self.url + "/api/readings", json=readings, headers=self.headers, timeout=5)
                self.accepted += self.batch * (answer.status_code == 201)
            except requests.RequestException:
                pass
            time.sleep(0.02)

    def stop(self):
        self.stopping = True
        self.thread.join()


def all_watching(browsers):
    return all(browser.watching.is_set() for browser in browsers)


def assert_every_device_seen_once_by_each(redis_client, devices, browsers):
    """Each browser got every stored reading of each device exactly once, in order."""
    stored = {name: [entry_id for entry_id, _ in redis_client.xrange(device_readings(redis_client, name))]
              for name in devices}
    for browser in browsers:
        eventually(lambda: len(browser.readings) >= sum(map(len, stored.values())), timeout=60)
        browser.stop()
        assert {name: [entry_id for device, entry_id in browser.readings if device == name] for name in devices} == stored


def assert_each_reading_stored_once_and_seen_once(redis_client, device, browsers):
    """Every reading the device made is stored once (its seqs run 1, 2, 3 ...), and every
    browser got every stored reading exactly once, in order."""
    entries = redis_client.xrange(f"readings:{device}")
    stored = [entry_id for entry_id, _ in entries]
    eventually(lambda: all(browser.ids[-1:] == stored[-1:] for browser in browsers), timeout=60)
    for browser in browsers:
        browser.stop()
        unknown = sorted(set(browser.ids) - set(stored))  # what the shared stream says of them, should it happen
        assert browser.ids == stored, [redis_client.xrange("readings", entry_id, entry_id) for entry_id in unknown]
    assert [int(fields["seq"]) for _, fields in entries] == list(range(1, len(entries) + 1))


@pytest.fixture
def broker(tmp_path):
    """A real Mosquitto with the shipped configuration (tests/mqtt_broker.py)."""
    from tests.mqtt_broker import Broker  # it uses ``eventually`` from here

    running = Broker(tmp_path).start()
    yield running
    running.stop()


@pytest.fixture
def mqtt_server(start_server, broker, tmp_path):
    """Start a server subscribed to ``broker``, and wait until the broker routes readings to it."""
    def start(**settings):
        settings.setdefault("MQTT_CLIENT_ID", f"test-{tmp_path.name}")
        server = start_server(MQTT_URL=broker.url(), **settings)
        eventually(lambda: server.health().get("mqtt") == "up", timeout=60)
        return server
    return start
