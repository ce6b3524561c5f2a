"""A device goes offline at an awkward moment for the dashboard: while it loads the
devices, while it loads the alerts, or while its stream is down; or its thresholds change
while the stream is down. Device, alert and threshold events are not replayed, yet the
card and the alert list end up right, each alert listed once."""
import json
import re
import time

from playwright.sync_api import expect

from server.store import mark_offline


def test_a_device_marked_offline_while_the_dashboard_loads_shows_offline(
        live_server, token_for, browser_page, redis_client):
    live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 20})
    page = browser_page

    def offline_once_answered(route):
        answer = route.fetch()  # the kitchen is online in it
        mark_offline(redis_client, time.time())  # as the sweep does once it is silent
        route.fulfill(response=answer)

    page.route("**/api/devices", offline_once_answered, times=1)
    page.goto(live_server.url + "/")
    card = page.locator('[data-device="kitchen"]')

    expect(page.locator("#connection")).to_have_text("live")
    expect(card.locator(".status")).to_have_text("offline")
    expect(card).to_have_class(re.compile("offline"))
    expect(card.locator('[data-metric="temperature"] dd')).to_have_text("20 °C")
    expect(page.locator("#alerts li")).to_have_text([re.compile("kitchen went offline$")])
    live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 21})
    expect(card.locator(".status")).to_have_text("online")
    expect(card.locator('[data-metric="temperature"] dd')).to_have_text("21 °C")
    assert page.console_errors == []


def test_an_alert_raised_while_the_dashboard_loads_the_alerts_is_listed_once(
        live_server, token_for, browser_page, redis_client):
    live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 20})
    page = browser_page

    def offline_before_answering(route):
        mark_offline(redis_client, time.time())  # sent on the stream, and in this answer
        route.fulfill(response=route.fetch())

    page.route(re.compile(r"/api/alerts\b"), offline_before_answering, times=1)
    page.goto(live_server.url + "/")
    card = page.locator('[data-device="kitchen"]')

    expect(card.locator(".status")).to_have_text("offline")
    expect(page.locator("#alerts li")).to_have_text([re.compile("kitchen went offline$")])
    live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 21})
    expect(page.locator("#alerts li")).to_have_count(2)
    expect(page.locator("#alerts li").first).to_contain_text("kitchen is back online")
    expect(card.locator(".status")).to_have_text("online")
    assert page.console_errors == []


def test_a_device_marked_offline_while_the_stream_is_down_shows_offline(
        start_server, token_for, browser_page, redis_client):
    server = start_server()
    server.post("/api/readings", token_for("kitchen"), json={"temperature": 20})
    page = browser_page
    page.goto(server.url + "/")
    card = page.locator('[data-device="kitchen"]')
    expect(card.locator(".status")).to_have_text("online")
    expect(page.locator("#connection")).to_have_text("live")

    port = server.url.rsplit(":", 1)[1]
    server.stop()
    expect(page.locator("#connection")).to_have_text("reconnecting…")
    mark_offline(redis_client, time.time())  # no stream is open to carry it
    start_server(port=int(port))

    expect(card.locator(".status")).to_have_text("offline", timeout=20_000)
    expect(page.locator("#alerts li")).to_have_text([re.compile("kitchen went offline$")])
    expect(page.locator("#connection")).to_have_text("live")


def test_a_device_deleted_while_the_stream_is_down_leaves_the_page(start_server, token_for, browser_page, client):
    server = start_server()
    for device in ("kitchen", "old-shed"):
        server.post("/api/readings", token_for(device), json={"temperature": 20})
    page = browser_page
    page.goto(server.url + "/")
    expect(page.locator('[data-device="old-shed"]')).to_be_visible()
    expect(page.locator("#connection")).to_have_text("live")

    port = server.url.rsplit(":", 1)[1]
    server.stop()
    expect(page.locator("#connection")).to_have_text("reconnecting…")
    assert client.delete("/api/devices/old-shed").status_code == 204  # no stream is open to carry it
    start_server(port=int(port))

    expect(page.locator("#connection")).to_have_text("live", timeout=20_000)
    expect(page.locator('[data-device="old-shed"]')).to_have_count(0)
    expect(page.locator('[data-device="kitchen"]')).to_be_visible()


def test_a_threshold_changed_while_the_stream_is_down_shows_once_it_reconnects(
        start_server, token_for, browser_page, client):
    server = start_server()
    server.post("/api/readings", token_for("kitchen"), json={"temperature": 20})
    assert client.put("/api/devices/kitchen/thresholds/temperature", json={"high": 25}).status_code == 200
    page = browser_page
    page.goto(server.url + "/")
    card = page.locator('[data-device="kitchen"]')
    expect(card.locator(".threshold")).to_have_text(["high 25 °C"])
    expect(page.locator("#connection")).to_have_text("live")

    port = server.url.rsplit(":", 1)[1]
    server.stop()
    expect(page.locator("#connection")).to_have_text("reconnecting…")
    assert client.put("/api/devices/kitchen/thresholds/temperature", json={"high": 30}).status_code == 200
    start_server(port=int(port))  # the change was published while no stream was open to carry it

    expect(page.locator("#connection")).to_have_text("live", timeout=20_000)
    expect(card.locator(".threshold")).to_have_text(["high 30 °C"])

def test_a_reading_that_arrives_late_does_not_bring_an_offline_device_back(
        live_server, token_for, browser_page, redis_client):
    live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 20})
    page = browser_page
    page.goto(live_server.url + "/")
    card = page.locator('[data-device="kitchen"]')
    expect(page.locator("#connection")).to_have_text("live")
    mark_offline(redis_client, time.time())
    expect(card.locator(".status")).to_have_text("offline")
    last_seen = card.locator(".ago").get_attribute("title")

    minutes_ago = f"{int((time.time() - 600) * 1000)}-0"  # as a replay after a reconnect delivers it
    redis_client.publish("sse", json.dumps({"type": "reading", "id": minutes_ago, "data": {
        "device": "kitchen", "temperature": 19, "ts": time.time() - 600}}))  # within Live's 15 minutes

    expect(card.locator(".chart")).to_have_attribute("data-points", "2")
    expect(card.locator(".status")).to_have_text("offline")
    expect(card.locator(".ago")).to_have_attribute("title", last_seen)


def test_a_device_that_first_posts_while_the_dashboard_reloads_the_states_keeps_its_card(
        live_server, token_for, browser_page):
    live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 20})
    page = browser_page
    garage = page.locator('[data-device="garage"]')
    loads = []

    def garage_posts_while_answering(route):
        loads.append(route.request.url)
        if len(loads) == 1:  # the first load, before the stream opens
            return route.continue_()
        answer = route.fetch()  # no garage in it
        live_server.post("/api/readings", token_for("garage"), json={"temperature": 5})
        expect(garage.locator('[data-metric="temperature"] dd')).to_have_text("5 °C")
        states = answer.json()
        states["devices"][0]["name"] = "Kitchen (reloaded)"
        route.fulfill(response=answer, json=states)

    page.route("**/api/devices", garage_posts_while_answering, times=2)
    page.goto(live_server.url + "/")

    expect(page.get_by_role("heading", name=re.compile("Kitchen \\(reloaded\\)"))).to_be_visible()
    expect(garage.locator('[data-metric="temperature"] dd')).to_have_text("5 °C")
    assert page.console_errors == []
