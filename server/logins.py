"""How a login attempt is checked without letting password guessing through.

Logins must hold off password guessing without letting a guesser lock a viewer out or
crowd real logins away. So an attempt is counted against its client address (an IPv6
address by its /64, what one subscriber gets) and its viewer name before the password is
checked, in one Redis call, so that attempts sent at once cannot slip past the limit
together (a login that succeeds is forgiven); an address has one password being checked
at a time (another attempt meanwhile: 429 at once); past ``LOGIN_FAILURES`` attempts a
minute from an address, or for a name, 429. A name is never locked out of a place it
logged in from within ``KNOWN_DAYS``: an address, or a browser (the ``BROWSER_COOKIE`` it
was given, which outlives logouts, as OWASP's "device cookies"), so failing ana's
password from elsewhere cannot keep ana out at home, nor out of her phone on a new
network. A check costs about 0.1 s of CPU, so at most ``HASHING_AT_ONCE`` run at once in
a process; the others wait their turn, first come first served, for up to
``LOGIN_QUEUE_SECONDS`` (then 503, which still counts), a name's login from a known place
ahead of every other. With one attempt per address in the queue, a viewer on a new
address waits behind one attempt per attacking address; a known one, behind none. A
name logs in ``LOGINS_AN_HOUR`` times an hour at most (then 429): each login that logs out
is kept in ``logged-out`` for the cookie's life, and each from a new browser known for
``KNOWN_DAYS``, so a password's holder logging in and out in a loop would grow Redis
without end.
"""
import collections
import contextlib
import hashlib
import math
import re
import secrets
import threading

from flask import current_app, request
from gevent import get_hub, monkey
from werkzeug.exceptions import ServiceUnavailable, TooManyRequests
from werkzeug.security import check_password_hash, generate_password_hash

from .guard import sender
from .shards import shards_of

FAILURE_WINDOW = 60  # seconds over which LOGIN_FAILURES are counted
LOGINS_AN_HOUR = 30  # a name's successful logins: a person logs in a few times a month
HASHING_AT_ONCE = 4
KNOWN_DAYS = 30
BROWSER_COOKIE = "sensorcast-browser"
BROWSER_ID = re.compile(r"[A-Za-z0-9_-]{22}")
# Checked against when the name is unknown, so a wrong name takes as long as a wrong password.
UNKNOWN = generate_password_hash(secrets.token_hex())


# KEYS as ``_attempt_keys`` names them; ARGV: LOGIN_FAILURES, FAILURE_WINDOW, how long a
# check may take, LOGINS_AN_HOUR. Returns {0, 1 if the name logged in from this address or
# browser before} once the attempt is counted (go ahead), {the seconds to wait, 0} (and
# 'logins' when the name logged in too often), or {-1, 0} while another attempt from the
# address is being checked.
_BEGIN_ATTEMPT = """
local known = redis.call('EXISTS', KEYS[4], KEYS[5]) > 0
local wait = 0
for i = 1, 2 do
  if not (i == 2 and known) and tonumber(redis.call('GET', KEYS[i]) or 0) >= tonumber(ARGV[1]) then
    wait = math.max(wait, redis.call('TTL', KEYS[i]), 1)
  end
end
if wait > 0 then return {wait, 0} end
if tonumber(redis.call('GET', KEYS[6]) or 0) >= tonumber(ARGV[4]) then
  return {math.max(redis.call('TTL', KEYS[6]), 1), 0, 'logins'}
end
if not redis.call('SET', KEYS[3], 1, 'NX', 'EX', ARGV[3]) then return {-1, 0} end
for i = 1, 2 do
  redis.call('SET', KEYS[i], 0, 'NX', 'EX', ARGV[2])
  redis.call('INCR', KEYS[i])
end
return {0, known and 1 or 0}
"""
# A login that succeeded (same KEYS): its attempt is forgiven, its address and browser
# known ARGV[1] s, and it counts among its name's logins of the hour.
_LOGGED_IN = """
for i = 1, 2 do
  if tonumber(redis.call('GET', KEYS[i]) or 0) > 0 then redis.call('DECR', KEYS[i]) end
end
redis.call('SET', KEYS[4], 1, 'EX', ARGV[1])
redis.call('SET', KEYS[5], 1, 'EX', ARGV[1])
redis.call('SET', KEYS[6], 0, 'NX', 'EX', 3600)
redis.call('INCR', KEYS[6])
"""


