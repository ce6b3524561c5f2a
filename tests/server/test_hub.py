"""The per-process hub: a browser too slow to keep up is dropped, the others are not held up."""
import json

from flask_sse import Message

from server.hub import Hub


def test_a_client_too_slow_to_keep_up_is_closed_while_others_get_everything(redis_client):
    hub = Hub(redis_client, offline_after=600)
    hub.queue_size = 3
    slow, reader = hub.join("sse"), hub.join("sse")
    received = []

    try:
        for n in range(10):
            redis_client.publish("sse", json.dumps(Message({"n": n}, type="reading").to_dict()))
            received.append(reader.queue.get(timeout=5).data["n"])
        assert slow.closed and not reader.closed
    finally:
        hub.stop()

    assert received == list(range(10))
