"""A board on the wall updates itself from the server, and never bricks: a broken or
corrupted release is refused or rolled back, one not signed with the operator's release
key is refused before anything is downloaded, and a power cut at any step of an update
(the emulated board's interpreter killed) leaves a board that boots and posts. The
emulated board runs the real boot.py, main.py and a reset as a board does."""
import base64
import errno
import hashlib
import json
import pathlib
import shutil
import time

import pytest
import requests

from server.firmware import RELEASES, SIGNATURES, TARGETS, file_key, store_release
from server.store import device_key
from tests.conftest import eventually
from tests.firmware.conftest import Proxy, node_settings
from tools.deploy import FIRMWARE
from tools.run import free_port
from tools.release import MANIFEST_LIMIT, public_key, release_files, release_key as make_release_key


@pytest.fixture
def board(emulated_board, live_server, token_for, release_key):
    return running_today(emulated_board, live_server, token_for("kitchen"), release_key)


def running_today(board, server, token, key, url=None, watchdog=0):
    """The board running today's firmware (0.1.0) as kitchen, posting to ``server`` (at
    ``url`` if given: a proxy's), provisioned with ``key``'s public half (None: provisioned
    before releases were signed), its watchdog ``watchdog`` s (0: none)."""
    for source in FIRMWARE.glob("*.py"):
        shutil.copy(source, board.flash)
    settings = node_settings(url or server.url, token, interval=0.3, heartbeat=0.3, watchdog=watchdog)
    if key:
        settings["release_key"] = public_key(key)
    (board.flash / "settings.json").write_text(json.dumps(settings))
    board.power_off()
    board.power_on()
    eventually(lambda: server.history("kitchen"))
    return board


def restart_with(board, **changes):
    """The board powered off, its settings.json changed as ``changes`` say, and on again."""
    board.power_off()
    settings = json.loads((board.flash / "settings.json").read_text())
    (board.flash / "settings.json").write_text(json.dumps(dict(settings, **changes)))
    board.power_on()


def publish(redis_client, version, key, source=FIRMWARE, devices=()):
    """``make release``: the release signed with ``key``."""
    return store_release(redis_client, version, release_files(version, source=source), devices=devices,
                         sign=key.sign)


def files_of(folder):
    return {path.name: path.read_bytes() for path in folder.glob("*.py")}


def device_state(live_server):
    [device] = [d for d in requests.get(live_server.url + "/api/devices", timeout=5).json()["devices"]
                if d["device"] == "kitchen"]
    return device


def running(live_server):
    return live_server.history("kitchen")[-1]["fw"]


@pytest.mark.parametrize("version", ["0.2.0", "0.1.0+202612011053"])  # the second as a plain make release stamps it
def test_a_published_release_is_installed_and_posts_with_its_version(board, live_server, redis_client, release_key,
                                                                     version):
    settings = (board.flash / "settings.json").read_bytes()

    publish(redis_client, version, release_key)

    eventually(lambda: running(live_server) == version, timeout=60)
    eventually(lambda: device_state(live_server).get("fw_status") == "updated")
    assert device_state(live_server)["fw_target"] == version
    assert (board.flash / "settings.json").read_bytes() == settings
    assert (board.flash / "version.py").read_text() == f'VERSION = "{version}"\n'
    assert not (board.flash / "ota.json").exists() and not list((board.flash / "previous").iterdir())
    eventually(lambda: len([r for r in live_server.history("kitchen") if r["fw"] == version]) >= 10)
    seqs = [reading["seq"] for reading in live_server.history("kitchen") if reading["fw"] == version]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # one boot: it stays, asking at each heartbeat


def test_without_tokens_a_board_still_gets_the_release_meant_for_it(emulated_board, start_server, redis_client,
                                                                   release_key):
    server = start_server(AUTH=False)
    running_today(emulated_board, server, "", release_key)

    publish(redis_client, "0.2.0", release_key, devices=["kitchen"])

    eventually(lambda: device_state(server).get("fw_status") == "updated", timeout=60)
    assert running(server) == "0.2.0"


def test_a_precompiled_release_replaces_the_source_files_that_would_shadow_it(board, live_server, redis_client,
                                                                             release_key):
    store_release(redis_client, "0.2.0", release_files("0.2.0", mpy=True), sign=release_key.sign)

    eventually(lambda: device_state(live_server).get("fw_status") == "updated", timeout=60)

    assert running(live_server) == "0.2.0"
    assert (board.flash / "node.mpy").exists() and not (board.flash / "node.py").exists()


