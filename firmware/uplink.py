"""Readings up to the server, exactly once: a bounded buffer, batches, and retries that the
server recognises by ``boot`` + ``seq``. While the server or Wi-Fi is away readings wait
here; the oldest are dropped (and counted) only when the buffer is full. When the server
asks for a pause (429 or 503 with ``Retry-After``), nothing is sent until it is over."""
import gc
import json
import time

try:
    import requests
except ImportError:
    import urequests as requests

BATCH = 20
REFUSED = (400, 413, 415, 422)  # the server will never take these readings: drop them
AUTH_FAULT = (401, 403)
PAUSE = (429, 503)  # the server is busy or over this device's rate: wait as Retry-After says
LONGEST_PAUSE = 3600


class Uplink:
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

    def add(self, reading):
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
            batch = self.pending[:BATCH]
            status = self._post(batch)
            if status == 400 and len(batch) > 1:
                batch = batch[:1]
                status = self._post(batch)
            if status is None or not (200 <= status < 300 or status in REFUSED):
                self.auth_refused = status in AUTH_FAULT
                return False
            if status in REFUSED:
                self.log("server refused reading seq %s (HTTP %d): dropped" % (batch[0].get("seq"), status))
            else:
                self.posted += len(batch)
            self.pending = self.pending[len(batch):]
        self.auth_refused = False
        return True

    def _post(self, batch):
        return self.call("POST", "/api/readings", batch, "upload")[0]

    def call(self, method, path, body, what):
        """One request to the server: its status, and its JSON answer if 200; (None, None)
        if it failed, ``what`` failing then in the log."""
        response = None
        try:
            response = requests.request(method, self.server + path, headers=self.headers, timeout=self.timeout,
                                        data=None if body is None else json.dumps(body).encode())
            status = response.status_code
            if status >= 300:
                self.log("server answered %d: %s" % (status, response.text[:120]))
            if status in PAUSE:
                self.pause(response.headers)
            return status, response.json() if status == 200 else None
        except (OSError, ValueError) as error:
            self.log("%s failed: %r" % (what, error))
            return None, None
        finally:
            if response is not None:
                response.close()
            gc.collect()

    def pause(self, headers):
        for name, value in headers.items():
            if name.lower() == "retry-after" and value.strip().isdigit():
                seconds = min(int(value), LONGEST_PAUSE)
                self.resume_at = time.ticks_add(time.ticks_ms(), seconds * 1000)
                self.log("the server asked for a pause: next upload in %d s" % seconds)
