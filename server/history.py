"""A device's history over a time range: downsampled for charts, or exported as CSV.

The range is of *measured* time (``ts``), so readings a board buffered through an outage
land where they belong. A reading arrives at most ``MAX_FUTURE`` seconds before its
``ts``, so the scan starts there in ``readings:<device>`` and goes to its end (the
stream is trimmed to ``RETENTION``), in pages of ``PAGE`` entries: memory stays flat
however long the range. A bucket holds, per metric, the ``min``, ``avg``, ``max`` and ``count`` of
the readings measured in it: summed from the rollups kept as readings are stored
(``rollups.py``) when buckets are at least 10 s wide, so 200,000 readings become 300
buckets in a few tens of ms (``make bench``) whatever the range; narrower buckets come
from one pass in Python over the raw pages while those hold at most ``RAW_READINGS``
readings. Past that, the 10 s rollups answer, in buckets 10 s wide (fewer than asked
for, as the answer's ``width`` says), so that no request makes the server read a busy
device's every reading.
"""
import csv
import io
import itertools
import math
import threading
import time
from datetime import datetime, timezone

from flask import Blueprint, Response, abort, current_app, request, stream_with_context

from . import rollups
from .connections import get_redis
from .readings import DEVICE_ID, METRICS, NOT_METRICS
from .store import device_key, device_readings, pages, stream_id
from .viewers import viewer_required

bp = Blueprint("history", __name__)

PAGE = 2000
EXPORTS_AT_ONCE = 2  # CSV exports a process makes at once (each a few seconds of CPU for 200,000 readings)
MAX_BUCKETS = 2000
RAW_READINGS = 6000  # readings read at most for buckets narrower than any slot that reaches back to them
LAST_FILE_TIME = 253402300799  # 9999-12-31 23:59:59, the last time a datetime holds
LAST_SECOND = 2**63 / 1000  # where stream ids end, near enough: any later time means "ever"


def seconds(bound, default):
    """A ``since``/``until`` query value (Unix seconds or a stream id) as Unix seconds."""
    value = request.args.get(bound)
    if value is None:
        return default
    pair = stream_id(value)
    if pair:
        return min(pair[0] / 1000, LAST_SECOND)
    try:  # as written in a query: not Python's 1_000 or full-width digits
        number = float(value) if value.isascii() and "_" not in value else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        abort(400, f"{bound}: must be Unix seconds or a stream id")
    return min(max(number, 0.0), LAST_SECOND)


def time_range(client, device):
    """The query's range in Unix seconds: by default from the device's first reading to now."""
    first = client.xrange(device_readings(client, device), count=1)
    since = seconds("since", float(first[0][1]["ts"]) if first else time.time())
    until = seconds("until", time.time())
    if until <= since:
        abort(400, "until: must be after since")
    return since, until


class TooManyReadings(Exception):
    """A scan would read more readings than it may."""


def measured(client, device, since, until, end="+", most=math.inf):
    """The fields of each reading measured from ``since`` to ``until``, oldest arrival
    first (arrived up to ``end``, an XRANGE bound); ``TooManyReadings`` once the scan
    has read more than ``most``."""
    start = f"{max(0, int((since - current_app.config['MAX_FUTURE']) * 1000))}"
    read = 0
    for page in pages(client, device_readings(client, device), start, end, count=PAGE):
        read += len(page)
        if read > most:
            raise TooManyReadings(f"more than {most} readings from {start}")
        for _, fields in page:
            if since <= float(fields["ts"]) <= until:
                yield fields


def bucketed(client, device, count):
    """At most ``count`` buckets of the device's readings, oldest first, empty ones left out:
    from its rollups when a slot fits in a bucket, else from the readings themselves while
    there are few enough to read."""
    since, until = time_range(client, device)
    width = (until - since) / count
    rolled_from = rollups.rolled_up_from(client, device)
    if not rolled_from:
        return _answer(device, since, until, width, count, _one_slot_each(measured(client, device, since, until)))
    now = time.time()
    size = rollups.slot_size(width, since, now)
    if size is None:
        try:
            raw = _one_slot_each(measured(client, device, since, until, most=RAW_READINGS))
            return _answer(device, since, until, width, count, raw)
        except TooManyReadings:
            size = rollups.finest_slot(since, now)
            width, count = size, math.ceil((until - since) / size)
    latest = now + current_app.config["MAX_FUTURE"]  # no reading is measured later
    summaries, newest = rollups.slots(client, device, size, since, min(until, latest), device_readings(client, device))
    if since - current_app.config["MAX_FUTURE"] < stream_id(rolled_from)[0] / 1000:
        summaries = itertools.chain(  # what arrived before rollups existed, then the rollups
            _one_slot_each(measured(client, device, since, until, end="(" + rolled_from)), summaries)
    return _answer(device, since, until, width, count, summaries) | {"newest": newest}


