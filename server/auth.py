"""Device tokens: each one is shown once, kept only as its SHA-256, and writes as one device.

Tokens are 32 random bytes, so an unsalted hash is as safe as a password hash would be
and can be looked up in one step. ``flask --app server devices add kitchen`` makes one;
``devices revoke kitchen`` removes every token of that device. ``devices add --mqtt
kitchen`` also prints its MQTT broker login, which the broker checks, not the server.
``AUTH = False`` (the environment's ``SENSORCAST_AUTH=false``) turns checking off for a
trusted LAN.
"""
import hashlib
import secrets

import click
from flask import abort, current_app, request
from flask.cli import AppGroup

from .mqtt import broker_credentials, readings_topic
from .readings import DEVICE_ID
from .store import TOKENS, get_redis


def _digest(token):
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(client, device):
    token = secrets.token_urlsafe(32)
    while token.startswith("-"):  # it must pass as a command-line argument (--token T)
        token = secrets.token_urlsafe(32)
    client.hset(TOKENS, _digest(token), device)
    return token


def revoke_tokens(client, device):
    digests = [digest for digest, owner in client.hscan_iter(TOKENS) if owner == device]
    return client.hdel(TOKENS, *digests) if digests else 0


def token_device(client, token):
    return client.hget(TOKENS, _digest(token))


def authenticate():
    """The device the request's bearer token writes as; None when auth is off."""
    if not current_app.config["AUTH"]:
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        abort(401, "send the device token as 'Authorization: Bearer <token>'")
    device = token_device(get_redis(), token.strip())
    if device is None:
        abort(401, "this token is unknown or revoked")
    return device


devices_cli = AppGroup("devices", help="Manage device tokens.")


@devices_cli.command("add")
@click.argument("device")
@click.option("--mqtt", is_flag=True, help="Also make its MQTT broker password and password-file line.")
def add_device(device, mqtt):
    """Make a token that writes as DEVICE (shown once); with --mqtt, its broker login too."""
    if not DEVICE_ID.match(device):
        raise click.BadParameter("1-32 characters of a-z 0-9 _ -", param_hint="DEVICE")
    click.echo(issue_token(get_redis(), device))
    if mqtt:
        password, line = broker_credentials(device)
        click.echo(f"MQTT username: {device}\nMQTT password: {password}\npublishes to: {readings_topic(device)}\n"
                   "Add this line to the broker's password file (deploy/mosquitto/), then reload Mosquitto:\n"
                   f"{line}")


@devices_cli.command("revoke")
@click.argument("device")
def revoke_device(device):
    """Revoke every token of DEVICE."""
    click.echo(f"revoked {revoke_tokens(get_redis(), device)} token(s) of {device}")


@devices_cli.command("list")
def list_devices():
    """Devices that hold tokens, with how many."""
    counts = {}
    for owner in get_redis().hvals(TOKENS):
        counts[owner] = counts.get(owner, 0) + 1
    for device, count in sorted(counts.items()):
        click.echo(f"{device}\t{count} token(s)")
