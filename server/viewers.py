"""Viewer accounts: who may open the dashboard, the live stream and the read API.

While no viewer exists, reading is open, as suits a LAN. Once the owner adds one
(``flask --app server viewers add ana``), every read needs a login: the page redirects
to ``/login``, the API and ``/stream`` answer 401. Passwords are kept only as
werkzeug's scrypt hashes; a login is Flask's signed session cookie (HttpOnly,
SameSite=Lax), which a password change or a removal ends within ``ACCOUNTS_TTL``
seconds. Device tokens never open these pages, and a viewer's session never posts
readings: uploads take device tokens.
"""
import functools
import hashlib
import secrets
import time

import click
import redis
from flask import Blueprint, abort, current_app, redirect, render_template, request, session, url_for
from flask.cli import AppGroup
from flask.sessions import SecureCookieSessionInterface
from werkzeug.security import check_password_hash, generate_password_hash

from .store import SESSION_KEY, VIEWERS, get_redis

bp = Blueprint("viewers", __name__)
ACCOUNTS_TTL = 2.0
# Checked against when the name is unknown, so a wrong name takes as long as a wrong password.
UNKNOWN = generate_password_hash(secrets.token_hex())


def _stamp(password_hash):
    """Ties a session to the password it was opened with: a new password ends it."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def login_needed():
    """True while viewers exist and this request carries no valid login."""
    accounts = _accounts()
    if not accounts:
        return False
    stored = accounts.get(session.get("viewer", ""))
    return stored is None or session.get("stamp") != _stamp(stored)


def _accounts():
    """Every viewer's password hash, as this process last read them: at most ``ACCOUNTS_TTL``
    seconds old, so that ten thousand dashboards reconnecting cost Redis one read."""
    cache = current_app.extensions.setdefault("sensorcast.viewers", {"read_at": -ACCOUNTS_TTL, "accounts": {}})
    now = time.monotonic()
    if now - cache["read_at"] >= ACCOUNTS_TTL:
        cache["read_at"] = now  # the requests meanwhile use the copy they have
        cache["accounts"] = get_redis().hgetall(VIEWERS)
    return cache["accounts"]


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
        name = request.form.get("name", "")
        stored = get_redis().hget(VIEWERS, name) if name else None
        if check_password_hash(stored or UNKNOWN, request.form.get("password", "")) and stored:
            session.clear()
            session.permanent = True
            session.update(viewer=name, stamp=_stamp(stored))
            return redirect(_local(request.args.get("next")))
        error = "Wrong name or password."
    return render_template("login.html", error=error), 401 if error else 200


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("viewers.login"))


def _local(target):
    """Only a path on this server: never an open redirect."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
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
