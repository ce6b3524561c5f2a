"""A maker flashes the node: readings reach the dashboard, and nothing is lost on the way."""
import ast
import json
import time

import pytest
import requests

from tests.conftest import eventually
from server.store import device_key
from tests.firmware.conftest import Proxy, boot_runs, node_settings
from tools.run import free_port


def test_the_nodes_readings_arrive_on_the_stream(board, live_server, token_for):
    board.configure(**node_settings(live_server.url, token_for("kitchen")))
    browser = live_server.stream()

    board.start()
    reading = browser.next_reading()["data"]

    assert reading["device"] == "kitchen" and abs(reading["temperature"] - 25.0) < 0.1
    assert reading["rssi"] == -61 and reading["fw"] and reading["heap"] > 0 and "uptime" in reading
    assert reading["seq"] == 1 and reading["ts"] > 1.7e9 and "boot" not in reading  # kept from every reader


def test_120_readings_made_without_the_server_are_all_stored_once_when_it_is_back(board, start_server,
                                                                                 token_for):
    server = start_server()
    port = int(server.url.rsplit(":", 1)[1])
    board.configure(**node_settings(server.url, token_for("kitchen"), interval=0.1))
    board.start()
    eventually(lambda: len(server.history("kitchen")) >= 3)

    server.stop()
    failed_before = board.console().count("upload failed")  # a busy server's answer can come too late
    # a cycle's upload fails once, and each cycle makes a reading (a heartbeat of one interval)
    board.wait_for("upload failed", count=failed_before + 120, timeout=600)
    oks_before = board.console().count("led: ok")  # one may come as the server stops: an upload it still took
    server = start_server(port=port)
    board.wait_for("led: ok", count=oks_before + 1)  # everything buffered is up
    board.stop()

    seqs = [reading["seq"] for reading in server.history("kitchen")]
    assert len(seqs) >= 123 and seqs == list(range(1, len(seqs) + 1))


def test_readings_wait_while_wifi_is_down(board, live_server, token_for):
    board.configure(**node_settings(live_server.url, token_for("kitchen")))
    board.set(wifi=False)
    board.start()
    board.wait_for("next try in 2 s")
    board.wait_for("led: trouble")

    board.set(wifi=True)
    board.wait_for("wifi: connected")
    board.wait_for("led: ok")
    board.stop()

    seqs = [reading["seq"] for reading in live_server.history("kitchen")]
    assert len(seqs) >= 2 and seqs == list(range(1, len(seqs) + 1))


@pytest.mark.parametrize("failure, logged", [("timeout", "OSError(110"), ("checksum", "checksum error")])
def test_a_failed_sensor_read_is_retried_then_the_sample_is_skipped(board, failure, logged):
    board.configure(**node_settings("http://127.0.0.1:9", "", sensor="dht11", pin=4, samples=1))
    board.set(fail_reads=4, fail_kind=failure)

    board.start()
    console = board.wait_for("upload failed")

    assert "sensor read failed (try 3 of 3)" in console and logged in console
    assert "no good sample this time; skipped" in console
    assert console.index("skipped") < console.index("upload failed")


def test_the_median_of_samples_is_sent_and_implausible_values_dropped(board, live_server, token_for):
    board.configure(**node_settings(live_server.url, token_for("kitchen"), sensor="dht22", samples=3))
    board.set(dht=[{"temperature": 21.0, "humidity": 40.0}, {"temperature": 85.0, "humidity": 140.0},
                   {"temperature": 21.4, "humidity": 42.0}])
    browser = live_server.stream()

    board.start()
    reading = browser.next_reading()["data"]

    assert reading["temperature"] == 21.4 and reading["humidity"] == 41.0
    board.wait_for("dropped implausible humidity 140.0")  # the console may come a moment after the reading


def test_a_full_buffer_drops_the_oldest_and_reports_how_many(board, start_server, token_for):
    port = free_port()
    board.configure(**node_settings(f"http://127.0.0.1:{port}", token_for("kitchen"), buffer=3))
    board.start()
    board.wait_for("dropped the oldest reading (2 so far)")

    server = start_server(port=port)
    eventually(lambda: server.history("kitchen"))
    board.stop()

    history = server.history("kitchen")
    assert history[0]["seq"] > 1 and history[-1]["dropped"] >= 2


