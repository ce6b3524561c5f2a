"""``make provision PORT=… DEVICE=kitchen``: the board's settings, with a fresh token.

Asks for the Wi-Fi name and password (or takes WIFI_SSID / WIFI_PASSWORD), makes the
device's token in the server's Redis (``make run``'s, or ``--data``'s), points the board
at this machine's LAN address, gives it the public half of the release key (``make
release``'s, made here on first use: the board installs only releases it signed), and
writes ``settings.json`` straight to the board: the secrets never touch the repo. Then the
board restarts: one that runs the firmware goes on with its new settings at once. Once the
board has its token, the device's earlier ones stop working: a board provisioned again, or
a new one in its place, holds the only one.

With ``--transport mqtt`` the board publishes its readings to the broker at ``--broker``
(``mqtt://[device:password@]host[:port]``; the firmware speaks plain MQTT) and keeps the
token for firmware updates over HTTP. Without a login in the URL, a new one is made, and
its line for the broker's password file printed (as ``devices add --mqtt`` does).
"""
import argparse
import getpass
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
from urllib.parse import unquote, urlsplit

from server import DATA_DIR
from server.auth import ADD_PASSWORD_LINE, drop_token, issue_token, keep_only
from server.connections import UNREACHABLE
from server.mqtt import DEFAULT_PORTS, broker_credentials
from server.readings import DEVICE_ID, DEVICE_RULE
from simulator.__main__ import local_redis, running_server
from tools.deploy import FIRMWARE, mpremote
from tools.release import RELEASE_KEY, public_key, release_key


def lan_address():
    """This machine's first global IPv4 address, as the board will reach it."""
    result = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                            capture_output=True, text=True)
    found = re.search(r"inet (\d+\.\d+\.\d+\.\d+)", result.stdout)
    return found.group(1) if found else "127.0.0.1"


def broker_settings(broker, device):
    """The board's MQTT settings for ``broker``, and the password-file line of the login
    made for it (None when the URL gives one); ``ValueError`` for a URL the board cannot use."""
    url = urlsplit(broker)
    if url.scheme != "mqtt" or not url.hostname:
        raise ValueError(f"BROKER: give mqtt://[{device}:password@]host[:port], not {broker!r}")
    user = unquote(url.username or device)
    if user != device:  # deploy/mosquitto/acl lets a device publish only under its own name
        raise ValueError(f"BROKER: the broker login must be the device's name, {device!r}, not {user!r}")
    password, line = (unquote(url.password or ""), None) if url.username else broker_credentials(device)
    settings = {"transport": "mqtt", "mqtt_host": url.hostname, "mqtt_port": url.port or DEFAULT_PORTS["mqtt"],
                "mqtt_user": user, "mqtt_password": password}
    return settings, line


def check_server(url):
    """ValueError unless the board can post to ``url``: http or https, a host, a port that is a number."""
    parts = urlsplit(url)
    try:
        reachable = parts.scheme in ("http", "https") and parts.hostname and parts.port != 0
    except ValueError:  # a port that is no number
        reachable = False
    if not reachable:
        raise ValueError(f"SERVER must be the server's address as the board reaches it, "
                         f"e.g. http://192.168.1.20:5000, not {url!r}")


def default_server(data_dir=DATA_DIR):
    """This machine as the board reaches it, on the port ``make run`` serves (5000 while it
    is not running, as ``running_server`` says)."""
    return f"http://{lan_address()}:{urlsplit(running_server(data_dir)).port}"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="make provision", description=__doc__.splitlines()[0])
    parser.add_argument("--port", default="")
    parser.add_argument("--device", default="")
    parser.add_argument("--ssid", default=os.environ.get("WIFI_SSID", ""))
    parser.add_argument("--password", default=os.environ.get("WIFI_PASSWORD"))
    parser.add_argument("--server", default="", help="default: http://<this machine's LAN address>:<make run's port>")
    parser.add_argument("--sensor", default="dht22", choices=("dht22", "dht11", "thermistor"))
    parser.add_argument("--pin", type=int, default=4, help="the sensor's GPIO (a thermistor's: an ADC1 pin, e.g. 34)")
    parser.add_argument("--key", default="", help=f"the release key; default: {RELEASE_KEY}")
    parser.add_argument("--transport", default="http", choices=("http", "mqtt"), help="how readings go up")
    parser.add_argument("--broker", default="", help="with mqtt; default: mqtt://<this machine's LAN address>")
    parser.add_argument("--data", type=pathlib.Path, default=DATA_DIR,
                        help="make run's --data folder: the server whose Redis keeps the token and whose port "
                             "the board is pointed at (default: var/)")
    args = parser.parse_args(argv)
    if not args.port or not args.device:
        print("provision: PORT and DEVICE are needed, e.g. make provision PORT=/dev/ttyUSB0 DEVICE=kitchen",
              file=sys.stderr)
        return 2
    if not DEVICE_ID.match(args.device):
        print(f"provision: DEVICE must be {DEVICE_RULE}", file=sys.stderr)
        return 2
    try:
        if args.server:
            check_server(args.server)
        key = public_key(release_key(args.key or RELEASE_KEY))
        mqtt, password_line = broker_settings(args.broker or f"mqtt://{lan_address()}", args.device) \
            if args.transport == "mqtt" else ({}, None)
    except ValueError as error:
        print(f"provision: {error}", file=sys.stderr)
        return 2
    try:
        redis_client = local_redis(args.data)
        token = issue_token(redis_client, args.device)
    except UNREACHABLE as error:
        print(f"provision: could not make a token: cannot reach the server's Redis ({error}); is `make run` "
              "running (give its --data with DATA=), or REDIS_URL set to where Redis is?", file=sys.stderr)
        return 1
    settings = json.loads((FIRMWARE / "settings.example.json").read_text())
    settings.update(wifi_ssid=args.ssid or input("Wi-Fi name: "),
                    wifi_password=args.password if args.password is not None else getpass.getpass("Wi-Fi password: "),
                    server=args.server or default_server(args.data), device=args.device,
                    token=token, sensor=args.sensor, pin=args.pin, release_key=key, **mqtt)
    with tempfile.TemporaryDirectory() as private:
        path = os.path.join(private, "settings.json")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            json.dump(settings, f, indent=1)
        if not mpremote(args.port, ["fs", "cp", path, ":settings.json"], ["reset"]):
            drop_token(redis_client, args.device, token)  # nobody has it
            return 1
    try:
        replaced = keep_only(redis_client, args.device, token)
    except UNREACHABLE as error:
        print(f"provision: the board has its new token, but {args.device}'s earlier ones still work: "
              f"could not revoke them ({error})", file=sys.stderr)
        return 1
    via = f"; readings over MQTT to {mqtt['mqtt_host']}:{mqtt['mqtt_port']}" if mqtt else ""
    earlier = f"; its {replaced} earlier token(s) no longer work" if replaced else ""
    print(f"provisioned {args.device}: server {settings['server']}{via}{earlier}; next: make deploy PORT={args.port}")
    if password_line:
        print(f"{ADD_PASSWORD_LINE}\n{password_line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
