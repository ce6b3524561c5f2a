"""Readings up to the server, exactly once: a bounded buffer, batches, and retries that the
server recognises by ``boot`` + ``seq``, which are stamped here. While the server or Wi-Fi
is away readings wait here; the oldest are dropped (and counted) only when the buffer is
full. When the server asks for a pause (429, 503 or 507 with ``Retry-After``), nothing is sent
until it is over.

The server takes a reading for a retry when it holds the same boot with a seq as high.
Someone with this board's token could post one seq far ahead under its boot, and every
later reading would be answered "duplicate" and never stored. So each answer's ``known``
boot and seq are checked against the seqs this board gave out: a higher one means its
boot is poisoned, and it starts a new boot id and sends every reading of the old one it
still holds again under it (one that may have been stored before the poisoning is then
stored twice rather than lost). A 409 says the same of a boot outright: the server holds
other values at a boot and seq of this batch (someone got there first), and stored none of it.

Redirects are not followed: the server never sends one, and requests follows a loop of
them until RuntimeError, each hop without a timeout. A 3xx is a failed request. Whoever
can answer the board's requests (a hostile Wi-Fi, a spoofed DNS name) may lie: a pause is
never longer than _LONGEST_PAUSE. An answer sent a byte at a time is bounded by the
watchdog only (a deadline read here did not fit the MQTT node's heap)."""
import binascii
import gc
import json
import os
import time
from micropython import const

try:
    import requests
except ImportError:
    import urequests as requests

request = requests.request  # every request goes out through this: its redirects through the next


def refuse_redirect(method, url, *args):
    """What requests calls to follow a redirect (its module's ``request``)."""
    raise ValueError("redirect to %s refused" % url)


requests.request = refuse_redirect

_BATCH = const(20)
_REFUSED = const((400, 413, 415, 422))  # the server will never take these readings: drop them
_AUTH_FAULT = const((401, 403))
_PAUSE = const((429, 503, 507))  # the server is busy, full or over this device's rate: wait as Retry-After says
AWAY = (429, 502, 503, 504, 507)  # or a gateway says it is away: not the readings' fault, nor a release's
_CONFLICT = const(409)  # another reading holds a boot and seq of the batch: it must go under a new boot
_LONGEST_PAUSE = const(120)  # the server asks for seconds (a minute at most): a forged hour would silence the board


class Uplink:
    kept_headers = ("retry-after",)  # of a response's headers: the one call() reads

    def __init__(self, server, token, capacity, timeout, log):
        self.server = server.rstrip("/")
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = "Bearer " + token
        self.capacity = capacity
        self.timeout = timeout
        self.log = log
        self.pending = []
        self.dropped = 0
        self.auth_refused = False
        self.resume_at = None
        self.posted = 0
        self.away = False  # the last request got no answer, or one saying the server is away or busy
        self.boot, self.seq = new_boot(), 0

    def add(self, reading):
        """Stamp ``reading`` with this boot and the next seq, and queue it."""
        self.seq += 1
        reading["boot"], reading["seq"] = self.boot, self.seq
        self.pending.append(reading)
        if len(self.pending) > self.capacity:
            self.pending.pop(0)
            self.dropped += 1
            self.log("buffer full: dropped the oldest reading (%d so far)" % self.dropped)

    def send(self):
        """Upload what is pending, oldest first; True when nothing is left."""
        if self.resume_at is not None:
            if time.ticks_diff(self.resume_at, time.ticks_ms()) > 0:
                return not self.pending
            self.resume_at = None
        while self.pending:
            done = self.deliver(self.pending[:_BATCH])
            if not done:
                return False
            self.pending = self.pending[done:]
        self.auth_refused = False
        return True

    def deliver(self, batch):
        """POST ``batch``: how many of its first readings are done with (stored, or refused
        for good), 0 when they must wait. The MQTT uplink (mqtt_uplink.py) publishes instead."""
        status, answer = self.call("POST", "/api/readings", batch, "upload")
        if status == 400 and len(batch) > 1:
            batch = batch[:1]
            status, answer = self.call("POST", "/api/readings", batch, "upload")
        known = answer.get("known") if answer else None
        if known and (status == _CONFLICT or known.get("boot") == self.boot and (known.get("seq") or 0) > self.seq):
            self.leave_boot(known)
            return 0  # sent again under the new boot next time
        if status is None or not (200 <= status < 300 or status in _REFUSED):
            self.auth_refused = status in _AUTH_FAULT
            return 0
        if status in _REFUSED:
            self.log("server refused reading seq %s (HTTP %d): dropped" % (batch[0].get("seq"), status))
        else:
            self.posted += len(batch)
        return len(batch)

    def leave_boot(self, known):
        """The server holds seq ``known["seq"]`` of boot ``known["boot"]``, not this board's
        reading: every reading of that boot still here gets a new boot id and seqs from 1,
        and the readings to come follow them."""
        poisoned = known["boot"]
        self.boot, self.seq = new_boot(), 0
        for reading in self.pending:
            if reading["boot"] == poisoned:
                self.seq += 1
                reading["boot"], reading["seq"] = self.boot, self.seq
        self.log("boot %s poisoned (server holds seq %s); %d readings resent as %s"
                 % (poisoned, known["seq"], self.seq, self.boot))

    def call(self, method, path, body, what):
        """One request to the server: its status, and its JSON answer if 200, 201 or 409; (None, None)
        if it failed, ``what`` failing then in the log."""
        response = None
        try:
            response = self.open(method, path, body)
            status = response.status_code
            self.away = status in AWAY
            if status >= 300:  # at most 120 bytes of the body: a proxy's error page may be larger than the heap
                said = response.content[:120] if status == _CONFLICT else response.raw.read(120)
                self.log("server answered %d: %s" % (status, said))
            pause = response.headers.get("retry-after", "") if status in _PAUSE else ""
            if pause.isdigit():
                seconds = min(int(pause), _LONGEST_PAUSE)
                self.resume_at = time.ticks_add(time.ticks_ms(), seconds * 1000)
                self.log("the server asked for a pause: next upload in %d s" % seconds)
            return status, response.json() if status in (200, 201, _CONFLICT) else None
        except Exception as error:  # whatever a server or the network does, it is one failed call
            self.log("%s failed: %r" % (what, error))
            self.away = True
            return None, None
        finally:
            if response is not None:
                response.close()
            gc.collect()

    def open(self, method, path, body=None):
        """The server's response to one request (the caller closes it); a redirect raises ValueError.
        Its ``headers`` hold only those named in ``kept_headers``."""
        return request(method, self.server + path, headers=self.headers, timeout=self.timeout,
                       data=None if body is None else json.dumps(body).encode(), parse_headers=self.keep_header)

    def keep_header(self, line, headers):
        """requests' parse_headers: a header ``line`` goes into ``headers`` (its name in lower case) only
        if named in ``kept_headers``; a dict of all of them would cut up the heap at every request."""
        name, value = line.decode().split(":", 1)  # as requests splits them
        name = name.lower()
        if name in self.kept_headers:
            headers[name] = value.strip()


def new_boot():
    """A random id for one start of the board (8 hex digits)."""
    return binascii.hexlify(os.urandom(4)).decode()
