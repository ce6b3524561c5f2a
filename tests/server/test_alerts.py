"""The owner sets a low and a high per metric: crossings and recoveries become alerts on
the page, in the list and at a webhook; a device gone silent is an alert too."""
import http.server
import json
import pathlib
import signal
import threading
import time

import pytest
import requests

from server import create_app
from server.alerting import resume_muted
from server.auth import issue_token
from server.connections import connect
from server.embedded_redis import EmbeddedRedis
from server.store import CHANNEL, UNSWEPT_GAP, WEBHOOK_LEASE, mark_offline
from server.webhook import TRIES, Webhook
from tests.conftest import TEST_SETTINGS, LiveServer, eventually


@pytest.fixture
def kitchen(client, token_for):
    """Post temperatures as the kitchen; gives the alert list after each."""
    headers = {"Authorization": f"Bearer {token_for('kitchen')}"}

    def post(*temperatures):
        for temperature in temperatures:
            assert client.post("/api/readings", json={"temperature": temperature}, headers=headers).status_code == 201
        return client.get("/api/alerts").json
    post(25)
    return post


def test_crossing_a_high_alerts_once_and_clears_past_the_hysteresis(client, kitchen):
    assert client.put("/api/devices/kitchen/thresholds/temperature",
                      json={"high": 30, "hysteresis": 1}).status_code == 200

    hot = kitchen(31, 32, 29.5)
    cooled = kitchen(28.9)

    assert [(a["state"], a["value"]) for a in hot["recent"]] == [("high", 31)]
    assert hot["active"] == [{"device": "kitchen", "metric": "temperature", "state": "high"}]
    assert [(a["state"], a.get("threshold")) for a in cooled["recent"]] == [("cleared", 30), ("high", 30)]
    assert cooled["active"] == []


def test_a_reading_that_arrives_after_a_later_one_neither_raises_nor_clears_an_alert(client, token_for):
    """Over MQTT a boot's readings may be stored out of seq order: the latest stands."""
    headers = {"Authorization": f"Bearer {token_for('kitchen')}"}

    for seq, temperature in [(1, 20), (3, 35), (2, 20), (5, 20), (4, 35)]:
        answer = client.post("/api/readings", json={"temperature": temperature, "boot": "b", "seq": seq},
                             headers=headers)
        assert answer.status_code == 201 and answer.json["stored"] == 1
        if seq == 1:
            assert client.put("/api/devices/kitchen/thresholds/temperature", json={"high": 30}).status_code == 200

    assert [a["state"] for a in reversed(client.get("/api/alerts").json["recent"])] == ["high", "cleared"]
    assert client.get("/api/alerts").json["active"] == []


def test_a_low_alerts_too_and_thresholds_can_be_read_and_removed(client, kitchen):
    client.put("/api/devices/kitchen/thresholds/temperature", json={"low": 5})

    assert kitchen(4)["active"][0]["state"] == "low"
    assert client.get("/api/devices/kitchen/thresholds").json["thresholds"] == {
        "temperature": {"low": 5, "hysteresis": 0.0}}
    assert client.delete("/api/devices/kitchen/thresholds/temperature").status_code == 204
    assert kitchen(3)["active"] == []


@pytest.mark.parametrize("body, error", [({"low": 30, "high": 20}, "below high"), ({}, "give a low"),
                                         ({"high": "hot"}, "high"), ({"high": 5, "hysteresis": -1}, "hysteresis"),
                                         ({"high": 5, "colour": "red"}, "as JSON")])
def test_bad_thresholds_are_refused_clearly(client, kitchen, body, error):
    answer = client.put("/api/devices/kitchen/thresholds/temperature", json=body)

    assert answer.status_code == 400 and error in answer.json["error"]


def test_thresholds_from_the_command_line(app, kitchen):
    runner = app.test_cli_runner()

    assert runner.invoke(args=["thresholds", "set", "kitchen", "temperature", "--high", "26"]).exit_code == 0
    assert "kitchen\ttemperature" in runner.invoke(args=["thresholds", "list"]).output
    assert kitchen(27)["active"][0]["state"] == "high"
    assert "below high" in runner.invoke(args=["thresholds", "set", "kitchen", "humidity",
                                               "--low", "9", "--high", "1"]).output
    typo = runner.invoke(args=["thresholds", "set", "kitchn", "temperature", "--high", "26"])
    assert typo.exit_code == 2 and "no device 'kitchn' has sent a reading" in typo.output