def test_a_clock_never_set_sends_no_time_and_the_server_stamps_it(board, live_server, token_for,
                                                                  tmp_path):
    unset_clock = tmp_path / "unset_clock"
    unset_clock.mkdir()
    (unset_clock / "time.py").write_text("from utime import *\n\ndef time():\n    return 1000\n")
    board.extra_path = [unset_clock]
    board.configure(**node_settings(live_server.url, token_for("kitchen")))
    board.set(ntp=False)
    browser = live_server.stream()

    board.start()

    assert browser.next_reading()["data"]["ts"] > 1.7e9
    board.wait_for("ntp: no time")  # the console may come a moment after the reading


def test_a_clock_that_ran_an_hour_ahead_is_set_right_at_the_next_heartbeat_and_its_readings_stored_again(
        board, live_server, token_for, tmp_path):
    """A board left alone for months never loses Wi-Fi, so never asked NTP again, and its
    clock drifted (an ESP8266's by minutes a day): past 5 min ahead the server refuses every
    reading (400), and the board drops them."""
    drifting = tmp_path / "drifting_clock"
    drifting.mkdir()
    (drifting / "time.py").write_text(
        "from utime import *\nimport utime, machine\n\n\ndef time():\n"
        "    return utime.time() + machine.hardware().get('clock_ahead', 0) - machine._file.get('set_right', 0)\n")
    board.extra_path = [drifting]
    board.configure(**node_settings(live_server.url, token_for("kitchen"), heartbeat=600))
    board.set(adc=[1500, 2048] * 1000)  # a change at each cycle: each is reported
    board.start()
    eventually(lambda: len(live_server.history("kitchen")) >= 3)

    board.set(clock_ahead=3600)
    drifted_at = time.time()

    eventually(lambda: [reading for reading in live_server.history("kitchen") if reading["ts"] > drifted_at])
    board.stop()
    seqs = [reading["seq"] for reading in live_server.history("kitchen")]
    assert max(after - before for before, after in zip(seqs, seqs[1:])) <= 3  # one or two refused, no more
    assert all(reading["ts"] < time.time() + 5 for reading in live_server.history("kitchen"))


def test_only_changes_and_heartbeats_are_reported(board, live_server, token_for):
    board.configure(**node_settings(live_server.url, token_for("kitchen"), heartbeat=600,
                                    delta={"temperature": 1.0}))
    board.set(adc=[2048] * 8 + [1500] * 8 + [2048])  # one sample a cycle: steady, a change, back

    board.start()
    eventually(lambda: len(live_server.history("kitchen")) == 3)
    board.stop()

    temperatures = [reading["temperature"] for reading in live_server.history("kitchen")]
    assert abs(temperatures[0] - 25) < 0.1 and temperatures[1] > 30 and abs(temperatures[2] - 25) < 0.1


def test_a_steady_value_is_reported_at_least_every_heartbeat_however_the_cycles_drift(board):
    """Ten cycles of 30 s make the heartbeat of 300 s; the clock says 299.9 s at the tenth (a
    cycle's sleep ends a little early or late against it): the steady value goes then, not 30 s later."""
    (board.flash / "check.py").write_text(
        "import node\n"
        "class Clock:\n"
        "    now = 0.0\n"
        "    def time(self):\n"
        "        return self.now\n"
        "node.time = clock = Clock()\n"
        "reporter = node.Reporter(1.0, 300, 30)\n"
        "for cycle in range(21):\n"
        "    clock.now = cycle * 29.99\n"
        "    if reporter.due({'temperature': 21.0}):\n"
        "        reporter.sent({'temperature': 21.0})\n"
        "        print('reported at cycle', cycle)\n")

    console = board.run_to_end(script="check.py")

    assert [int(line.split()[-1]) for line in console.splitlines()] == [0, 10, 20]


def test_a_refused_token_is_a_fault_the_user_must_fix(board, live_server):
    board.configure(**node_settings(live_server.url, "wrong"))
    board.start()
    console = board.wait_for("led: fault")
    assert "provision this device again" in console


