"""Firmware releases, served to the boards that they target (over-the-air updates).

A release is a manifest (version, the lowest MicroPython it needs, the devices it is for,
each file's path, size and SHA-256): JSON text in the hash ``firmware:releases``, its
Ed25519 signature (hex) in ``firmware:signatures``, and its files, content-addressed, in
``firmware:file:<sha256>`` (base64, since the pool decodes replies as text). ``make
release`` signs and publishes one (``tools/release.py``) with a key the server never
holds: a board installs only what that key signed, so neither this server nor anyone who
can write to Redis can make it run other code. ``firmware:target`` says which release
each device should run: a device's own entry, else ``*`` for all.

Only device tokens read these routes. ``GET /api/firmware?fw=<running>`` answers 204, or
``{"version"}`` of the release that targets the device; ``GET /api/firmware/<version>``
its manifest; ``GET /api/firmware/files/<sha>`` a file. A device reads only the
manifests and files of the releases targeted at it or at every device: others are 404.
``POST /api/firmware/report`` takes ``{"version", "status": "updating" | "updated" |
"failed", "reason"?}`` (``reason`` is cut to ``REASON_LENGTH`` characters, a half of a
UTF-16 pair alone as a ``?``), kept on the device (``fw_update``, ``fw_status``, ``fw_error``),
logged quoted, and published as a ``device`` event for the dashboard; it counts against
the device's upload rate limit.
With auth off a board names itself (``&device=``), since no token says which it is; one
that names none reads only the releases for every device.
"""
import base64
import hashlib
import json
import logging
import time

from flask import Blueprint, Response, abort, current_app, request

from .auth import authenticate
from .connections import get_redis
from .loglimit import LinesPerMinute
from .ratelimit import take_request
from .readings import DEVICE_ID, DEVICE_RULE, FIRMWARE_VERSION, InvalidReading, parse_json
from .store import CHANNEL, device_key, note_update

bp = Blueprint("firmware", __name__)
log = logging.getLogger(__name__)

RELEASES = "firmware:releases"
SIGNATURES = "firmware:signatures"
SIGNATURE_HEADER = "Sensorcast-Signature"  # the manifest's signature, as boards read it
TARGETS = "firmware:target"
ALL_DEVICES = "*"
STATUSES = ("updating", "updated", "failed")
UPDATE_STATE = ("fw_update", "fw_status", "fw_error")  # kept on device:<id>, as text
VERSION_RULE = "1-32 characters of A-Z a-z 0-9 _ . + -"
REASON_LENGTH = 200  # characters of a report's reason that are kept


def file_key(digest):
    return f"firmware:file:{digest}"


def store_release(client, version, files, micropython="1.20", devices=(), sign=None):
    """Keep ``files`` ({path: bytes}) as release ``version`` and target it at ``devices``
    (all when empty: every earlier target goes, one device's too); ``sign`` (the release
    key's: bytes -> signature) signs the manifest, which boards refuse unsigned. Returns
    the manifest; ValueError for a version or a device no release or board may have."""
    if not FIRMWARE_VERSION.fullmatch(version):
        raise ValueError(f"version: {VERSION_RULE}")
    _check_devices(devices)
    manifest = {"version": version, "micropython": micropython, "devices": sorted(devices),
                "published": time.time(), "files": []}
    with client.pipeline() as pipe:
        for path, content in sorted(files.items()):
            digest = hashlib.sha256(content).hexdigest()
            manifest["files"].append({"path": path, "size": len(content), "sha256": digest})
            pipe.set(file_key(digest), base64.b64encode(content).decode())
        text = json.dumps(manifest)
        pipe.hset(RELEASES, version, text)
        if sign:
            pipe.hset(SIGNATURES, version, sign(text.encode()).hex())
        else:
            pipe.hdel(SIGNATURES, version)
        _target(pipe, version, devices)
        pipe.execute()
    _publish_targets(client)
    log.info("firmware %s published%s for %s", version, "" if sign else " unsigned",
             ", ".join(devices) or "every device")
    return manifest


def target_release(client, version, devices=()):
    """Target the published release ``version`` at ``devices`` again (all when empty: every
    earlier target goes): how a release is rolled back by hand. Its manifest is as the boards
    may hold it. ValueError for none published, or devices its signed manifest is not for."""
    _check_devices(devices)
    text = client.hget(RELEASES, version)
    if text is None:
        raise ValueError(f"no release {version!r} is published")
    signed_for = json.loads(text)["devices"]
    if signed_for and not set(devices or (ALL_DEVICES,)) <= set(signed_for):
        raise ValueError(f"{version} is signed for {', '.join(signed_for)} only: the boards would refuse it")
    with client.pipeline() as pipe:
        _target(pipe, version, devices)
        pipe.execute()
    _publish_targets(client)
    log.info("firmware %s targeted again at %s", version, ", ".join(devices) or "every device")


