"""Over-the-air install. node.py notices a newer release at a heartbeat, writes its
version to ota-pending.json and resets; boot.py then calls install_pending() before
anything else has taken the heap. Each file is downloaded into staging/ in CHUNK-byte
pieces and its size and SHA-256 checked; only when every file checks does loader.py
swap them in, and the board resets into a trial of the release. A refused release is
written to ota-failed.json, which node.py reports, and not tried again."""
import binascii
import gc
import os
import sys

import machine

import loader
import net
import settings as settings_file
from uplink import Uplink

try:
    import hashlib
except ImportError:
    import uhashlib as hashlib
try:
    import requests
except ImportError:
    import urequests as requests

CHUNK = 512


def log(message):
    print("update: " + message)


def install_pending():
    """The release node.py asked for, tried once: the request is gone whatever happens."""
    pending = loader.read(loader.PENDING)
    loader.remove(loader.PENDING)
    settings = settings_file.load()
    wifi = net.Wifi(settings["wifi_ssid"], settings["wifi_password"], log)
    if not wifi.up(lambda: None):
        log("no network; node.py will ask again")
        return
    uplink = Uplink(settings["server"], settings["token"], 0, settings["timeout"], log)
    install(pending["version"], uplink, settings["device"])


def install(version, uplink, device):
    uplink.call("POST", "/api/firmware/report?device=" + device, {"version": version, "status": "updating"}, "report")
    _, manifest = uplink.call("GET", "/api/firmware/" + version, None, "manifest")
    problem = "no manifest" if manifest is None else (_refuse(manifest) or _download(manifest, uplink))
    if problem:
        log("%s refused: %s" % (version, problem))
        loader.write(loader.FAILED, {"version": version, "reason": problem, "reported": False})
        loader.clean()
        return
    log("%s checks; swapping it in and restarting" % version)
    try:
        loader.swap(version, [entry["path"] for entry in manifest["files"]])
    finally:  # a swap the flash refused halfway is rolled back at the next boot
        machine.reset()


def _refuse(manifest):
    needed = tuple(int(part) for part in manifest["micropython"].split("."))
    if tuple(sys.implementation.version[:len(needed)]) < needed:
        return "it needs MicroPython %s" % manifest["micropython"]
    for entry in manifest["files"]:
        if "/" in entry["path"] or entry["path"] in loader.LOADER:
            return "it would replace %s" % entry["path"]
    return None


def _download(manifest, uplink):
    loader.clean()
    if not loader.exists(loader.STAGING):
        os.mkdir(loader.STAGING)
    buffer = memoryview(bytearray(CHUNK))
    for entry in manifest["files"]:
        problem = _fetch(entry, uplink, buffer)
        gc.collect()
        if problem:
            return "%s: %s" % (entry["path"], problem)
    return None


def _fetch(entry, uplink, buffer):
    response = None
    try:
        response = requests.get(uplink.server + "/api/firmware/files/" + entry["sha256"],
                                headers=uplink.headers, timeout=uplink.timeout)
        if response.status_code != 200:
            return "HTTP %d" % response.status_code
        digest, left = hashlib.sha256(), entry["size"]
        with open(loader.STAGING + "/" + entry["path"], "wb") as f:
            while left > 0:
                count = response.raw.readinto(buffer[:min(CHUNK, left)])
                if not count:
                    break
                digest.update(buffer[:count])
                f.write(buffer[:count])
                left -= count
        if left or binascii.hexlify(digest.digest()).decode() != entry["sha256"]:
            return "wrong size or SHA-256"
        return None
    except (OSError, ValueError) as error:
        return repr(error)
    finally:
        if response is not None:
            response.close()
