"""Device tokens: each one is shown once, kept only as its SHA-256, and writes as one device.

Tokens are 32 random bytes, so an unsalted hash is as safe as a password hash would be
and can be looked up in one step. ``flask --app server devices add kitchen`` makes one;
``devices revoke kitchen`` removes every token of that device. ``devices add --mqtt
kitchen`` also prints its MQTT broker login, which the broker checks, not the server: so
revoking also puts the device in ``revoked-devices``, and the server refuses its readings
over MQTT until ``devices add`` gives it a token again.
``AUTH = False`` (the environment's ``SENSORCAST_AUTH=false``) turns checking off for a
trusted LAN.
"""
import hashlib
import secrets

import click
from flask import abort, current_app, g, request
from flask.cli import AppGroup

from .connections import get_redis
from .mqtt import broker_credentials, readings_topic
from .readings import DEVICE_ID, DEVICE_RULE, NOT_METRICS
from .shards import shards_of
from .store import REVOKED_DEVICES, TOKENS, device_key, last_seen


def _digest(token):
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(client, device):
    token = secrets.token_urlsafe(32)
    while token.startswith("-"):  # it must pass as a command-line argument (--token T)
        token = secrets.token_urlsafe(32)
    shards = shards_of(client)
    with client.pipeline() as pipe:
        pipe.hset(shards.key(device, TOKENS), _digest(token), device)
        pipe.srem(shards.key(device, REVOKED_DEVICES), device)
        pipe.execute()
    return token


def _digests(client, device):
    return [digest for digest, owner in client.hscan_iter(shards_of(client).key(device, TOKENS)) if owner == device]


def revoke_tokens(client, device):
    """Revoke every token of ``device`` and refuse its readings over MQTT; returns how many
    tokens it had. Its latest values go too (its history stays): a leaked token may have
    filled its ``MAX_DEVICE_FIELDS`` names, and the board's own new metrics would then be
    refused for good. LookupError for a device with no token that never posted (a typo, say)."""
    shards = shards_of(client)
    tokens = shards.key(device, TOKENS)
    digests = _digests(client, device)
    if not digests and last_seen(client, device) is None:
        raise LookupError(f"no device {device!r}: it has no token and never posted")
    with client.pipeline() as pipe:
        pipe.sadd(shards.key(device, REVOKED_DEVICES), device)
        if digests:
            pipe.hdel(tokens, *digests)
        revoked = sum(pipe.execute()[1:])
    metrics = [name for name in client.hkeys(device_key(client, device)) if name not in NOT_METRICS]  # none come now
    if metrics:
        client.hdel(device_key(client, device), *metrics)
    return revoked


UNKNOWN_TOKEN = "this token is unknown or revoked"
KNOWN_TOKENS = 10_000  # tokens this process remembers the device of, at most
_known_devices = {}  # SHA-256 of a token -> its device


def token_device(client, token):
    return _owner(client, _digest(token))


def _owner(client, digest):
    """The device a token (its digest) writes as, from its shard's ``tokens``: the device
    is what is sought, so every shard is asked."""
    with client.pipeline(transaction=False) as pipe:
        for tokens in shards_of(client).each(TOKENS):
            pipe.hget(tokens, digest)
        return next(filter(None, pipe.execute()), None)


def authenticate(cached=False):
    """The device the request's bearer token writes as; None when auth is off.

    ``cached``: from this process's memory when it has seen the token before, with no
    Redis call, for a caller that has its own Redis call check ``g.token_digest`` again
    (ingest does, in its script: a revoked token is refused there, then forgotten here).
    """
    if not current_app.config["AUTH"]:
        return None
    digest = _bearer_digest(request.headers.get("Authorization", ""))
    if digest is None:
        abort(401, "send the device token as 'Authorization: Bearer <token>'")
    g.token_digest = digest
    device = _known_devices.get(digest) if cached else None
    if device is None:
        device = _owner(get_redis(), digest)
    if device is None:
        abort(401, UNKNOWN_TOKEN)
    if cached:
        if len(_known_devices) >= KNOWN_TOKENS:
            _known_devices.clear()
        _known_devices[digest] = device
    return device


def confirm_token():
    """Refusing a request whose token this process knew (``authenticate(cached=True)``)
    before any Redis call checked it: first ask Redis, so that a token revoked since is
    told 401, as everywhere, and learns nothing of its device."""
    digest = g.get("token_digest")
    if digest in _known_devices and _owner(get_redis(), digest) is None:
        forget_token(digest)
        abort(401, UNKNOWN_TOKEN)


def known_device(authorization):
    """The device and token digest of an ``Authorization`` header whose token this process
    has seen (``authenticate(cached=True)``), with no Redis call; else None."""
    digest = _bearer_digest(authorization)
    device = _known_devices.get(digest)
    return None if device is None else (device, digest)


def _bearer_digest(authorization):
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return _digest(token.strip())


def forget_token(digest):
    """A token found revoked: ask Redis again next time."""
    _known_devices.pop(digest, None)


def keep_only(client, device, token):
    """Revoke ``device``'s tokens but ``token`` (a board provisioned again writes with its
    new one only); returns how many."""
    others = [digest for digest in _digests(client, device) if digest != _digest(token)]
    return client.hdel(shards_of(client).key(device, TOKENS), *others) if others else 0


def drop_token(client, device, token):
    """Revoke ``token`` alone: one made for a board that never got it."""
    client.hdel(shards_of(client).key(device, TOKENS), _digest(token))


REFUSED_UNTIL_ADDED = ("the server refuses its readings, over MQTT too, until `devices add` gives it a token again "
                       "(its broker login stays valid until its line leaves the broker's password file)")

ADD_PASSWORD_LINE = ("Add this line to the broker's password file (/etc/mosquitto/sensorcast/passwords, or the "
                     "password_file your mosquitto.conf names; README: MQTT), then reload Mosquitto:")

devices_cli = AppGroup("devices", help="Manage device tokens.")


@devices_cli.command("add")
@click.argument("device")
@click.option("--mqtt", is_flag=True, help="Also make its MQTT broker password and password-file line.")
def add_device(device, mqtt):
    """Make a token that writes as DEVICE (shown once); with --mqtt, its broker login too."""
    if not DEVICE_ID.match(device):
        raise click.BadParameter(DEVICE_RULE, param_hint="DEVICE")
    token = issue_token(get_redis(), device)
    if not mqtt:
        click.echo(token)
        return
    password, line = broker_credentials(device)
    click.echo(f"token (HTTP and updates): {token}\n"
               f"MQTT username: {device}\nMQTT password: {password}\npublishes to: {readings_topic(device)}\n"
               f"{ADD_PASSWORD_LINE}\n{line}")


@devices_cli.command("revoke")
@click.argument("device")
def revoke_device(device):
    """Revoke every token of DEVICE, and refuse its readings over MQTT, until `devices add` gives it one again."""
    try:
        revoked = revoke_tokens(get_redis(), device)
    except LookupError as error:
        raise click.UsageError(str(error))
    click.echo(f"revoked {revoked} token(s) of {device}; {REFUSED_UNTIL_ADDED}")