def test_a_silent_device_is_an_alert_until_it_is_back(client, redis_client, kitchen):
    mark_offline(redis_client, time.time())
    assert client.get("/api/alerts").json["active"] == [{"device": "kitchen", "state": "offline"}]

    back = kitchen(22)

    assert [a["state"] for a in back["recent"]] == ["online", "offline"] and back["active"] == []


def test_an_alert_gives_the_value_and_the_threshold_to_the_last_digit(live_server, token_for, client):
    """Redis's own JSON writer keeps 14 digits: 50.000000000000007 above a high of 50 would
    read "50 is above 50" on the page, in the list and at the webhook."""
    token = token_for("kitchen")
    live_server.post("/api/readings", token, json={"temperature": 20})
    client.put("/api/devices/kitchen/thresholds/temperature", json={"high": 49.999999999999993})
    browser = live_server.stream()

    live_server.post("/api/readings", token, json={"temperature": 50.000000000000007})

    listed = client.get("/api/alerts").json["recent"][0]
    heard = browser.next_of("alert")["data"]
    stored_at = client.get("/api/devices").json["devices"][0]["last_seen"]
    for alert in listed, heard:
        assert (alert["value"], alert["threshold"], alert["ts"]) == (50.000000000000007, 49.999999999999993, stored_at)


def test_an_alert_reaches_watching_browsers(live_server, token_for, client):
    token = token_for("kitchen")
    live_server.post("/api/readings", token, json={"temperature": 20})
    client.put("/api/devices/kitchen/thresholds/temperature", json={"high": 30})
    browser = live_server.stream()

    live_server.post("/api/readings", token, json={"temperature": 35})

    event = browser.next_of("alert")
    assert event["data"]["state"] == "high" and "id" not in event


@pytest.fixture
def webhook():
    """A webhook endpoint that fails its first request, then keeps every alert posted."""
    received, failures = [], [1]

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status = 500 if failures and failures.pop() else 200
            if status == 200:
                received.append(body)
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url, server.received, server.failures = f"http://127.0.0.1:{server.server_port}/hook", received, failures
    yield server
    server.shutdown()


@pytest.fixture
def start_webhook(redis_client):
    """Starts alert webhooks on the test's Redis client, each stopped before that client is closed."""
    hooks = []

    def start(url):
        hooks.append(Webhook(redis_client, url))
        return hooks[-1]

    yield start
    for hook in hooks:
        hook.stop()


def test_alerts_are_posted_to_the_webhook_with_retries(redis_server, redis_client, token_for, monkeypatch, webhook):
    monkeypatch.setattr(Webhook, "first_wait", 0.05)
    app = create_app(dict(TEST_SETTINGS, REDIS_URL=redis_server.url, TESTING=True, WEBHOOK_URL=webhook.url))
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token_for('kitchen')}"}
    client.post("/api/readings", json={"temperature": 20}, headers=headers)
    duties = app.extensions["sensorcast.duties"].start()
    eventually(lambda: redis_client.exists("alerts"))  # the webhook's group is made
    client.put("/api/devices/kitchen/thresholds/temperature", json={"high": 30})

    client.post("/api/readings", json={"temperature": 35}, headers=headers)
    client.post("/api/readings", json={"temperature": 20}, headers=headers)

    eventually(lambda: len(webhook.received) == 2)
    assert [alert["state"] for alert in webhook.received] == ["high", "cleared"]
    figures = client.get("/metrics").text
    assert 'sensorcast_webhook_posts_total{outcome="failed"} 1.0' in figures
    assert 'sensorcast_webhook_posts_total{outcome="delivered"} 2.0' in figures
    duties.stop()


