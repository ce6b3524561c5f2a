"""Thresholds and alerts: a low and a high per device and metric, with hysteresis.

Thresholds are checked inside the ingest Lua call (``store.py``), so a crossing is
stored, listed and published with the reading that caused it; a device that goes
offline, and comes back, is an alert too. Here: the thresholds' API and CLI, and the
alert list; the optional webhook is ``webhook.py``.

``GET /api/alerts``: the alerts active now and the most recent ones, newest first, with
repeats folded: a device, metric and state raised again within ``FOLD_SECONDS`` of the
line's oldest is counted in its ``repeats`` (``first``: when that oldest was raised),
so a value flapping at a limit is one line, not the whole list. ``POST
/api/alerts/acknowledge`` with ``{"device", "metric"?, "state"}`` (an existing device and
metric; "high", "low" or "offline") marks a line seen: it shows ``acknowledged`` until
the same alert is raised again.
``GET /api/devices/<id>/thresholds``; ``PUT``/``DELETE .../thresholds/<metric>`` with
``{"low"?, "high"?, "hysteresis"?}``. ``flask --app server thresholds set|clear|list``.
Every change, by either, is a ``thresholds`` event ``{"device", "metric", "limit"}`` (``limit``
as stored, or null once removed), so open pages follow it.
"""
import json
import time

import click
from flask import Blueprint, abort, current_app, request
from flask.cli import AppGroup

from .api import whole_number
from .connections import get_redis
from .readings import DEVICE_ID, InvalidReading, check_metric_name, is_metric_name, is_number, parse_json
from .store import (ACKNOWLEDGED, ALERTS, CHANNEL, alerting_key, clear_threshold, device_key, entries, keep_threshold,
                    known_devices, last_seen, thresholds_key)
from .viewers import viewer_required

bp = Blueprint("alerts", __name__)

FOLD_SECONDS = 3600
ACKNOWLEDGEABLE = ("high", "low", "offline")  # the states an alert stays in until it ends
PAGE = 500


def set_threshold(client, device, metric, low=None, high=None, hysteresis=0.0):
    """Validate and store one threshold; raises ValueError saying what is wrong, LookupError
    for a device that never posted (a typo would be a threshold nobody sees)."""
    _check_names(device, metric)
    limit = {name: value for name, value in (("low", low), ("high", high)) if value is not None}
    for name, value in dict(limit, hysteresis=hysteresis).items():
        if not is_number(value):
            raise ValueError(f"{name}: must be a finite number")
    if not limit:
        raise ValueError("give a low, a high, or both")
    if "low" in limit and "high" in limit and limit["low"] >= limit["high"]:
        raise ValueError("low: must be below high")
    if hysteresis < 0:
        raise ValueError("hysteresis: must be 0 or more")
    limit["hysteresis"] = hysteresis
    keep_threshold(client, device, metric, json.dumps(limit), threshold_event(device, metric, limit),
                   current_app.config["MAX_DEVICE_FIELDS"])
    return limit


def remove_threshold(client, device, metric):
    """Remove one threshold (its alert, if raised, ends) and tell every open page; nothing
    to tell when there was none. Raises ValueError for a name no device or metric has."""
    _check_names(device, metric)
    if clear_threshold(client, device, metric, time.time()):
        client.publish(CHANNEL, threshold_event(device, metric, None))


def _check_names(device, metric):
    """ValueError unless a device and a metric may have these names."""
    if not DEVICE_ID.match(device):
        raise ValueError("device: not a valid name")
    check_metric_name(metric, "metric")


def threshold_event(device, metric, limit):
    """A ``thresholds`` event: ``device``'s ``metric`` is now watched with ``limit`` (None: not at all)."""
    return json.dumps({"type": "thresholds", "data": {"device": device, "metric": metric, "limit": limit}})


@bp.get("/api/devices/<device>/thresholds")
@viewer_required
def get_thresholds(device):
    client = get_redis()
    stored = client.hgetall(thresholds_key(client, device))
    return {"device": device, "thresholds": {metric: json.loads(limit) for metric, limit in stored.items()}}


@bp.put("/api/devices/<device>/thresholds/<metric>")
@viewer_required
def put_threshold(device, metric):
    try:
        body = parse_json(request.get_data())
    except InvalidReading:
        body = None
    if not isinstance(body, dict) or set(body) - {"low", "high", "hysteresis"}:
        abort(400, 'send {"low"?, "high"?, "hysteresis"?} as JSON')
    try:
        return set_threshold(get_redis(), device, metric, body.get("low"), body.get("high"),
                             body.get("hysteresis", 0.0))
    except LookupError as error:
        abort(404, str(error))
    except ValueError as error:
        abort(400, str(error))


