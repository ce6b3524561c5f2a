"""A user keeps the alert list open while a kitchen's temperature flaps at its limit and
a shed goes quiet: repeats fold into one line with a count, each line says why it fired
and when, a line is acknowledged on one page and muted on every page, and the alerts
active now are summed up at the top."""
import datetime
import re
import time

import requests
from playwright.sync_api import expect

from server.store import mark_offline


def set_limits(server, device="kitchen", **limits):
    answer = requests.put(f"{server.url}/api/devices/{device}/thresholds/temperature", json=limits, timeout=5)
    assert answer.ok, answer.text


def open_alerts(page, server):
    page.goto(server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")
    return page.locator("#alerts li")


def flap(server, token, times):
    """The value crosses 25 and comes back ``times`` times, in one batch."""
    answer = server.post("/api/readings", token, json=[{"temperature": t} for _ in range(times) for t in (30, 20)])
    assert answer.status_code == 201, answer.text


def seconds_of(iso):
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_a_value_flapping_at_a_limit_is_one_line_with_a_count(start_server, token_for, browser_page):
    live_server = start_server(ALERT_BURST=500)  # every crossing sent
    token = token_for("kitchen")
    live_server.post("/api/readings", token, json={"temperature": 20})
    set_limits(live_server, high=25)
    flap(live_server, token, 60)
    page = browser_page
    lines = open_alerts(page, live_server)

    expect(lines).to_have_count(2)
    expect(lines.nth(0).locator("span")).to_have_text("kitchen: temperature back to 20 °C")
    expect(lines.nth(0).locator(".repeats")).to_have_text("×60")
    expect(lines.nth(1).locator("span")).to_have_text("kitchen: temperature 30 °C, above 25 °C")
    expect(lines.nth(1).locator(".repeats")).to_have_text("×60")

    flap(live_server, token, 20)  # while the page is open
    live_server.post("/api/readings", token, json={"temperature": 31})

    expect(lines.nth(0).locator("span")).to_have_text("kitchen: temperature 31 °C, above 25 °C")
    expect(lines.nth(0).locator(".repeats")).to_have_text("×81")
    expect(lines.nth(1).locator(".repeats")).to_have_text("×80")
    expect(lines).to_have_count(2)
    page.reload()
    expect(lines.nth(0).locator(".repeats")).to_have_text("×81")
    expect(lines).to_have_count(2)
    assert page.console_errors == []


def test_an_offline_alert_says_when_it_was_raised_and_when_the_device_was_last_seen(
        live_server, token_for, browser_page, redis_client):
    live_server.post("/api/readings", token_for("shed"), json={"temperature": 9})
    last_seen = time.time() - 300
    redis_client.zadd("devices", {"shed": last_seen})  # as if silent for five minutes
    mark_offline(redis_client, time.time())
    raised = requests.get(live_server.url + "/api/alerts", timeout=5).json()["recent"][0]["raised"]
    page = browser_page
    line = open_alerts(page, live_server).first

    expect(line.locator("span")).to_have_text("shed went offline")
    expect(line.locator(".detail")).to_contain_text("last seen ")
    raised_at, seen_at = line.locator("time").first, line.locator(".detail time")
    assert abs(seconds_of(raised_at.get_attribute("datetime")) - raised) < 0.01
    assert abs(seconds_of(seen_at.get_attribute("datetime")) - last_seen) < 0.01
    assert raised_at.inner_text() != seen_at.inner_text()
    assert page.console_errors == []


def test_an_alert_says_why_it_fired_in_figures_that_differ_from_its_limit(live_server, token_for, browser_page):
    token = token_for("kitchen")
    live_server.post("/api/readings", token, json={"temperature": 20})
    set_limits(live_server, low=18, high=26.7)
    page = browser_page
    lines = open_alerts(page, live_server)

    live_server.post("/api/readings", token, json={"temperature": 26.72})
    expect(lines.first.locator("span")).to_have_text("kitchen: temperature 26.72 °C, above 26.70 °C")
    page.get_by_role("button", name="Temperature unit").click()
    expect(lines.first.locator("span")).to_have_text("kitchen: temperature 80.10 °F, above 80.06 °F")
    page.get_by_role("button", name="Temperature unit").click()
    expect(lines.first.locator("span")).to_have_text("kitchen: temperature 26.72 °C, above 26.70 °C")

    live_server.post("/api/readings", token, json={"temperature": 20})
    live_server.post("/api/readings", token, json={"temperature": 17.96})
    expect(lines.first.locator("span")).to_have_text("kitchen: temperature 17.96 °C, below 18.00 °C")

    requests.delete(live_server.url + "/api/devices/kitchen/thresholds/temperature", timeout=5)
    expect(lines.first.locator("span")).to_have_text("kitchen: temperature alert ended: threshold removed")
    assert page.console_errors == []


def test_a_line_acknowledged_on_one_page_is_muted_on_every_page(live_server, token_for, open_page):
    token = token_for("kitchen")
    live_server.post("/api/readings", token, json={"temperature": 20})
    set_limits(live_server, high=25)
    pages = [open_page(), open_page()]
    for page in pages:
        open_alerts(page, live_server)
    live_server.post("/api/readings", token, json={"temperature": 30})
    firsts = [page.locator("#alerts li").first for page in pages]
    for line in firsts:
        expect(line.locator("span")).to_have_text("kitchen: temperature 30 °C, above 25 °C")
        expect(line.get_by_role("button", name="Acknowledge")).to_be_visible()

    firsts[0].get_by_role("button", name="Acknowledge").focus()
    pages[0].keyboard.press("Enter")

    for line in firsts:
        expect(line).to_have_class(re.compile(r"\backnowledged\b"))
        expect(line.get_by_role("button", name="Acknowledge")).to_have_count(0)
    pages[1].reload()
    expect(firsts[1]).to_have_class(re.compile(r"\backnowledged\b"))

    live_server.post("/api/readings", token, json={"temperature": 20})
    live_server.post("/api/readings", token, json={"temperature": 32})  # raised again: news again
    for line in firsts:
        expect(line.locator("span")).to_have_text("kitchen: temperature 32 °C, above 25 °C")
        expect(line.locator(".repeats")).to_have_text("×2")
        expect(line).not_to_have_class(re.compile(r"\backnowledged\b"))
        expect(line.get_by_role("button", name="Acknowledge")).to_be_visible()
    assert all(page.console_errors == [] for page in pages)


def test_the_alerts_active_now_are_summed_up_at_the_top(live_server, token_for, browser_page, redis_client):
    kitchen, shed = token_for("kitchen"), token_for("shed")
    live_server.post("/api/readings", kitchen, json={"temperature": 20})
    live_server.post("/api/readings", shed, json={"temperature": 9})
    set_limits(live_server, high=25)
    requests.patch(live_server.url + "/api/devices/kitchen", json={"name": "Kitchen"}, timeout=5)
    page = browser_page
    open_alerts(page, live_server)
    summary = page.locator("#alerts .active")

    live_server.post("/api/readings", kitchen, json={"temperature": 30})
    expect(summary).to_have_text("1 active: Kitchen temperature high")
    redis_client.zadd("devices", {"shed": time.time() - 300})
    mark_offline(redis_client, time.time() - 200)  # the shed only
    expect(summary).to_have_text("2 active: Kitchen temperature high, shed offline")
    assert summary.bounding_box()["y"] < page.locator(".card").first.bounding_box()["y"]
    page.reload()
    expect(summary).to_have_text("2 active: Kitchen temperature high, shed offline")

    live_server.post("/api/readings", kitchen, json={"temperature": 20})
    expect(summary).to_have_text("1 active: shed offline")
    live_server.post("/api/readings", shed, json={"temperature": 9})
    expect(summary).to_have_text("None active.")
    assert page.console_errors == []


RED = "rgb(180, 35, 24)"  # --bad in the light scheme


def test_only_an_active_alert_is_red_and_has_an_acknowledge_button_live_and_after_a_reload(
        live_server, token_for, browser_page):
    token = token_for("kitchen")
    live_server.post("/api/readings", token, json={"temperature": 20})
    set_limits(live_server, high=25)
    page = browser_page
    lines = open_alerts(page, live_server)
    live_server.post("/api/readings", token, json={"temperature": 30})
    expect(lines).to_have_count(1)
    expect(lines.first).to_have_css("color", RED)
    expect(lines.first.get_by_role("button", name="Acknowledge")).to_be_visible()

    live_server.post("/api/readings", token, json={"temperature": 20})

    expect(lines).to_have_count(2)
    ended, raised = lines.nth(0), lines.nth(1)
    expect(ended.locator("span")).to_have_text("kitchen: temperature back to 20 °C")
    expect(ended.get_by_role("button", name="Acknowledge")).to_have_count(0)
    expect(ended).not_to_have_css("color", RED)
    expect(raised).not_to_have_css("color", RED)
    expect(raised.get_by_role("button", name="Acknowledge")).to_have_count(0)
    page.reload()
    expect(lines).to_have_count(2)
    expect(lines.get_by_role("button", name="Acknowledge")).to_have_count(0)
    expect(lines.nth(1)).not_to_have_css("color", RED)
    assert page.console_errors == []


def test_a_fleet_gone_quiet_at_night_leaves_the_phone_its_cards_and_every_button_a_finger_can_hit(
        live_server, token_for, redis_client, browser_page):
    for n in range(1, 31):
        live_server.post("/api/readings", token_for(f"sim-{n}"), json={"temperature": 20})
    redis_client.zadd("devices", {f"sim-{n}": time.time() - 300 for n in range(1, 31)})
    mark_offline(redis_client, time.time() - 200)
    kitchen = token_for("kitchen")
    live_server.post("/api/readings", kitchen, json={"temperature": 20})
    set_limits(live_server, high=25)
    live_server.post("/api/readings", kitchen, json={"temperature": 30})
    page = browser_page  # a phone's screen
    open_alerts(page, live_server)

    expect(page.locator("#alerts .active")).to_have_text(  # the one that is not the night's first
        "31 active: kitchen temperature high, sim-1 offline, sim-2 offline, sim-3 offline, sim-4 offline and 26 more")
    assert page.locator(".card").first.bounding_box()["y"] < 844  # in sight, below the alerts
    page.locator(".card").first.locator(".thresholds").wait_for()
    targets = ["#alerts li > button", ".card .enlarge", ".card .thresholds summary", ".card .actions a"]
    for target in targets:
        assert page.locator(target).first.bounding_box()["height"] >= 24, target


def test_on_a_touch_screen_every_button_is_a_fingers_size(live_server, token_for, open_page):
    kitchen = token_for("kitchen")
    live_server.post("/api/readings", kitchen, json={"temperature": 20})
    set_limits(live_server, high=25)
    live_server.post("/api/readings", kitchen, json={"temperature": 30})
    page = open_page(has_touch=True, is_mobile=True, device_scale_factor=3)
    open_alerts(page, live_server)
    expect(page.locator("#alerts li > button")).to_have_count(1)

    targets = ["#alerts li > button", "#compare", ".card .enlarge", ".card .thresholds summary", ".card .actions a"]
    assert {target: page.locator(target).first.bounding_box()["height"] >= 44 for target in targets} == dict.fromkeys(
        targets, True)