def test_an_unexpected_error_is_logged_and_the_loop_goes_on(board, live_server, token_for):
    board.configure(**node_settings(live_server.url, token_for("kitchen")))
    board.set(rssi="radio fault")
    board.start()
    board.wait_for("cycle failed", count=2)

    board.set(rssi=-70)
    board.wait_for("led: ok")


def test_ctrl_c_stops_the_node_cleanly(board):
    board.configure(**node_settings("http://127.0.0.1:9", ""))
    board.start()
    board.wait_for("sensorcast")

    board.stop()

    assert board.process.returncode == 0 and "stopped" in board.console()


def test_deep_sleep_keeps_readings_and_seq_in_flash_until_the_server_is_back(board, start_server,
                                                                             token_for):
    port = free_port()
    board.configure(**node_settings(f"http://127.0.0.1:{port}", token_for("kitchen"), deep_sleep=True,
                                    delta=0))  # a reading every wake, however close together
    first = board.run_to_end()
    assert "deepsleep 200" in first
    board.set(reset_cause="deepsleep")
    for _ in range(2):
        board.run_to_end()
    state = json.loads((board.flash / "state.json").read_text())
    assert [reading["seq"] for reading in state["pending"]] == [1, 2, 3]

    server = start_server(port=port)
    board.run_to_end()

    assert [reading["seq"] for reading in server.history("kitchen")] == [1, 2, 3, 4]
    assert json.loads((board.flash / "state.json").read_text())["pending"] == []


def test_a_rate_limited_node_pauses_as_asked_and_loses_nothing(board, start_server, token_for):
    server = start_server(RATE_LIMIT=0.2, RATE_BURST=1)  # one request every 5 s
    board.configure(**node_settings(server.url, token_for("kitchen")))

    board.start()
    board.wait_for("the server asked for a pause: next upload in 5 s", count=2)
    eventually(lambda: len(server.history("kitchen")) >= 20)
    board.stop()

    seqs = [reading["seq"] for reading in server.history("kitchen")]
    refusals = board.console().count("server answered 429")
    assert seqs == list(range(1, len(seqs) + 1))
    assert refusals < len(seqs) / 3  # not one a cycle: it waited as it was told


def test_a_node_told_the_servers_database_is_full_waits_as_asked(board, live_server, token_for, redis_client):
    board.configure(**node_settings(live_server.url, token_for("kitchen")))
    redis_client.config_set("maxmemory", 1)  # as full as it gets
    try:
        board.start()
        console = board.wait_for("the server asked for a pause: next upload in 60 s")
    finally:
        redis_client.config_set("maxmemory", 0)
    board.stop()

    assert console.count("server answered 507") == 1


RAWS = list(range(1000, 3400, 8))  # the ADC's counts, one a reading: each reading's temperature is its own


def temperatures_of(board, raws):
    """The temperature the node reports for each ADC count (thermistor.py's formula, run by MicroPython)."""
    code = ("from thermistor import celsius\nimport settings\n"
            "print([round(celsius(raw * 3.3 / 4095, settings.DEFAULTS['thermistor']), 2) for raw in %r])" % raws)
    return ast.literal_eval(board.python_last_line(code))


def test_a_stranger_who_poisons_the_boards_seqs_makes_it_start_a_new_boot_and_no_reading_is_lost(
        board, live_server, token_for, redis_client):
    token = token_for("kitchen")
    board.configure(**node_settings(live_server.url, token, delta=0))  # every reading is reported
    board.set(adc=RAWS)
    board.start()
    eventually(lambda: len(live_server.history("kitchen")) >= 3)
    boot = redis_client.hget(device_key(redis_client, "kitchen"), "boot")  # a stranger who guessed it: no reader is shown it

    poison = requests.post(live_server.url + "/api/readings", headers={"Authorization": f"Bearer {token}"},
                           json={"temperature": 99, "boot": boot, "seq": 2**53 - 1}, timeout=5)
    assert poison.status_code == 201
    board.wait_for(f"boot {boot} poisoned (server holds seq {2**53 - 1})")
    def the_boards():
        return [r for r in live_server.history("kitchen") if r["temperature"] != 99]
    eventually(lambda: len(boot_runs(the_boards())) == 2 and len(boot_runs(the_boards())[1]) >= 5)
    board.stop()

    readings = the_boards()
    boots = boot_runs(readings)
    assert len(boots) == 2 and redis_client.hget(device_key(redis_client, "kitchen"), "boot") != boot
    assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in boots), boots
    expected = temperatures_of(board, RAWS)
    assert len(set(expected)) == len(expected) and len(readings) < len(expected)
    assert sorted(r["temperature"] for r in readings) == sorted(expected[:len(readings)])  # none lost, none twice
    assert board.console().count("poisoned") == 1