@pytest.mark.parametrize("module, works, fails, reason, made", [
    ("node.py", "import gc\n", 'raise RuntimeError("broken on purpose")\nimport gc\n',
     "broken on purpose", 0),
    ("node.py", "        online = self.wifi.up(self.feed)\n", "        while True:\n            time.sleep(1)\n",
     "it did not post a reading in 3 starts", 0),
    ("uplink.py", '"/api/readings"', '"/api/nowhere"', "it did not post in 10 cycles", 10),
    ("node.py", "        online = self.wifi.up(self.feed)\n", '        raise RuntimeError("broken on purpose")\n',
     "it did not post in 10 cycles", 0),
], ids=["raises on import", "hangs till the watchdog fires", "cannot post", "raises in every cycle"])
def test_a_release_that_does_not_work_is_rolled_back_and_the_server_learns_why(board, live_server, redis_client,
                                                                             release_key, tmp_path, module, works,
                                                                             fails, reason, made):
    """``made``: the readings the release made in its trial, which the release after it delivers."""
    restart_with(board, watchdog=5)
    broken = tmp_path / "broken"
    shutil.copytree(FIRMWARE, broken)
    code = (broken / module).read_text()
    assert works in code
    (broken / module).write_text(code.replace(works, fails, 1))

    publish(redis_client, "0.3.0", release_key, broken)

    eventually(lambda: device_state(live_server).get("fw_status") == "failed", timeout=90)
    assert reason in device_state(live_server)["fw_error"]
    posted = len(live_server.history("kitchen"))
    eventually(lambda: len(live_server.history("kitchen")) > posted + 3)
    assert running(live_server) == "0.1.0" and files_of(board.flash) == files_of(FIRMWARE)
    assert seqs_of(live_server, "0.3.0") == list(range(1, made + 1))


def seqs_of(live_server, version):
    """The seqs of the readings ``version`` made, as stored (each start numbers them from 1)."""
    return [reading["seq"] for reading in live_server.history("kitchen") if reading["fw"] == version]


def uploads_of(version, path, body):
    """The readings of ``version`` in a request (none if it is not an upload)."""
    readings = json.loads(body) if path == "/api/readings" else []
    return [reading for reading in readings if reading["fw"] == version]


OUTAGES = {"a gateway's 502": (502, {}, b"<html>502 Bad Gateway</html>"),
           "Redis away": (503, {"Retry-After": "1"}, b'{"error": "Redis is away"}'),
           "no answer": None}


def away_from_the_new_release(cycles, outage):
    """A Proxy's ``answer``: ``outage`` to release 0.2.0's uploads until it has made readings
    for ``cycles`` cycles (its seqs count them), the server's answer to all else. Its
    ``refused``: the highest seq of each upload answered ``outage``."""
    refused = [0]

    def answer(method, path, body, forward):
        seqs = [reading["seq"] for reading in uploads_of("0.2.0", path, body)]
        if seqs and refused[-1] < cycles:
            refused.append(max(seqs))
            return outage
        return forward()

    answer.refused = refused
    return answer


@pytest.mark.parametrize("outage", OUTAGES.values(), ids=OUTAGES.keys())
def test_a_server_away_through_a_release_trial_neither_rolls_it_back_nor_loses_its_readings(
        emulated_board, live_server, redis_client, token_for, release_key, outage):
    """Away for 15 of the new release's cycles, more than its trial's 10: an outage is not the
    release's fault. Its readings wait on the board, as any release's do."""
    with Proxy(live_server.url, away_from_the_new_release(15, outage)) as proxy:
        running_today(emulated_board, live_server, token_for("kitchen"), release_key, url=proxy.url)
        publish(redis_client, "0.2.0", release_key)
        eventually(lambda: device_state(live_server).get("fw_status") == "updated", timeout=90,
                   seen=lambda: device_state(live_server))

    assert running(live_server) == "0.2.0" and not (emulated_board.flash / "ota-failed.json").exists()
    eventually(lambda: len(seqs_of(live_server, "0.2.0")) > 15)
    assert seqs_of(live_server, "0.2.0") == list(range(1, len(seqs_of(live_server, "0.2.0")) + 1))


