"""``make provision PORT=… DEVICE=kitchen``: the board's settings, with a fresh token.

Asks for the Wi-Fi name and password (or takes WIFI_SSID / WIFI_PASSWORD), makes the
device's token with the server's CLI, points the board at this machine's LAN address,
gives it the public half of the release key (``make release``'s, made here on first use:
the board installs only releases it signed), and writes ``settings.json`` straight to
the board: the secrets never touch the repo.
"""
import argparse
import getpass
import json
import os
import re
import subprocess
import sys
import tempfile

from tools.deploy import FIRMWARE, mpremote
from tools.release import RELEASE_KEY, public_key, release_key


def lan_address():
    """This machine's first global IPv4 address, as the board will reach it."""
    result = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                            capture_output=True, text=True)
    found = re.search(r"inet (\d+\.\d+\.\d+\.\d+)", result.stdout)
    return found.group(1) if found else "127.0.0.1"


def make_token(device):
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "server", "devices", "add", device],
                            capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"provision: could not make a token (is the server's Redis up?)\n{result.stderr}")
    return result.stdout.strip()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="make provision", description=__doc__.splitlines()[0])
    parser.add_argument("--port", default="")
    parser.add_argument("--device", default="")
    parser.add_argument("--ssid", default=os.environ.get("WIFI_SSID", ""))
    parser.add_argument("--password", default=os.environ.get("WIFI_PASSWORD"))
    parser.add_argument("--server", default="", help="default: http://<this machine's LAN address>:5000")
    parser.add_argument("--sensor", default="dht22")
    parser.add_argument("--pin", type=int, default=4)
    parser.add_argument("--key", default="", help=f"the release key; default: {RELEASE_KEY}")
    args = parser.parse_args(argv)
    if not args.port or not args.device:
        print("provision: PORT and DEVICE are needed, e.g. make provision PORT=/dev/ttyUSB0 DEVICE=kitchen",
              file=sys.stderr)
        return 2
    try:
        key = public_key(release_key(args.key or RELEASE_KEY))
    except ValueError as error:
        print(f"provision: {error}", file=sys.stderr)
        return 2
    settings = json.loads((FIRMWARE / "settings.example.json").read_text())
    settings.update(wifi_ssid=args.ssid or input("Wi-Fi name: "),
                    wifi_password=args.password if args.password is not None else getpass.getpass("Wi-Fi password: "),
                    server=args.server or f"http://{lan_address()}:5000", device=args.device,
                    token=make_token(args.device), sensor=args.sensor, pin=args.pin, release_key=key)
    with tempfile.TemporaryDirectory() as private:
        path = os.path.join(private, "settings.json")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            json.dump(settings, f, indent=1)
        if not mpremote(args.port, ["fs", "cp", path, ":settings.json"]):
            return 1
    print(f"provisioned {args.device}: server {settings['server']}; next: make deploy PORT={args.port}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
