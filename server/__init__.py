"""Sensorcast's server: readings in over HTTP, kept in Redis, out to browsers as live events.

Configuration flows one way: the defaults (``settings.py``), then the environment (``REDIS_URL``,
and every ``SENSORCAST_<NAME>`` as ``<NAME>``, its value read as JSON where it parses),
then ``test_config``. The README's configuration table lists each name.
"""
import logging
import math
import os

import click
import redis
from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from .connections import UNREACHABLE, BadSetting, is_busy, is_full
from .loglimit import LinesPerMinute
from .ratelimit import RateLimited
from .settings import DATA_DIR, DEFAULTS, ROOT, SERVER_URL_FILE

__all__ = ["DATA_DIR", "DEFAULTS", "ROOT", "SERVER_URL_FILE", "create_app"]  # what tools/, simulator/ and tests take


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


# seconds a device waits on a full Redis: as often as old history is trimmed (duties.py), but
# at most half OFFLINE_AFTER, so that it is back before its silence counts (the sweep gives
# every device OFFLINE_AFTER from when Redis has room again)
FULL_RETRY_AFTER = 60
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

    logged = LinesPerMinute()  # Redis full or away at night while a fleet keeps posting must not fill the disk

    def redis_away(error):
        """503 with Retry-After; logged at most ten times a minute."""
        turn = logged.take("redis away")
        if turn:
            app.logger.warning("Redis did not answer: %s%s", error,
                               "; the next times this minute go unlogged" if turn == "last" else "")
        return ({"error": "the database is unreachable; try again shortly"}, 503,
                {"Retry-After": str(app.config["RETRY_AFTER"])})

    @app.errorhandler(redis.exceptions.ResponseError)
    def redis_refused(error):
        """A full Redis: 507 with Retry-After (devices keep their readings meanwhile), logged
        as ``redis_away``; a busy one is away."""
        if is_busy(error):
            return redis_away(error)
        if not is_full(error):
            raise error
        turn = logged.take("redis full")
        if turn:
            app.logger.error("Redis is full (it reached its maxmemory): writes get 507 until it has room%s",
                             "; the next times this minute go unlogged" if turn == "last" else "")
        return ({"error": "the database is full: nothing was stored; try again later"}, 507,
                {"Retry-After": str(min(FULL_RETRY_AFTER, max(1, int(app.config["OFFLINE_AFTER"] // 2))))})

    for unreachable in UNREACHABLE:
        app.register_error_handler(unreachable, redis_away)