class HashingQueue:
    """At most ``slots`` password checks at once; the others wait their turn in arrival
    order, known ones first (a freed slot goes to the first in line, never to a newcomer)."""

    def __init__(self, slots):
        self.free = slots
        self.lines = (collections.deque(), collections.deque())  # logins from known places, then the others
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def turn(self, patience, known=False):
        """Hold a slot for the ``with`` block, after waiting at most ``patience`` seconds (else 503)."""
        ready, line = threading.Event(), self.lines[0 if known else 1]
        with self.lock:
            line.append(ready)
            self._hand_on()
        try:
            if not ready.wait(patience):
                raise ServiceUnavailable("too many logins at once; try again shortly",
                                         retry_after=current_app.config["RETRY_AFTER"])
            yield
        finally:
            with self.lock:
                if ready.is_set():
                    self.free += 1
                else:
                    line.remove(ready)
                self._hand_on()

    def _hand_on(self):
        for line in self.lines:
            while self.free and line:
                self.free -= 1
                line.popleft().set()


_hashing = HashingQueue(HASHING_AT_ONCE)


class Attempt:
    """One login attempt, a context manager: counted when made (or refused with 429), its
    password checked in its turn, and once it succeeds, its address and browser known for
    the name."""

    def __init__(self, client, address, name):
        self.client = client
        browser = request.cookies.get(BROWSER_COOKIE, "")
        self.browser = browser if BROWSER_ID.fullmatch(browser) else secrets.token_urlsafe(16)
        self.keys = _attempt_keys(shards_of(client).home, address, name, self.browser)
        self.known = _begin_attempt(client, self.keys)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.client.delete(self.keys[2])

    def password_matches(self, password_hash, password):
        """Whether ``password`` matches ``password_hash`` (None: an unknown name, checked as
        long all the same)."""
        return _password_matches(password_hash or UNKNOWN, password, self.known)

    def succeeded(self, answer):
        """Forgive the attempt, and know its address and browser (a cookie on ``answer``)."""
        self.client.register_script(_LOGGED_IN)(self.keys, [KNOWN_DAYS * 24 * 3600])
        answer.set_cookie(BROWSER_COOKIE, self.browser, max_age=KNOWN_DAYS * 24 * 3600, path="/login",
                          secure=request.is_secure, httponly=True, samesite="Strict")


def _attempt_keys(prefix, address, name, browser):
    """Attempts counted for the address (an IPv6 one by its /64), for the name; the
    address's attempt being checked now; the name's logins from the address, from the
    browser; its logins of the hour (``_BEGIN_ATTEMPT`` and ``_LOGGED_IN``); each starting
    with ``prefix``, so that a cluster has them in one slot."""
    named, address = hashlib.sha256(name.encode()).hexdigest()[:32], sender(address)
    return [prefix + key for key in (f"login-failures:address:{address}", f"login-failures:name:{named}",
                                     f"login-checking:{address}", f"login-known:{named}:{address}",
                                     f"login-known:{named}:browser:{browser}", f"logins:name:{named}")]


def _begin_attempt(client, keys):
    """Count this attempt, or refuse it with 429 (see the module's docstring); whether the
    name logged in from this address or browser before."""
    checking_for = FAILURE_WINDOW + math.ceil(current_app.config["LOGIN_QUEUE_SECONDS"])
    script = client.register_script(_BEGIN_ATTEMPT)
    wait, known, *why = script(keys, [current_app.config["LOGIN_FAILURES"], FAILURE_WINDOW, checking_for,
                                      LOGINS_AN_HOUR])
    if wait < 0:
        raise TooManyRequests("a login from this address is being checked; wait for its answer", retry_after=1)
    if wait:
        what = f"{LOGINS_AN_HOUR} logins of this name in an hour" if why else "too many failed logins"
        raise TooManyRequests(f"{what}; try again in {wait} s", retry_after=wait)
    return bool(known)


def _password_matches(password_hash, password, known):
    """``check_password_hash`` once it is this login's turn, off the worker's event loop
    when gevent runs it: a check takes about 0.1 s of CPU, which would hold every other
    connection of the worker."""
    with _hashing.turn(current_app.config["LOGIN_QUEUE_SECONDS"], known):
        if not monkey.is_module_patched("socket"):
            return check_password_hash(password_hash, password)
        return get_hub().threadpool.apply(check_password_hash, (password_hash, password))
