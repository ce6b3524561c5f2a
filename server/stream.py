"""``GET /stream``: flask-sse's blueprint, extended one method at a time.

Kept from flask-sse: its message format on the ``sse`` channel and the ``channel``
query parameter, so anything that publishes with flask-sse reaches our browsers.
Added: the process's pooled Redis client, the per-process fan-out hub (``hub.py``),
caps on streams per process and per address (503 / 429 with ``Retry-After``), headers
sent at once, heartbeats, and ``Last-Event-ID`` replay from the ``readings`` stream
with no gap and no duplicate before live events resume. A ``Last-Event-ID`` older than
anything ``readings`` still keeps first gets a ``reset`` event: the gap is never silent.
"""
import logging

import redis
from flask import current_app, request
from flask_sse import Message, ServerSentEventsBlueprint
from werkzeug.exceptions import ServiceUnavailable, TooManyRequests

from .gap import reading_event
from .hub import Hub, StreamLimit
from .store import CHANNEL, READINGS, get_redis, stream_id
from .viewers import get_accounts, session_access, viewer_required

REPLAY_PAGE = 500
log = logging.getLogger(__name__)


def get_hub():
    """The process's one hub, made on first use from the app's settings."""
    hub = current_app.extensions.get("sensorcast.hub")
    if hub is None:
        config = current_app.config
        hub = current_app.extensions["sensorcast.hub"] = Hub(
            get_redis(), heartbeat=config["HEARTBEAT"], max_streams=config["MAX_STREAMS"],
            max_streams_per_address=config["MAX_STREAMS_PER_ADDRESS"], client_buffer=config["CLIENT_BUFFER"],
            client_lag=config["CLIENT_LAG"], allows=get_accounts().allows)
    return hub


def replay(client, last_event_id):
    """Readings stored after ``last_event_id`` as event bytes, a page at a time, each
    with the stream id of its last reading; a ``reset`` event first when some are gone."""
    oldest = client.xrange(READINGS, "-", "+", count=1)
    if oldest and stream_id(oldest[0][0]) > stream_id(last_event_id):
        yield str(Message({"oldest": oldest[0][0]}, type="reset")).encode(), None
    start = "(" + last_event_id
    while True:
        page = client.xrange(READINGS, start, "+", count=REPLAY_PAGE)
        if page:
            yield b"".join(reading_event(entry_id, fields) for entry_id, fields in page), stream_id(page[-1][0])
        if len(page) < REPLAY_PAGE:
            return
        start = "(" + page[-1][0]


class ReadingStream(ServerSentEventsBlueprint):

    @property
    def redis(self):
        return get_redis()

    def stream(self):
        channel = request.args.get("channel") or CHANNEL
        last_event_id = request.headers.get("Last-Event-ID") or request.args.get("lastEventID")
        config, hub = current_app.config, get_hub()
        connection = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")
        try:
            client = hub.join(channel, request.remote_addr, connection, session_access())
        except StreamLimit as limit:
            refusal = TooManyRequests if limit.per_address else ServiceUnavailable
            raise refusal(f"{limit}; retry later", retry_after=config["RETRY_AFTER"]) from None
        if channel != CHANNEL or not stream_id(last_event_id):
            last_event_id = None
        body = Body(hub, client, self.redis, last_event_id, config["RETRY_MS"])
        return current_app.response_class(
            body, mimetype="text/event-stream", direct_passthrough=True,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class Body:
    """A stream's response body, handed to the WSGI server as it is: iterating it gives
    the bytes to send (no wrapper between a live event and the socket), and closing it,
    which the server always does, takes the client out of the hub."""

    def __init__(self, hub, client, redis_client, last_event_id, retry):
        self.hub = hub
        self.client = client
        self.events = self._events(redis_client, last_event_id, retry)

    def __iter__(self):
        return self.events

    def close(self):
        self.events.close()
        self.hub.leave(self.client)

    def _events(self, redis_client, last_event_id, retry):
        """The reconnect delay, what was missed, then live events.

        The client joined the hub before the replay is read: nothing published meanwhile
        is lost, and live readings that the replay already sent are skipped.
        """
        yield f"retry:{retry}\n\n".encode()
        replayed = None
        try:
            if last_event_id:
                for chunk, replayed in replay(redis_client, last_event_id):
                    yield self.client.sending(chunk)
        except redis.exceptions.RedisError as error:
            log.warning("ended a stream during its replay: %s", error)
            return
        yield from self.client.chunks(skip_until=replayed)


sse = ReadingStream("sse", __name__)
sse.add_url_rule(rule="", endpoint="stream", view_func=viewer_required(sse.stream))
