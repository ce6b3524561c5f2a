"""What the hub missed while its Redis subscription was broken, read back from the streams.

Pub/sub keeps nothing for a subscriber that is away, but every reading is kept in its
shard's ``readings`` and every alert in its shard's ``alerts``. The hub notes the newest
entry of each that its feed has (for the readings, that is where its stream stands:
``positions.py``); subscribed again, it appends what came after them, rendered exactly
as the live events are, and drops the live events that the fill already had. ``device``
events are kept in no stream: one published during the gap is missed, as by any
subscriber; the ``offline`` and ``online`` alerts that go with them are not.
"""
import time

from flask import json
from flask_sse import Message

from .positions import NOTHING, Position
from .readings import decode_fields
from .shards import shards_of
from .store import ALERTS, READINGS, stream_id

PAGE = 500


def reading_event(position, entry_id, fields):
    """A ``readings`` entry as the event bytes a browser gets for it, live or replayed, its
    id the stream's ``position`` once it is sent; in a cluster, where that is no entry id,
    the data carries the entry's own id too (the id its device's history has it under)."""
    data = decode_fields(fields)
    if len(position) > 1:
        data["id"] = entry_id
    return str(Message(data, type="reading", id=str(position))).encode()


def alert_event(entry_id, fields):
    return str(Message(dict(json.loads(fields["json"]), id=entry_id), type="alert")).encode()


class Gap:
    def __init__(self, client, max_bytes):
        self.redis = client
        self.shards = shards_of(client)
        self.readings = self.shards.each(READINGS)
        self.alerts = self.shards.each(ALERTS)
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
            self.newest = {key: self._newest(key) for key in (*self.readings, *self.alerts)}
            self.filled = {}

    def forget(self):
        """Nobody waits for the gap (the clients were closed, or left): start afresh."""
        self.newest = None

    def position(self):
        """Where the feed stands in the readings."""
        return Position(self.newest[key] for key in self.readings)

    def entry_of(self, event):
        """The shard and the entry id (a pair) of a live ``reading`` event; None for others."""
        if event.type == "reading" and isinstance(event.data, dict):
            entry = stream_id(event.id)
            if entry:
                return self.shards.index(str(event.data.get("device", ""))), entry
        return None

    def is_new(self, event, reading=None):
        """Whether a live event still belongs in the feed (the last fill did not have it);
        ``reading``: its ``entry_of``, for a reading."""
        key, entry = self._stream_entry(event, reading)
        if entry is None or self.newest is None:
            return True
        if key in self.filled and entry <= self.filled[key]:
            return False
        self.newest[key] = max(self.newest[key], entry)
        return True

    def fill(self, channel):
        """Append what the streams kept after ``newest``; False when some of it is gone
        (trimmed) or it is more than a feed holds, so that the clients must replay."""
        for key in self.readings:
            oldest = self.redis.xrange(key, "-", "+", count=1)
            if oldest and stream_id(oldest[0][0]) > self.newest[key] > NOTHING:
                return False
        size = 0
        for shard, key in [*enumerate(self.readings), *((None, key) for key in self.alerts)]:
            start = "(%d-%d" % self.newest[key]
            while size <= self.max_bytes:
                page = self.redis.xrange(key, start, "+", count=PAGE)
                for entry_id, fields in page:
                    entry = stream_id(entry_id)
                    self.newest[key] = self.filled[key] = entry
                    if shard is None:
                        reading, data = None, alert_event(entry_id, fields)
                    else:
                        position = self.position()
                        reading, data = (shard, entry, position), reading_event(position, entry_id, fields)
                    channel.append(reading, data, time.monotonic())
                    size += len(data)
                if page:
                    start = "(" + page[-1][0]
                if len(page) < PAGE:
                    break
        return size <= self.max_bytes

    def _stream_entry(self, event, reading):
        """The stream, and the entry's id there, that a live event came from; None for others."""
        if reading:
            shard, entry = reading
            return self.readings[shard], entry
        if event.type == "alert" and isinstance(event.data, dict):
            return self.alerts[self.shards.index(str(event.data.get("device", "")))], stream_id(event.data.get("id"))
        return None, None

    def _newest(self, key):
        entries = self.redis.xrevrange(key, count=1)
        return stream_id(entries[0][0]) if entries else NOTHING
