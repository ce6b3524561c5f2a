"""The per-process hub: bursts delivered whole, a stopped reader let go, replayed events
not sent twice."""
import json
import threading

import pytest
from flask_sse import Message

from server.hub import Hub
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

    def numbers(self):
        lines = b"".join(self.writes).split(b"\n")
        return [json.loads(line[5:])["n"] for line in lines if line.startswith(b"data:")]


def test_a_burst_reaches_a_reader_whole(hub, redis_client):
    reader = Reader(hub.join("sse"))

    publish(redis_client, *range(300))

    eventually(lambda: len(reader.numbers()) == 300)
    assert reader.numbers() == list(range(300))


def test_a_client_that_stops_reading_is_let_go_while_the_reader_gets_everything(hub, redis_client):
    stopped, reader = hub.join("sse"), Reader(hub.join("sse"))

    for step in range(0, 3000, 500):  # about 100 KB in all: past the 64 KB budget
        publish(redis_client, *range(step, step + 500))
        eventually(lambda: len(reader.numbers()) == step + 500)

    eventually(lambda: hub.client_count() == 1)
    assert reader.numbers() == list(range(3000))
    assert stopped.closed and list(stopped.chunks()) == []


def test_live_events_already_replayed_are_not_sent_again(hub, redis_client):
    reader = Reader(hub.join("sse"), skip_until=(1, 2))

    publish(redis_client, *range(5))

    eventually(lambda: reader.numbers()[-1:] == [4])
    assert reader.numbers() == [3, 4]
