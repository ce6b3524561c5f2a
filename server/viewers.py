"""Viewer accounts: who may open the dashboard, the live stream and the read API.

While no viewer exists, reading is open, as suits a LAN. Once the owner adds one
(``flask --app server viewers add ana``), every read needs a login: the page redirects
to ``/login``, the API and ``/stream`` answer 401. Passwords are kept only as
werkzeug's scrypt hashes; a login is Flask's signed session cookie (HttpOnly,
SameSite=Lax), which a password change or a removal ends within ``ACCOUNTS_TTL``
seconds, open live streams included. Logging out ends it for good, a replayed cookie
too: its session id is kept in ``logged-out`` until the cookie would have expired.
Device tokens never open these pages, and a viewer's session never posts readings:
uploads take device tokens.

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
address waits behind one attempt per attacking address; a known one, behind none.
"""
import collections
import contextlib
import functools
import hashlib
import ipaddress
import math
import re
import secrets
import threading
import time

import click
import redis
from flask import Blueprint, abort, current_app, redirect, render_template, request, session, url_for
from flask.cli import AppGroup
from flask.sessions import SecureCookieSessionInterface
from gevent import get_hub, monkey
from werkzeug.exceptions import ServiceUnavailable, TooManyRequests
from werkzeug.security import check_password_hash, generate_password_hash

from .store import LOGGED_OUT, SESSION_KEY, VIEWERS, get_redis

bp = Blueprint("viewers", __name__)
ACCOUNTS_TTL = 2.0
FAILURE_WINDOW = 60  # seconds over which LOGIN_FAILURES are counted
HASHING_AT_ONCE = 4
KNOWN_DAYS = 30
BROWSER_COOKIE = "sensorcast-browser"
BROWSER_ID = re.compile(r"[A-Za-z0-9_-]{22}")
LOCAL_PATH = re.compile(r"/(?![/\\])[^\x00-\x20\x7f\\]*")
# Checked against when the name is unknown, so a wrong name takes as long as a wrong password.
UNKNOWN = generate_password_hash(secrets.token_hex())


# KEYS as ``_attempt_keys`` names them; ARGV: LOGIN_FAILURES, FAILURE_WINDOW, how long a
# check may take. Returns {0, 1 if the name logged in from this address or browser before}
# once the attempt is counted (go ahead), {the seconds to wait, 0}, or {-1, 0} while
# another attempt from the address is being checked.
_BEGIN_ATTEMPT = """
local known = redis.call('EXISTS', KEYS[4], KEYS[5]) > 0
local wait = 0
for i = 1, 2 do
  if not (i == 2 and known) and tonumber(redis.call('GET', KEYS[i]) or 0) >= tonumber(ARGV[1]) then
    wait = math.max(wait, redis.call('TTL', KEYS[i]), 1)
  end
end
if wait > 0 then return {wait, 0} end
if not redis.call('SET', KEYS[3], 1, 'NX', 'EX', ARGV[3]) then return {-1, 0} end
for i = 1, 2 do
  redis.call('SET', KEYS[i], 0, 'NX', 'EX', ARGV[2])
  redis.call('INCR', KEYS[i])
end
return {0, known and 1 or 0}
"""
# A login that succeeded (same KEYS): its attempt is forgiven, its address and browser
# known ARGV[1] s.
_LOGGED_IN = """
for i = 1, 2 do
  if tonumber(redis.call('GET', KEYS[i]) or 0) > 0 then redis.call('DECR', KEYS[i]) end
end
redis.call('SET', KEYS[4], 1, 'EX', ARGV[1])
redis.call('SET', KEYS[5], 1, 'EX', ARGV[1])
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


def _stamp(password_hash):
    """Ties a session to the password it was opened with: a new password ends it."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


class Accounts:
    """Every viewer's password stamp and the sessions logged out, as this process last read
    them: at most ``ACCOUNTS_TTL`` seconds old, so that ten thousand dashboards reconnecting,
    or the live stream checking each of its clients every second, cost Redis one read."""

    def __init__(self, client):
        self.redis = client
        self.read_at = -ACCOUNTS_TTL
        self.stamps, self.logged_out = {}, set()

    def allows(self, access):
        """Whether a login, ``(viewer, stamp, session id)`` or None, may read now."""
        self._refresh()
        if not self.stamps:
            return True
        viewer, stamp, session_id = access or (None, None, None)
        return stamp is not None and self.stamps.get(viewer) == stamp and session_id not in self.logged_out

    def log_out(self, session_id, until):
        """End a session for good: its cookie, replayed, is refused until it expires anyway."""
        now = time.time()
        expired = [sid for sid, end in self.redis.hgetall(LOGGED_OUT).items() if float(end) < now]
        with self.redis.pipeline() as pipe:
            pipe.hset(LOGGED_OUT, session_id, until)
            if expired:
                pipe.hdel(LOGGED_OUT, *expired)
            pipe.execute()
        self.read_at = -ACCOUNTS_TTL

    def _refresh(self):
        now = time.monotonic()
        if now - self.read_at >= ACCOUNTS_TTL:
            self.read_at = now  # the requests meanwhile use the copy they have
            with self.redis.pipeline(transaction=False) as pipe:
                accounts, logged_out = pipe.hgetall(VIEWERS).hkeys(LOGGED_OUT).execute()
            self.stamps = {name: _stamp(stored) for name, stored in accounts.items()}
            self.logged_out = set(logged_out)


def get_accounts():
    """The process's one ``Accounts``, made on first use."""
    accounts = current_app.extensions.get("sensorcast.viewers")
    if accounts is None:
        accounts = current_app.extensions["sensorcast.viewers"] = Accounts(get_redis())
    return accounts


