"""Sensorcast's server: readings in over HTTP, kept in Redis, out to browsers as live events.

Configuration flows one way: the defaults below, then the environment (``REDIS_URL``,
and every ``SENSORCAST_<NAME>`` as ``<NAME>``, its value read as JSON where it parses),
then ``test_config``. The README's configuration table lists each name.
"""
import logging
import math
import os
import pathlib

import click
import redis
from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from .connections import UNREACHABLE, BadSetting
from .loglimit import LinesPerMinute
from .ratelimit import RateLimited

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "var"
SERVER_URL_FILE = "server-url"  # in make run's data folder while it runs: where make simulate posts

DEFAULTS = {
    "REDIS_URL": f"unix://{DATA_DIR / 'redis.sock'}",
    "REDIS_MAXMEMORY": "1gb",  # the embedded Redis's memory cap
    "REDIS_SENTINELS": "",  # host:port,… of Redis Sentinels: then the primary they know as REDIS_SERVICE
    "REDIS_SERVICE": "sensorcast",
    "REDIS_CLUSTER": "",  # host:port,… of some of a Redis Cluster's nodes: then the keys are split over it…
    "REDIS_SHARDS": 6,  # …in this many shards, fixed for the life of the data (shards.py)
    "WAIT_REPLICAS": 0,  # an upload's 201 waits until this many replicas have it (Redis's WAIT)…
    "WAIT_MS": 1000,  # …for up to this long, else 503: the board sends it again, and it is stored once
    "AUTH": True,
    "RETENTION": 7 * 24 * 3600,
    "STREAM_MAXLEN": 100_000,
    "MAX_REPLAY": 5000,  # readings a reconnecting browser gets replayed at most (further back: a reset)
    "HISTORY_MAXLEN": 200_000,
    "MAX_DEVICE_FIELDS": 64,
    "OFFLINE_AFTER": 600,
    "HEARTBEAT": 15,
    "RETRY_MS": 3000,
    "MAX_STREAMS": 5000,
    "MAX_STREAMS_PER_ADDRESS": 100,
    "CLIENT_BUFFER": 1024 * 1024,
    "CLIENT_LAG": 30,
    "REDIS_CONNECTIONS": 32,
    "TRUSTED_PROXIES": 0,
    "MAX_BATCH": 500,
    "MAX_FUTURE": 300,
    "MAX_CONTENT_LENGTH": 256 * 1024,
    "RETRY_AFTER": 5,
    "RATE_LIMIT": 10,
    "RATE_BURST": 30,
    "READINGS_RATE_LIMIT": 50,
    "READINGS_BURST": 2000,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "LOGIN_FAILURES": 10,
    "LOGIN_QUEUE_SECONDS": 3,
    "BODY_TIMEOUT": 10,
    "BODIES_PER_ADDRESS": 20,
    "ALLOWED_HOSTS": [],
    "WEBHOOK_URL": "",
    "ALERT_BURST": 10,  # a device's threshold alerts at once, then one every ALERT_EVERY seconds
    "ALERT_EVERY": 60,
    "MQTT_URL": "",
    "MQTT_CA_FILE": "",
    "MQTT_CLIENT_ID": "",  # the client id's prefix; unset: sensorcast-<hostname>
    "MQTT_SESSION_EXPIRY": 7 * 24 * 3600,
    "MQTT_ADOPT_AFTER": 10,
    "HOMEASSISTANT_PREFIX": "homeassistant",  # Home Assistant's discovery prefix; "": no discovery
    "METRICS_TOKEN": "",
}