def test_at_night_with_nobody_watching_a_silent_device_is_reported_once_by_two_instances(
        start_server, client, token_for, redis_client, webhook):
    servers = [start_server(OFFLINE_AFTER=1, WEBHOOK_URL=webhook.url) for _ in range(2)]
    freezer = {"Authorization": f"Bearer {token_for('freezer')}"}

    client.post("/api/readings", json={"temperature": -18}, headers=freezer)  # through neither server

    eventually(lambda: [alert["state"] for alert in webhook.received] == ["offline"], timeout=30)
    client.post("/api/readings", json={"temperature": -17}, headers=freezer)
    eventually(lambda: [alert["state"] for alert in webhook.received] == ["offline", "online"], timeout=30)
    stored = [json.loads(fields["json"])["state"] for _, fields in redis_client.xrange("alerts")]
    assert stored == ["offline", "online"]
    assert all(server.health()["streams"] == 0 for server in servers)


def swept_since(redis_client, moment):
    """Some server process's offline sweep ran to its end after ``moment``."""
    return any(json.loads(line)["at"] > moment for line in redis_client.hvals("metrics:processes"))


def only_the_silent_freezer_goes_offline(redis_client, webhook, kitchen_posts, back_from):
    """Once a sweep has run since Redis was ``back_from`` an outage (before the kitchen's
    Retry-After is over), the kitchen posts on (``kitchen_posts``: the answer's status) and
    the webhook hears of the freezer, silent since before the outage, alone."""
    eventually(lambda: swept_since(redis_client, back_from), timeout=30)

    def kitchen_posts_and_alerts_are():
        assert kitchen_posts() == 201
        return [(alert["device"], alert["state"]) for alert in webhook.received]

    eventually(lambda: kitchen_posts_and_alerts_are() == [("freezer", "offline")], timeout=30,
               seen=lambda: webhook.received)


def test_a_full_redis_takes_no_device_that_kept_posting_offline_once_it_has_room_again(
        start_server, client, token_for, redis_client, webhook):
    start_server(OFFLINE_AFTER=2, WEBHOOK_URL=webhook.url)
    kitchen, freezer = ({"Authorization": f"Bearer {token_for(device)}"} for device in ("kitchen", "freezer"))
    for headers in (kitchen, freezer):
        assert client.post("/api/readings", json={"temperature": 4}, headers=headers).status_code == 201

    redis_client.config_set("maxmemory", 1)  # as full as it gets, for longer than OFFLINE_AFTER
    try:
        full_from = time.time()
        eventually(lambda: client.post("/api/readings", json={"temperature": 5}, headers=kitchen).status_code == 507
                   and time.time() > full_from + 3)
    finally:
        redis_client.config_set("maxmemory", 0)
    back_from = time.time()

    def kitchen_posts():
        return client.post("/api/readings", json={"temperature": 5}, headers=kitchen).status_code

    only_the_silent_freezer_goes_offline(redis_client, webhook, kitchen_posts, back_from)


def test_a_redis_away_for_longer_than_offline_after_takes_no_device_that_kept_posting_offline(tmp_path, webhook):
    with EmbeddedRedis(tmp_path) as redis_server:
        client = connect(redis_server.url)
        server = LiveServer(redis_server.url, OFFLINE_AFTER=2, WEBHOOK_URL=webhook.url)
        try:
            kitchen, freezer = (issue_token(client, device) for device in ("kitchen", "freezer"))
            for token in (kitchen, freezer):
                assert server.post("/api/readings", token, json={"temperature": 4}).status_code == 201
            eventually(lambda: client.exists("alerts"))  # the webhook's group is made

            redis_server.stop()  # for longer than OFFLINE_AFTER: the kitchen's uploads get 503 meanwhile
            away_from = time.time()
            eventually(lambda: server.post("/api/readings", kitchen, json={"temperature": 5}).status_code == 503
                       and time.time() > away_from + 3)
            redis_server.start()
            only_the_silent_freezer_goes_offline(
                client, webhook, lambda: server.post("/api/readings", kitchen, json={"temperature": 5}).status_code,
                back_from=time.time())
        finally:
            server.stop()
            client.connection_pool.disconnect()


