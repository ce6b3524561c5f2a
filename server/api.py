"""Read-only JSON behind the dashboard (for viewers, once any exist), and ``/healthz``
for monitors (always open).

``GET /api/devices``: every device with its latest values and its labels (``name``,
``group``, ``hidden``: ``devices.py``), newest first, and the id of the newest reading,
where a browser's ``/stream`` replay may start. A device is
``online`` unless silent for ``OFFLINE_AFTER`` or marked offline by the sweep.
``GET /api/devices/<id>/readings?since=&until=&limit=``: its history, oldest first;
with ``buckets=N``, downsampled to at most N buckets instead (``history.py``); with
``spread``, the ``limit`` readings are spread over the range rather than the newest: a
busy device's Live chart, opened afresh, reaches as far back as one left open does.
``since`` and ``until`` select by arrival time: Unix seconds, or a stream id (``since``
then excludes that id, for paging); each reading carries its own measured ``ts``.
"""
import json
import time

import gevent
import redis
from flask import Blueprint, abort, current_app, request

from .connections import Cluster, get_redis
from .devices import labels
from .firmware import TARGETS, UPDATE_STATE, target
from .history import MAX_BUCKETS, bucketed, seconds
from .readings import decode_fields
from .store import device_key, device_readings, known_devices, last_seen, meta_key, stream_id, thresholds_key
from .stream import get_hub, newest_position
from .viewers import viewer_required

bp = Blueprint("api", __name__)

MAX_LIMIT = 10000
HEALTH_SECONDS = 2  # how long /healthz waits for Redis


@bp.get("/api/devices")
@viewer_required
def list_devices():
    client = get_redis()
    newest = newest_position(client)
    ids = [device for device, _ in reversed(known_devices(client))]
    with client.pipeline(transaction=False) as pipe:
        for device in ids:
            pipe.hgetall(device_key(client, device))
            pipe.hgetall(meta_key(client, device))
        stored = pipe.execute()
    targets = client.hgetall(TARGETS)
    return {"devices": [_device(fields, meta, targets) for fields, meta in zip(stored[::2], stored[1::2]) if fields],
            "last_id": newest and str(newest)}


def _device(fields, meta, targets):
    """A device's latest values, its labels, and its firmware: running, targeted, and the
    last update."""
    state = decode_fields({k: v for k, v in fields.items() if k != "status" and k not in UPDATE_STATE})
    state.update(labels(meta))
    state.update({name: fields[name] for name in UPDATE_STATE if name in fields})
    state["fw_target"] = target(targets, state["device"])
    state["online"] = (fields.get("status") != "offline"
                       and time.time() - state["last_seen"] <= current_app.config["OFFLINE_AFTER"])
    return state


@bp.get("/api/devices/<device>/readings")
@viewer_required
def device_history(device):
    client = get_redis()
    if last_seen(client, device) is None:
        abort(404, f"no device {device!r} has sent a reading")
    if "buckets" in request.args:
        return bucketed(client, device, whole_number("buckets", 0, MAX_BUCKETS))
    limit = whole_number("limit", 500, MAX_LIMIT)
    if {"since", "until"} <= request.args.keys() and seconds("until", None) < seconds("since", None):
        abort(400, "until: must be after since")
    if "spread" in request.args:
        return {"device": device, "readings": _spread(client, device, limit)}
    try:
        newest_first = client.xrevrange(device_readings(client, device), _bound("until", "+", ""),
                                        _bound("since", "-", "("), count=limit)
    except redis.exceptions.ResponseError:  # e.g. since the very last id there can be
        abort(400, "since, until: not a range of stream ids")
    return {"device": device,
            "readings": [dict(decode_fields(fields), id=entry_id)
                         for entry_id, fields in reversed(newest_first)]}


@bp.get("/api/thresholds")
@viewer_required
def all_thresholds():
    """Every device's thresholds at once, ``{"thresholds": {device: {metric: limit}}}``
    (a device without any left out), as ``GET /api/devices/<id>/thresholds`` gives one
    device's: a page that was offline reloads them all in one request."""
    client = get_redis()
    ids = [device for device, _ in known_devices(client)]
    with client.pipeline(transaction=False) as pipe:
        for device in ids:
            pipe.hgetall(thresholds_key(client, device))
        stored = pipe.execute()
    return {"thresholds": {device: {metric: json.loads(limit) for metric, limit in limits.items()}
                           for device, limits in zip(ids, stored) if limits}}


def _spread(client, device, count):
    """The first reading to arrive at or after each of ``count`` times evenly spaced over
    ``since`` (required) to ``until`` (default now), each once, oldest first: one read of
    a reading each, however many the range holds."""
    if "since" not in request.args:
        abort(400, "spread: give since, the start of the range to spread the readings over")
    since, until = seconds("since", None), seconds("until", time.time())
    key, step = device_readings(client, device), (until - since) / count
    with client.pipeline(transaction=False) as pipe:
        for n in range(count):
            pipe.xrange(key, "%d" % ((since + n * step) * 1000), "%d" % (until * 1000), count=1)
        found = {entry_id: fields for page in pipe.execute() for entry_id, fields in page}
    return [dict(decode_fields(fields), id=entry_id) for entry_id, fields in found.items()]


def whole_number(name, default, highest):
    """A query value that must be a whole number from 1 to ``highest``; 400 for any other."""
    value = request.args.get(name, str(default))
    if not (value.isascii() and value.isdigit() and 0 < int(value) <= highest):
        abort(400, f"{name}: must be a whole number from 1 to {highest}")
    return int(value)


def _bound(name, default, exclusive):
    value = request.args.get(name)
    if value is None:
        return default
    if stream_id(value):
        return exclusive + value
    return str(int(seconds(name, None) * 1000))


@bp.get("/healthz")
def healthz():
    """Redis answers (``status`` "full" when it is at its ``maxmemory`` and refuses writes;
    on a cluster, every slot has a primary, and "full" when one is); ``streams`` counts this
    process's open live streams; ``mqtt`` (with ``MQTT_URL`` set) says whether this
    process's MQTT client is connected: "down" is no failure, since HTTP uploads go on
    meanwhile. A Redis that does not answer within ``HEALTH_SECONDS`` is as away: a
    monitor's probe, often of a second or two, gets its 503 rather than a hang."""
    client = get_redis()
    with gevent.Timeout(HEALTH_SECONDS, redis.exceptions.TimeoutError(f"no answer within {HEALTH_SECONDS} s")):
        if isinstance(client, Cluster):
            if client.cluster_info()["cluster_state"] != "ok":
                raise redis.exceptions.ClusterDownError("the Redis Cluster is down: some of its slots have no primary")
            memories = client.info("memory", target_nodes=client.PRIMARIES).values()
        else:
            memories = [client.info("memory")]
    full = any(0 < memory["maxmemory"] <= memory["used_memory"] for memory in memories)
    health = {"status": "full" if full else "ok", "streams": get_hub().client_count()}
    mqtt = current_app.extensions["sensorcast.duties"].mqtt_state()
    if mqtt:
        health["mqtt"] = mqtt
    return health
