"""What a viewer makes of a device: a friendly name, a group (a room, say) to sort the
cards by, hidden from the dashboard, or deleted with its history.

A device's id is what the board and its token write as, so it never changes; the
friendly name is only shown. Deleting removes everything kept about the device (its
latest values, history, thresholds, alert state, rate limit state) in one script, and
announces it, so every open dashboard drops its card; its rollups go right after
(``rollups.forget``). Its tokens stay unless revoked
too (``?revoke=1``, ``flask devices delete --revoke``): a board that posts again comes back as new.
Revoked, its readings are refused over HTTP and MQTT alike (``auth.revoke_tokens``).

``PATCH /api/devices/<id>`` with ``{"name"?, "group"?, "hidden"?}`` (an empty name or
group removes it), ``DELETE /api/devices/<id>[?revoke=1]``; ``flask --app server devices
list|name|group|hide|show|delete``. Each change is a ``device`` event, so other dashboards
follow it live.
"""
import json
import time

import click
from flask import Blueprint, abort, request

from . import rollups
from .auth import REFUSED_UNTIL_ADDED, devices_cli, revoke_tokens
from .connections import get_redis
from .firmware import TARGETS
from .readings import DEVICE_ID, InvalidReading, parse_json
from .retries import seqs_key
from .shards import LUA_PREFIX, shards_of
from .store import (CHANNEL, TOKENS, alerting_key, device_key, device_readings, known_devices, meta_key,
                    thresholds_key)
from .viewers import viewer_required

bp = Blueprint("devices", __name__)

TEXTS = {"name": 64, "group": 32}  # a label's longest length

# KEYS: the device's shard's tag, then the device's own keys. ARGV: the device, the
# channel. 1 if it existed.
_DELETE = LUA_PREFIX + """
local existed = redis.call('ZREM', P .. 'devices', ARGV[1])
redis.call('DEL', unpack(KEYS, 2))
redis.call('HDEL', P .. 'stream-weights', ARGV[1])
if existed == 1 then
  redis.call('PUBLISH', ARGV[2], cjson.encode({type = 'device', data = {device = ARGV[1], status = 'deleted'}}))
end
return existed
"""

# KEYS: the device's shard's tag. ARGV: the device, the channel, then pairs of a label and
# its text ("" removes it). Written only while the device is known, so a delete in between
# leaves no label behind; its labels as they are now (nil: no such device).
_DESCRIBE = LUA_PREFIX + """
if not redis.call('ZSCORE', P .. 'devices', ARGV[1]) then return nil end
local key = P .. 'meta:' .. ARGV[1]
for i = 3, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', key, ARGV[i]) else redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
end
local name, group, hidden = unpack(redis.call('HMGET', key, 'name', 'group', 'hidden'))
local labels = {device = ARGV[1], name = name or '', group = group or '', hidden = hidden ~= false}
redis.call('PUBLISH', ARGV[2], cjson.encode({type = 'device', data = labels}))
return cjson.encode(labels)
"""


def describe(client, device, changes):
    """Set (or, given ``""``/``False``, remove) a device's ``name``, ``group`` and ``hidden``;
    returns all three as they are now. Raises ValueError saying what is wrong, LookupError
    for a device the server does not know."""
    for field, value in changes.items():
        if field == "hidden":
            if not isinstance(value, bool):
                raise ValueError("hidden: must be true or false")
        elif field not in TEXTS:
            raise ValueError(f"{field}: not a device setting (name, group, hidden)")
        elif not isinstance(value, str) or len(value.strip()) > TEXTS[field] or not value.isprintable():
            raise ValueError(f"{field}: must be text of at most {TEXTS[field]} printable characters")
    texts = [text for field, value in changes.items()
             for text in (field, value.strip() if isinstance(value, str) else "1" if value else "")]
    described = client.register_script(_DESCRIBE)(keys=[shards_of(client).prefix(device)],
                                                  args=[device, CHANNEL, *texts])
    if described is None:
        raise LookupError(f"no device {device!r} has sent a reading")
    meta = json.loads(described)
    del meta["device"]
    return meta


def labels(stored):
    """A device's ``name``, ``group`` and ``hidden`` from its ``meta:<device>`` hash."""
    return {"name": stored.get("name", ""), "group": stored.get("group", ""), "hidden": "hidden" in stored}