def test_a_server_stopped_for_longer_than_offline_after_takes_no_device_that_kept_posting_offline(
        start_server, token_for, redis_client, webhook):
    """Every server process stopped (an upgrade, a reboot of the host): the boards were
    refused meanwhile, not silent. The freezer, silent since before, still goes offline."""
    server = start_server(OFFLINE_AFTER=2, WEBHOOK_URL=webhook.url)
    kitchen, freezer = token_for("kitchen"), token_for("freezer")
    for token in (kitchen, freezer):
        assert server.post("/api/readings", token, json={"temperature": 4}).status_code == 201
    posted = time.time()
    eventually(lambda: redis_client.exists("alerts") and swept_since(redis_client, posted))  # running as usual

    server.stop()
    stopped = time.time()
    eventually(lambda: time.time() > stopped + UNSWEPT_GAP + 1, timeout=60)  # down longer than both
    server = start_server(OFFLINE_AFTER=2, WEBHOOK_URL=webhook.url)

    only_the_silent_freezer_goes_offline(
        redis_client, webhook, lambda: server.post("/api/readings", kitchen, json={"temperature": 5}).status_code,
        back_from=time.time())


def test_two_instances_whose_clocks_disagree_still_take_a_silent_device_offline(kitchen, redis_client, monkeypatch):
    """Each sweep notes when it ran, and a gap of 10 s means no server ran: by Redis's clock,
    or an instance a minute behind would make every sweep of the other one see a gap."""
    redis_client.zadd("devices", {"kitchen": time.time() - 630})  # silent for 10 min by the right clock only
    behind = time.time
    monkeypatch.setattr(time, "time", lambda: behind() - 60)
    mark_offline(redis_client, time.time() - 600)  # the instance a minute behind: the kitchen is not yet silent
    monkeypatch.undo()

    assert mark_offline(redis_client, time.time() - 600) == ["kitchen"]


def test_a_device_has_at_most_as_many_thresholds_as_field_names_so_none_can_slow_every_upload(client, kitchen, app):
    """Each reading is checked against its device's thresholds inside Redis: ten thousand
    on names the kitchen never sends would hold Redis, and every device's upload, for seconds."""
    most = app.config["MAX_DEVICE_FIELDS"]
    for n in range(most):
        assert client.put(f"/api/devices/kitchen/thresholds/m{n}", json={"high": n}).status_code == 200

    one_more = client.put("/api/devices/kitchen/thresholds/temperature", json={"high": 30})

    assert one_more.status_code == 400 and f"has {most} thresholds" in one_more.json["error"]
    assert client.put("/api/devices/kitchen/thresholds/m0", json={"high": 1}).status_code == 200  # a change is fine
    client.delete("/api/devices/kitchen/thresholds/m1")
    assert client.put("/api/devices/kitchen/thresholds/temperature", json={"high": 30}).status_code == 200
    assert [alert["value"] for alert in kitchen(31)["recent"]] == [31]


def test_a_threshold_too_large_for_a_number_is_refused_clearly(client, kitchen):
    answer = client.put("/api/devices/kitchen/thresholds/temperature", data='{"high": 1' + "0" * 400 + "}",
                        content_type="application/json")

    assert answer.status_code == 400 and answer.json["error"] == "high: must be a finite number"


@pytest.mark.parametrize("metric", ["temperature%0A", "status", "fw", "ts"])
def test_a_threshold_is_only_for_a_name_a_metric_may_have(client, kitchen, metric):
    answer = client.put(f"/api/devices/kitchen/thresholds/{metric}", json={"high": 30})

    assert answer.status_code == 400 and answer.json["error"].startswith("metric: ")
    assert client.get("/api/devices/kitchen/thresholds").json["thresholds"] == {}


def test_a_threshold_an_older_server_let_be_set_on_a_readings_own_field_breaks_no_upload(client, kitchen, token_for,
                                                                                          redis_client):
    redis_client.hset("thresholds:kitchen", "fw", json.dumps({"high": 5}))
    headers = {"Authorization": f"Bearer {token_for('kitchen')}"}

    answer = client.post("/api/readings", json={"temperature": 20, "fw": "1e999"}, headers=headers)  # inf to Lua

    assert answer.status_code == 201 and client.get("/api/alerts").json["recent"] == []


def test_a_device_is_back_online_only_after_it_was_marked_offline(client, kitchen, redis_client):
    redis_client.zadd("devices", {"kitchen": time.time() - 3600})  # silent for an hour, yet never swept

    assert kitchen(22)["recent"] == []