def _answer(device, since, until, width, count, summaries):
    """The buckets, ``width`` seconds each, that ``summaries`` (as ``rollups.slots`` gives
    them) fall in, as the API answers them. From the rollups, the answer also says the
    ``newest`` reading's id as of them: a page adds only the readings after it (tally.js)."""
    stats = {}
    for start, name, n, total, low, high in summaries:
        index = min(max(int((start - since) / width), 0), count - 1)  # ts == until: the last
        bucket = stats.setdefault(index, {})
        lowest, sum_so_far, highest, so_far = bucket.get(name, (low, 0.0, high, 0))
        bucket[name] = (min(lowest, low), sum_so_far + total, max(highest, high), so_far + n)
    return {"device": device, "since": since, "until": until, "width": width,
            "buckets": [dict({name: {"min": low, "avg": total / n, "max": high, "count": n}
                              for name, (low, total, high, n) in stats[index].items()},
                             t=since + index * width)
                        for index in sorted(stats)]}


def _one_slot_each(readings):
    """Raw readings as ``rollups.slots`` gives slots: one per metric, holding one value."""
    for fields in readings:
        ts = float(fields["ts"])
        for name, text in fields.items():
            if name not in NOT_METRICS:
                value = float(text)
                yield ts, name, 1, value, value, value


@bp.get("/api/devices/<device>/readings.csv")
@viewer_required
def export(device):
    """Every reading in the range as CSV, streamed page by page; ``?unit=F`` gives °F
    (``C``, the default, or ``F``, in either case: any other unit is a 400). At most
    ``EXPORTS_AT_ONCE`` at a time per process (429 past it), so downloads cannot starve
    the uploads and live streams."""
    client = get_redis()
    latest = client.hgetall(device_key(client, device)) if DEVICE_ID.fullmatch(device) else None
    if not latest:
        abort(404, f"no device {device!r} has sent a reading")
    unit = request.args.get("unit", "C").upper()
    if unit not in ("C", "F"):
        abort(400, "unit: must be C (°C) or F (°F)")
    fahrenheit = unit == "F"
    since, until = time_range(client, device)
    exports = current_app.extensions.setdefault("sensorcast.exports", threading.BoundedSemaphore(EXPORTS_AT_ONCE))
    if not exports.acquire(blocking=False):
        abort(429, f"{EXPORTS_AT_ONCE} exports are being made by this server process; try again in a few seconds")
    known = [name for name in METRICS if name in latest]
    columns = known + sorted(name for name in latest if name not in known + list(NOT_METRICS))
    header = ["time", "ts"] + [_heading(name, fahrenheit) for name in columns]

    def row(fields):
        ts = float(fields["ts"])
        return ([datetime.fromtimestamp(ts, timezone.utc).isoformat(), fields["ts"]]
                + [_value(name, fields.get(name), fahrenheit) for name in columns])

    def rows():
        yield _csv([header])
        batch = []
        for fields in measured(client, device, since, until):
            batch.append(row(fields))
            if len(batch) == PAGE:
                yield _csv(batch)
                batch = []
        yield _csv(batch)

    filename = f"{device}-{_file_time(since)}-{_file_time(until)}.csv"
    response = Response(stream_with_context(rows()), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    response.call_on_close(exports.release)
    return response


def _file_time(ts):
    """``ts`` for a file name, in UTC (the server knows no viewer's time zone): 2026-11-29T1330Z."""
    return datetime.fromtimestamp(min(max(ts, 0), LAST_FILE_TIME), timezone.utc).strftime("%Y-%m-%dT%H%MZ")


def _heading(name, fahrenheit):
    unit = "°F" if fahrenheit and name == "temperature" else METRICS.get(name, ("",))[0]
    return f"{name} ({unit})" if unit else name


def _value(name, text, fahrenheit):
    if text is None or not (fahrenheit and name == "temperature"):
        return text or ""
    return f"{float(text) * 9 / 5 + 32:.2f}"


def _csv(rows):
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    return text.getvalue()
