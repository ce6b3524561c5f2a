"""``GET /stream``: flask-sse's blueprint, extended one method at a time.

Kept from flask-sse: its message format on the ``sse`` channel and the ``channel``
query parameter, so anything that publishes with flask-sse reaches our browsers.
Added: the process's pooled Redis client, the per-process fan-out hub, headers sent at
once, a heartbeat comment that also finds dead clients, and ``Last-Event-ID`` replay
from the ``readings`` stream with no gap and no duplicate before live events resume.
"""
import logging
import queue

import redis

from flask import current_app, request, stream_with_context
from flask_sse import Message, ServerSentEventsBlueprint

from .hub import Hub
from .readings import decode_fields
from .store import CHANNEL, READINGS, get_redis

REPLAY_PAGE = 500
log = logging.getLogger(__name__)


def stream_id(text):
    """A Redis stream id as a comparable pair, or None for any other event id."""
    millis, _, sequence = (text or "").partition("-")
    if millis.isdigit() and sequence.isdigit():
        return int(millis), int(sequence)
    return None


class ReadingStream(ServerSentEventsBlueprint):

    @property
    def redis(self):
        return get_redis()

    @property
    def hub(self):
        hub = current_app.extensions.get("sensorcast.hub")
        if hub is None:
            hub = Hub(self.redis, current_app.config["OFFLINE_AFTER"])
            hub.queue_size = current_app.config["CLIENT_QUEUE"]
            current_app.extensions["sensorcast.hub"] = hub
        return hub

    def messages(self, channel=CHANNEL, last_event_id=None):
        """Replayed readings after ``last_event_id``, then live messages; None when idle.

        The client joins the hub (here, so that a dead Redis is a 503) before the replay
        is read: nothing published meanwhile is lost, and live readings that the replay
        already sent are skipped.
        """
        client = self.hub.join(channel)
        replay = last_event_id if channel == CHANNEL and stream_id(last_event_id) else None
        return self._follow(client, replay, current_app.config["HEARTBEAT"])

    def _follow(self, client, last_event_id, heartbeat):
        try:
            replayed = stream_id(last_event_id)
            if last_event_id:
                for message in self.replay(last_event_id):
                    yield message
                    replayed = stream_id(message.id)
            while not client.closed:
                try:
                    message = client.queue.get(timeout=heartbeat)
                except queue.Empty:
                    yield None
                    continue
                event_id = stream_id(message.id) if message else None
                if message and not (replayed and event_id and event_id <= replayed):
                    yield message
        except redis.exceptions.RedisError as error:
            log.warning("ended a stream: %s", error)
        finally:
            self.hub.leave(client)

    def replay(self, last_event_id):
        """Readings stored after ``last_event_id``, page by page."""
        start = "(" + last_event_id
        while True:
            page = self.redis.xrange(READINGS, start, "+", count=REPLAY_PAGE)
            for entry_id, fields in page:
                yield Message(decode_fields(fields), type="reading", id=entry_id)
            if len(page) < REPLAY_PAGE:
                return
            start = "(" + page[-1][0]

    def stream(self):
        channel = request.args.get("channel") or CHANNEL
        last_event_id = request.headers.get("Last-Event-ID") or request.args.get("lastEventID")
        messages = self.messages(channel, last_event_id)
        retry = current_app.config["RETRY_MS"]

        @stream_with_context
        def generator():
            yield f"retry:{retry}\n\n"
            for message in messages:
                yield ":heartbeat\n\n" if message is None else str(message)

        return current_app.response_class(
            generator(), mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


sse = ReadingStream("sse", __name__)
sse.add_url_rule(rule="", endpoint="stream", view_func=sse.stream)
