"""Where a browser is in the readings: the id of a ``reading`` event, and ``Last-Event-ID``.

In one Redis, a reading's event id is its ``readings`` entry id. In a cluster each shard
has a ``readings`` stream of its own, whose ids know nothing of the others', and a server
hears the shards' readings interleaved in whatever order they reach it; no one entry id
says what a browser has had. There an event's id is the newest entry id of each shard
that its stream had sent with it, in shard order, joined by ``_``
(``1764000000000-0_1764000000012-3_0-0``); a browser that reconnects with it is replayed,
shard by shard, what came after its part. A position of one shard is a plain entry id,
so one Redis's ids are what they always were.
"""
from .store import stream_id

NOTHING = (0, 0)  # before a stream's first entry


class Position(tuple):
    """The newest entry id (as a pair) of each shard's ``readings`` that a stream had."""

    @classmethod
    def parse(cls, text, shards):
        """The position ``text`` names for ``shards`` shards, or None if it names none; a
        part may be a time alone (``1764000000000``: ``-0`` is implied)."""
        pairs = [stream_id(part if "-" in part else part + "-0") for part in (text or "").split("_")]
        return cls(pairs) if len(pairs) == shards and all(pairs) else None

    def __str__(self):
        return "_".join("%d-%d" % pair for pair in self)

    def has(self, shard, entry):
        """Whether entry ``entry`` of shard ``shard`` is at or before this position."""
        return entry <= self[shard]

    def after(self, shard, entry):
        """This position, moved on to ``entry`` of shard ``shard``."""
        return Position(entry if index == shard else pair for index, pair in enumerate(self))

    def covers(self, other):
        """Whether every shard's part is at or past ``other``'s."""
        return all(mine >= theirs for mine, theirs in zip(self, other))

    def least(self, other):
        """Each shard's earlier part of the two."""
        return Position(map(min, self, other))

    def most(self, other):
        """Each shard's later part of the two."""
        return Position(map(max, self, other))