def test_a_release_that_never_reached_the_server_is_rolled_back_and_tried_again_after_the_backoff(
        emulated_board, live_server, redis_client, token_for, release_key):
    """Should the release have broken the way to the server, it must go: after
    ``update_trial_wait`` s of cycles (an hour unless settings.json says otherwise). Should the
    outage have been the server's, it is tried again once the backoff is over."""
    outage = {"on": True}

    def answer(method, path, body, forward):
        return None if outage["on"] and uploads_of("0.2.0", path, body) else forward()

    with Proxy(live_server.url, answer) as proxy:
        board = running_today(emulated_board, live_server, token_for("kitchen"), release_key, url=proxy.url)
        restart_with(board, update_trial_wait=3, update_backoff=15)
        publish(redis_client, "0.2.0", release_key)
        eventually(lambda: (board.flash / "ota-failed.json").exists(), timeout=90)
        outage["on"] = False  # the server is back
        eventually(lambda: device_state(live_server).get("fw_status") == "failed", timeout=60)
        assert "it could not reach the server in 3 s" in device_state(live_server)["fw_error"]
        eventually(lambda: device_state(live_server).get("fw_status") == "updated", timeout=90,
                   seen=lambda: device_state(live_server))

    assert running(live_server) == "0.2.0"
    first_try, second_try = starts(seqs_of(live_server, "0.2.0"))  # the first delivered by 0.1.0
    assert len(first_try) >= 10  # 3 s of 0.3 s cycles
    assert first_try == list(range(1, len(first_try) + 1)) and second_try == list(range(1, len(second_try) + 1))


def starts(seqs):
    """``seqs`` cut where each start of the board numbers its readings from 1 again."""
    runs = []
    for seq in seqs:
        if seq == 1:
            runs.append([])
        runs[-1].append(seq)
    return runs


def test_a_download_the_server_failed_for_a_moment_is_tried_again_once_the_backoff_is_over(
        emulated_board, live_server, redis_client, token_for, release_key):
    """A gateway's 502 for one file: no fault of the release, which a corrupted file is."""
    fetched = []

    def answer(method, path, body, forward):
        if path.startswith("/api/firmware/files/"):
            fetched.append(path)
            if len(fetched) == 3:
                return 502, {}, b"<html>502 Bad Gateway</html>"
        return forward()

    with Proxy(live_server.url, answer) as proxy:
        board = running_today(emulated_board, live_server, token_for("kitchen"), release_key, url=proxy.url)
        restart_with(board, update_backoff=10)
        publish(redis_client, "0.2.0", release_key)
        eventually(lambda: device_state(live_server).get("fw_status") == "failed", timeout=60)
        assert "HTTP 502: the server is away" in device_state(live_server)["fw_error"]
        eventually(lambda: device_state(live_server).get("fw_status") == "updated", timeout=90,
                   seen=lambda: device_state(live_server))

    assert running(live_server) == "0.2.0"


def test_a_deep_sleeping_board_asks_for_updates_once_a_heartbeat_not_at_every_wake(
        emulated_board, live_server, token_for, release_key):
    asks = []

    def answer(method, path, body, forward):
        if path.startswith("/api/firmware?"):
            asks.append(path)
        return forward()

    with Proxy(live_server.url, answer) as proxy:
        board = running_today(emulated_board, live_server, token_for("kitchen"), release_key, url=proxy.url)
        board.power_off()
        asked = len(asks)
        restart_with(board, deep_sleep=True, heartbeat=600, delta=0)
        posted = len(live_server.history("kitchen"))
        eventually(lambda: len(live_server.history("kitchen")) >= posted + 5, timeout=60)  # a reading each wake

    assert len(asks) == asked + 1  # at the start, then not until the heartbeat is up


def test_a_deep_sleeping_boards_release_stays_through_an_outage_of_several_wakes(
        emulated_board, live_server, redis_client, token_for, release_key):
    """Each wake from deep sleep is a boot, but not one of the starts a trial counts (3):
    those catch a release that crashes or hangs, and this one ran its cycle to the end."""
    answer = away_from_the_new_release(6, OUTAGES["a gateway's 502"])
    with Proxy(live_server.url, answer) as proxy:
        board = running_today(emulated_board, live_server, token_for("kitchen"), release_key, url=proxy.url)
        restart_with(board, deep_sleep=True)
        publish(redis_client, "0.2.0", release_key)
        eventually(lambda: device_state(live_server).get("fw_status") == "updated", timeout=120,
                   seen=lambda: device_state(live_server))

    assert running(live_server) == "0.2.0" and answer.refused[-1] >= 6
    assert seqs_of(live_server, "0.2.0") == list(range(1, len(seqs_of(live_server, "0.2.0")) + 1))


