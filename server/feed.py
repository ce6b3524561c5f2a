"""A channel's feed: its recent events, each rendered to bytes once and shared by every
client, and each client's cursor into it.

A client woken by the hub sends everything it has not had yet in one write. A client
that is caught up may instead park: the hub then writes what comes next to its socket
itself, without waking it, which spares a crowd's worker a switch to every stream per
event; a write the socket does not take whole wakes the client to finish it. A client is
too slow when it needs an entry the feed has already forgotten (the feed keeps its last
``client_buffer`` bytes and ``client_lag`` seconds), or when one write to it stalls:
then it is closed, and its browser reconnects and replays what it missed. The feed is
the worker's only per-event memory, whatever the crowd.
"""
import logging
import socket
import threading
import time

log = logging.getLogger(__name__)


class Channel:
    """One pub/sub channel: its clients and its feed, events rendered once and shared."""

    def __init__(self, name):
        self.name = name
        self.clients = set()
        self.subscribed = threading.Event()
        self.entries = []  # (seq, monotonic time, a reading's (shard, entry id, position after it) or None,
        #                    bytes), oldest first
        self.position = None  # where the feed stands in the readings, once it has one (positions.py)
        self.paused_at = None  # while the hub's subscription is broken: the seq of the entry that says so
        self.next_seq = 0
        self.size = 0
        self.changed = threading.Event()
        self.dirty = False
        self.woken_seq = 0  # entries from here on came after the last wake: no client has had them yet

    @property
    def first_seq(self):
        entries = self.entries
        return entries[0][0] if entries else self.next_seq

    def append(self, event_id, data, now):
        self.entries.append((self.next_seq, now, event_id, data))
        self.next_seq += 1
        self.size += len(data)
        self.dirty = True

    def wake(self):
        """Write what is new to each parked client, and wake every client waiting for it."""
        changed, self.changed = self.changed, threading.Event()
        self.dirty = False
        self.woken_seq = self.next_seq
        first, news = self.first_seq, {}  # a cursor -> the bytes from there on, joined once for all there
        for client in list(self.clients):
            if client.write_now is None or client.cursor == self.next_seq:
                continue
            if client.cursor not in news:
                news[client.cursor] = b"".join(data for _, _, _, data in self.entries[client.cursor - first:])
            data, client.cursor = news[client.cursor], self.next_seq
            if not client.write_now(data):
                client.unpark()
        changed.set()

    def trim(self, max_bytes, oldest):
        """Forget entries beyond ``max_bytes`` or older than ``oldest``, but none that
        came since the last wake (a burst larger than the budget reaches the clients that
        keep up); a new list, so a client reading the old one meanwhile still sees it whole."""
        drop, size = 0, self.size
        for seq, at, _, data in self.entries:
            if (size <= max_bytes and at >= oldest) or seq >= self.woken_seq:
                break
            drop, size = drop + 1, size - len(data)
        if drop:
            self.entries, self.size = self.entries[drop:], size


class Client:
    """One stream's place in its channel's feed."""

    write_bytes = 64 * 1024

    def __init__(self, channel, address, connection, access=None):
        self.channel = channel
        self.address = address
        self.connection = connection
        self.access = access  # the viewer's login it was opened with, for the hub to check
        self.cursor = channel.next_seq if channel.paused_at is None else channel.paused_at
        self.writing_since = None
        self.closed = False
        self.write_now = None  # while parked: the stream's write that never waits (True when all went)
        self._unparked = None

    def chunks(self, skip_until=None, park=None):
        """What the feed gets from now on, as bytes, a write's worth at a time, until closed.

        Readings up to the position ``skip_until`` (already replayed) are left out; until
        the feed is past that position in every shard (a replay reads Redis, which can be
        ahead of what the hub has heard), a reading sent is told where this stream stands,
        not where the feed does, so that its id never goes back. Once caught up and past it,
        ``park()`` is called, if given, instead of waiting.
        """
        channel = self.channel
        while not self.closed:
            self.writing_since = None
            changed, entries = channel.changed, channel.entries
            if not entries or entries[-1][0] < self.cursor:
                if skip_until and channel.position and channel.position.covers(skip_until):
                    skip_until = None  # what comes next is past it in every shard
                if park and not skip_until:
                    park()
                else:
                    changed.wait()
                continue
            start = self.cursor - entries[0][0]
            if start < 0:
                log.info("closed a stream client that fell behind the live feed")
                return
            parts, size = [], 0
            for seq, _, entry, data in entries[start:]:
                self.cursor = seq + 1
                if skip_until and entry:
                    shard, entry_id, position = entry
                    if skip_until.has(shard, entry_id):
                        continue
                    if not position.covers(skip_until):
                        data = data.replace(b"id:%s\n" % str(position).encode(),
                                            b"id:%s\n" % str(position.most(skip_until)).encode(), 1)
                parts.append(data)
                size += len(data)
                if size >= self.write_bytes:
                    break
            if parts:
                yield self.sending(b"".join(parts))

    def park(self, write_now):
        """Wait while the hub writes what comes with ``write_now(data)`` itself; back when
        a write did not go whole (the stream finishes it) or the client closed."""
        self._unparked = threading.Event()
        self.write_now = write_now
        self._unparked.wait()

    def unpark(self):
        unparked, self.write_now = self._unparked, None
        if unparked is not None:
            unparked.set()

    def sending(self, chunk):
        """``chunk``, noting that it is being written, so that a stalled write is found."""
        self.writing_since = time.monotonic()
        return chunk

    def close(self):
        """Mark it closed; a parked client wakes, a write stalled on its socket is cut short."""
        self.closed = True
        self.unpark()
        if self.writing_since is not None and self.connection is not None:
            try:  # through a duplicate, so the stalled write fails as if the browser had left
                with socket.fromfd(self.connection.fileno(), self.connection.family,
                                   socket.SOCK_STREAM) as same:
                    same.shutdown(socket.SHUT_RDWR)
            except OSError as error:
                log.info("could not cut a stalled stream short: %s", error)
