"""Readings in: ``POST /api/readings`` and the original tutorial's ``POST /therm/push``.

Input is checked here, at the edge, and refused whole with a message naming the field;
a batch is stored all or nothing, so a refused request loses nothing already accepted.
A device over its rate limit gets 429 with ``Retry-After`` and keeps its readings.
The 201 answer also says which ``boot`` and ``seq`` the server now knows for the device
(``known``): a board that finds there a seq it never sent knows its retries are being
taken for duplicates, and starts a new boot id (firmware/uplink.py). It does the same on
a 409: a reading at a boot and seq that already hold other values (retries.py).

A device posting again is one Redis call: this process remembers which device its token
writes as, and the ingest script checks the token again as it stores (auth.py).

The upload a fleet makes all day, a known token's readings that are stored, is answered
below Flask (``FastUploads``), with the same checks and the same calls: Flask's dispatch
would cost more than the rest of the request. Everything else about an upload (a token
this process has not seen, a body that is not clean JSON, any refusal, Redis away) is
left to the routes below, which answer it as if there were no fast path.
"""
import json
import time

import redis
from flask import Blueprint, abort, current_app, g, request
from werkzeug.exceptions import HTTPException

from .auth import UNKNOWN_TOKEN, authenticate, confirm_token, forget_token, known_device
from .connections import UNREACHABLE, get_redis
from .guard import MET_BELOW_FLASK, limit_writes, read_body
from .ratelimit import RateLimited, note_wait, refuse_if_waiting, wait_left
from .readings import InvalidReading, parse_json, validate
from .store import Conflict, TokenRevoked, add_readings

bp = Blueprint("ingest", __name__)

LEGACY_DEVICE = "therm"
STORE_REFUSED = "sensorcast.store_refused"  # in the environ: the refusal add_readings gave FastUploads


@bp.post("/api/readings")
def post_readings():
    device = authenticate(cached=True)
    refuse_if_waiting(device)
    _refuse_compressed()
    if not request.is_json:
        _refuse(415, "send the readings as JSON with 'Content-Type: application/json'")
    return _store(request.get_data(), device)


def _refuse(code, message):
    """Answer ``code``, unless the token this process knew was revoked since: that is 401
    (``confirm_token``), whatever else was wrong with the request."""
    confirm_token()
    abort(code, message)


def _refuse_compressed():
    """A body sent compressed would read as broken JSON: say what is wrong instead."""
    if request.headers.get("Content-Encoding", "identity").lower() != "identity":
        _refuse(415, "send the readings without a Content-Encoding: the server takes them as they are")


@bp.post("/therm/push")
def therm_push():
    """The tutorial's push: a body such as ``{"temperature":56}`` or ``56``, any content type."""
    device = authenticate(cached=True) or LEGACY_DEVICE
    refuse_if_waiting(device)
    _refuse_compressed()
    return _store(request.get_data(), device, bare_value_is="temperature")


def _store(body, device, bare_value_is=None):
    """Store the readings of ``body``; with ``bare_value_is``, a body that is no object (the
    tutorial's ``56``) is that metric's value."""
    config = current_app.config
    now = time.time()
    try:
        refused = request.environ.pop(STORE_REFUSED, None)  # the fast path's answer from Redis
        if refused is not None:
            raise refused
        payload = parse_json(body)
        if bare_value_is and not isinstance(payload, dict):
            payload = {bare_value_is: payload}
        readings = validate(payload, now, config["MAX_BATCH"], config["MAX_FUTURE"], device)
        ids, known = add_readings(get_redis(), readings, now, config, token_digest=g.get("token_digest", ""))
    except InvalidReading as error:
        confirm_token()
        return {"error": str(error), "field": error.field}, 400
    except PermissionError as error:
        _refuse(403, str(error))
    except TokenRevoked:
        forget_token(g.token_digest)
        abort(401, UNKNOWN_TOKEN)
    except RateLimited as error:
        note_wait(device, error)
        raise
    return stored_answer(ids, known), 201


@bp.app_errorhandler(Conflict)
def conflict(error):
    return {"error": str(error), "conflict": {"boot": error.boot, "seq": error.seq},
            "known": {"boot": error.boot, "seq": error.highest}}, 409


def stored_answer(ids, known):
    stored = [entry_id for entry_id in ids if entry_id]
    return {"stored": len(stored), "duplicates": len(ids) - len(stored), "ids": ids, "known": known}


_ANSWER_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode  # as Flask writes its answers


class FastUploads:
    """WSGI middleware: ``POST /api/readings`` with a token this process knows and a JSON
    body, stored and answered 201 without Flask; any other request, or any other outcome,
    goes on to ``wsgi_app``, the body it read handed on. Readings refused before Redis was
    asked go through Flask's route again; Redis's refusals (too many names, the rate limit,
    a revoked token) are handed to the route (``STORE_REFUSED``), which answers them without
    asking again; what its handlers answer (a conflict; Redis away or a replica's WAIT, maybe
    after the store), a refused body and a device still told to wait (before its body is
    read) are raised in Flask (``MET_BELOW_FLASK``) for them to answer and count."""

    def __init__(self, app, wsgi_app, headers):
        self.app, self.wsgi_app = app, wsgi_app
        self.headers = [("Content-Type", "application/json"), *headers.items()]

    def __call__(self, environ, start_response):
        answer = self.stored(environ) if self.takes(environ) else None
        if answer is None:
            return self.wsgi_app(environ, start_response)
        body = (_ANSWER_JSON(answer) + "\n").encode()
        start_response("201 CREATED", [*self.headers, ("Content-Length", str(len(body)))])
        return [body]

    def takes(self, environ):
        return (environ["REQUEST_METHOD"] == "POST" and environ.get("PATH_INFO") == "/api/readings"
                and environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() == "application/json"
                and environ.get("HTTP_CONTENT_ENCODING", "identity").lower() == "identity" and self.app.config["AUTH"])

    def stored(self, environ):
        """The 201 answer's JSON, the readings stored; or None, for Flask to answer."""
        known = known_device(environ.get("HTTP_AUTHORIZATION", ""))
        if known is None:
            return None
        device, digest = known
        left = wait_left(self.app, device)
        if left:  # refused before its body is read, however slowly that comes
            environ[MET_BELOW_FLASK] = RateLimited(left)
            return None
        config = self.app.config
        limit_writes(environ, config["CLIENT_LAG"])
        try:
            body = read_body(environ, config)
        except HTTPException as refusal:
            environ[MET_BELOW_FLASK] = refusal
            return None
        now = time.time()
        try:
            readings = validate(parse_json(body), now, config["MAX_BATCH"], config["MAX_FUTURE"], device)
        except (InvalidReading, PermissionError):
            return None  # Redis was not asked: Flask's route refuses it again, reading the body read_body left
        try:
            ids, known = add_readings(get_redis(self.app), readings, now, config, token_digest=digest)
        except (InvalidReading, RateLimited, TokenRevoked) as refusal:  # Flask's route answers it, not asking again
            environ[STORE_REFUSED] = refusal
            return None
        except (Conflict, redis.exceptions.RedisError, *UNREACHABLE) as error:  # the rate limit was charged, or more
            environ[MET_BELOW_FLASK] = error
            return None
        return stored_answer(ids, known)
