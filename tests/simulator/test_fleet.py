"""Fake devices behave like the firmware: buffer through outages, send batches, back off."""
import json
import random
import re
import time
from types import SimpleNamespace

import pytest
import requests
import responses

from simulator import __main__ as cli
from simulator.devices import AuthRefused, Device, Fleet

URL = "http://sensorcast.test"
READINGS = URL + "/api/readings"


@pytest.fixture
def fleet(monkeypatch):
    monkeypatch.setattr(Device, "sensor_fault_rate", 0.0)
    monkeypatch.setattr(Device, "dropout_rate", 0.0)
    return Fleet(URL, {"sim-1": "t1"}, random.Random(7))


def sent_batches():
    return [json.loads(call.request.body) for call in responses.calls]


@responses.activate
def test_each_reading_is_posted_with_the_devices_token_and_seq(fleet):
    responses.post(READINGS, status=201, json={})
    for second in range(3):
        fleet.step(1_800_000_000 + second, clock=0, uptime=second)

    batches = sent_batches()
    assert [batch[0]["seq"] for batch in batches] == [1, 2, 3]
    assert responses.calls[0].request.headers["Authorization"] == "Bearer t1"
    assert fleet.sent == 3 and fleet.buffered == 0


@responses.activate
def test_readings_buffered_in_a_wifi_dropout_go_up_as_one_batch(fleet):
    responses.post(READINGS, status=201, json={})
    device = fleet.devices[0]
    device.offline_steps = 4
    for second in range(5):
        fleet.step(1_800_000_000 + second, clock=0, uptime=second)

    [batch] = sent_batches()
    assert [reading["seq"] for reading in batch] == [1, 2, 3, 4, 5]
    assert len({reading["boot"] for reading in batch}) == 1


@responses.activate
def test_a_failed_upload_is_retried_with_the_same_seq(fleet):
    responses.post(READINGS, body=requests.ConnectionError("refused"))
    responses.post(READINGS, status=201, json={})
    fleet.step(1_800_000_000, clock=0, uptime=0)
    fleet.step(1_800_000_001, clock=0, uptime=1)

    assert [r["seq"] for batch in sent_batches()[1:] for r in batch] == [1, 2]
    assert fleet.failed == 1 and fleet.sent == 2


@pytest.mark.parametrize("busy", [503, 429])
@responses.activate
def test_a_busy_server_or_a_rate_limit_is_honoured_for_its_retry_after(fleet, busy):
    responses.post(READINGS, status=busy, headers={"Retry-After": "10"}, json={})
    responses.post(READINGS, status=201, json={})
    for second in (0, 5, 11):
        fleet.step(1_800_000_000 + second, clock=0, uptime=second)

    assert len(responses.calls) == 2
    assert [r["seq"] for r in sent_batches()[1]] == [1, 2, 3]


@pytest.mark.parametrize("retry_after, paused", [("999999999", 120), ("soon", 5), ("nan", 5)],
                         ids=["forged for years", "not a number", "NaN"])
@responses.activate
def test_a_forged_or_garbled_retry_after_pauses_a_device_two_minutes_at_most(fleet, retry_after, paused):
    responses.post(READINGS, status=503, headers={"Retry-After": retry_after}, json={})
    responses.post(READINGS, status=201, json={})
    for second in (0, paused - 1, paused):
        fleet.step(1_800_000_000 + second, clock=0, uptime=second)

    assert len(responses.calls) == 2
    assert [r["seq"] for r in sent_batches()[1]] == [1, 2, 3]


@responses.activate
def test_a_refused_token_stops_its_device_and_a_fleet_without_devices_stops(fleet, capsys, monkeypatch):
    responses.post(READINGS, status=401, json={"error": "this token is unknown or revoked"})

    [refusal] = fleet.step(1_800_000_000, clock=0, uptime=0)

    assert isinstance(refusal, AuthRefused) and fleet.devices == []
    monkeypatch.setattr(Device, "dropout_rate", 0.0)
    assert cli.main(["--url", URL, "--token", "bad", "--devices", "1", "--duration", "1"]) == 2
    said = capsys.readouterr().err
    assert "sim-1: the server refused its token (401): revoked" in said and "check --token" in said


def test_signals_are_believable_and_reproducible():
    first, second = (Device("sim-1", "t", random.Random(3)) for _ in range(2))
    day = [first.measure(hour * 3600) for hour in range(24)]
    temperatures = [values["temperature"] for values in day if values]

    assert [second.measure(h * 3600) for h in range(24)] == day
    assert max(temperatures) - min(temperatures) > 5
    assert temperatures.index(max(temperatures)) in range(12, 18)
    assert all(0 <= values["humidity"] <= 100 for values in day if values)


@responses.activate
def test_ctrl_c_prints_a_summary(monkeypatch, capsys):
    responses.post(READINGS, status=201, json={})

    def interrupt(_):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "time", SimpleNamespace(time=time.time, sleep=interrupt))  # cli's, no other thread's
    assert cli.main(["--url", URL, "--token", "t", "--seed", "1"]) == 0
    assert "sent " in capsys.readouterr().out