def test_a_corrupted_download_is_refused(board, live_server, redis_client, release_key):
    manifest = publish(redis_client, "0.4.0", release_key)
    node = next(entry for entry in manifest["files"] if entry["path"] == "node.py")
    redis_client.set(file_key(node["sha256"]), "Y29ycnVwdGVk")  # "corrupted", base64

    eventually(lambda: device_state(live_server).get("fw_status") == "failed", timeout=60)

    assert "node.py: wrong size or SHA-256" in device_state(live_server)["fw_error"]
    assert running(live_server) == "0.1.0" and not (board.flash / "ota.json").exists()
    assert (board.flash / "node.py").read_bytes() == (FIRMWARE / "node.py").read_bytes()


def the_attackers_files():
    files = release_files("0.4.0")
    files["node.py"] += b"\n# the attacker's code\n"
    return files


def unsigned(redis_client, key, tmp_path):
    """Someone who can write to Redis publishes their own release."""
    store_release(redis_client, "0.4.0", the_attackers_files())


def signed_with_another_key(redis_client, key, tmp_path):
    store_release(redis_client, "0.4.0", the_attackers_files(), sign=make_release_key(tmp_path / "theirs.pem").sign)


def tampered(redis_client, key, tmp_path):
    """After signing, someone who can write to Redis (or answer in the server's place)
    points node.py's entry in the manifest at their own file."""
    manifest = publish(redis_client, "0.4.0", key)
    theirs = the_attackers_files()["node.py"]
    entry = next(entry for entry in manifest["files"] if entry["path"] == "node.py")
    entry.update(size=len(theirs), sha256=hashlib.sha256(theirs).hexdigest())
    redis_client.set(file_key(entry["sha256"]), base64.b64encode(theirs).decode())
    redis_client.hset(RELEASES, "0.4.0", json.dumps(manifest))


def another_devices_release(redis_client, key, tmp_path):
    """A signed release for attic, which someone who can write to Redis targets at kitchen."""
    publish(redis_client, "0.4.0", key, devices=["attic"])
    redis_client.hset(TARGETS, "kitchen", "0.4.0")


NOT_SIGNED = "its manifest is not signed with this board's release key"


@pytest.mark.parametrize("attack, reason", [
    (unsigned, NOT_SIGNED), (signed_with_another_key, NOT_SIGNED), (tampered, NOT_SIGNED),
    (another_devices_release, "it is meant for other devices"),
], ids=["unsigned", "signed with another key", "manifest altered after signing", "another device's release"])
def test_a_release_the_operators_key_did_not_sign_for_this_board_is_refused_and_the_server_learns_why(
        board, live_server, redis_client, release_key, tmp_path, attack, reason):
    attack(redis_client, release_key, tmp_path)

    eventually(lambda: device_state(live_server).get("fw_status") == "failed", timeout=60)

    assert device_state(live_server)["fw_error"] == reason
    assert not (board.flash / "staging").exists()  # refused before a single file was downloaded
    posted = len(live_server.history("kitchen"))
    eventually(lambda: len(live_server.history("kitchen")) > posted + 2)
    assert running(live_server) == "0.1.0" and files_of(board.flash) == files_of(FIRMWARE)


def boots(live_server):
    """How many times the board started so far: each start numbers its readings from seq 1
    (its boot id, which says the same, the server shows no reader)."""
    return sum(reading["seq"] == 1 for reading in live_server.history("kitchen"))