def _check_devices(devices):
    for device in devices:
        if not DEVICE_ID.match(device):
            raise ValueError(f"devices: {device!r} is no device's name ({DEVICE_RULE}; several: a,b)")


def _target(pipe, version, devices):
    if not devices:
        pipe.delete(TARGETS)
    pipe.hset(TARGETS, mapping={device: version for device in devices or (ALL_DEVICES,)})


def _publish_targets(client):
    """A ``targets`` event of every target now, so each page says which release is out."""
    client.publish(CHANNEL, json.dumps({"type": "targets", "data": client.hgetall(TARGETS)}))


def target(targets, device):
    """The version ``device`` should run, given the entries of ``firmware:target``, or None."""
    return targets.get(device) or targets.get(ALL_DEVICES)


def _device(named=True):
    """The device asking: its token's, or with auth off the one it names (``?device=``);
    one that names none (or no valid one) is "", or refused when it must be ``named``."""
    device = authenticate() or request.args.get("device", "")
    if DEVICE_ID.fullmatch(device):
        return device
    if named:
        abort(400, "device: with auth off, name the device asking (?device=)")
    return ""


def _fetchable(client, device):
    """The versions ``device`` may download: the release targeted at it, the one for all."""
    targets = client.hgetall(TARGETS)
    return {targets.get(device), targets.get(ALL_DEVICES)} - {None}


@bp.get("/api/firmware")
def check():
    """The few bytes a board reads at every heartbeat: which release it should run. A board
    that runs the release it was last said to be ``updating`` to has it: should its own
    ``updated`` report have gone astray (the server away, a power cut), this says so."""
    client, device, running = get_redis(), _device(), request.args.get("fw")
    with client.pipeline(transaction=False) as pipe:  # one round trip: every board asks at every heartbeat
        targets, update = pipe.hgetall(TARGETS).hmget(device_key(client, device), "fw_update", "fw_status").execute()
    if running and update == [running, "updating"]:
        note_update(client, device, running, "updated", "")
    version = target(targets, device)
    if not version or version == running:
        return "", 204
    return {"version": version}


@bp.get("/api/firmware/<version>")
def manifest(version):
    device, client = _device(named=False), get_redis()
    release = client.hget(RELEASES, version) if version in _fetchable(client, device) else None
    if release is None:
        abort(404, f"no firmware {version!r} for this device")
    log.info("firmware %s: %s downloads it", version, device or "a board that names none")
    signature = client.hget(SIGNATURES, version)  # none: the boards refuse it
    return Response(release, mimetype="application/json",
                    headers={SIGNATURE_HEADER: signature} if signature else {})


@bp.get("/api/firmware/files/<digest>")
def file(digest):
    client = get_redis()
    versions = _fetchable(client, _device(named=False))
    manifests = [json.loads(text) for text in client.hmget(RELEASES, *versions) if text] if versions else []
    listed = any(entry["sha256"] == digest for release in manifests for entry in release["files"])
    content = client.get(file_key(digest)) if listed else None
    if content is None:
        abort(404, "no such firmware file for this device")
    return Response(base64.b64decode(content), mimetype="application/octet-stream")


@bp.post("/api/firmware/report")
def report():
    """A board says how its update goes: kept on the device, published, and logged (ten
    lines a minute per device at most, so a board reporting in a loop cannot fill the log)."""
    device, client = _device(), get_redis()
    take_request(client, device, time.time(), current_app.config)
    try:
        body = parse_json(request.get_data())
    except InvalidReading as error:
        abort(400, str(error))
    if not isinstance(body, dict) or body.get("status") not in STATUSES:
        abort(400, 'send {"version", "status": "updating" | "updated" | "failed", "reason"?}')
    version, status, reason = body.get("version"), body["status"], body.get("reason") or ""
    if not isinstance(version, str) or not FIRMWARE_VERSION.fullmatch(version):
        abort(400, f"version: must be {VERSION_RULE}")
    if not isinstance(reason, str):
        abort(400, "reason: must be text")
    reason = reason[:REASON_LENGTH].encode(errors="replace").decode()  # a lone surrogate (JSON's "\ud800") is no UTF-8
    reason = "".join(char if char.isprintable() else " " for char in reason)  # one line, no terminal codes
    note_update(client, device, version, status, reason)
    turn = current_app.extensions.setdefault("sensorcast.reports-logged", LinesPerMinute()).take(device)
    if turn:
        (log.warning if status == "failed" else log.info)("firmware %r on %s: %s %r%s", version, device, status,
                                                          reason, "; its next reports this minute go unlogged"
                                                          if turn == "last" else "")
    return "", 204
