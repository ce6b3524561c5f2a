"""Over-the-air install. node.py notices a newer release at a heartbeat, writes its
version to ota-pending.json and resets; boot.py then calls install_pending() before
anything else has taken the heap. The release's manifest must be signed with the key
whose public half is the board's ``release_key`` setting (ed25519.py checks it), and be
meant for this board, before anything is downloaded. Each file is then downloaded into
staging/ in CHUNK-byte pieces and its size and SHA-256 checked against the manifest;
only when every file checks does loader.py swap them in, and the board resets into a
trial of the release. Whatever goes wrong on the way (a redirect, an answer that is no
manifest, a manifest over _MANIFEST_LIMIT bytes, which is never read to its end) refuses
the release. A refused release is written to ota-failed.json, which node.py reports, and
is not tried again, unless the server or the network failed it (an answer saying the
server is away, no answer, a redirect, a download a power cut or the watchdog cut short:
ota-downloading.json says which, loader.py): that one is tried again after the backoff.
No release is tried before node.py's backoff is over, so offers forged at every
heartbeat cannot restart the board at every heartbeat.

Anyone who can answer the board's requests (a hostile Wi-Fi, a spoofed DNS name) could
answer slowly, a byte at a time within the socket timeout, and hold the board in the
install for ever. So the hardware watchdog (setting ``watchdog``, as node.py starts it)
runs from before the first request, fed only when the install gets somewhere: a request
answered, a piece of a file read, a step done. A dribbled answer resets the board within
``watchdog`` seconds, and it boots into main.py: the request is gone, node.py's backoff holds."""
import binascii
import gc
import json
import os
import sys
import time

import machine
from micropython import const

import loader
import net
from uplink import AWAY, Uplink

try:
    import hashlib
except ImportError:
    import uhashlib as hashlib

_CHUNK = const(512)
_MANIFEST_LIMIT = const(4096)  # bytes; tools/release.py's MANIFEST_LIMIT publishes none longer
_SIGNATURE = const("sensorcast-signature")  # the manifest's header: its Ed25519 signature, hex


def log(message):
    print("update: " + message)


def install_pending():
    """The release node.py asked for, tried once: the request is gone whatever happens.
    The try ends in a reset whatever happens, since nothing stops a watchdog once started:
    main.py then starts with none until node.py starts its own, and no wait on the way
    (a node that fails to start waits 30 s to try again) can outlast it."""
    pending = loader.read(loader.PENDING)
    loader.remove(loader.PENDING)
    settings = read_settings()
    feed = start_watchdog(settings["watchdog"])
    try:
        wifi = net.Wifi(settings["wifi_ssid"], settings["wifi_password"], log)
        if not wifi.up(feed):
            log("no network; node.py asks again after its backoff")
            return
        uplink = Uplink(settings["server"], settings["token"], 0, settings["timeout"], log)
        uplink.kept_headers = (_SIGNATURE,)
        install(pending["version"], uplink, settings["device"], settings.get("release_key"), feed)
    finally:
        machine.reset()


def start_watchdog(seconds):
    """The hardware watchdog's feed, started as node.py starts it (none when ``seconds`` is 0)."""
    if not seconds:
        return lambda: None
    return machine.WDT(timeout=seconds * 1000).feed


def read_settings():
    """The board's settings; then settings.py goes, as in node.py: the signature check needs the heap."""
    import settings

    try:
        return settings.load()
    finally:
        del sys.modules["settings"]
        gc.collect()


def install(version, uplink, device, key, feed):
    """Check the release, tell the server it is ``updating`` (not before: the signature
    check needs a heap that no request has cut up yet), download it and swap it in; the
    caller resets the board then. ``feed`` feeds the watchdog at each step."""
    try:
        manifest, problem = _manifest(version, uplink, device, key, feed)
        problem = problem or _refuse(manifest, version, device)
        if not problem:
            loader.write(loader.DOWNLOADING, {"version": version})  # a restart on the way: failed (loader.recover)
            uplink.call("POST", "/api/firmware/report?device=" + device, {"version": version, "status": "updating"},
                        "report")
            feed()
            problem = _download(manifest, uplink, device, feed)
        again = False
    except Exception as error:  # the network failed, or the server is away: tried again after the backoff
        problem, again = repr(error), True
    if problem:
        log("%s refused: %s" % (version, problem))
        loader.write(loader.FAILED, {"version": version, "reason": problem, "reported": False, "again": again})
        loader.clean()
        loader.remove(loader.DOWNLOADING)
        return
    log("%s checks; swapping it in and restarting" % version)
    loader.swap(version, [entry["path"] for entry in manifest["files"]])  # if halfway, rolled back at the next boot
    loader.remove(loader.DOWNLOADING)  # the swap's marker speaks for it from its start