def test_forged_offers_of_a_new_version_at_each_heartbeat_restart_the_board_once_per_backoff(
        board, live_server, redis_client, release_key):
    backoff = 25  # s; a day unless settings.json says otherwise
    restart_with(board, update_backoff=backoff)
    eventually(lambda: boots(live_server) == 2)
    store_release(redis_client, "0.4.0", the_attackers_files())  # not signed: refused after a restart
    eventually(lambda: device_state(live_server).get("fw_status") == "failed", timeout=60)
    failed_at = time.monotonic()
    restarted = boots(live_server)

    for version in ("0.4.1", "0.4.2", "0.4.3", "0.5.0"):  # a new one at each heartbeat, then a good one
        if version == "0.5.0":
            publish(redis_client, version, release_key)
        else:
            store_release(redis_client, version, the_attackers_files())
        posted = len(live_server.history("kitchen"))
        eventually(lambda: len(live_server.history("kitchen")) > posted + 3)  # heartbeats: 0.3 s
    assert time.monotonic() - failed_at < backoff, "too slow to tell: give the backoff more time"
    assert boots(live_server) == restarted == 3  # one restart: the one to try 0.4.0

    eventually(lambda: running(live_server) == "0.5.0", timeout=backoff + 60)
    assert time.monotonic() - failed_at >= backoff - 5  # counted from the failure, a little before we saw it
    eventually(lambda: device_state(live_server).get("fw_status") == "updated", timeout=60)  # after its trial


def test_an_install_that_dies_without_a_word_still_backs_off(board, live_server, redis_client, release_key):
    """The backoff starts before the restart to install: an install that no handler saw end
    (here the power goes once it took the request, its first step) is a failed try all the
    same, not one per heartbeat."""
    board.prelude = ("import os\nif 'ota-pending.json' in os.listdir():\n"
                     "    os.remove('ota-pending.json')\n    os.system('kill -9 $PPID')\n")
    publish(redis_client, "0.2.0", release_key)
    eventually(lambda: board.mode == "friendly", timeout=60)  # the plug was pulled as it began to install
    board.prelude = ""
    restarted = boots(live_server)

    board.power_off()
    board.power_on()
    posted = len(live_server.history("kitchen"))
    eventually(lambda: len(live_server.history("kitchen")) > posted + 5)  # heartbeats: 0.3 s

    assert running(live_server) == "0.1.0" and boots(live_server) == restarted + 1


def updated(server, redirects):
    return running(server) == "0.2.0"


def refused(server, redirects):
    return device_state(server).get("fw_status") == "failed"


def asked_three_times(server, redirects):
    return len(redirects) >= 3


@pytest.mark.parametrize("redirected, settled, restarts", [
    ("/api/firmware/report", updated, 1),  # it reports nothing, and installs all the same
    ("/api/firmware?", asked_three_times, 0),  # it never hears of the release
    ("/api/firmware/0.2.0", refused, 1),  # the manifest
    ("/api/firmware/files/", refused, 1),  # the download
], ids=["report", "update check", "manifest", "download"])
def test_a_server_redirecting_in_a_loop_restarts_the_board_at_most_once(
        emulated_board, live_server, redis_client, token_for, release_key, redirected, settled, restarts):
    """MicroPython's requests would follow the loop until RuntimeError: the board follows
    no redirect, and whatever fails in an update, it restarts at most once per backoff."""
    port, redirects = free_port(), []

    def answer(method, path, body, forward):
        if not path.startswith(redirected):
            return forward()
        redirects.append(path)
        return 302, {"Location": f"http://127.0.0.1:{port}{path}"}, b""

    with Proxy(live_server.url, answer, port) as proxy:
        running_today(emulated_board, live_server, token_for("kitchen"), release_key, url=proxy.url)
        publish(redis_client, "0.2.0", release_key)
        eventually(lambda: settled(live_server, redirects), timeout=60)
        posted = len(live_server.history("kitchen"))
        eventually(lambda: len(live_server.history("kitchen")) > posted + 5)

    assert boots(live_server) == 1 + restarts
    if settled is refused:
        assert f"redirect to http://127.0.0.1:{port}{redirected}" in device_state(live_server)["fw_error"]


def test_a_board_asks_for_no_update_while_readings_wait_to_be_uploaded(emulated_board, live_server, token_for,
                                                                         release_key):
    """An update check takes heap that a board holding readings may not have (an ESP8266's),
    and a restart to install waits for them anyway: the board asks once they are delivered."""
    server = {"away": False, "refused": 0}
    asks = []  # for each update check: whether the board then held readings the server refused

    def answer(method, path, body, forward):
        if path == "/api/readings" and server["away"]:
            server["refused"] += 1
            return 503, {"Retry-After": "1"}, b'{"error": "Redis is away"}'
        if path.startswith("/api/firmware?"):
            asks.append(server["refused"] > 0)
        status, headers, content = forward()
        if path == "/api/readings" and status == 201:
            server["refused"] = 0
        return status, headers, content

    with Proxy(live_server.url, answer) as proxy:
        running_today(emulated_board, live_server, token_for("kitchen"), release_key, url=proxy.url)
        eventually(lambda: asks)
        server["away"] = True
        eventually(lambda: server["refused"] >= 5)  # heartbeats: 0.3 s
        server["away"] = False
        checked = len(asks)
        eventually(lambda: len(asks) > checked)

    assert True not in asks