@pytest.mark.parametrize("prefix", ["Sim", "sim\n", "s" * 31])
def test_a_prefix_making_names_the_server_refuses_is_refused_at_start(prefix, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--url", URL, "--token", "t", "--prefix", prefix, "--duration", "0"])

    assert stopped.value.code == 2
    assert "--prefix: device names PREFIX-N must be 1-32 characters" in capsys.readouterr().err


@responses.activate
def test_speed_runs_the_daily_curve_faster_but_devices_post_at_their_interval(monkeypatch):
    responses.post(READINGS, status=201, json={})
    clock = [1_800_000_000.0]
    monkeypatch.setattr(cli, "time", SimpleNamespace(time=lambda: clock[0],
                                                     sleep=lambda seconds: clock.__setitem__(0, clock[0] + seconds)))
    curve_times = []
    measure = Device.measure
    monkeypatch.setattr(Device, "measure", lambda device, at: curve_times.append(at) or measure(device, at))

    cli.main(["--url", URL, "--token", "t", "--devices", "1", "--interval", "5", "--speed", "600",
              "--duration", "60"])

    assert len(curve_times) == 12  # one reading every 5 s for a minute
    assert curve_times[-1] - curve_times[0] == 55 * 600  # ten hours of the daily curve


@responses.activate
def test_a_server_that_cannot_be_reached_is_said_once_and_so_is_its_return(monkeypatch, capsys):
    for _ in range(3):
        responses.post(READINGS, body=requests.ConnectionError("connection refused"))
    responses.post(READINGS, status=201, json={})
    monkeypatch.setattr(Device, "sensor_fault_rate", 0.0)
    monkeypatch.setattr(Device, "dropout_rate", 0.0)
    clock = [1_800_000_000.0]
    monkeypatch.setattr(cli, "time", SimpleNamespace(time=lambda: clock[0],
                                                     sleep=lambda seconds: clock.__setitem__(0, clock[0] + seconds)))

    assert cli.main(["--url", URL, "--token", "t", "--devices", "1", "--interval", "1", "--duration", "6"]) == 0

    said = capsys.readouterr().err
    assert said.count(f"cannot reach {READINGS} (ConnectionError); readings are kept until it answers") == 1
    assert said.count("the server answers again") == 1


@pytest.mark.parametrize("arguments", [["--devices", "0"], ["--devices", "-2"], ["--interval", "0"], ["--rate", "0"],
                                       ["--url", "localhost:5000"], ["--url", "http://"]])
def test_settings_that_cannot_work_are_refused_at_start(arguments, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--url", URL, "--token", "t", "--duration", "0", *arguments])

    assert stopped.value.code == 2
    assert "simulating" not in capsys.readouterr().out


def test_a_local_run_without_make_run_says_so_in_a_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1")  # nothing listens there

    assert cli.main(["--url", URL, "--duration", "0", "--data", str(tmp_path)]) == 2

    said = capsys.readouterr().err
    assert "cannot reach the local server's Redis" in said and "is `make run` running?" in said
    assert "Traceback" not in said


@responses.activate
def test_readings_held_in_a_wifi_dropout_when_the_run_ends_go_up_before_it_stops(monkeypatch, capsys):
    responses.post(READINGS, status=201, json={})
    monkeypatch.setattr(Device, "sensor_fault_rate", 0.0)
    monkeypatch.setattr(Device, "dropout_rate", 1.0)
    monkeypatch.setattr(Device, "dropout_steps", (1000, 1000))  # away from the first reading to the end

    assert cli.main(["--url", URL, "--token", "t", "--devices", "1", "--interval", "0.1", "--duration", "0.5"]) == 0

    [batch] = sent_batches()
    assert [reading["seq"] for reading in batch] == list(range(1, len(batch) + 1)) and len(batch) >= 3
    assert f"sent {len(batch)}, still buffered 0," in capsys.readouterr().out


@pytest.mark.parametrize("status", [429, 507])  # over its rate, or the server's Redis full
@responses.activate
def test_a_server_asking_devices_to_wait_is_said_once_and_what_full_buffers_dropped_is_counted(monkeypatch, capsys,
                                                                                             status):
    """--rate past what the server lets one device send: it is told to wait, again and again."""
    responses.post(READINGS, status=status, json={"error": "wait"}, headers={"Retry-After": "0"})
    monkeypatch.setattr(Device, "sensor_fault_rate", 0.0)
    monkeypatch.setattr(Device, "dropout_rate", 0.0)
    monkeypatch.setattr(Device, "buffer_size", 5)

    assert cli.main(["--url", URL, "--token", "t", "--devices", "1", "--rate", "40", "--duration", "1"]) == 0

    out, err = capsys.readouterr()
    assert err.count("the server asked a device to wait") == 1
    dropped = int(re.search(r"dropped (\d+) \(buffers full\)", out).group(1))
    assert dropped >= 10 and "still buffered 5," in out


@responses.activate
def test_an_upload_that_holds_the_run_up_is_not_followed_by_a_burst_of_readings_made_at_once(monkeypatch):
    """As a board blocked in a POST: it reads again when it can, not once for each step it missed."""
    stalled = []

    def answer(request):
        if not stalled:
            stalled.append(request)
            time.sleep(1)  # the server holds the first upload for five of the device's intervals
        return 201, {}, "{}"
    responses.add_callback(responses.POST, READINGS, callback=answer)
    monkeypatch.setattr(Device, "sensor_fault_rate", 0.0)
    monkeypatch.setattr(Device, "dropout_rate", 0.0)

    assert cli.main(["--url", URL, "--token", "t", "--devices", "1", "--interval", "0.2", "--duration", "2"]) == 0

    stamps = [reading["ts"] for batch in sent_batches() for reading in batch]
    assert len(stamps) >= 5
    assert not any(later - earlier < 0.05 for earlier, later in zip(stamps, stamps[2:]))  # no three at once
