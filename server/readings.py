"""The reading payload: the one definition that the server, the simulator and the tests share.

A payload is one object or a JSON array of them (a batch)::

    {"device": "kitchen", "temperature": 21.4, "humidity": 40.2,
     "ts": 1764000000.5, "seq": 118, "boot": "a81f", "rssi": -61}

Every key that is not one of the fields below is a metric: a finite number, with a
unit and a plausible range when it is one of ``METRICS``; a name in ``RESERVED`` is not
one. ``validate`` turns a decoded payload into clean readings or raises ``InvalidReading``
naming the offending field.

Names are matched whole (a pattern's ``$`` would let a trailing newline through). The
board cannot import this: ``firmware/settings.py`` keeps its own device rule, which
``tests/firmware`` holds to the same cases.
"""
import functools
import json
import math
import re

DEVICE_ID = re.compile(r"\A[a-z0-9_-]{1,32}\Z")
DEVICE_RULE = "1-32 characters of a-z 0-9 _ -"  # DEVICE_ID in words, for every message that refuses one
METRIC_NAME = re.compile(r"\A[a-z][a-z0-9_]{0,31}\Z")
BOOT_ID = re.compile(r"\A[A-Za-z0-9_-]{1,16}\Z")
FIRMWARE_VERSION = re.compile(r"\A[A-Za-z0-9_.+-]{1,32}\Z")

# name: (unit, lowest plausible, highest plausible)
METRICS = {
    "temperature": ("°C", -60.0, 150.0),
    "humidity": ("%RH", 0.0, 100.0),
    "pressure": ("hPa", 300.0, 1100.0),
    "battery": ("V", 0.0, 15.0),
    "rssi": ("dBm", -120.0, 0.0),
    "uptime": ("s", 0.0, 1e10),
    "heap": ("B", 0.0, 1e9),
    "dropped": ("readings", 0.0, 1e9),
}
STRING_FIELDS = ("device", "boot", "fw")
FIELDS = STRING_FIELDS + ("seq", "ts")  # a reading's keys that are not metrics
# Kept on device:<id> beside the latest values (store.py; firmware.py's UPDATE_STATE), or
# added by the API (a reading's stream ``id``, a device's ``online``, ``fw_target`` and
# labels from devices.py, a bucket's start ``t``): a metric of that name would overwrite them.
RESERVED = ("last_seen", "status", "boot_seq", "fw_update", "fw_status", "fw_error", "fw_target", "online", "id",
            "t", "name", "group", "hidden")
NOT_METRICS = FIELDS + RESERVED
# Kept by the server to tell retries apart, never shown to a reader: whoever knows a
# board's boot id could plant readings at the seqs it is about to send (retries.py).
PRIVATE = ("boot", "boot_seq")  # boot_seq: the highest seq stored under the device's latest boot
MAX_METRICS = 16
LARGEST = 1e100  # a metric's magnitude: millions of them still sum to a finite double
EARLIEST_SYNCED_TS = 1577836800.0  # 2020-01-01: an earlier clock was never set


class InvalidReading(ValueError):
    """A payload the server refuses; ``field`` names where, e.g. ``[2].humidity``."""

    def __init__(self, field, message):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_json(body):
    """A request body's JSON, or ``InvalidReading`` for anything else (nesting too deep, a
    number too long to read, too)."""
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidReading("body", f"not valid JSON ({error})") from None
    except ValueError:  # Python reads no integer of more than 4,300 digits, nor should it
        raise InvalidReading("body", "a number has too many digits") from None
    except RecursionError:
        raise InvalidReading("body", "nested too deeply") from None


def validate(payload, now, max_batch, max_future, device=None):
    """Return the payload's readings as clean dicts, or raise ``InvalidReading``.

    ``device`` is the id the caller's token is bound to: it fills a missing ``device``
    and must match a given one (a mismatch is a ``PermissionError``).
    """
    batch = payload if isinstance(payload, list) else [payload]
    if not batch:
        raise InvalidReading("body", "an empty batch holds no reading")
    if len(batch) > max_batch:
        raise InvalidReading("body", f"a batch holds at most {max_batch} readings")
    readings = []
    for i, item in enumerate(batch):
        try:
            readings.append(_validate_one(item, now, max_future, device))
        except InvalidReading as refused:  # its field is within the reading ("" for all of it)
            where = f"[{i}]" if isinstance(payload, list) else ""
            field = ".".join(part for part in (where, refused.field) if part) or "body"
            raise InvalidReading(field, refused.message) from None
    return readings


