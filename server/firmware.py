"""Firmware releases, served to the boards that they target (over-the-air updates).

A release is a manifest (version, the lowest MicroPython it needs, each file's path, size
and SHA-256) in the hash ``firmware:releases``, and its files, content-addressed, in
``firmware:file:<sha256>`` (base64, since the pool decodes replies as text). ``make
release`` publishes one (``tools/release.py``). ``firmware:target`` says which release
each device should run: a device's own entry, else ``*`` for all.

Only device tokens read these routes. ``GET /api/firmware?fw=<running>`` answers 204, or
``{"version"}`` of the release that targets the device; ``GET /api/firmware/<version>``
its manifest; ``GET /api/firmware/files/<sha>`` a file; ``POST /api/firmware/report``
takes ``{"version", "status": "updating" | "updated" | "failed", "reason"?}``, kept on
the device (``fw_update``, ``fw_status``, ``fw_error``), logged, and published as a
``device`` event for the dashboard. With auth off a board names itself in the check and
the report (``&device=``), since no token says which it is.
"""
import base64
import hashlib
import json
import logging
import re
import time

from flask import Blueprint, Response, abort, request

from .auth import authenticate
from .readings import DEVICE_ID, FIRMWARE_VERSION, InvalidReading, parse_json
from .store import CHANNEL, device_key, get_redis

bp = Blueprint("firmware", __name__)
log = logging.getLogger(__name__)

RELEASES = "firmware:releases"
TARGETS = "firmware:target"
ALL_DEVICES = "*"
STATUSES = ("updating", "updated", "failed")
UPDATE_STATE = ("fw_update", "fw_status", "fw_error")  # kept on device:<id>, as text
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def file_key(digest):
    return f"firmware:file:{digest}"


def store_release(client, version, files, micropython="1.20", devices=()):
    """Keep ``files`` ({path: bytes}) as release ``version`` and target it at ``devices``
    (all when empty); returns the manifest."""
    if not FIRMWARE_VERSION.match(version):
        raise ValueError("version: 1-32 characters of A-Z a-z 0-9 _ . + -")
    manifest = {"version": version, "micropython": micropython, "published": time.time(), "files": []}
    with client.pipeline() as pipe:
        for path, content in sorted(files.items()):
            digest = hashlib.sha256(content).hexdigest()
            manifest["files"].append({"path": path, "size": len(content), "sha256": digest})
            pipe.set(file_key(digest), base64.b64encode(content).decode())
        pipe.hset(RELEASES, version, json.dumps(manifest))
        pipe.hset(TARGETS, mapping={device: version for device in devices or (ALL_DEVICES,)})
        pipe.execute()
    log.info("firmware %s published for %s", version, ", ".join(devices) or "every device")
    return manifest


def target(targets, device):
    """The version ``device`` should run, given the entries of ``firmware:target``, or None."""
    return targets.get(device) or targets.get(ALL_DEVICES)


def _device():
    """The device asking: its token's, or with auth off the one it names (``?device=``)."""
    device = authenticate() or request.args.get("device", "")
    if not DEVICE_ID.match(device):
        abort(400, "device: with auth off, name the device asking (?device=)")
    return device


@bp.get("/api/firmware")
def check():
    """The few bytes a board reads at every heartbeat: which release it should run."""
    version = target(get_redis().hgetall(TARGETS), _device())
    if not version or version == request.args.get("fw"):
        return "", 204
    return {"version": version}


@bp.get("/api/firmware/<version>")
def manifest(version):
    device = authenticate() or "a device"  # only a device reads it; which one matters not
    release = get_redis().hget(RELEASES, version)
    if release is None:
        abort(404, f"no firmware {version!r}")
    log.info("firmware %s: %s downloads it", version, device)
    return Response(release, mimetype="application/json")


@bp.get("/api/firmware/files/<digest>")
def file(digest):
    authenticate()
    content = get_redis().get(file_key(digest)) if SHA256.match(digest) else None
    if content is None:
        abort(404, "no such firmware file")
    return Response(base64.b64decode(content), mimetype="application/octet-stream")


@bp.post("/api/firmware/report")
def report():
    device = _device()
    try:
        body = parse_json(request.get_data())
    except InvalidReading as error:
        abort(400, str(error))
    if not isinstance(body, dict) or body.get("status") not in STATUSES or not isinstance(body.get("version"), str):
        abort(400, 'send {"version", "status": "updating" | "updated" | "failed", "reason"?}')
    reason = str(body.get("reason") or "")[:200]
    client = get_redis()
    client.hset(device_key(device), mapping={"fw_update": body["version"][:32], "fw_status": body["status"],
                                             "fw_error": reason})
    client.publish(CHANNEL, json.dumps({"type": "device", "data": {
        "device": device, "status": "firmware", "fw_update": body["version"], "fw_status": body["status"],
        "fw_error": reason}}))
    (log.warning if body["status"] == "failed" else log.info)(
        "firmware %s on %s: %s %s", body["version"], device, body["status"], reason)
    return "", 204
