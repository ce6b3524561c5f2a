"""What the hub missed while its Redis subscription was broken, read back from the streams.

Pub/sub keeps nothing for a subscriber that is away, but every reading is kept in
``readings`` and every alert in ``alerts``. The hub notes the newest entry of each that
its feed has; subscribed again, it appends what came after them, rendered exactly as the
live events are, and drops the live events that the fill already had. ``device`` events
are kept in no stream: one published during the gap is missed, as by any subscriber;
the ``offline`` and ``online`` alerts that go with them are not.
"""
import time

from flask import json
from flask_sse import Message

from .readings import decode_fields
from .store import ALERTS, READINGS, stream_id

PAGE = 500


def reading_event(entry_id, fields):
    """A ``readings`` entry as the event bytes a browser gets for it, live or replayed."""
    return str(Message(decode_fields(fields), type="reading", id=entry_id)).encode()


def alert_event(entry_id, fields):
    return str(Message(dict(json.loads(fields["json"]), id=entry_id), type="alert")).encode()


def _event_id(event):
    """The stream, and the entry's id there, that a live event came from; None for others."""
    if event.type == "reading":
        return READINGS, stream_id(event.id)
    if event.type == "alert" and isinstance(event.data, dict):
        return ALERTS, stream_id(event.data.get("id"))
    return None, None


class Gap:
    def __init__(self, client, max_bytes):
        self.redis = client
        self.max_bytes = max_bytes
        self.newest = None  # stream -> id of its newest entry that the feed has, as a pair
        self.filled = {}  # stream -> id of the newest entry the last fill appended

    def is_open(self):
        """Whether the hub was subscribed before: then what it has is noted, and a new
        subscription follows a break."""
        return self.newest is not None

    def mark(self):
        """Subscribed afresh: from here on live events arrive; note where the streams stand."""
        if self.newest is None:
            self.newest = {key: self._newest(key) for key in (READINGS, ALERTS)}
            self.filled = {}

    def forget(self):
        """Nobody waits for the gap (the clients were closed, or left): start afresh."""
        self.newest = None

    def is_new(self, event):
        """Whether a live event still belongs in the feed (the last fill did not have it)."""
        key, entry = _event_id(event)
        if entry is None or self.newest is None:
            return True
        if key in self.filled and entry <= self.filled[key]:
            return False
        self.newest[key] = max(self.newest[key], entry)
        return True

    def fill(self, channel):
        """Append what the streams kept after ``newest``; False when some of it is gone
        (trimmed) or it is more than a feed holds, so that the clients must replay."""
        size = 0
        oldest = self.redis.xrange(READINGS, "-", "+", count=1)
        if oldest and stream_id(oldest[0][0]) > self.newest[READINGS] > (0, 0):
            return False
        for key, render in ((READINGS, reading_event), (ALERTS, alert_event)):
            start = "(%d-%d" % self.newest[key]
            while size <= self.max_bytes:
                page = self.redis.xrange(key, start, "+", count=PAGE)
                for entry_id, fields in page:
                    data = render(entry_id, fields)
                    channel.append(stream_id(entry_id) if key == READINGS else None, data, time.monotonic())
                    size += len(data)
                if page:
                    start = "(" + page[-1][0]
                    self.newest[key] = self.filled[key] = stream_id(page[-1][0])
                if len(page) < PAGE:
                    break
        return size <= self.max_bytes

    def _newest(self, key):
        entries = self.redis.xrevrange(key, count=1)
        return stream_id(entries[0][0]) if entries else (0, 0)