def _validate_one(item, now, max_future, bound_device):
    """The clean reading: every upload's every reading passes here, so the common case
    (a device, metric names and plain numbers seen before) costs a few dictionary lookups."""
    if type(item) is not dict:
        raise InvalidReading("", "a reading is a JSON object")
    reading = dict(item)
    device = reading.setdefault("device", bound_device)
    if not (type(device) is str and _is_device_id(device)):
        raise InvalidReading("device", f"must be {DEVICE_RULE}")
    if bound_device is not None and device != bound_device:
        raise PermissionError(f"this token writes as {bound_device!r}, not {device!r}")
    if "boot" in reading:
        _check_text(reading, "boot", _is_boot_id, "1-16 characters of A-Z a-z 0-9 _ -")
    if "fw" in reading:
        _check_text(reading, "fw", _is_firmware_version, "1-32 characters of A-Z a-z 0-9 _ . + -")
    if "seq" in reading:
        seq = reading["seq"]
        if type(seq) is not int and is_number(seq) and seq == int(seq):  # a whole float (7.0) is the same seq
            seq = reading["seq"] = int(seq)
        if type(seq) is not int or not 0 <= seq < 2**53:
            raise InvalidReading("seq", "must be a whole number from 0 to 2^53 - 1")
    reading["ts"] = _timestamp(reading["ts"], now, max_future) if "ts" in reading else now
    metrics = 0
    for name, value in item.items():
        if name in _FIELDS:
            continue
        metrics += 1
        if metrics > MAX_METRICS:
            raise InvalidReading("", f"at most {MAX_METRICS} metrics")
        low, high = _bounds.get(name) or _learn_bounds(name)
        if type(value) not in _NUMBERS or not low <= value <= high:
            raise InvalidReading(name, _value_problem(name, value))
    if not metrics:
        raise InvalidReading("", "a reading needs at least one metric")
    return reading


_FIELDS = frozenset(FIELDS)
_NUMBERS = (int, float)  # not bool, a subclass of int
_bounds = {}  # metric name -> the lowest and highest value it may take: each name a fleet sends, checked once
_MAX_NAMES_KEPT = 4096


def _learn_bounds(name):
    """Check ``name`` (raising ``InvalidReading`` for no metric name) and keep its bounds:
    its plausible range when it is one of ``METRICS``, or any finite double's within ``LARGEST``."""
    check_metric_name(name, name)
    _, low, high = METRICS.get(name, (None, -LARGEST, LARGEST))
    if len(_bounds) < _MAX_NAMES_KEPT:
        _bounds[name] = (low, high)
    return low, high


def _remembered_match(pattern):
    """Whether a text matches ``pattern``, each text a worker meets again and again (its
    devices, their boot ids and firmware versions) matched once."""
    return functools.lru_cache(maxsize=4096)(lambda text: pattern.match(text) is not None)


_is_device_id, _is_boot_id, _is_firmware_version = map(_remembered_match, (DEVICE_ID, BOOT_ID, FIRMWARE_VERSION))


def _check_text(reading, field, matches, rule):
    value = reading.get(field)
    if value is not None and not (type(value) is str and matches(value)):
        raise InvalidReading(field, f"must be {rule}")
    if value is None:
        reading.pop(field, None)


def _timestamp(ts, now, max_future):
    if ts is None:
        return now
    if not is_number(ts):
        raise InvalidReading("ts", "must be Unix seconds")
    if ts > now + max_future:
        raise InvalidReading("ts", f"is more than {max_future:g} s in the future")
    return ts if ts >= EARLIEST_SYNCED_TS else now


def check_metric_name(name, field):
    """Raise ``InvalidReading`` (a ``ValueError``) for ``field`` unless ``name`` may name a metric."""
    problem = _name_problem(name)
    if problem:
        raise InvalidReading(field, problem)


def is_metric_name(name):
    """Whether ``name`` (any JSON value) may name a metric: not a reading's field nor one the server keeps."""
    return type(name) is str and name not in NOT_METRICS and METRIC_NAME.match(name) is not None


def _name_problem(name):
    if not METRIC_NAME.match(name):
        return "a metric name is 1-32 characters of a-z 0-9 _, starting with a letter"
    if name in FIELDS:
        return "is a field of every reading, not a metric name"
    if name in RESERVED:
        return "is reserved for the server's own fields, not a metric name"
    return None


def _value_problem(name, value):
    """Why ``value`` is no value for metric ``name``, or None. A comparison with LARGEST
    refuses infinities and NaN too, and an integer too large for a double."""
    if type(value) not in (int, float) or not -LARGEST <= value <= LARGEST:
        return f"must be a finite number of at most {LARGEST:g} either way"
    limits = METRICS.get(name)
    if limits and not limits[1] <= value <= limits[2]:
        unit, low, high = limits
        return f"{value} {unit} is outside {low:g}..{high:g}"  # the value as sent: 150.0001 is not 150
    return None


def is_number(value):
    """A JSON number that is a finite double (an integer too large for one is not)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def decode_fields(fields):
    """Turn a stream entry's flat fields (strings, as Redis keeps them) back into a reading,
    without its ``PRIVATE`` ones (kept by older servers)."""
    return {name: value if name in STRING_FIELDS else _number(value)
            for name, value in fields.items() if name not in PRIVATE}


def _number(text):
    """A metric's number as it was sent: a whole number of any size stays exact (a double
    holds none past 2**53), as its event showed it."""
    return int(text) if text.lstrip("-").isdigit() else float(text)