def losing_the_answer_to(seq):
    """A Proxy's answer: the server's, but 504 for the first upload holding ``seq`` (stored all the same)."""
    lost = []

    def answer(method, path, body, forward):
        status, headers, content = forward()
        if body and not lost and any(reading.get("seq") == seq for reading in json.loads(body)):
            lost.append(seq)
            return 504, {"Content-Type": "text/plain"}, b"upstream timed out"
        return status, headers, content
    return answer


def test_a_batch_whose_answer_was_lost_is_sent_again_and_stored_once(board, live_server, token_for):
    with Proxy(live_server.url, losing_the_answer_to(3)) as proxy:
        board.configure(**node_settings(proxy.url, token_for("kitchen")))
        board.start()
        board.wait_for("server answered 504")
        eventually(lambda: len(live_server.history("kitchen")) >= 6)
        board.stop()

    history = live_server.history("kitchen")
    seqs = [reading["seq"] for reading in history]
    assert seqs == list(range(1, len(seqs) + 1))  # one boot: none lost, none twice
    assert "poisoned" not in board.console()


def taking_seq(seq):
    """A Proxy's answer: the server's, but for the first upload holding ``seq`` a 409, as the
    server answers when someone with the board's token stored other values at its boot and
    that seq first; nothing of that upload is stored."""
    taken = []

    def answer(method, path, body, forward):
        readings = json.loads(body) if body and path == "/api/readings" else []
        mine = [reading for reading in readings if reading["seq"] == seq]
        if taken or not mine:
            return forward()
        taken.append(mine[0]["boot"])
        conflict = {"error": "a reading at this boot and seq holds other values",
                    "known": {"boot": taken[0], "seq": seq}, "conflict": {"boot": taken[0], "seq": seq}}
        return 409, {"Content-Type": "application/json"}, json.dumps(conflict).encode()
    return answer


def test_a_reading_taken_at_the_boards_next_seq_makes_it_start_a_new_boot_and_no_reading_is_lost(
        board, live_server, token_for):
    board.set(adc=RAWS)
    with Proxy(live_server.url, taking_seq(3)) as proxy:
        board.configure(**node_settings(proxy.url, token_for("kitchen"), delta=0))  # every reading is reported
        board.start()
        board.wait_for("server answered 409")
        eventually(lambda: len(boot_runs(live_server.history("kitchen"))) == 2
                   and len(live_server.history("kitchen")) >= 8)
        board.stop()

    readings = live_server.history("kitchen")
    first, second = boot_runs(readings)
    assert first == [1, 2] and second == list(range(1, len(second) + 1)), (first, second)
    expected = temperatures_of(board, RAWS)
    assert [r["temperature"] for r in readings] == expected[:len(readings)]  # none lost, none twice, in order
    assert board.console().count("poisoned (server holds seq 3)") == 1


LONGEST_PAUSE = 120  # s: the longest pause uplink.py takes from a Retry-After (a paused board
# losing nothing: test_a_rate_limited_node_pauses_as_asked_and_loses_nothing)


def forging_a_pause_for_the_first_upload():
    """A Proxy's answer: for the first upload (not forwarded) a 503 asking for a pause of about 30
    years, the server's for the rest."""
    forged = []

    def answer(method, path, body, forward):
        if path == "/api/readings" and not forged:
            forged.append(path)
            return 503, {"Retry-After": "999999999", "Content-Type": "application/json"}, b'{"error": "busy"}'
        return forward()
    return answer


def test_a_forged_retry_after_pauses_the_board_two_minutes_at_most(board, live_server, token_for):
    with Proxy(live_server.url, forging_a_pause_for_the_first_upload()) as proxy:
        board.configure(**node_settings(proxy.url, token_for("kitchen")))
        board.start()
        board.wait_for(f"the server asked for a pause: next upload in {LONGEST_PAUSE} s")
        board.stop()
