"""The per-process hub: bursts delivered whole however the bytes arrive, a stopped reader
let go, replayed events not sent twice, a broken subscription mended without a reconnect,
its readers told meanwhile that events have paused."""
import itertools
import json
import logging
import socket
import threading
import time

import pytest
import redis
from flask_sse import Message
from redis._parsers import _RESP2Parser

from server import viewers
from server.connections import connect
from server.hub import Hub, HubUnavailable
from server.positions import Position
from tests.conftest import eventually


@pytest.fixture
def hub(redis_client):
    hub = Hub(redis_client, client_buffer=64 * 1024, client_lag=30)
    yield hub
    hub.stop()


def publish(redis_client, *numbers):
    """Publish events at once, as one ingest request's Lua script does."""
    with redis_client.pipeline(transaction=False) as pipe:
        for n in numbers:
            pipe.publish("sse", json.dumps(Message({"n": n}, type="reading", id=f"1-{n}").to_dict()))
        pipe.execute()


class Reader:
    """A browser that reads everything its client is sent, write by write."""

    def __init__(self, client, skip_until=None):
        self.writes = []
        threading.Thread(target=lambda: self.writes.extend(client.chunks(skip_until)), daemon=True).start()

    def data(self):
        """The data of each event but the heartbeats."""
        events = b"".join(self.writes).split(b"\n\n")
        return [json.loads(line[5:]) for event in events if not event.startswith(b"event:heartbeat")
                for line in event.split(b"\n") if line.startswith(b"data:")]

    def numbers(self):
        return [data["n"] for data in self.data()]

    def seqs(self):
        return [data["seq"] for data in self.data() if "seq" in data]

    def alerts(self):
        return [data["state"] for data in self.data() if "state" in data]

    def statuses(self):
        return [data["live"] for data in self.data() if "live" in data]


def test_a_burst_reaches_a_reader_whole(hub, redis_client):
    reader = Reader(hub.join("sse"))

    publish(redis_client, *range(300))

    eventually(lambda: len(reader.numbers()) == 300)
    assert reader.numbers() == list(range(300))


def test_a_burst_larger_than_the_feed_reaches_a_reader_that_keeps_up(hub, redis_client):
    reader = Reader(hub.join("sse"))
    padding = "x" * 1000

    with redis_client.pipeline(transaction=False) as pipe:  # 300 KB at once, the feed holds 64 KB
        for n in range(300):
            pipe.publish("sse", json.dumps(Message({"n": n, "pad": padding}, type="reading", id=f"1-{n}").to_dict()))
        pipe.execute()

    eventually(lambda: reader.numbers() == list(range(300)))
    assert hub.client_count() == 1


def test_a_client_that_stops_reading_is_let_go_while_the_reader_gets_everything(hub, redis_client):
    stopped, reader = hub.join("sse"), Reader(hub.join("sse"))

    for step in range(0, 3000, 500):  # about 100 KB in all: past the 64 KB budget
        publish(redis_client, *range(step, step + 500))
        eventually(lambda: len(reader.numbers()) == step + 500)

    eventually(lambda: hub.client_count() == 1)
    assert reader.numbers() == list(range(3000))
    assert stopped.closed and list(stopped.chunks()) == []
    assert redis_client.hget("metrics", "closed:behind") == "1"  # sensorcast_stream_clients_closed_total


def test_live_events_already_replayed_are_not_sent_again(hub, redis_client):
    reader = Reader(hub.join("sse"), skip_until=Position([(1, 2)]))

    publish(redis_client, *range(5))

    eventually(lambda: reader.numbers()[-1:] == [4])
    assert reader.numbers() == [3, 4]


