"""``make release [VERSION=…] [MPY=1] [DEVICES=a,b]``: publish the firmware over the air.

Packs ``firmware/`` as the boards run it (with MPY=1, modules precompiled by mpy-cross),
its ``version.py`` set to VERSION, into a release in the local server's Redis, targeted
at every device or at DEVICES. ``boot.py`` and ``main.py`` are never in a release: they
are the loader that rolls a failed update back. ``settings.json`` is never touched.
"""
import argparse
import pathlib
import sys
import tempfile
import time

from server import create_app
from server.firmware import store_release
from server.store import connect
from tools.deploy import FIRMWARE, firmware_files

MICROPYTHON = "1.20"  # the lowest MicroPython the firmware runs on
LOADER = ("boot.py", "main.py", "loader.py")  # never in a release: they roll a bad one back


def current_version(source=FIRMWARE):
    return (source / "version.py").read_text().split('"')[1]


def release_files(version, mpy=False, source=FIRMWARE):
    """{path on the board: bytes} for a release of ``source``."""
    with tempfile.TemporaryDirectory() as build:
        staged = pathlib.Path(build) / "source"
        staged.mkdir()
        for path in source.glob("*.py"):
            if path.name not in LOADER:
                (staged / path.name).write_bytes(path.read_bytes())
        (staged / "version.py").write_text(f'VERSION = "{version}"\n')
        files = firmware_files(pathlib.Path(build) if mpy else None, staged)
        return {path.name: path.read_bytes() for path in files}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="make release", description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="", help="default: firmware/version.py's, plus the time")
    parser.add_argument("--mpy", action="store_true", help="precompile modules with mpy-cross")
    parser.add_argument("--devices", default="", help="comma-separated; default: every device")
    parser.add_argument("--source", type=pathlib.Path, default=FIRMWARE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    version = args.version or f"{current_version(args.source)}+{time.strftime('%Y%m%d%H%M')}"
    client = connect(create_app().config["REDIS_URL"])
    devices = [device for device in args.devices.split(",") if device]
    try:
        manifest = store_release(client, version, release_files(version, args.mpy, args.source),
                                 MICROPYTHON, devices)
    except ValueError as error:
        print(f"release: {error}", file=sys.stderr)
        return 2
    size = sum(entry["size"] for entry in manifest["files"])
    print(f"firmware {version}: {len(manifest['files'])} files, {size} bytes, for "
          f"{', '.join(devices) or 'every device'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
