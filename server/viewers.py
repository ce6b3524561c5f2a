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

How a login is checked without letting password guessing through: ``logins.py``.
"""
import functools
import hashlib
import re
import secrets
import time

import click
import redis
from flask import Blueprint, abort, current_app, redirect, render_template, request, session, url_for
from flask.cli import AppGroup
from flask.sessions import SecureCookieSessionInterface
from werkzeug.security import generate_password_hash

from .connections import get_redis
from .logins import Attempt
from .store import LOGGED_OUT, SESSION_KEY, VIEWERS

bp = Blueprint("viewers", __name__)
ACCOUNTS_TTL = 2.0
LOCAL_PATH = re.compile(r"/(?![/\\])[^\x00-\x20\x7f\\]*")


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
            try:
                with self.redis.pipeline(transaction=False) as pipe:
                    accounts, logged_out = pipe.hgetall(VIEWERS).hkeys(LOGGED_OUT).execute()
            except redis.exceptions.RedisError:
                self.read_at = -ACCOUNTS_TTL  # not read: the next check reads again, and says so
                raise
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
        client = get_redis()
        with Attempt(client, request.remote_addr, name) as attempt:
            stored = client.hget(VIEWERS, name) if name else None
            if attempt.password_matches(stored, password) and stored:
                session.clear()
                session.permanent = True
                session.update(viewer=name, stamp=_stamp(stored), sid=secrets.token_urlsafe(16))
                answer = redirect(_local(request.args.get("next")))
                attempt.succeeded(answer)
                return answer
        error = "Wrong name or password."
    return render_template("login.html", error=error), 401 if error else 200


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
    if not client.hdel(VIEWERS, name):
        raise click.UsageError(f"no viewer {name!r}: `viewers list` names them")
    left = client.hlen(VIEWERS)
    click.echo(f"removed {name}; " + (f"{left} viewer(s) left" if left else "reading is open to anyone again"))


@viewers_cli.command("list")
def list_viewers():
    names = sorted(get_redis().hkeys(VIEWERS))
    click.echo("\n".join(names) if names else "no viewers: reading is open to anyone (`viewers add NAME`)")
