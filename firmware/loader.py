"""The part of the firmware that updates never replace (with boot.py and main.py): it
swaps a downloaded release in, and at every boot undoes what a power cut interrupted or
rolls back a release that does not prove itself. Whatever step a power cut hits, the
board boots a whole set of files.

On the flash during an update:
  staging/NAME     the new release, downloaded and checked (ota.py)
  previous/NAME    the files it replaced
  ota.json         the marker: {"state": "swap" | "trial" | "rollback", "version", "files":
                   [[NAME, existed before]], "boots", "cycles"?, "waited"?, "reason"?, "again"?},
                   written whole, then renamed
  ota-failed.json  {"version", "reason", "reported", "again"} of the last release refused or
                   rolled back; "again": it is tried again after the backoff (the server or the
                   network failed it, or a power cut)
  ota-pending.json {"version"} that node.py wants installed at the next boot
  ota-downloading.json {"version"} being downloaded: found at boot, the download was cut
                   short (a power cut, the watchdog), and the release is failed
  ota-backoff.json {"failures" in a row, "until"}: node.py tries no update till then;
                   a release that stays ends it
"""
import json
import os

MARKER = "ota.json"
FAILED = "ota-failed.json"
PENDING = "ota-pending.json"
DOWNLOADING = "ota-downloading.json"
BACKOFF = "ota-backoff.json"
STAGING = "staging"
PREVIOUS = "previous"
LOADER = ("boot.py", "main.py", "loader.py", "loader.mpy", "settings.json")
TRIAL_BOOTS = 3  # starts in which a release on trial must post a reading (a wake from deep sleep is none),
TRIAL_CYCLES = 10  # cycles in which the server answered,
TRIAL_WAIT = 3600  # and seconds of cycles it waits for a server away (setting update_trial_wait)


def read(path):
    for name in (path, path + ".tmp"):  # a power cut between the two steps of write()
        try:
            with open(name) as f:
                return json.load(f)
        except (OSError, ValueError):
            pass
    return None


def write(path, data):
    with open(path + ".tmp", "w") as f:
        json.dump(data, f)
    remove(path)
    os.rename(path + ".tmp", path)


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def clean():
    """Empty staging/ and previous/."""
    for folder in (STAGING, PREVIOUS):
        if exists(folder):
            for name in os.listdir(folder):
                remove(folder + "/" + name)


def on_trial():
    marker = read(MARKER)
    return bool(marker) and marker["state"] == "trial"


def swap(version, names):
    """Move staging/'s files into place, the ones they replace (and a .py or .mpy of the
    same module, which would shadow them) into previous/; a trial begins."""
    touched = list(names)
    for name in names:
        stem, _, ext = name.rpartition(".")
        other = stem + (".mpy" if ext == "py" else ".py")
        if exists(other) and other not in touched:
            touched.append(other)
    marker = {"state": "swap", "version": version, "boots": 0,
              "files": [[name, exists(name)] for name in touched]}
    write(MARKER, marker)
    if not exists(PREVIOUS):
        os.mkdir(PREVIOUS)
    for name, existed in marker["files"]:
        if existed:
            os.rename(name, PREVIOUS + "/" + name)
    for name in names:
        os.rename(STAGING + "/" + name, name)
    marker["state"] = "trial"
    write(MARKER, marker)


def judge(node):
    """After a cycle of the release on trial (node.py's Node): it stays once it has posted
    (the server is told); it goes once it did not in TRIAL_CYCLES cycles in which the server
    answered or the cycle broke, or in ``update_trial_wait`` s of cycles in which the server
    was away (Wi-Fi down, no answer, a gateway's 502 or 504, a pause): the node keeps its
    readings for the release before it and resets, and the next boot rolls it back. One the
    server never answered is tried again after the backoff: the outage may not have been
    its fault. The count is kept in the marker, whatever deep sleeps or resets come between."""
    marker, settings = read(MARKER), node.settings
    if node.uplink.posted:
        remove(BACKOFF)  # the failures in a row are over
        clean()
        remove(MARKER)
        print("update: %s posts; it stays" % marker["version"])
        node.on_trial = False
        node.report(marker["version"], "updated", "")
        return
    if node.answered:
        marker["cycles"] = marker.get("cycles", 0) + 1
    else:
        marker["waited"] = marker.get("waited", 0) + settings["interval"]
    wait = settings.get("update_trial_wait", TRIAL_WAIT)
    if marker.get("cycles", 0) >= TRIAL_CYCLES:
        fail("it did not post in %d cycles" % TRIAL_CYCLES, marker=marker)
    elif marker.get("waited", 0) >= wait:
        fail("it could not reach the server in %d s" % wait, True, marker)
    else:
        write(MARKER, marker)
        return
    node.save()
    import machine

    machine.reset()


def fail(reason, again=False, marker=None):
    """The running trial gives up: the next boot rolls it back (to be tried ``again``, or never)."""
    marker = marker or read(MARKER)
    marker["state"], marker["reason"], marker["again"] = "rollback", reason, again
    write(MARKER, marker)
    print("update: giving %s up: %s" % (marker["version"], reason))


def roll_back(marker, reason):
    for name, existed in marker["files"]:
        kept = PREVIOUS + "/" + name
        if exists(kept):
            remove(name)
            os.rename(kept, name)
        elif not existed:
            remove(name)
    write(FAILED, {"version": marker["version"], "reason": reason, "reported": False,
                   "again": marker.get("again", False)})
    clean()
    remove(MARKER)


def woke_from_deep_sleep():
    import machine

    return machine.reset_cause() == machine.DEEPSLEEP_RESET


def recover():
    """At boot: fail a download cut short; count a trial's starts; roll back an interrupted
    swap, a trial out of starts, or one that gave up."""
    marker, downloading = read(MARKER), read(DOWNLOADING)
    if downloading and not marker:  # with a marker, the swap had begun: it says what becomes of the release
        reason = "the board restarted while downloading it (a power cut, or the watchdog)"
        print("update: %s failed: %s" % (downloading["version"], reason))
        write(FAILED, {"version": downloading["version"], "reason": reason, "reported": False, "again": True})
        clean()
    if downloading:
        remove(DOWNLOADING)
    if not marker:
        return
    if marker["state"] == "trial" and woke_from_deep_sleep():
        return  # the release ran a cycle to its end and slept: not a start gone wrong
    if marker["state"] == "trial" and marker["boots"] < TRIAL_BOOTS:
        marker["boots"] += 1
        write(MARKER, marker)
        return
    reasons = {"swap": "the update was interrupted",
               "trial": "it did not post a reading in %d starts" % TRIAL_BOOTS}
    print("update: rolling %s back: %s" % (marker["version"], marker.get("reason") or reasons[marker["state"]]))
    roll_back(marker, marker.get("reason") or reasons[marker["state"]])