def test_a_hook_away_for_longer_than_a_refusal_is_tried_gets_the_alert_once_it_is_back(
        redis_client, webhook, start_webhook, monkeypatch):
    monkeypatch.setattr(Webhook, "first_wait", 0.01)
    webhook.failures[:] = [1] * (TRIES + 2)  # a 500 each: an ntfy server rebooting at night
    start_webhook(webhook.url)
    eventually(lambda: redis_client.exists("alerts"))  # its group is made

    redis_client.xadd("alerts", {"json": json.dumps({"device": "freezer", "state": "offline", "ts": 1})})

    eventually(lambda: webhook.received, timeout=60)
    assert [alert["state"] for alert in webhook.received] == ["offline"] and not webhook.failures


def test_an_alert_a_dying_process_had_in_hand_is_posted_by_the_next_one(redis_client, webhook, start_webhook,
                                                                         monkeypatch):
    monkeypatch.setattr(Webhook, "first_wait", 0.05)
    monkeypatch.setattr(Webhook, "lease_seconds", 1.0)
    dying = start_webhook("http://127.0.0.1:9/nobody-listens")
    eventually(lambda: redis_client.exists("alerts"))  # its group is made
    redis_client.xadd("alerts", {"json": json.dumps({"device": "freezer", "state": "offline", "ts": 1})})
    eventually(lambda: redis_client.xpending("alerts", "webhook")["pending"] == 1)  # in hand, retrying

    dying.stop()  # as a worker killed mid-retry: nothing acknowledged
    start_webhook(webhook.url)

    eventually(lambda: [alert["state"] for alert in webhook.received] == ["offline"])
    assert webhook.received[0]["id"] == redis_client.xrange("alerts")[0][0]
    eventually(lambda: redis_client.xpending("alerts", "webhook")["pending"] == 0)


def test_a_reloaded_server_lets_the_webhook_go_so_its_new_worker_posts_the_next_alert(
        start_server, token_for, redis_client, webhook):
    """A graceful reload (SIGHUP, as a deploy does): the old worker held the webhook's lease
    for 30 s after its end, and every alert meanwhile waited."""
    server = start_server(WEBHOOK_URL=webhook.url)
    token = token_for("kitchen")
    assert server.post("/api/readings", token, json={"temperature": 20}).status_code == 201
    eventually(lambda: redis_client.get(WEBHOOK_LEASE))
    holder = redis_client.get(WEBHOOK_LEASE)
    old_worker = int(holder.split("-")[-2])

    server.process.send_signal(signal.SIGHUP)
    eventually(lambda: not pathlib.Path(f"/proc/{old_worker}").exists(), timeout=60)

    assert redis_client.get(WEBHOOK_LEASE) != holder
    requests.put(server.url + "/api/devices/kitchen/thresholds/temperature", json={"high": 30}, timeout=10)
    assert server.post("/api/readings", token, json={"temperature": 35}).status_code == 201
    eventually(lambda: [alert["state"] for alert in webhook.received] == ["high"])


def test_a_device_flapping_at_a_limit_delays_another_devices_alert_by_a_few_posts_only(redis_client, webhook,
                                                                                        start_webhook, monkeypatch):
    monkeypatch.setattr(Webhook, "first_wait", 0.05)
    redis_client.xgroup_create("alerts", "webhook", id="$", mkstream=True)
    with redis_client.pipeline() as pipe:
        for n in range(2000):
            state = "high" if n % 2 == 0 else "cleared"
            pipe.xadd("alerts", {"json": json.dumps({"device": "wild", "metric": "temperature", "state": state,
                                                     "value": 31 - n % 2 * 2, "ts": n})})
        pipe.xadd("alerts", {"json": json.dumps({"device": "freezer", "state": "offline", "ts": 2000})})
        pipe.execute()

    start_webhook(webhook.url)

    eventually(lambda: any(alert["device"] == "freezer" for alert in webhook.received), timeout=30)
    wild = [alert for alert in webhook.received if alert["device"] == "wild"]
    assert len(wild) <= 2 * 20  # the first and the last of each batch of 100
    assert wild[0]["state"] == "high" and wild[-1]["state"] == "cleared"
    assert len(wild) + sum(alert.get("folded", 0) for alert in wild) == 2000
    eventually(lambda: redis_client.xpending("alerts", "webhook")["pending"] == 0)