def delete(client, device):
    """Delete everything kept about ``device``; False if there was no such device (or
    the name is none a device can have: it is never a pattern of several)."""
    if not DEVICE_ID.match(device):
        return False
    shards = shards_of(client)
    keys = [shards.prefix(device), device_key(client, device), meta_key(client, device),
            device_readings(client, device), thresholds_key(client, device), alerting_key(client, device),
            seqs_key(client, device), *(shards.key(device, name) for name in (
                f"ratelimit:{device}", f"ratelimit:{device}:readings", f"alert-budget:{device}",
                f"alerts-muted:{device}"))]
    existed = bool(client.register_script(_DELETE)(keys=keys, args=[device, CHANNEL]))
    client.hdel(TARGETS, device)
    rollups.forget(client, device)
    return existed


def remove(client, device, revoke):
    """``delete`` the device and, with ``revoke``, its tokens first; returns how many tokens
    were revoked. LookupError if there was nothing to delete or revoke."""
    revoked = revoke_tokens(client, device) if revoke else 0
    if not delete(client, device) and not revoked:
        raise LookupError(f"no device {device!r} has sent a reading")
    return revoked


@bp.patch("/api/devices/<device>")
@viewer_required
def patch_device(device):
    try:
        changes = parse_json(request.get_data())
    except InvalidReading:
        changes = None
    if not isinstance(changes, dict) or not changes:
        abort(400, 'send {"name"?, "group"?, "hidden"?} as JSON')
    try:
        return dict(describe(get_redis(), device, changes), device=device)
    except LookupError as error:
        abort(404, str(error))
    except ValueError as error:
        abort(400, str(error))


@bp.delete("/api/devices/<device>")
@viewer_required
def delete_device(device):
    revoke = request.args.get("revoke", "0")
    if revoke not in ("0", "1"):
        abort(400, "revoke: 1 (its tokens too) or 0")
    try:
        remove(get_redis(), device, revoke == "1")
    except LookupError as error:
        abort(404, str(error))
    return "", 204


def _describe_command(device, **changes):
    try:
        meta = describe(get_redis(), device, changes)
    except (LookupError, ValueError) as error:
        raise click.UsageError(str(error))
    click.echo(f"{device}: {json.dumps(meta)}")


@devices_cli.command("name")
@click.argument("device")
@click.argument("name", default="")
def name_command(device, name):
    """Show DEVICE as NAME on the dashboard (no NAME: its id again)."""
    _describe_command(device, name=name)


@devices_cli.command("group")
@click.argument("device")
@click.argument("group", default="")
def group_command(device, group):
    """Put DEVICE's card in GROUP, a room say (no GROUP: in none)."""
    _describe_command(device, group=group)


@devices_cli.command("hide")
@click.argument("device")
def hide_command(device):
    """Hide DEVICE's card (it goes on storing readings)."""
    _describe_command(device, hidden=True)


@devices_cli.command("show")
@click.argument("device")
def show_command(device):
    """Show DEVICE's card again."""
    _describe_command(device, hidden=False)


@devices_cli.command("delete")
@click.argument("devices", nargs=-1, required=True)
@click.option("--revoke", is_flag=True, help="revoke their tokens too, so they cannot post again")
@click.confirmation_option(prompt="Delete the devices and all their history?")
def delete_command(devices, revoke):
    """Delete each DEVICE (a simulator's sim-1 sim-2 …) and everything kept about it: latest
    values, history, thresholds."""
    unknown = []
    for device in dict.fromkeys(devices):  # each once, however often named
        try:
            revoked = remove(get_redis(), device, revoke)
        except LookupError as error:
            unknown.append(str(error))
            continue
        click.echo(f"deleted {device}" + (f"; revoked {revoked} token(s): {REFUSED_UNTIL_ADDED}" if revoke else ""))
    if unknown:
        raise click.ClickException("; ".join(unknown))


@devices_cli.command("list")
def list_command():
    """Every device: its name, group, hidden or not, when it last posted, and its tokens."""
    client = get_redis()
    tokens = {}
    for key in shards_of(client).each(TOKENS):
        for owner in client.hvals(key):
            tokens[owner] = tokens.get(owner, 0) + 1
    seen_at = dict(known_devices(client))
    names = sorted(set(tokens) | set(seen_at))
    with client.pipeline(transaction=False) as pipe:
        for device in names:
            pipe.hgetall(meta_key(client, device))
        metas = pipe.execute()
    click.echo("device\tname\tgroup\thidden\tlast seen\ttokens")
    for device, stored in zip(names, metas):
        meta = labels(stored)
        seen = f"{_ago(time.time() - seen_at[device])} ago" if device in seen_at else "never"
        click.echo("\t".join([device, meta["name"] or "-", meta["group"] or "-", "yes" if meta["hidden"] else "no",
                              seen, str(tokens.get(device, 0))]))


def _ago(seconds):
    """``42 s``, ``5 min``, ``3 h`` or ``2 d``."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f} {unit}"
    return f"{max(seconds, 0):.0f} s"
