"""A user explores weeks of history: downsampled for the chart, exported as CSV."""
import csv
import io
import random
import re
import time

import pytest

from server.history import EXPORTS_AT_ONCE, PAGE, RAW_READINGS
from server.rollups import TIERS, rollup_key

HOUR = 3600
FINEST_SLOT = TIERS[0][0]


@pytest.fixture
def week(client, token_for):
    """A week of kitchen readings taken on the hour, uploaded late as one backlog (measured
    times kept)."""
    start = (time.time() // HOUR - 7 * 24) * HOUR
    readings = [{"temperature": 20 + hour % 24 / 4, "humidity": 50, "ts": start + hour * HOUR}
                for hour in range(7 * 24)]
    headers = {"Authorization": f"Bearer {token_for('kitchen')}"}
    assert client.post("/api/readings", json=readings, headers=headers).status_code == 201
    return start


def test_a_week_comes_back_as_buckets_with_min_avg_max_and_count(client, week):
    answer = client.get(f"/api/devices/kitchen/readings?since={week}&until={week + 7 * 24 * HOUR}&buckets=7").json

    assert len(answer["buckets"]) == 7 and answer["width"] == pytest.approx(24 * HOUR)
    day = answer["buckets"][0]
    assert day["t"] == pytest.approx(week)
    assert day["temperature"] == {"min": 20, "avg": pytest.approx(20 + 23 / 8), "max": 25.75, "count": 24}
    assert day["humidity"] == {"min": 50, "avg": 50, "max": 50, "count": 24}


def test_buckets_are_by_measured_time_and_empty_ones_are_left_out(client, week):
    last_day = week + 6 * 24 * HOUR

    answer = client.get(f"/api/devices/kitchen/readings?since={last_day}&buckets=48").json

    assert 20 <= len(answer["buckets"]) <= 24
    assert all(bucket["t"] >= last_day for bucket in answer["buckets"])


@pytest.mark.parametrize("query, error", [("buckets=0", "buckets"), ("buckets=x", "buckets"),
                                          ("buckets=5&since=10&until=5", "until"),
                                          ("buckets=5&since=soon", "since"), ("since=10&until=5", "until"),
                                          ("since=1_000", "since"), ("buckets=5&until=\uff11\uff12", "until")])
def test_bad_history_queries_are_refused_clearly(client, week, query, error):
    answer = client.get(f"/api/devices/kitchen/readings?{query}")

    assert answer.status_code == 400 and error in answer.json["error"]


@pytest.fixture
def three_days(app, client, token_for):
    """Three days of a greenhouse sensor measured at odd moments, humidity now and then, and a
    busy hour on the third day; the last day arrives first, then the first two as a late backlog."""
    app.config.update(RATE_LIMIT=0)
    start = (time.time() // HOUR - 72) * HOUR
    rng = random.Random(18)
    readings = sorted(({"temperature": round(rng.uniform(10, 30), 2), "ts": start + rng.uniform(0, 72 * HOUR)}
                       for _ in range(4000)), key=lambda reading: reading["ts"])
    readings += [{"temperature": round(rng.uniform(15, 25), 2), "ts": start + 50 * HOUR + rng.uniform(0, HOUR)}
                 for _ in range(1000)]
    for reading in readings[::3]:
        reading["humidity"] = round(rng.uniform(30, 90), 1)
    last_day = [reading for reading in readings if reading["ts"] >= start + 48 * HOUR]
    backlog = [reading for reading in readings if reading["ts"] < start + 48 * HOUR]
    rng.shuffle(backlog)
    headers = {"Authorization": f"Bearer {token_for('greenhouse')}"}
    for part in (last_day, backlog):
        for first in range(0, len(part), 500):
            assert client.post("/api/readings", json=part[first:first + 500], headers=headers).status_code == 201
    return start, readings


def buckets_of(readings, since, until, count):
    """What the buckets should hold, computed from the readings themselves."""
    width, stats = (until - since) / count, {}
    for reading in readings:
        if since <= reading["ts"] < until:
            bucket = stats.setdefault(int((reading["ts"] - since) / width), {})
            for name in ("temperature", "humidity"):
                if name in reading:
                    bucket.setdefault(name, []).append(reading[name])
    return [dict({name: {"min": min(values), "avg": pytest.approx(sum(values) / len(values)), "max": max(values),
                         "count": len(values)}
                  for name, values in stats[index].items()}, t=pytest.approx(since + index * width))
            for index in sorted(stats)]


@pytest.mark.parametrize("hours_in, hours, count", [
    (0, 72, 72),    # hourly buckets: from the 10 min rollups
    (24, 6, 120),   # 3 min buckets: from the 1 min rollups
    (50, 1, 120),   # 30 s buckets, the busy hour: from the 10 s rollups
    (50, 1, 720),   # 5 s buckets: narrower than any slot, from the readings themselves
])
def test_buckets_from_the_rollups_hold_what_the_readings_hold_backlog_and_all(client, three_days,
                                                                               hours_in, hours, count):
    start, readings = three_days
    since, until = start + hours_in * HOUR, start + (hours_in + hours) * HOUR

    answer = client.get(f"/api/devices/greenhouse/readings?since={since}&until={until}&buckets={count}").json

    assert answer["buckets"] == buckets_of(readings, since, until, count)
    rolled_up = count * 5 != hours * 3600  # as of the greenhouse's newest reading, when from the rollups
    assert answer.pop("newest", None) == (client.get("/api/devices/greenhouse/readings?limit=1").json["readings"][-1]["id"]
                                          if rolled_up else None)
    assert set(answer) == {"device", "since", "until", "width", "buckets"}


def commands_run(redis_client):
    """How many times Redis ran each command since its statistics were reset."""
    return {name.removeprefix("cmdstat_"): stats["calls"]
            for name, stats in redis_client.info("commandstats").items()}


def test_a_day_of_thousands_of_readings_is_charted_from_the_rollups_alone(client, three_days, redis_client):
    start, readings = three_days
    redis_client.config_resetstat()
    day = client.get(f"/api/devices/greenhouse/readings?since={start + 24 * HOUR}&until={start + 48 * HOUR}"
                     "&buckets=300")
    wide = commands_run(redis_client)
    redis_client.config_resetstat()
    client.get(f"/api/devices/greenhouse/readings?since={start + 50 * HOUR}&until={start + 51 * HOUR}&buckets=720")
    narrow = commands_run(redis_client)

    assert day.status_code == 200 and len(day.json["buckets"]) > 250
    assert wide["xrange"] <= 2  # its first reading (the default since) and any stored before rollups: no pages
    assert wide["hgetall"] <= 1 + 25 + 5  # who may view, a day of 1 min rollups (a key an hour, as an older
    # server's keys of 6 hours are read too, from the one the day began in)
    assert narrow["xrange"] > len(readings) / PAGE  # 5 s buckets: every reading, page by page


@pytest.fixture
def busy_hour(app, client, token_for):
    """The last hour of a sensor that sends four readings a second, on 10 s boundaries."""
    app.config.update(RATE_LIMIT=0)
    until = time.time() // FINEST_SLOT * FINEST_SLOT
    readings = [{"temperature": 20 + n % 50 / 10, "humidity": 40 + n % 7, "ts": until - HOUR + n / 4}
                for n in range(4 * HOUR)]
    headers = {"Authorization": f"Bearer {token_for('press')}"}
    for first in range(0, len(readings), 500):
        assert client.post("/api/readings", json=readings[first:first + 500], headers=headers).status_code == 201
    return until - HOUR, until, readings


def test_buckets_narrower_than_any_slot_over_a_busy_hour_read_a_bounded_number_of_readings(
        client, busy_hour, redis_client):
    since, until, readings = busy_hour
    redis_client.config_resetstat()

    answer = client.get(f"/api/devices/press/readings?since={since}&until={until}&buckets=2000").json

    assert len(readings) > 2 * RAW_READINGS
    # Its first reading, pages up to one past RAW_READINGS, and any stored before rollups.
    assert commands_run(redis_client)["xrange"] <= 1 + (RAW_READINGS // PAGE + 1) + 1
    assert answer["width"] == FINEST_SLOT  # fewer, wider buckets, from the 10 s rollups
    assert answer["buckets"] == buckets_of(readings, since, until, HOUR // FINEST_SLOT)


def test_rollups_are_kept_as_long_as_the_readings_in_them_the_10_s_ones_a_day(app, client, token_for,
                                                                               redis_client):
    app.config.update(RETENTION=3 * 24 * HOUR)
    now = time.time()
    headers = {"Authorization": f"Bearer {token_for('attic')}"}
    for ts in (now, now - 2 * 24 * HOUR):  # one measured now, one from a board's two-day-old buffer
        assert client.post("/api/readings", json={"temperature": 12.5, "ts": ts}, headers=headers).status_code == 201

    for size, span, reach in TIERS:
        keep = reach or 3 * 24 * HOUR
        current = rollup_key(redis_client, "attic", size, int(now // span * span))
        late = rollup_key(redis_client, "attic", size, int((now - 2 * 24 * HOUR) // span * span))
        assert redis_client.hget(current, f"{int(now // size * size)}:temperature") == "1 12.5 12.5 12.5"
        assert redis_client.ttl(current) == pytest.approx(now // span * span + span + keep - now, abs=2)
        assert redis_client.ttl(late) == (-2 if reach else pytest.approx(keep, abs=2))  # -2: no such key


def test_a_retried_reading_is_counted_once(client, token_for, redis_client):
    headers = {"Authorization": f"Bearer {token_for('attic')}"}
    reading = {"temperature": 12.5, "seq": 7, "boot": "b1", "ts": time.time()}
    for temperature in (12.5, 12.5, 30):  # a retry of seq 7, then a forged one (409): neither stored
        client.post("/api/readings", json=dict(reading, temperature=temperature), headers=headers)

    [key] = redis_client.keys(rollup_key(redis_client, "attic", 10, "*"))
    assert list(redis_client.hgetall(key).values()) == ["1 12.5 12.5 12.5"]


def test_after_an_upgrade_the_charts_still_show_what_an_older_server_stored(client, token_for, redis_client):
    start = (time.time() // HOUR - 24) * HOUR
    for hour in range(23):  # as a server without rollups left them
        redis_client.xadd("readings:attic", {"temperature": str(10 + hour), "ts": repr(start + hour * HOUR)},
                          id=f"{int((start + hour * HOUR) * 1000)}-0")
    client.post("/api/readings", json={"temperature": 40}, headers={"Authorization": f"Bearer {token_for('attic')}"})

    answer = client.get(f"/api/devices/attic/readings?since={start}&buckets=25").json

    assert [bucket["temperature"]["max"] for bucket in answer["buckets"]] == [10 + hour for hour in range(23)] + [40]


def test_after_an_upgrade_the_charts_still_show_what_an_older_server_rolled_up_in_its_longer_keys(
        client, token_for, redis_client):
    """Servers before this one kept a key of 1 min slots per 6 hours (of 10 s slots per hour,
    of 10 min slots per day); a range starting after such a key began still counts it."""
    span = 6 * HOUR
    measured = (time.time() // span - 1) * span + 3 * HOUR + 30  # 3 h into the 6 h before these
    client.post("/api/readings", json={"temperature": 12.5, "ts": measured},
                headers={"Authorization": f"Bearer {token_for('attic')}"})
    redis_client.rename(rollup_key(redis_client, "attic", 60, int(measured // HOUR * HOUR)),
                        rollup_key(redis_client, "attic", 60, int(measured // span * span)))  # as it left it

    answer = client.get(f"/api/devices/attic/readings?since={measured - 600}&until={measured + 600}&buckets=10").json

    assert answer["width"] == 120 and [bucket["temperature"]["count"] for bucket in answer["buckets"]] == [1]


def test_the_export_is_a_csv_with_a_header_and_a_row_per_reading(client, week):
    answer = client.get(f"/api/devices/kitchen/readings.csv?since={week}")

    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True))))
    assert answer.mimetype == "text/csv"
    since = time.strftime("%Y-%m-%dT%H%MZ", time.gmtime(week))
    assert re.fullmatch(rf'attachment; filename="kitchen-{since}-\d{{4}}-\d\d-\d\dT\d{{4}}Z\.csv"',
                        answer.headers["Content-Disposition"])

    assert rows[0] == ["time", "ts", "temperature (°C)", "humidity (%RH)"]
    assert len(rows) == 1 + 7 * 24
    assert rows[1][0].endswith("+00:00") and float(rows[1][1]) == pytest.approx(week)
    assert rows[1][2:] == ["20.0", "50"]


def test_the_export_has_no_column_for_how_the_last_firmware_update_went(client, week, token_for):
    client.post("/api/firmware/report", json={"version": "0.2.0", "status": "failed", "reason": "boom"},
                headers={"Authorization": f"Bearer {token_for('kitchen')}"})

    answer = client.get(f"/api/devices/kitchen/readings.csv?since={week}")

    assert next(csv.reader(io.StringIO(answer.get_data(as_text=True)))) == [
        "time", "ts", "temperature (°C)", "humidity (%RH)"]


def test_the_export_in_fahrenheit_says_so_in_its_header(client, week):
    rows = list(csv.reader(io.StringIO(client.get("/api/devices/kitchen/readings.csv?unit=F").get_data(as_text=True))))

    assert rows[0][2] == "temperature (°F)" and rows[1][2] == "68.00"


def test_a_process_makes_a_few_exports_at_once_and_asks_the_rest_to_wait(client, week):
    url = f"/api/devices/kitchen/readings.csv?since={week}"
    running = [client.get(url, buffered=False) for _ in range(EXPORTS_AT_ONCE)]

    refused = client.get(url)
    running.pop().close()
    allowed = client.get(url)

    assert [answer.status_code for answer in running] == [200] * (EXPORTS_AT_ONCE - 1)
    assert refused.status_code == 429 and "try again" in refused.json["error"]
    assert allowed.status_code == 200 and len(allowed.get_data(as_text=True).splitlines()) == 1 + 7 * 24
    for answer in running:
        answer.close()


def test_an_unknown_device_has_no_export(client):
    assert client.get("/api/devices/nobody/readings.csv").status_code == 404


@pytest.mark.parametrize("path", ["readings?buckets=1&since=-1e308", "readings?buckets=1&until=1e308",
                                  "readings.csv?since=-1e308", "readings.csv?until=1e308"])
def test_times_beyond_any_clock_mean_from_the_start_or_until_the_end(client, week, path):
    answer = client.get(f"/api/devices/kitchen/{path}")

    assert answer.status_code == 200
    if "buckets" in path:
        assert len(answer.json["buckets"]) == 1
    else:
        assert len(answer.get_data(as_text=True).splitlines()) == 1 + 7 * 24


@pytest.mark.parametrize("unit", ["K", "kelvin", ""])
def test_an_export_in_any_unit_but_c_or_f_is_refused_clearly(client, week, unit):
    answer = client.get(f"/api/devices/kitchen/readings.csv?unit={unit}")

    assert answer.status_code == 400 and "unit: must be C" in answer.json["error"]