@bp.delete("/api/devices/<device>/thresholds/<metric>")
@viewer_required
def delete_threshold(device, metric):
    try:
        remove_threshold(get_redis(), device, metric)
    except ValueError as error:
        abort(400, str(error))
    return "", 204


@bp.get("/api/alerts")
@viewer_required
def list_alerts():
    limit = whole_number("limit", 100, 1000)
    client = get_redis()
    devices = [device for device, _ in known_devices(client)]
    with client.pipeline(transaction=False) as pipe:
        for device in devices:
            pipe.hgetall(alerting_key(client, device))
            pipe.hget(device_key(client, device), "status")
        states = pipe.execute()
    active = []
    for device, crossed, status in zip(devices, states[::2], states[1::2]):
        active += [{"device": device, "metric": metric, "state": state} for metric, state in sorted(crossed.items())]
        if status == "offline":
            active.append({"device": device, "state": "offline"})
    return {"active": active, "recent": _folded(client, limit)}


def _folded(client, limit):
    """The ``limit`` newest alert lines, repeats folded in, read page by page."""
    acknowledged = {key: float(at) for key, at in client.hgetall(ACKNOWLEDGED).items()}
    lines, by_key = [], {}
    for entry_id, fields in entries(client, ALERTS, newest_first=True, page=PAGE):
        alert = dict(json.loads(fields["json"]), id=entry_id)
        raised = alert.get("raised", alert["ts"])
        key = _line_key(alert)
        line = by_key.get(key)
        if line and line["first"] - raised <= FOLD_SECONDS:
            line["repeats"], line["first"] = line["repeats"] + 1, raised
            continue
        if len(lines) == limit:
            break
        line = by_key[key] = dict(alert, repeats=0, first=raised, acknowledged=raised <= acknowledged.get(key, -1))
        lines.append(line)
    return lines


def _line_key(alert):
    return f"{alert['device']}|{alert.get('metric', '')}|{alert['state']}"


@bp.post("/api/alerts/acknowledge")
@viewer_required
def acknowledge():
    try:
        line = parse_json(request.get_data())
    except InvalidReading:
        line = None
    if not (isinstance(line, dict) and isinstance(line.get("device"), str) and DEVICE_ID.match(line["device"])
            and line.get("state") in ACKNOWLEDGEABLE
            and (line.get("metric", "") == "" if line["state"] == "offline" else is_metric_name(line.get("metric")))
            and not set(line) - {"device", "metric", "state"}):
        abort(400, 'send {"device", "metric" (none for offline), "state": "high", "low" or "offline"} as JSON')
    client = get_redis()
    if last_seen(client, line["device"]) is None or (
            line.get("metric") and not client.hexists(device_key(client, line["device"]), line["metric"])):
        abort(404, "no such device, or it has no such metric")
    client.hset(ACKNOWLEDGED, _line_key(line), repr(time.time()))
    client.publish(CHANNEL, json.dumps({"type": "acknowledged", "data": line}))
    return "", 204


thresholds_cli = AppGroup("thresholds", help="Manage alert thresholds.")


@thresholds_cli.command("set")
@click.argument("device")
@click.argument("metric")
@click.option("--low", type=float)
@click.option("--high", type=float)
@click.option("--hysteresis", type=float, default=0.0, show_default=True)
def set_command(device, metric, low, high, hysteresis):
    """Alert when DEVICE's METRIC goes below --low or above --high."""
    try:
        limit = set_threshold(get_redis(), device, metric, low, high, hysteresis)
    except (LookupError, ValueError) as error:
        raise click.UsageError(str(error))
    click.echo(f"{device} {metric}: {json.dumps(limit)}")


@thresholds_cli.command("clear")
@click.argument("device")
@click.argument("metric")
def clear_command(device, metric):
    try:
        remove_threshold(get_redis(), device, metric)
    except ValueError as error:
        raise click.UsageError(str(error))
    click.echo(f"{device} {metric}: no threshold")


@thresholds_cli.command("list")
def list_command():
    client = get_redis()
    for device, _ in known_devices(client):
        for metric, limit in sorted(client.hgetall(thresholds_key(client, device)).items()):
            click.echo(f"{device}\t{metric}\t{limit}")
