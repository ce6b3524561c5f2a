"""The alert webhook: each alert POSTed as JSON (with its ``alerts`` entry ``id``) to
``WEBHOOK_URL`` (ntfy, Home Assistant, a chat hook), once, in the order the alerts
happened, retried with backoff; off the request path, so ingest never waits for it. A
hook that refuses an alert (4xx) is tried TRIES times, then the alert is let go; a hook
that is away (no answer, 5xx, 429: an ntfy server rebooting, the home line down at night)
is tried every LONGEST_WAIT at most until it is back, so no alert is lost meanwhile (what
waits is folded, below).
``duties.py`` runs one in every process.

Every process reads the ``alerts`` stream as the one consumer ``webhook`` of the group
``webhook``, but only the process that holds ``webhook-lease`` (a Redis key it renews
while it works) reads at a time, so order holds however many processes and instances
run. A process that dies while an alert is in hand never acknowledged it: whoever takes
the lease next first delivers what is pending, then goes on with what is new.

When alerts come faster than the hook takes them (a value flapping at a limit, a device
gone wild), each batch posts only the first and the last alert of each device and
metric, the last with ``"folded"``: how many between were left out. One noisy device
then costs the others a couple of posts a batch, not minutes of waiting, and the hook
still learns how each episode began and where it stands.
"""
import json
import logging
import os
import socket
import threading

import redis
import requests

from .metrics import count
from .shards import shards_of
from .store import ALERTS, WEBHOOK_LEASE, stream_id

log = logging.getLogger(__name__)

GROUP = CONSUMER = "webhook"
TRIES = 8  # for a hook that refuses an alert: 1 s doubling to about 2 min, then it is logged and let go
LONGEST_WAIT = 300  # seconds between tries while the hook is away
BATCH = 100

# KEYS: the lease. ARGV: who asks, for how many ms. 1 if it holds the lease now (taken or kept).
HOLD_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] or redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
# KEYS: the lease. ARGV: who lets it go. Only its holder's word ends it.
LET_GO = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Webhook:
    first_wait = 1.0
    timeout = 10
    lease_seconds = 30.0
    standby_seconds = 1.0  # between asks for the lease while another process holds it

    def __init__(self, client, url):
        self.redis = client
        self.url = url
        self.me = f"{socket.gethostname()}-{os.getpid()}-{id(self)}"
        self.stopping = threading.Event()
        self._hold = client.register_script(HOLD_LEASE)
        self._thread = threading.Thread(target=self._run, name="alert-webhook", daemon=True)
        self._thread.start()

    def stop(self):
        """Stop, and wait until the webhook's thread has let go of its Redis client (a read
        waits a second for new alerts; a post, up to ``timeout``), so the client may be closed;
        then let the lease go, so that another process (a reload's new worker) delivers at once."""
        self.stopping.set()
        self._thread.join(self.timeout + 2)
        if not self._thread.is_alive():
            try:
                self.redis.eval(LET_GO, 1, WEBHOOK_LEASE, self.me)
            except redis.exceptions.RedisError:
                pass  # away: the lease ends by itself

    def _run(self):
        failing = False
        while not self.stopping.is_set():
            try:
                if self._holds_lease():
                    self._join_group()
                    for start in ("0", ">"):  # first what a holder before us read but did not acknowledge
                        while self._holds_lease() and self._deliver_from(start):
                            pass
                else:
                    self.stopping.wait(self.standby_seconds)
                failing = False
            except redis.exceptions.RedisError as error:
                if not failing:
                    log.warning("alert webhook: %s; trying again every %g s", error, self.first_wait)
                failing = True
                self.stopping.wait(self.first_wait)

    def _holds_lease(self):
        return not self.stopping.is_set() and self._hold(keys=[WEBHOOK_LEASE],
                                                         args=[self.me, int(self.lease_seconds * 1000)])

    def _join_group(self):
        for key in shards_of(self.redis).each(ALERTS):
            try:
                self.redis.xgroup_create(key, GROUP, id="$", mkstream=True)
            except redis.exceptions.ResponseError:
                pass  # the group exists: another process made it

    def _deliver_from(self, start):
        """Deliver and acknowledge a batch of alerts from ``start`` (``0``: pending ones;
        ``>``: new ones, waiting a second for some), folded; False when there were none,
        or the lease was lost meanwhile. Each shard's stream is read in turn (a cluster
        reads no two in one call), waiting on each for its share of the second while none
        had any."""
        keys, found = shards_of(self.redis).each(ALERTS), False
        for key in keys:
            block = 1000 // len(keys) if start == ">" and not found else None
            replies = self.redis.xreadgroup(GROUP, CONSUMER, {key: start}, count=BATCH, block=block) or []
            entries = [entry for _, stream_entries in replies for entry in stream_entries]
            trimmed = [entry_id for entry_id, fields in entries if fields is None]  # pending, but trimmed since
            if trimmed:
                self.redis.xack(key, GROUP, *trimmed)
            for alert, entry_ids in fold(entries):
                if not self.deliver(json.dumps(alert)):
                    return False
                self.redis.xack(key, GROUP, *entry_ids)
            found = found or bool(entries)
        return found

    def deliver(self, body):
        """POST one alert, retrying with backoff while this process holds the lease; True
        once it is delivered or given up on, False if the lease went to another process."""
        wait, refused = self.first_wait, 0
        while True:
            try:
                answer = requests.post(self.url, data=body, timeout=self.timeout,
                                       headers={"Content-Type": "application/json"})
                if answer.ok:
                    count(self.redis, "webhook:delivered")
                    return True
                problem, away = f"HTTP {answer.status_code}", answer.status_code >= 500 or answer.status_code == 429
            except requests.RequestException as error:
                problem, away = str(error), True
            count(self.redis, "webhook:failed")
            refused = 0 if away else refused + 1
            if refused == TRIES:
                log.error("alert webhook: the hook refused %s %d times (%s): let go", body, TRIES, problem)
                count(self.redis, "webhook:given_up")
                return True
            log.warning("alert webhook: %s (%s); trying again in %g s", "the hook is away" if away else
                        f"refused {refused} of {TRIES} times", problem, wait)
            if not self._wait_holding(wait):
                return False
            wait = min(wait * 2, LONGEST_WAIT)

    def _wait_holding(self, seconds):
        """Sleep ``seconds``, renewing the lease; False if it was lost or we are stopping."""
        while seconds > 0:
            step = min(seconds, self.lease_seconds / 3)
            if self.stopping.wait(step) or not self._holds_lease():
                return False
            seconds -= step
        return True


def fold(entries):
    """The posts for a batch of ``alerts`` entries, in order, each with the entry ids it
    answers for: per device and metric the first alert, and the last with ``folded``."""
    runs = {}
    for entry_id, fields in entries:
        if fields is not None:
            alert = dict(json.loads(fields["json"]), id=entry_id)
            runs.setdefault((alert["device"], alert.get("metric")), []).append(alert)
    posts = []
    for run in runs.values():
        posts.append((run[0], [run[0]["id"]]))
        if len(run) > 2:
            posts.append((dict(run[-1], folded=len(run) - 2), [alert["id"] for alert in run[1:]]))
        elif len(run) == 2:
            posts.append((run[1], [run[1]["id"]]))
    return sorted(posts, key=lambda post: stream_id(post[0]["id"]))