def test_a_value_flapping_at_a_limit_sends_a_few_alerts_then_where_it_stands(app, client, kitchen, token_for,
                                                                              redis_client):
    client.put("/api/devices/kitchen/thresholds/temperature", json={"high": 30})

    for _ in range(2):  # 300 crossings, the last one back below
        client.post("/api/readings", json=[{"temperature": 31 - n % 2 * 2} for n in range(150)],
                    headers={"Authorization": f"Bearer {token_for('kitchen')}"})

    listed = client.get("/api/alerts?limit=50").json["recent"]
    assert [client.get(f"/api/alerts?limit={limit}").status_code for limit in ("abc", "1.5", "0", "1001")] == [400] * 4
    assert redis_client.xlen("alerts") == app.config["ALERT_BURST"]  # the rest muted: others' alerts stay
    assert [(line["state"], line["repeats"]) for line in listed] == [("cleared", 4), ("high", 4)]
    assert listed[0]["first"] < listed[0]["raised"]
    assert resume_muted(redis_client, time.time(), CHANNEL) == 0  # the device may not alert again yet

    assert resume_muted(redis_client, time.time() + app.config["ALERT_BURST"] * app.config["ALERT_EVERY"],
                        CHANNEL) == 1
    latest = client.get("/api/alerts?limit=50").json["recent"][0]
    assert (latest["state"], latest["muted"], latest["value"]) == ("cleared", 290, 29)
    assert client.get("/api/alerts").json["active"] == []


def test_an_offline_alert_says_when_it_was_raised_as_well_as_when_the_device_was_last_seen(client, kitchen,
                                                                                           redis_client):
    redis_client.zadd("devices", {"kitchen": time.time() - 3600})
    mark_offline(redis_client, time.time() - 600)

    offline = client.get("/api/alerts").json["recent"][0]

    assert offline["state"] == "offline" and offline["raised"] - offline["ts"] >= 3600


def test_a_viewer_acknowledges_an_alert_until_it_is_raised_again(live_server, token_for):
    token = token_for("kitchen")
    live_server.post("/api/readings", token, json={"temperature": 20})
    requests.put(live_server.url + "/api/devices/kitchen/thresholds/temperature", json={"high": 30}, timeout=10)
    live_server.post("/api/readings", token, json={"temperature": 35})
    other_page = live_server.stream()

    seen = requests.post(live_server.url + "/api/alerts/acknowledge", timeout=10,
                         json={"device": "kitchen", "metric": "temperature", "state": "high"})

    assert seen.status_code == 204
    assert other_page.next_of("acknowledged")["data"] == {"device": "kitchen", "metric": "temperature",
                                                          "state": "high"}
    alerts = lambda: requests.get(live_server.url + "/api/alerts", timeout=10).json()["recent"]  # noqa: E731
    assert alerts()[0]["acknowledged"] is True
    live_server.post("/api/readings", token, json={"temperature": 20})
    live_server.post("/api/readings", token, json={"temperature": 36})
    assert [(line["state"], line["acknowledged"]) for line in alerts()] == [("high", False), ("cleared", False)]


@pytest.mark.parametrize("body", [{"device": "kitchen"}, {"device": 1, "state": "high"}, [],
                                  {"device": "kitchen", "state": "high", "extra": 1},
                                  {"device": "kitchen" + "x" * 250_000, "state": "high", "metric": "temperature"},
                                  {"device": "kitchen", "state": "anything", "metric": "temperature"},
                                  {"device": "kitchen", "state": "offline", "metric": "temperature"},
                                  {"device": "kitchen", "state": "high"}])
def test_an_acknowledgement_must_say_which_alert(client, body):
    answer = client.post("/api/alerts/acknowledge", json=body)

    assert answer.status_code == 400 and "device" in answer.json["error"]


@pytest.mark.parametrize("body", [{"device": "nobody", "state": "offline"},
                                  {"device": "kitchen", "state": "high", "metric": "invented"}])
def test_only_a_device_and_metric_that_exist_can_be_acknowledged(client, kitchen, redis_client, body):
    kitchen(20)

    answer = client.post("/api/alerts/acknowledge", json=body)

    assert answer.status_code == 404 and not redis_client.exists("alerts-acknowledged")