def _manifest(version, uplink, device, key, feed):
    """The release's manifest, if ``key`` (hex) signed it, and None; or None and why not
    (raised, if the server's answer or the network failed)."""
    if not key:
        return None, "settings.json has no release_key: make provision again"
    response = uplink.open("GET", "/api/firmware/%s?device=%s" % (version, device))
    try:
        feed()
        away(response)
        if response.status_code != 200:
            return None, "no manifest (HTTP %d)" % response.status_code
        signature = response.headers.get(_SIGNATURE, "")
        text = _head(response.raw)  # response.content would read on to the end
    finally:
        response.close()
    if len(text) > _MANIFEST_LIMIT:
        return None, "manifest too large (over %d bytes)" % _MANIFEST_LIMIT
    feed()
    start = time.ticks_ms()
    try:
        signed = _signed(key, signature, text)
    except MemoryError:  # refused, so that node.py does not restart into it again and again
        return None, "too little free heap to check its signature"
    feed()
    if not signed:
        return None, "its manifest is not signed with this board's release key"
    log("%s: the manifest is signed with this board's release key (checked in %d ms)"
        % (version, time.ticks_diff(time.ticks_ms(), start)))
    return json.loads(text), None


def away(response):
    """OSError for an answer saying the server is away (a gateway's 502, a pause): no fault
    of the release, as no answer is none."""
    if response.status_code in AWAY:
        raise OSError("HTTP %d: the server is away" % response.status_code)


def _head(stream):
    """At most _MANIFEST_LIMIT + 1 bytes of ``stream``, read in CHUNK-byte pieces: the heap
    the requests cut up may hold no free block of _MANIFEST_LIMIT bytes."""
    pieces, size = [], 0
    while size <= _MANIFEST_LIMIT:
        piece = stream.read(_CHUNK)
        if not piece:
            break
        pieces.append(piece)
        size += len(piece)
    return b"".join(pieces)


def _signed(key, signature, text):
    """Whether ``signature`` is ``key``'s over ``text`` (both hex): ed25519.py is in the
    heap only while it checks."""
    gc.collect()
    try:
        import ed25519

        return ed25519.verify(binascii.unhexlify(key), binascii.unhexlify(signature), text)
    except ValueError:  # not hex
        return False
    finally:
        sys.modules.pop("ed25519", None)
        gc.collect()


def _refuse(manifest, version, device):
    if manifest["version"] != version:
        return "its manifest is signed for %s" % manifest["version"]
    if manifest["devices"] and device not in manifest["devices"]:
        return "it is meant for other devices"
    needed = tuple(int(part) for part in manifest["micropython"].split("."))
    if tuple(sys.implementation.version[:len(needed)]) < needed:
        return "it needs MicroPython %s" % manifest["micropython"]
    for entry in manifest["files"]:
        if "/" in entry["path"] or entry["path"] in loader.LOADER:
            return "it would replace %s" % entry["path"]
    return None


def _download(manifest, uplink, device, feed):
    loader.clean()
    if not loader.exists(loader.STAGING):
        os.mkdir(loader.STAGING)
    buffer = memoryview(bytearray(_CHUNK))
    for entry in manifest["files"]:
        problem = _fetch(entry, uplink, device, buffer, feed)
        gc.collect()
        if problem:
            return "%s: %s" % (entry["path"], problem)
    return None


def _fetch(entry, uplink, device, buffer, feed):
    response = uplink.open("GET", "/api/firmware/files/%s?device=%s" % (entry["sha256"], device))
    try:
        feed()
        away(response)
        if response.status_code != 200:
            return "HTTP %d" % response.status_code
        digest, left = hashlib.sha256(), entry["size"]
        with open(loader.STAGING + "/" + entry["path"], "wb") as f:
            while left > 0:
                count = response.raw.readinto(buffer[:min(_CHUNK, left)])
                if not count:
                    break
                feed()
                digest.update(buffer[:count])
                f.write(buffer[:count])
                left -= count
        if left or binascii.hexlify(digest.digest()).decode() != entry["sha256"]:
            return "wrong size or SHA-256"
        return None
    finally:
        response.close()
