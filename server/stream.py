"""``GET /stream``: flask-sse's blueprint, extended one method at a time.

Kept from flask-sse: its message format on the ``sse`` channel and the ``channel``
query parameter, so anything that publishes with flask-sse reaches our browsers.
Added: the process's pooled Redis client, the per-process fan-out hub (``hub.py``),
caps on streams per process and per address (503 / 429 with ``Retry-After``), headers
sent at once, heartbeats, and ``Last-Event-ID`` replay from the ``readings`` stream
with no gap and no duplicate before live events resume. A ``Last-Event-ID`` older than
anything ``readings`` still keeps first gets a ``reset`` event: the gap is never silent.
"""
import functools
import heapq
import itertools
import logging
import threading

import gevent.socket
import redis
from flask import current_app, request
from flask_sse import Message, ServerSentEventsBlueprint
from werkzeug.exceptions import ServiceUnavailable, TooManyRequests

from .connections import get_redis
from .gap import reading_event
from .guard import sender
from .hub import Hub, StreamLimit, heartbeat_event
from .positions import NOTHING, Position
from .shards import shards_of
from .store import CHANNEL, READINGS, pages, stream_id
from .viewers import get_accounts, session_access, viewer_required

REPLAY_PAGE = 100
REPLAYS_AT_ONCE = 4
_replay_turns = threading.BoundedSemaphore(REPLAYS_AT_ONCE)  # gevent's, once gunicorn's worker has patched
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


# KEYS: the readings stream; ARGV: '(' and the last id a browser had, MAX_REPLAY. The id
# of the oldest of the newest MAX_REPLAY readings after it, or nil when there are no more
# (exactly MAX_REPLAY after it are all replayed, with no reset).
_REPLAY_START = """
local most = tonumber(ARGV[2])
local newest = redis.call('XREVRANGE', KEYS[1], '+', ARGV[1], 'COUNT', most + 1)
if #newest <= most then return nil end
return newest[most][1]
"""