class SlowRelay:
    """A TCP relay to Redis that passes its replies on in small pieces with pauses, as a
    busy machine or network does, so that the hub certainly sees messages half arrived.
    ``cut()`` breaks every connection and refuses new ones until ``mend()``; ``freeze()``
    passes nothing on, either way, and closes nothing, as a stopped Redis or a network
    that lost it, until ``thaw()``."""

    pieces = itertools.cycle([1, 7, 300, 2000, 45])
    pause = 0.002

    def __init__(self, redis_socket):
        self.redis_socket = str(redis_socket)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = []
        self.refusing = False
        self.flowing = threading.Event()
        self.flowing.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            near, _ = self.listener.accept()
            if self.refusing:
                near.close()
                continue
            far = socket.socket(socket.AF_UNIX)
            far.connect(self.redis_socket)
            self.connections += [near, far]
            threading.Thread(target=self._pump, args=(near, far, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(far, near, True), daemon=True).start()

    def _pump(self, source, target, slowly):
        try:
            while data := source.recv(65536):
                self.flowing.wait()
                while slowly and data:
                    size = next(self.pieces)
                    target.sendall(data[:size])
                    data = data[size:]
                    time.sleep(self.pause)
                target.sendall(data)
        except OSError:
            pass
        source.close()
        target.close()

    def cut(self):
        self.refusing = True
        for connection in self.connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.connections = []

    def mend(self):
        self.refusing = False

    def freeze(self):
        self.flowing.clear()

    def thaw(self):
        self.flowing.set()


@pytest.fixture
def relay(redis_server):
    return SlowRelay(redis_server.socket)


@pytest.fixture(params=["hiredis", "python"])
def relayed_hub(request, relay):
    """A hub whose Redis replies come through the relay, read by hiredis or by redis-py's
    own parser (what it uses where hiredis is not installed)."""
    client = connect(relay.url)
    if request.param == "python":
        client.connection_pool.connection_kwargs["parser_class"] = _RESP2Parser
    hub = Hub(client)
    yield hub
    hub.stop()


@pytest.fixture
def cellar(client, token_for):
    """Post a batch of readings as the cellar, as a board back online sends its backlog."""
    headers = {"Authorization": f"Bearer {token_for('cellar')}"}

    def post(seqs, temperature=20):
        backlog = [{"temperature": temperature, "seq": n, "boot": "b1"} for n in seqs]
        assert client.post("/api/readings", json=backlog, headers=headers).status_code == 201
    return post


def test_a_backlog_that_arrives_in_pieces_reaches_every_reader_on_the_same_connection(relayed_hub, cellar):
    clients = [relayed_hub.join("sse") for _ in range(3)]
    readers = [Reader(client) for client in clients]

    for step in range(0, 1500, 500):
        cellar(range(step, step + 500))

    eventually(lambda: all(len(reader.seqs()) == 1500 for reader in readers), timeout=60)
    assert all(reader.seqs() == list(range(1500)) for reader in readers)
    assert not any(client.closed for client in clients) and relayed_hub.client_count() == 3


def test_a_subscription_that_breaks_and_comes_back_is_mended_without_a_reconnect(
        relay, relayed_hub, cellar, client):
    clients = [relayed_hub.join("sse") for _ in range(2)]
    readers = [Reader(client) for client in clients]
    client.put("/api/devices/cellar/thresholds/temperature", json={"high": 30})  # no device yet: 404
    cellar(range(10))
    client.put("/api/devices/cellar/thresholds/temperature", json={"high": 30})
    eventually(lambda: all(len(reader.seqs()) == 10 for reader in readers))

    relay.cut()
    eventually(lambda: all(reader.statuses() == [False] for reader in readers))  # their badges say so at once
    late = Reader(relayed_hub.join("sse"))  # a page opened meanwhile is told first thing
    cellar(range(10, 500))
    cellar([500], temperature=35)  # an alert too, while nobody is subscribed
    relay.mend()
    cellar(range(501, 600))  # and clears it

    eventually(lambda: all(len(reader.seqs()) == 600 for reader in readers), timeout=60)
    assert all(reader.seqs() == list(range(600)) for reader in readers)
    assert all(reader.alerts() == ["high", "cleared"] for reader in readers)
    assert all(reader.statuses() == [False, True] for reader in [*readers, late])
    assert not any(client.closed for client in clients) and relayed_hub.client_count() == 3


def test_a_redis_that_restarts_and_loads_its_data_for_a_while_is_one_pause_and_one_line_in_the_log(
        relay, relayed_hub, cellar, caplog, monkeypatch):
    """A restarted Redis takes subscriptions at once, but refuses the reads that fill the
    gap until it has loaded its data: that is still the same outage."""
    reader = Reader(relayed_hub.join("sse"))
    cellar(range(10))
    eventually(lambda: len(reader.seqs()) == 10)
    caplog.set_level(logging.WARNING, logger="server.hub")
    fill, loading = relayed_hub.gap.fill, itertools.count()

    def fill_once_loaded(channel):
        if next(loading) < 5:
            raise redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory")
        return fill(channel)

    monkeypatch.setattr(relayed_hub.gap, "fill", fill_once_loaded)
    relay.cut()
    cellar(range(10, 20))
    relay.mend()

    eventually(lambda: len(reader.seqs()) == 20)
    assert reader.seqs() == list(range(20)) and reader.statuses() == [False, True]
    assert len([record for record in caplog.records if "subscription broke" in record.getMessage()]) == 1


def test_a_subscription_gone_for_long_closes_its_readers_with_one_line_in_the_log(relay, relayed_hub, caplog):
    relayed_hub.recover_seconds = 1
    clients = [relayed_hub.join("sse") for _ in range(3)]
    caplog.set_level(logging.WARNING, logger="server.hub")

    relay.cut()

    eventually(lambda: all(client.closed for client in clients))
    closing = [record.getMessage() for record in caplog.records if "closed its" in record.getMessage()]
    assert len(closing) == 1 and "closed its 3 clients" in closing[0]
    relay.mend()
    eventually(lambda: relayed_hub.join("sse") is not None)


def test_a_redis_that_stops_answering_without_a_word_closes_the_readers_within_seconds(relay):
    """A stopped Redis, or one a network lost without closing anything: no error comes,
    only silence. The hub finds out by a ping, not at a health check half a minute on."""
    hub = Hub(connect(relay.url, timeout=1))
    hub.probe_seconds, hub.recover_seconds = 0.5, 1
    try:
        clients = [hub.join("sse") for _ in range(2)]
        relay.freeze()

        eventually(lambda: all(client.closed for client in clients), timeout=10)
        relay.thaw()
        eventually(lambda: joined(hub) is not None)  # as their browsers do, refused until Redis answers again
    finally:
        hub.stop()


def test_a_frozen_redis_is_found_as_soon_with_viewers_to_check(relay, monkeypatch, caplog):
    """Each read of the viewers from a frozen Redis waits out its timeout in the hub's own
    loop: the first to do so breaks the subscription (a ping after it would take as long
    again), and none is asked again until Redis answers."""
    caplog.set_level(logging.WARNING, logger="server.hub")
    monkeypatch.setattr(viewers, "ACCOUNTS_TTL", 0.1)
    client, read_while_frozen, frozen = connect(relay.url, timeout=1), [], threading.Event()
    accounts = viewers.Accounts(client)

    def allows(access):
        if frozen.is_set():
            read_while_frozen.append(access)
        return accounts.allows(access)
    hub = Hub(client, allows=allows)
    hub.poll_seconds, hub.probe_seconds, hub.recover_seconds = 0.1, 0.5, 3
    try:
        clients = [hub.join("sse") for _ in range(2)]
        frozen.set()
        relay.freeze()

        eventually(lambda: all(client.closed for client in clients), timeout=20)
        assert len(read_while_frozen) <= 2  # the one under way when Redis froze, and at most one more
        broke = [record.getMessage() for record in caplog.records if "subscription broke" in record.getMessage()]
        assert "Timeout reading" in broke[0] and not any("viewers" in record.getMessage() for record in caplog.records)
    finally:
        relay.thaw()
        hub.stop()


def joined(hub):
    try:
        return hub.join("sse")
    except HubUnavailable:
        return None


def test_a_stream_opened_while_the_process_is_slow_to_hear_redis_is_served_late_not_refused(relay, relayed_hub,
                                                                                           redis_client):
    """A crowd opening its streams at once on a busy worker: the subscription's answer
    takes longer than a stream waits for Redis away, but the hub is not broken."""
    relay.pause = 0.3
    relayed_hub.subscribe_timeout = 0.2

    reader = Reader(relayed_hub.join("sse"))
    publish(redis_client, 1)

    eventually(lambda: reader.numbers() == [1])


def test_a_stream_opened_while_redis_is_away_is_refused_and_served_once_it_is_back(relay, relayed_hub):
    relayed_hub.subscribe_timeout = 0.5
    relay.cut()

    with pytest.raises(HubUnavailable, match="could not subscribe to Redis"):
        relayed_hub.join("sse")

    assert relayed_hub.client_count() == 0
    relay.mend()
    eventually(lambda: relayed_hub.join("sse") is not None)


def test_a_steady_stream_of_readings_reaches_a_reader_in_a_few_writes_not_one_each(hub, redis_client):
    reader = Reader(hub.join("sse"))

    for n in range(300):  # a busy fleet: a reading every 2 ms or so, for about a second
        publish(redis_client, n)
        time.sleep(0.002)

    eventually(lambda: reader.numbers() == list(range(300)))
    assert len(reader.writes) <= 300 / 5  # woken at most every 50 ms, not once a reading


def test_a_busy_channel_gets_its_events_without_heartbeats_and_a_quiet_one_its_heartbeats(hub, redis_client):
    hub.heartbeat = 3
    reader = Reader(hub.join("sse"))

    for n in range(70):  # a reading every 0.1 s, for two heartbeats' time and more
        publish(redis_client, n)
        time.sleep(0.1)
    eventually(lambda: reader.numbers() == list(range(70)))
    sent = b"".join(reader.writes)
    while_busy = sent[sent.index(b"event:reading"):sent.rindex(b"event:reading")]
    eventually(lambda: b"".join(reader.writes)[len(sent):].count(b"event:heartbeat") == 2, timeout=30)  # then quiet

    assert while_busy.count(b"event:heartbeat") == 0



def test_viewers_that_cannot_be_read_are_said_once_for_the_whole_outage(relay, redis_client, caplog, monkeypatch):
    """The viewers are read on a connection that breaks while the subscription's does not;
    the accounts' copy outlives a failed read for a while: the hub still says it once."""
    monkeypatch.setattr(viewers, "ACCOUNTS_TTL", 0.2)
    asked, accounts = [], viewers.Accounts(connect(relay.url))

    def allows(access):
        asked.append(access)
        return accounts.allows(access)
    hub = Hub(redis_client, allows=allows)
    hub.poll_seconds = 0.1
    caplog.set_level(logging.WARNING, logger="server.hub")
    try:
        hub.join("sse")
        eventually(lambda: len(asked) >= 2)
        relay.cut()
        swept_before = len(asked)
        eventually(lambda: len(asked) >= swept_before + 20)  # ten of the accounts' lifetimes
    finally:
        hub.stop()
        relay.mend()
    lines = [record.getMessage() for record in caplog.records if "viewers" in record.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("live stream: could not read the viewers")