def test_removing_a_threshold_while_it_is_crossed_clears_the_alert_for_every_page(live_server, token_for):
    token = token_for("kitchen")
    live_server.post("/api/readings", token, json={"temperature": 20})
    requests.put(live_server.url + "/api/devices/kitchen/thresholds/temperature", json={"high": 30}, timeout=10)
    live_server.post("/api/readings", token, json={"temperature": 35})
    other_page = live_server.stream()

    requests.delete(live_server.url + "/api/devices/kitchen/thresholds/temperature", timeout=10)

    cleared = other_page.next_of("alert")["data"]
    assert (cleared["state"], cleared["reason"]) == ("cleared", "threshold removed")
    alerts = requests.get(live_server.url + "/api/alerts", timeout=10).json()
    assert alerts["active"] == [] and alerts["recent"][0]["state"] == "cleared"


def test_a_running_server_sends_where_a_muted_metric_stands_once_its_device_may_alert_again(start_server,
                                                                                            token_for):
    server = start_server(ALERT_BURST=2, ALERT_EVERY=1)
    token = token_for("kitchen")
    server.post("/api/readings", token, json={"temperature": 20})
    requests.put(server.url + "/api/devices/kitchen/thresholds/temperature", json={"high": 30}, timeout=10)

    server.post("/api/readings", token, json=[{"temperature": t} for _ in range(10) for t in (31, 29)] + [
        {"temperature": 35}])

    def latest():
        return requests.get(server.url + "/api/alerts", timeout=10).json()["recent"][0]
    eventually(lambda: "muted" in latest())
    assert (latest()["state"], latest()["muted"], latest()["value"]) == ("high", 19, 35)


def test_every_threshold_change_reaches_watching_browsers(live_server, token_for, app):
    live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 20})
    browser = live_server.stream()
    url = live_server.url + "/api/devices/kitchen/thresholds/temperature"

    requests.put(url, json={"high": 30}, timeout=5)
    assert browser.next_of("thresholds")["data"] == {
        "device": "kitchen", "metric": "temperature", "limit": {"high": 30, "hysteresis": 0}}
    requests.delete(url, timeout=5)
    assert browser.next_of("thresholds")["data"] == {"device": "kitchen", "metric": "temperature", "limit": None}
    app.test_cli_runner().invoke(args=["thresholds", "set", "kitchen", "temperature", "--low", "5"])
    assert browser.next_of("thresholds")["data"]["limit"] == {"low": 5, "hysteresis": 0}
    app.test_cli_runner().invoke(args=["thresholds", "clear", "kitchen", "temperature"])
    assert browser.next_of("thresholds")["data"]["limit"] is None
    browser.close()


def test_removing_a_threshold_nobody_set_or_of_no_such_name_tells_no_page(live_server, token_for):
    live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 20})
    browser = live_server.stream()
    thresholds = live_server.url + "/api/devices/{}/thresholds/{}"

    assert requests.delete(thresholds.format("kitchen", "humidity"), timeout=5).status_code == 204  # none was set
    forged = requests.delete(thresholds.format("%3Cimg%20src=x%3E", "x%20y%22%3Cb%3E"), timeout=5)
    requests.put(thresholds.format("kitchen", "temperature"), json={"high": 30}, timeout=5)

    assert forged.status_code == 400 and forged.json()["error"].startswith("device: ")
    assert browser.next_of("thresholds")["data"]["metric"] == "temperature"  # the first change any page hears
    browser.close()


@pytest.mark.parametrize("metric", ["boot", "boot_seq", "seq", "\\ud800"])
def test_only_an_alert_of_a_metric_can_be_acknowledged_not_of_the_servers_own_fields(client, token_for, redis_client,
                                                                                    metric):
    client.post("/api/readings", json={"temperature": 20, "boot": "b1", "seq": 1},
                headers={"Authorization": f"Bearer {token_for('kitchen')}"})

    answer = client.post("/api/alerts/acknowledge", content_type="application/json",
                         data='{"device": "kitchen", "state": "high", "metric": "%s"}' % metric)

    assert answer.status_code == 400 and not redis_client.exists("alerts-acknowledged")