def create_app(test_config=None):
    app = Flask(__name__)
    app.config.from_mapping(DEFAULTS)
    if os.environ.get("REDIS_URL"):
        app.config["REDIS_URL"] = os.environ["REDIS_URL"]
    app.config.from_prefixed_env("SENSORCAST")
    if test_config:
        app.config.from_mapping(test_config)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S %z")  # as gunicorn's own lines, so an outage's lines line up

    from . import alerts, api, dashboard, devices, firmware, guard, history, ingest, metrics, viewers
    from .auth import devices_cli
    from .duties import Duties
    from .stream import sse

    app.wsgi_app = ingest.FastUploads(app, app.wsgi_app, SECURITY_HEADERS)
    if app.config["TRUSTED_PROXIES"]:
        proxies = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)
    app.before_request(guard.check_request)
    app.register_blueprint(ingest.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(history.bp)
    app.register_blueprint(alerts.bp)
    app.register_blueprint(devices.bp)
    app.register_blueprint(firmware.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(sse, url_prefix="/stream")
    app.register_blueprint(viewers.bp)
    app.register_blueprint(metrics.bp)
    app.session_interface = viewers.SharedKeySessions()
    for group in (devices_cli, viewers.viewers_cli, alerts.thresholds_cli):
        app.cli.add_command(ReachingRedis(group))
    app.extensions["sensorcast.duties"] = Duties(app.config, app.extensions, DATA_DIR)  # started by gunicorn.conf.py
    _answer_errors_in_json(app)
    app.after_request(_security_headers)
    return app


class ReachingRedis(click.Group):
    """``group``'s commands, which say in one line, not a traceback, that Redis is away or
    that a Redis setting cannot work."""

    def __init__(self, group):
        super().__init__(group.name, commands=group.commands, help=group.help)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UNREACHABLE as error:
            raise click.ClickException(f"cannot reach Redis ({error}): is `make run` running, or REDIS_URL "
                                       "(SENSORCAST_REDIS_CLUSTER, …_SENTINELS) set to where Redis is?") from None
        except BadSetting as error:
            raise click.ClickException(str(error)) from None


SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}  # every answer
DOCUMENT_POLICY = {  # a page a browser shows (DOCUMENTS): what may run in it, never framed
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
}
DOCUMENTS = ("text/html", "image/svg+xml")


def _security_headers(response):
    """Every answer is never sniffed; a page (HTML, SVG) runs scripts and styles only from this
    server and is never framed. JSON, events, scripts and empty answers carry no CSP: it rules
    no document there, and a board reads each header line whole into its heap, where the
    policy's 185 bytes had been the largest block an MQTT node's update check needed."""
    response.headers.update(SECURITY_HEADERS)
    if response.mimetype in DOCUMENTS and response.status_code != 204:
        response.headers.update(DOCUMENT_POLICY)
    return response


def _answer_errors_in_json(app):
    @app.errorhandler(HTTPException)
    def http_error(error):
        headers = [(name, value) for name, value in error.get_headers() if name != "Content-Type"]
        return {"error": error.description}, error.code, headers

    @app.errorhandler(RateLimited)
    def rate_limited(error):
        return {"error": str(error)}, 429, {"Retry-After": str(math.ceil(error.retry_after))}

    @app.errorhandler(redis.exceptions.ResponseError)
    def redis_refused(error):
        full = isinstance(error, redis.exceptions.OutOfMemoryError) or "OOM command not allowed" in str(error)
        if not full:  # a script's error says OOM in its text
            raise error
        app.logger.error("Redis is full (maxmemory): %s", error)
        return {"error": "the database is full: nothing was stored; its owner must make room"}, 507

    logged = LinesPerMinute()

    def redis_away(error):
        """503 with Retry-After; logged at most ten times a minute, for Redis away at night
        while a fleet keeps posting must not fill the disk."""
        turn = logged.take("redis away")
        if turn:
            app.logger.warning("Redis did not answer: %s%s", error,
                               "; the next times this minute go unlogged" if turn == "last" else "")
        return ({"error": "the database is unreachable; try again shortly"}, 503,
                {"Retry-After": str(app.config["RETRY_AFTER"])})

    for unreachable in UNREACHABLE:
        app.register_error_handler(unreachable, redis_away)
