"""``GET /metrics``, parsed by prometheus_client's own parser, from a real server with two
worker processes: whichever worker answers, the figures are the same and add up."""
import json
import os
import re
import signal
import time

import requests
from prometheus_client.parser import text_string_to_metric_families

from server import ROOT
from server.metrics import MQTT_REFUSALS, report_process
from tests.conftest import eventually

DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"


def scrape(server, **headers):
    """Every sample of one ``/metrics`` answer: (name, sorted labels) -> value."""
    answer = requests.get(server.url + "/metrics", headers=headers, timeout=5)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.text) for sample in family.samples}


def test_metrics_add_up_across_two_workers(start_server, token_for):
    server = start_server(workers=2)
    kitchen, attic = token_for("kitchen"), token_for("attic")
    for number in range(10):  # spread over both workers
        assert server.post("/api/readings", kitchen, json={"temperature": 20 + number, "boot": "b",
                                                          "seq": number}).status_code == 201
    assert server.post("/api/readings", kitchen, json={"temperature": 23, "boot": "b", "seq": 3}).status_code == 201
    assert server.post("/api/readings", attic, json=[{"humidity": 40.5}, {"humidity": 41, "pressure": 1000}]).ok
    assert server.post("/api/readings", attic, json={"humidity": 101}).status_code == 400
    assert server.post("/api/readings", "wrong", json={"humidity": 50}).status_code == 401
    assert server.post("/api/readings", attic, json={"device": "kitchen", "humidity": 50}).status_code == 403
    stream = server.stream()
    eventually(lambda: scrape(server)[("sensorcast_open_streams", ())] == 1)
    eventually(lambda: scrape(server)[("sensorcast_processes", ())] == 2)
    for _ in range(4):  # each answer, from either worker, holds the same figures
        figures = scrape(server)
        assert figures[("sensorcast_redis_up", ())] == 1
        assert figures[("sensorcast_device_value", (("device", "kitchen"), ("metric", "temperature")))] == 29
        assert figures[("sensorcast_device_value", (("device", "attic"), ("metric", "humidity")))] == 41
        assert figures[("sensorcast_device_value", (("device", "attic"), ("metric", "pressure")))] == 1000
        assert not any(labels and dict(labels).get("metric") in ("seq", "boot", "ts", "last_seen")
                       for _, labels in figures)
        assert figures[("sensorcast_device_online", (("device", "kitchen"),))] == 1
        assert 0 <= figures[("sensorcast_device_last_seen_age_seconds", (("device", "attic"),))] < 60
        assert figures[("sensorcast_readings_stored_total", (("transport", "http"),))] == 12
        assert figures[("sensorcast_readings_duplicate_total", (("transport", "http"),))] == 1
        for reason in ("invalid", "unauthorized", "forbidden"):
            assert figures[("sensorcast_uploads_refused_total", (("reason", reason), ("transport", "http")))] == 1
        for transport, reason in (("http", "rate_limited"), ("mqtt", "too_large")):  # none yet: 0, so rate() works
            assert figures[("sensorcast_uploads_refused_total", (("reason", reason), ("transport", transport)))] == 0
        assert figures[("sensorcast_readings_stored_total", (("transport", "mqtt"),))] == 0
        assert figures[("sensorcast_open_streams", ())] == 1
        assert not any(name == "sensorcast_mqtt_connected" for name, _ in figures)  # MQTT is not configured
    stream.close()


def test_every_reason_an_mqtt_message_is_dropped_for_is_shown_from_0(client):
    """Why mqtt.py drops a message, as /metrics shows them before any message came: rate() works at once."""
    answer = client.get("/metrics")
    assert answer.status_code == 200
    shown = {sample.labels["reason"]: sample.value for family in text_string_to_metric_families(answer.text)
             for sample in family.samples
             if sample.name == "sensorcast_uploads_refused_total" and sample.labels["transport"] == "mqtt"}
    assert shown == dict.fromkeys(MQTT_REFUSALS, 0)