WATCHDOG = 5  # s, in the settings of the boards that run one; 60 unless settings.json says otherwise


def a_byte_at_a_time(content, sent):
    """``content`` as a peer that never lets a read time out sends it: a byte every 0.5 s
    (the board's socket timeout is 3 s), each byte's time kept in ``sent``."""
    for byte in content:
        sent.append(time.monotonic())
        yield bytes([byte])
        time.sleep(0.5)


@pytest.mark.parametrize("dribbled", ["/api/firmware/0.2.0", "/api/firmware/files/"], ids=["manifest", "download"])
def test_an_impostor_answering_an_update_a_byte_at_a_time_holds_the_board_only_as_long_as_its_watchdog(
        emulated_board, live_server, redis_client, token_for, release_key, dribbled):
    """Anyone who can answer the board's requests (a hostile Wi-Fi, a spoofed DNS name) can
    answer the install's slowly enough to take hours, never slowly enough to time out. The
    watchdog runs in the install too, fed only at real progress: the board resets within
    ``watchdog`` s, and posts again with today's firmware, where node.py's backoff keeps it."""
    sent = []

    def answer(method, path, body, forward):
        status, headers, content = forward()
        if not path.startswith(dribbled) or status != 200:
            return status, headers, content
        return status, dict(headers, **{"Content-Length": str(len(content))}), a_byte_at_a_time(content, sent)

    with Proxy(live_server.url, answer) as proxy:
        running_today(emulated_board, live_server, token_for("kitchen"), release_key, url=proxy.url,
                      watchdog=WATCHDOG)
        publish(redis_client, "0.2.0", release_key)
        eventually(lambda: sent, timeout=60)  # the board is in the install, reading the dribble
        posted = len(live_server.history("kitchen"))
        eventually(lambda: len(live_server.history("kitchen")) > posted, timeout=WATCHDOG + 60)
        held = time.monotonic() - sent[0]
        posted = len(live_server.history("kitchen"))
        eventually(lambda: len(live_server.history("kitchen")) > posted + 5)  # and stays: heartbeats are 0.3 s

    assert held < WATCHDOG + 10, f"the board came back {held:.1f} s after the dribble began"
    assert running(live_server) == "0.1.0" and files_of(emulated_board.flash) == files_of(FIRMWARE)


def published_with_manifest_of(redis_client, key, size):
    """Release 0.2.0, its signed manifest padded to ``size`` bytes (with a note no board reads),
    offered to kitchen only once it is whole."""
    manifest = dict(publish(redis_client, "0.2.0", key, devices=["attic"]), devices=[])
    text = json.dumps(dict(manifest, note=""))
    text = json.dumps(dict(manifest, note="x" * (size - len(text))))
    redis_client.hset(RELEASES, "0.2.0", text)
    redis_client.hset(SIGNATURES, "0.2.0", key.sign(text.encode()).hex())
    redis_client.hset(TARGETS, "kitchen", "0.2.0")


@pytest.mark.parametrize("size, status", [(MANIFEST_LIMIT, "updated"), (MANIFEST_LIMIT + 1, "failed")],
                         ids=["as long as make release publishes", "a byte longer"])
def test_a_manifest_longer_than_make_release_publishes_is_refused_and_the_server_learns_why(
        board, live_server, redis_client, release_key, size, status):
    """The board reads at most MANIFEST_LIMIT bytes of a manifest, even one signed with its
    key: an impostor cannot fill its heap or hold it reading one without end."""
    published_with_manifest_of(redis_client, release_key, size)

    eventually(lambda: device_state(live_server).get("fw_status") == status, timeout=60)

    if status == "failed":
        assert device_state(live_server)["fw_error"] == f"manifest too large (over {MANIFEST_LIMIT} bytes)"
        assert not (board.flash / "staging").exists()  # refused before a single file was downloaded
        assert running(live_server) == "0.1.0"
    else:
        eventually(lambda: running(live_server) == "0.2.0")


