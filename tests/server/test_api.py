"""The JSON the dashboard (and anyone) reads: devices, their history, and health."""
import time

import pytest

from server.store import device_key


@pytest.fixture
def kitchen(client, token_for):
    """A device that has sent five readings, one every few milliseconds."""
    headers = {"Authorization": f"Bearer {token_for('kitchen')}"}
    ids = []
    for value in range(5):
        ids += client.post("/api/readings", json={"temperature": 20 + value, "rssi": -60},
                           headers=headers).json["ids"]
        time.sleep(0.002)
    return ids


def test_devices_list_their_latest_values_and_whether_they_are_online(client, kitchen):
    [device] = client.get("/api/devices").json["devices"]

    assert device["device"] == "kitchen" and device["temperature"] == 24 and device["rssi"] == -60
    assert device["online"] is True and device["last_seen"] > time.time() - 60


def test_a_device_the_offline_sweep_marked_is_listed_offline(client, kitchen, redis_client):
    redis_client.hset(device_key(redis_client, "kitchen"), "status", "offline")  # as the sweep marks it

    [device] = client.get("/api/devices").json["devices"]

    assert device["online"] is False and device["last_seen"] > time.time() - 60


def test_history_comes_oldest_first_with_ids_and_limits(client, kitchen):
    every = client.get("/api/devices/kitchen/readings").json["readings"]
    newest_two = client.get("/api/devices/kitchen/readings?limit=2").json["readings"]
    after_second = client.get(f"/api/devices/kitchen/readings?since={kitchen[1]}").json["readings"]

    assert [r["temperature"] for r in every] == [20, 21, 22, 23, 24]
    assert [r["id"] for r in every] == kitchen
    assert [r["temperature"] for r in newest_two] == [23, 24]
    assert [r["temperature"] for r in after_second] == [22, 23, 24]


def test_history_by_unix_time(client, kitchen):
    until = int(kitchen[2].split("-")[0]) / 1000
    early = client.get(f"/api/devices/kitchen/readings?since=0&until={until}").json["readings"]
    assert [r["temperature"] for r in early] == [20, 21, 22]


def test_a_busy_devices_history_comes_spread_over_a_range_rather_than_its_newest(client, token_for):
    """A fresh Live chart of a device that sent thousands: as far back as the range goes."""
    headers = {"Authorization": f"Bearer {token_for('mill')}"}
    start = time.time()
    batches = []
    for batch in range(20):  # over a fraction of a second, within the rate limit's bursts
        batches.append(client.post("/api/readings", json=[{"rpm": batch}] * 100, headers=headers).json["ids"])
        time.sleep(0.01)

    spread = client.get(f"/api/devices/mill/readings?spread&limit=20&since={start}").json["readings"]
    newest = client.get("/api/devices/mill/readings?limit=20").json["readings"]

    assert 1 < len(spread) <= 20 and {r["rpm"] for r in newest} == {19}
    assert spread[0]["id"] == batches[0][0]  # from the first on, not only the newest
    assert [r["id"] for r in spread] == sorted({r["id"] for r in spread}, key=lambda i: tuple(map(int, i.split("-"))))
    assert "since" in client.get("/api/devices/mill/readings?spread&limit=20").json["error"]


def test_a_spread_from_the_last_stream_id_there_can_be_is_empty_not_a_server_error(client, token_for):
    client.post("/api/readings", json={"temperature": 20}, headers={"Authorization": f"Bearer {token_for('kitchen')}"})

    answer = client.get("/api/devices/kitchen/readings?spread&since=18446744073709551615-0")

    assert answer.status_code == 200 and answer.json["readings"] == []


def test_unknown_devices_and_bad_queries_get_clear_errors(client, kitchen):
    assert client.get("/api/devices/nobody/readings").status_code == 404
    assert "limit" in client.get("/api/devices/kitchen/readings?limit=0").json["error"]
    assert "since" in client.get("/api/devices/kitchen/readings?since=soon").json["error"]


def test_health_reports_redis(client):
    assert client.get("/healthz").json["status"] == "ok"


def test_the_dashboard_page_is_served_with_its_chart_library(client):
    page = client.get("/").get_data(as_text=True)

    assert "Sensorcast" in page and "uPlot.iife.min.js" in page and "humidity" in page
    assert client.get("/static/vendor/uPlot.iife.min.js").status_code == 200


def test_pages_carry_the_content_security_policy_and_a_device_s_answers_do_not(client, token_for):
    """A board reads every header line whole into a heap of a few KB: the policy rules no JSON."""
    device = {"Authorization": f"Bearer {token_for('kitchen')}"}
    page, icon = client.get("/"), client.get("/static/favicon.svg")
    upload = client.post("/api/readings", json={"temperature": 20}, headers=device)
    update_check = client.get("/api/firmware?fw=0.1.0", headers=device)

    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in icon.headers["Content-Security-Policy"]
    assert (upload.status_code, update_check.status_code) == (201, 204)
    for answer in (page, icon, upload, update_check):
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in upload.headers and "Content-Security-Policy" not in update_check.headers


@pytest.mark.parametrize("query, field", [("limit=abc", "limit"), ("limit=0", "limit"), ("limit=1e3", "limit"),
                                          ("buckets=x", "buckets"), ("buckets=99999", "buckets"),
                                          ("since=18446744073709551615-18446744073709551615", "since")])
def test_odd_history_queries_are_refused_clearly(client, kitchen, query, field):
    answer = client.get(f"/api/devices/kitchen/readings?{query}")

    assert answer.status_code == 400 and field in answer.json["error"]


def test_every_devices_thresholds_come_in_one_answer(client, kitchen, token_for):
    client.post("/api/readings", json={"humidity": 50}, headers={"Authorization": f"Bearer {token_for('shed')}"})
    client.put("/api/devices/kitchen/thresholds/temperature", json={"high": 25})
    client.put("/api/devices/kitchen/thresholds/rssi", json={"low": -80, "hysteresis": 2})

    thresholds = client.get("/api/thresholds").json["thresholds"]

    assert thresholds == {"kitchen": {"temperature": {"high": 25, "hysteresis": 0.0},
                                      "rssi": {"low": -80, "hysteresis": 2}}}