def test_prometheus_is_told_promptly_that_redis_is_down_or_hung(start_server, token_for, redis_server):
    server = start_server()
    assert server.post("/api/readings", token_for("kitchen"), json={"temperature": 20}).status_code == 201
    assert scrape(server)[("sensorcast_redis_up", ())] == 1

    redis_server.stop()
    try:
        assert scrape(server) == {("sensorcast_redis_up", ()): 0}  # not a 503 Prometheus shows as a failed target
    finally:
        redis_server.start()
    eventually(lambda: scrape(server)[("sensorcast_redis_up", ())] == 1)

    os.kill(redis_server.process.pid, signal.SIGSTOP)  # alive, answering nothing
    try:
        asked = time.monotonic()
        assert scrape(server) == {("sensorcast_redis_up", ()): 0}
        assert time.monotonic() - asked < 5  # well within Prometheus' scrape_timeout of 10 s
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    eventually(lambda: scrape(server)[("sensorcast_redis_up", ())] == 1)
    assert scrape(server)[("sensorcast_device_value", (("device", "kitchen"), ("metric", "temperature")))] == 20


def test_a_silent_device_is_offline_in_the_metrics(start_server, token_for):
    server = start_server(OFFLINE_AFTER=1)
    assert server.post("/api/readings", token_for("kitchen"), json={"temperature": 20}).status_code == 201
    eventually(lambda: scrape(server)[("sensorcast_device_online", (("device", "kitchen"),))] == 0)
    assert scrape(server)[("sensorcast_device_last_seen_age_seconds", (("device", "kitchen"),))] >= 1


def test_metrics_need_the_token_when_one_is_set(app, client):
    app.config["METRICS_TOKEN"] = "s3cret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    answer = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert answer.status_code == 200 and b"sensorcast_redis_up 1.0" in answer.data


def test_metrics_are_open_without_a_token_while_reading_is_open(client):
    assert client.get("/metrics").status_code == 200


def test_once_viewers_guard_the_readings_metrics_need_the_token(app, client):
    app.test_cli_runner().invoke(args=["viewers", "add", "ana"], input="correct horse\ncorrect horse\n")

    refused = client.get("/metrics")
    app.config["METRICS_TOKEN"] = "s3cret"
    scraped = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})

    assert refused.status_code == 403 and "SENSORCAST_METRICS_TOKEN" in refused.json["error"]
    assert scraped.status_code == 200


def test_the_grafana_dashboard_shows_trouble_at_a_glance():
    panels = {panel["title"]: panel for panel in json.loads(DASHBOARD.read_text())["panels"]}
    for title, down in (("Online", "offline"), ("Redis up", "down")):  # a 0 is a red word, not a grey "0"
        zero = panels[title]["fieldConfig"]["defaults"]["mappings"][0]["options"]["0"]
        assert (zero["text"], zero["color"]) == (down, "red")
    assert panels["MQTT connected processes"]["targets"][0]["expr"].endswith(" or vector(0)")  # 0, not "No data"


def test_the_grafana_dashboard_asks_only_for_metrics_the_server_gives(client, redis_client, token_for):
    assert client.post("/api/readings", json={"temperature": 20, "humidity": 40},
                       headers={"Authorization": f"Bearer {token_for('kitchen')}"}).status_code == 201
    assert client.post("/api/readings", json={"temperature": "warm"}).status_code == 401
    report_process(redis_client, "elsewhere:1", 0, "up")  # a process with MQTT on
    given = {sample.name for family in text_string_to_metric_families(client.get("/metrics").text)
             for sample in family.samples}
    dashboard = json.loads(DASHBOARD.read_text())
    asked = {name for panel in dashboard["panels"] for target in panel["targets"]
             for name in re.findall(r"sensorcast_[a-z_]+", target["expr"])}
    assert asked and asked <= given, asked - given
