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
"""
import time

from flask import Blueprint, abort, current_app, g, request

from .auth import UNKNOWN_TOKEN, authenticate, forget_token
from .ratelimit import RateLimited, note_wait, refuse_if_waiting
from .readings import InvalidReading, parse_json, validate
from .store import Conflict, TokenRevoked, add_readings, get_redis

bp = Blueprint("ingest", __name__)

LEGACY_DEVICE = "therm"


@bp.post("/api/readings")
def post_readings():
    device = authenticate(cached=True)
    refuse_if_waiting(device)
    if not request.is_json:
        abort(415, "send the readings as JSON with 'Content-Type: application/json'")
    return _store(_parse(request.get_data()), device)


@bp.post("/therm/push")
def therm_push():
    """The tutorial's push: a body such as ``{"temperature":56}`` or ``56``, any content type."""
    device = authenticate(cached=True) or LEGACY_DEVICE
    refuse_if_waiting(device)
    payload = _parse(request.get_data())
    if not isinstance(payload, dict):
        payload = {"temperature": payload}
    return _store(payload, device)


def _parse(body):
    try:
        return parse_json(body)
    except InvalidReading as error:
        abort(400, str(error))


def _store(payload, device):
    config = current_app.config
    now = time.time()
    try:
        readings = validate(payload, now, config["MAX_BATCH"], config["MAX_FUTURE"], device)
        ids, known = add_readings(get_redis(), readings, now, config, token_digest=g.get("token_digest", ""))
    except InvalidReading as error:
        return {"error": str(error), "field": error.field}, 400
    except PermissionError as error:
        abort(403, str(error))
    except TokenRevoked:
        forget_token(g.token_digest)
        abort(401, UNKNOWN_TOKEN)
    except Conflict as error:
        return {"error": str(error), "conflict": {"boot": error.boot, "seq": error.seq},
                "known": {"boot": error.boot, "seq": error.highest}}, 409
    except RateLimited as error:
        note_wait(device, error)
        raise
    stored = [entry_id for entry_id in ids if entry_id]
    return {"stored": len(stored), "duplicates": len(ids) - len(stored), "ids": ids, "known": known}, 201