def test_a_board_provisioned_before_releases_were_signed_installs_none_until_provisioned_again(
        emulated_board, live_server, redis_client, token_for, release_key):
    running_today(emulated_board, live_server, token_for("kitchen"), None)

    publish(redis_client, "0.2.0", release_key)

    eventually(lambda: device_state(live_server).get("fw_status") == "failed", timeout=60)
    assert device_state(live_server)["fw_error"] == "settings.json has no release_key: make provision again"
    posted = len(live_server.history("kitchen"))
    eventually(lambda: len(live_server.history("kitchen")) > posted + 2)
    assert running(live_server) == "0.1.0" and files_of(emulated_board.flash) == files_of(FIRMWARE)


POWER_CUT = (pathlib.Path(__file__).parent / "power_cut.py").read_text()


def update_with_power_cut(board, trace, cut, error=0):
    """Power the board on running 0.1.0 with 0.2.0 pending, as node.py leaves it when it
    restarts to install; each change to the flash is listed in ``trace``, and the power goes
    before change number ``cut`` (-1: never), or that change fails with OSError(``error``)."""
    board.power_off()
    for leftover in ("staging", "previous"):
        shutil.rmtree(board.flash / leftover, ignore_errors=True)
    for leftover in board.flash.glob("ota*.json*"):
        leftover.unlink()
    for source in FIRMWARE.glob("*.py"):
        shutil.copy(source, board.flash)
    (board.flash / "ota-pending.json").write_text('{"version": "0.2.0"}')
    (board.flash / "ota-backoff.json").write_text('{"failures": 1, "until": 4102444800}')  # written before the reset
    # as if kitchen had given 0.2.0 up before: node.py does not ask for it, only the pending one starts
    (board.flash / "ota-failed.json").write_text('{"version": "0.2.0", "reason": "", "reported": true}')
    trace.write_text("")
    board.prelude = f"TRACE, CUT, ERROR = {str(trace)!r}, {cut}, {error}\n{POWER_CUT}"
    board.power_on()


def test_a_power_cut_at_any_step_of_an_update_leaves_a_board_that_boots_and_posts(board, live_server,
                                                                                redis_client, release_key,
                                                                                tmp_path):
    publish(redis_client, "0.2.0", release_key)
    trace = tmp_path / "trace"
    update_with_power_cut(board, trace, -1)
    eventually(lambda: device_state(live_server).get("fw_status") == "updated", timeout=60)
    steps = trace.read_text().splitlines()
    assert steps[0] == "remove ota-pending.json" and "rename staging/node.py node.py" in steps  # download, swap,
    assert steps[-1] == "remove ota.json"  # a first start on trial, and the commit once it posted
    releases = {"0.1.0": files_of(FIRMWARE), "0.2.0": files_of(FIRMWARE) | release_files("0.2.0")}

    for cut, change in enumerate(steps):
        update_with_power_cut(board, trace, cut)
        eventually(lambda: board.mode == "friendly", timeout=60)  # the plug was pulled: it never came back
        assert len(trace.read_text().splitlines()) == cut
        board.prelude = ""
        posted = len(live_server.history("kitchen"))

        board.power_off()
        board.power_on()

        eventually(lambda: len(live_server.history("kitchen")) > posted, timeout=60)
        assert files_of(board.flash) == releases[running(live_server)], f"power cut before {change}"
        eventually(lambda: device_state(live_server).get("fw_status") != "updating", timeout=60,  # never left so
                   seen=lambda: (change, device_state(live_server)))


def test_a_swap_the_full_flash_refuses_halfway_is_rolled_back(board, live_server, redis_client, release_key,
                                                              tmp_path):
    publish(redis_client, "0.2.0", release_key)
    trace = tmp_path / "trace"
    update_with_power_cut(board, trace, -1)
    eventually(lambda: device_state(live_server).get("fw_status") == "updated", timeout=60)
    halfway = trace.read_text().splitlines().index("rename staging/node.py node.py")
    redis_client.hdel(device_key(redis_client, "kitchen"), "fw_status")

    update_with_power_cut(board, trace, halfway, errno.ENOSPC)

    eventually(lambda: device_state(live_server).get("fw_status") == "failed", timeout=60)
    assert device_state(live_server)["fw_error"] == "the update was interrupted"
    posted = len(live_server.history("kitchen"))
    eventually(lambda: len(live_server.history("kitchen")) > posted + 2)
    assert running(live_server) == "0.1.0" and files_of(board.flash) == files_of(FIRMWARE)