def replay(client, last_event_id, most):
    """Readings stored after the position ``last_event_id``, at most the newest ``most`` of
    them (of each shard's share), as event bytes, a page at a time, each with the position
    the stream stands at after it. First comes where it starts: the browser's position, no
    further than the newest readings, with a ``reset`` event when some are not replayed
    (gone, or further back than ``most``): the dashboard then reloads each device's history.
    An id that names no position here (another server's, a layout of another shard count)
    gets a ``reset`` at where the stream stands now, and nothing is replayed. The shards'
    readings are merged in id order. Each page is read and rendered in one of
    ``REPLAYS_AT_ONCE`` turns of the process, holding no turn while the browser takes it, so
    a crowd replaying from far back, reading or not, cannot take every Redis connection and
    the worker's time from uploads."""
    keys = shards_of(client).each(READINGS)
    position = Position.parse(last_event_id, len(keys))
    with _replay_turns:
        newest = newest_position(client)
    if position is None:
        yield str(Message({"oldest": newest and str(newest)}, type="reset")).encode(), None
        return
    position = position.least(newest or Position([NOTHING] * len(keys)))  # an id from beyond: none to skip
    starts = []  # each shard's XRANGE start: an id is inclusive, "(" makes it exclusive
    with _replay_turns:
        for key, after in zip(keys, position):
            oldest = client.xrange(key, "-", "+", count=1)
            first = client.register_script(_REPLAY_START)(keys=[key], args=["(%d-%d" % after,
                                                                             max(1, most // len(keys))])
            if not first and oldest and stream_id(oldest[0][0]) > after > NOTHING:  # NOTHING: none yet, none lost
                first = oldest[0][0]
            starts.append(first or "(%d-%d" % after)
    reset = Message({"oldest": "_".join(start.lstrip("(") for start in starts)}, type="reset")
    yield str(reset).encode() if any(not start.startswith("(") for start in starts) else b"", position
    merged = heapq.merge(*(_entries(client, shard, key, start) for shard, (key, start) in enumerate(zip(keys, starts))),
                         key=lambda entry: entry[1])
    while True:
        with _replay_turns:
            page = list(itertools.islice(merged, REPLAY_PAGE))
            chunk = []
            for shard, entry, entry_id, fields in page:
                position = position.after(shard, entry)
                chunk.append(reading_event(position, entry_id, fields))
        if page:
            yield b"".join(chunk), position
        if len(page) < REPLAY_PAGE:
            return


def _entries(client, shard, key, start):
    """Shard ``shard``'s readings from ``start`` on, read a page at a time."""
    for page in pages(client, key, start, count=REPLAY_PAGE):
        for entry_id, fields in page:
            yield shard, stream_id(entry_id), entry_id, fields


def newest_position(client):
    """Where a stream opened now would stand in the readings: the newest entry of each
    shard; None while there is none."""
    newest = [client.xrevrange(key, count=1) for key in shards_of(client).each(READINGS)]
    if not any(newest):
        return None
    return Position(stream_id(entries[0][0]) if entries else NOTHING for entries in newest)


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
            client = hub.join(channel, sender(request.remote_addr), connection, session_access())
        except StreamLimit as limit:
            refusal = TooManyRequests if limit.per_address else ServiceUnavailable
            raise refusal(f"{limit}; retry later", retry_after=config["RETRY_AFTER"]) from None
        if channel != CHANNEL:
            last_event_id = None
        chunked = request.method == "GET" and request.environ.get("SERVER_PROTOCOL") == "HTTP/1.1"
        body = Body(hub, client, self.redis, last_event_id, config["RETRY_MS"], config["MAX_REPLAY"],
                    request.environ.get("gunicorn.socket") if chunked else None)
        return current_app.response_class(
            body, mimetype="text/event-stream", direct_passthrough=True,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class Body:
    """A stream's response body, handed to the WSGI server as it is: iterating it gives
    the bytes to send, and closing it, which the server always does, takes the client out
    of the hub. Under gunicorn, once the headers, the reconnect delay and the replay are out,
    live events go straight to the stream's ``socket``, each write one HTTP/1.1 chunk as
    gunicorn frames them: gunicorn's write and gevent's ``sendall`` around each one cost
    a worker with a crowd watching more than the send itself. On a plain gevent socket,
    a stream that has caught up parks, and the hub writes its events (``feed.py``)."""

    def __init__(self, hub, client, redis_client, last_event_id, retry, max_replay, socket=None):
        self.hub = hub
        self.client = client
        self.max_replay = max_replay
        self.socket = socket
        self.unsent = b""
        self.events = self._events(redis_client, last_event_id, retry)

    def __iter__(self):
        return self.events

    def close(self):
        self.events.close()
        self.hub.leave(self.client)

    def _events(self, redis_client, last_event_id, retry):
        """The reconnect delay and a first heartbeat (the page learns how often they come),
        what was missed, then live events.

        The client joined the hub before the replay is read: nothing published meanwhile
        is lost, and live readings that the replay already sent are skipped.
        """
        yield f"retry:{retry}\n\n".encode() + heartbeat_event(self.hub.heartbeat)
        replayed = None
        try:
            if last_event_id:
                for chunk, replayed in replay(redis_client, last_event_id, self.max_replay):
                    if chunk:
                        yield self.client.sending(chunk)
        except redis.exceptions.RedisError as error:
            log.warning("ended a stream during its replay: %s", error)
            return
        if self.socket is None:
            yield from self.client.chunks(skip_until=replayed)
            return
        park = self._park if type(self.socket) is gevent.socket.socket else None
        for chunk in self.client.chunks(skip_until=replayed, park=park):
            self._send(_framed(chunk))

    def _park(self):
        """Caught up: the hub writes the next live events itself, until one does not fit
        the socket's buffer; the rest of that one is written here."""
        self.client.park(self._send_now)
        self._send(self.unsent)

    def _send_now(self, chunk):
        """Send ``chunk`` as far as the socket takes it without waiting; False when some is
        left (in ``unsent``), or the socket failed (its error comes again from ``_send``)."""
        frame = _framed(chunk)
        try:
            sent = self.socket.send(frame, 0, 0.0)  # gevent's send: a timeout of 0 never waits
        except OSError:
            sent = 0
        self.unsent = frame[sent:] if sent < len(frame) else b""
        return not self.unsent

    def _send(self, frame):
        frame = memoryview(self.client.sending(frame))
        while frame:
            frame = frame[self.socket.send(frame):]


@functools.lru_cache(maxsize=1)  # the hub writes the same bytes to each parked stream in turn
def _framed(chunk):
    """``chunk`` as one HTTP/1.1 chunk, framed as gunicorn frames a body's."""
    return b"%X\r\n%b\r\n" % (len(chunk), chunk)


sse = ReadingStream("sse", __name__)
sse.add_url_rule(rule="", endpoint="stream", view_func=viewer_required(sse.stream))