def session_access():
    """This request's login as ``Accounts.allows`` takes it, or None."""
    if "viewer" not in session:
        return None
    return session["viewer"], session.get("stamp"), session.get("sid")


def login_needed():
    """True while viewers exist and this request carries no valid login."""
    return not get_accounts().allows(session_access())


def viewer_required(view):
    @functools.wraps(view)
    def checked(*args, **kwargs):
        if login_needed():
            abort(401, "log in at /login to read this server's data")
        return view(*args, **kwargs)
    return checked


@bp.route("/login", methods=("GET", "POST"))
def login():
    error = None
    if request.method == "POST":
        name, password = request.form.get("name", ""), request.form.get("password", "")
        browser = request.cookies.get(BROWSER_COOKIE, "")
        browser = browser if BROWSER_ID.fullmatch(browser) else secrets.token_urlsafe(16)
        client, keys = get_redis(), _attempt_keys(request.remote_addr, name, browser)
        known = _begin_attempt(client, keys)
        try:
            stored = client.hget(VIEWERS, name) if name else None
            if _password_matches(stored or UNKNOWN, password, known) and stored:
                client.register_script(_LOGGED_IN)(keys, [KNOWN_DAYS * 24 * 3600])
                session.clear()
                session.permanent = True
                session.update(viewer=name, stamp=_stamp(stored), sid=secrets.token_urlsafe(16))
                answer = redirect(_local(request.args.get("next")))
                answer.set_cookie(BROWSER_COOKIE, browser, max_age=KNOWN_DAYS * 24 * 3600, path="/login",
                                  secure=request.is_secure, httponly=True, samesite="Strict")
                return answer
        finally:
            client.delete(keys[2])
        error = "Wrong name or password."
    return render_template("login.html", error=error), 401 if error else 200


def _attempt_keys(address, name, browser):
    """Attempts counted for the address (an IPv6 one by its /64), for the name; the
    address's attempt being checked now; the name's logins from the address, from the
    browser (``_BEGIN_ATTEMPT`` and ``_LOGGED_IN``)."""
    named = hashlib.sha256(name.encode()).hexdigest()[:32]
    if ":" in address:
        address = str(ipaddress.ip_network(address + "/64", strict=False).network_address) + "/64"
    return [f"login-failures:address:{address}", f"login-failures:name:{named}",
            f"login-checking:{address}", f"login-known:{named}:{address}", f"login-known:{named}:browser:{browser}"]


def _begin_attempt(client, keys):
    """Count this attempt, or refuse it with 429 (see the module's docstring); whether the
    name logged in from this address or browser before."""
    checking_for = FAILURE_WINDOW + math.ceil(current_app.config["LOGIN_QUEUE_SECONDS"])
    script = client.register_script(_BEGIN_ATTEMPT)
    wait, known = script(keys, [current_app.config["LOGIN_FAILURES"], FAILURE_WINDOW, checking_for])
    if wait < 0:
        raise TooManyRequests("a login from this address is being checked; wait for its answer", retry_after=1)
    if wait:
        raise TooManyRequests(f"too many failed logins; try again in {wait} s", retry_after=wait)
    return bool(known)


def _password_matches(password_hash, password, known):
    """``check_password_hash`` once it is this login's turn, off the worker's event loop
    when gevent runs it: a check takes about 0.1 s of CPU, which would hold every other
    connection of the worker."""
    with _hashing.turn(current_app.config["LOGIN_QUEUE_SECONDS"], known):
        if not monkey.is_module_patched("socket"):
            return check_password_hash(password_hash, password)
        return get_hub().threadpool.apply(check_password_hash, (password_hash, password))


@bp.post("/logout")
def logout():
    if "sid" in session:
        lifetime = current_app.permanent_session_lifetime.total_seconds()
        get_accounts().log_out(session["sid"], time.time() + lifetime)
    session.clear()
    return redirect(url_for("viewers.login"))


def _local(target):
    """Only a path on this server: never an open redirect. Browsers drop tabs and
    newlines from a URL, so ``/<tab>/evil.example`` would be ``//evil.example``."""
    if target and LOCAL_PATH.fullmatch(target):
        return target
    return url_for("dashboard.index")


class SharedKeySessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, signed with ``SECRET_KEY`` when one is set, else with
    a random key kept in Redis, so that every process and instance shares it."""

    def get_signing_serializer(self, app):
        if not app.secret_key:
            try:
                client = get_redis()
                client.set(SESSION_KEY, secrets.token_hex(32), nx=True)
                app.secret_key = client.get(SESSION_KEY)
            except redis.exceptions.RedisError:
                return None  # no session for now; the request meets Redis's 503 itself
        return super().get_signing_serializer(app)


viewers_cli = AppGroup("viewers", help="Manage the accounts that may read the dashboard.")


@viewers_cli.command("add")
@click.argument("name")
@click.password_option()
def add_viewer(name, password):
    """Add NAME, or give NAME a new password; from then on reading needs a login."""
    get_redis().hset(VIEWERS, name, generate_password_hash(password))
    click.echo(f"{name} can log in; the dashboard, /stream and the read API now need a login")


@viewers_cli.command("remove")
@click.argument("name")
def remove_viewer(name):
    """Remove NAME; with no viewer left, reading is open again."""
    client = get_redis()
    client.hdel(VIEWERS, name)
    left = client.hlen(VIEWERS)
    click.echo(f"removed {name}; " + (f"{left} viewer(s) left" if left else "reading is open to anyone again"))


@viewers_cli.command("list")
def list_viewers():
    for name in sorted(get_redis().hkeys(VIEWERS)):
        click.echo(name)
