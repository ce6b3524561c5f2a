"""A user explores weeks of history: downsampled for the chart, exported as CSV."""
import csv
import io
import time

import pytest

HOUR = 3600


@pytest.fixture
def week(client, token_for):
    """A week of hourly kitchen readings, uploaded late as one backlog (measured times kept)."""
    start = time.time() - 7 * 24 * HOUR
    readings = [{"temperature": 20 + hour % 24 / 4, "humidity": 50, "ts": start + hour * HOUR}
                for hour in range(7 * 24)]
    headers = {"Authorization": f"Bearer {token_for('kitchen')}"}
    assert client.post("/api/readings", json=readings, headers=headers).status_code == 201
    return start


def test_a_week_comes_back_as_buckets_with_min_avg_and_max(client, week):
    answer = client.get(f"/api/devices/kitchen/readings?since={week}&until={week + 7 * 24 * HOUR}&buckets=7").json

    assert len(answer["buckets"]) == 7 and answer["width"] == pytest.approx(24 * HOUR)
    day = answer["buckets"][0]
    assert day["t"] == pytest.approx(week)
    assert day["temperature"] == {"min": 20, "avg": pytest.approx(20 + 23 / 8), "max": 25.75}
    assert day["humidity"] == {"min": 50, "avg": 50, "max": 50}


def test_buckets_are_by_measured_time_and_empty_ones_are_left_out(client, week):
    last_day = week + 6 * 24 * HOUR

    answer = client.get(f"/api/devices/kitchen/readings?since={last_day}&buckets=48").json

    assert 20 <= len(answer["buckets"]) <= 24
    assert all(bucket["t"] >= last_day for bucket in answer["buckets"])


@pytest.mark.parametrize("query, error", [("buckets=0", "buckets"), ("buckets=x", "buckets"),
                                          ("buckets=5&since=10&until=5", "until"),
                                          ("buckets=5&since=soon", "since")])
def test_bad_bucket_queries_are_refused_clearly(client, week, query, error):
    answer = client.get(f"/api/devices/kitchen/readings?{query}")

    assert answer.status_code == 400 and error in answer.json["error"]


def test_the_export_is_a_csv_with_a_header_and_a_row_per_reading(client, week):
    answer = client.get(f"/api/devices/kitchen/readings.csv?since={week}")

    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True))))
    assert answer.mimetype == "text/csv" and "attachment" in answer.headers["Content-Disposition"]
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
