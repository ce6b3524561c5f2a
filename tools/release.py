"""``make release [VERSION=…] [MPY=1] [DEVICES=a,b] [RELEASE_KEY=…]``: publish the firmware over the air;
``make release TARGET=0.2.0 [DEVICES=a,b]``: target a published release again (a rollback by hand).

Packs ``firmware/`` as the boards run it (with MPY=1, modules precompiled by mpy-cross),
its ``version.py`` set to VERSION, into a release in the local server's Redis, targeted
at every device (replacing every earlier target, one device's too) or at DEVICES, its
manifest signed with the operator's release key (made by ``make provision``, which puts
its public half on each board, which installs nothing else). A version is published
once: its manifest, which boards check, never changes after. ``boot.py`` and ``main.py``
are never in a release: they are the loader that rolls a failed update back. DEVICES must
each have posted: a typo would be a release that no board asks for.
``settings.json`` is never touched. A manifest over MANIFEST_LIMIT bytes is not
published: the boards would refuse it.
"""
import argparse
import os
import pathlib
import sys
import tempfile
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (Encoding, NoEncryption, PrivateFormat, PublicFormat,
                                                          load_pem_private_key)

from server import DATA_DIR, create_app
from server.connections import client_for
from server.firmware import RELEASES, store_release, target_release
from server.readings import DEVICE_ID
from server.store import last_seen
from tools.deploy import FIRMWARE, firmware_files

MICROPYTHON = "1.20"  # the lowest MicroPython the firmware runs on
LOADER = ("boot.py", "main.py", "loader.py")  # never in a release: they roll a bad one back
RELEASE_KEY = DATA_DIR / "release-key.pem"  # git ignores var/; back it up all the same
MANIFEST_LIMIT = 4096  # bytes: a board reads no more of a manifest (firmware/ota.py's _MANIFEST_LIMIT)
WHEN_INSTALLED = ("each board installs it at its next heartbeat (every 300 s unless its settings say otherwise), "
                  "once nothing waits to be uploaded; the dashboard's card shows how it went")


def release_key(path=RELEASE_KEY, make=True):
    """The operator's Ed25519 release key from ``path``, made there (mode 0600) on first use
    unless not to ``make`` it (ValueError then): a release signed with a key just made is
    one no board installs."""
    path = pathlib.Path(path)
    if not path.exists() and not make:
        raise ValueError(f"no release key at {path}: make provision makes it and gives each board its public "
                         "half; the boards install only releases it signed")
    if path.exists():
        try:
            key = load_pem_private_key(path.read_bytes(), password=None)
        except (TypeError, ValueError):  # not PEM, or a password on it
            key = None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} holds no Ed25519 private key (PEM, without a password)")
        return key
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        f.write(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    print(f"made the release key {path}: back it up. Boards provisioned with it install only releases it "
          "signed; without it, none until each is provisioned again", file=sys.stderr)
    return key


def public_key(key):
    """The public half of ``key`` as the boards' ``release_key`` setting holds it (hex)."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def signer(key):
    """``key``'s signing of a manifest for store_release, which refuses a manifest the boards would."""
    def sign(manifest):
        if len(manifest) > MANIFEST_LIMIT:
            raise ValueError(f"its manifest would be {len(manifest)} bytes, and boards refuse one over "
                             f"{MANIFEST_LIMIT}: release fewer files")
        return key.sign(manifest)

    return sign


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
    parser.add_argument("--target", default="", help="a published release to target again, not a new one")
    parser.add_argument("--key", default="", help=f"the release key; default: {RELEASE_KEY}")
    parser.add_argument("--source", type=pathlib.Path, default=FIRMWARE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    version = args.version or f"{current_version(args.source)}+{time.strftime('%Y%m%d%H%M%S')}"
    client = client_for(create_app().config)
    devices = [device for device in args.devices.split(",") if device]
    try:
        unknown = [device for device in devices if DEVICE_ID.match(device) and last_seen(client, device) is None]
        if unknown:
            raise ValueError(f"no device {unknown[0]!r} has posted a reading: check DEVICES")
        if args.target:
            target_release(client, args.target, devices)
            print(f"firmware {args.target}: targeted again at {', '.join(devices) or 'every device'}; {WHEN_INSTALLED}")
            return 0
        if client.hexists(RELEASES, version):
            raise ValueError(f"{version} is published already, and boards may hold its manifest: give the "
                             f"release a new VERSION, or target that one again with TARGET={version}")
        manifest = store_release(client, version, release_files(version, args.mpy, args.source),
                                 MICROPYTHON, devices, signer(release_key(args.key or RELEASE_KEY, make=False)))
    except ValueError as error:
        print(f"release: {error}", file=sys.stderr)
        return 2
    size = sum(entry["size"] for entry in manifest["files"])
    print(f"firmware {version}: {len(manifest['files'])} files, {size} bytes, for "
          f"{', '.join(devices) or 'every device'}; {WHEN_INSTALLED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
