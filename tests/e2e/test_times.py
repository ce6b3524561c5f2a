"""A user in the US reads times on the dashboard: the alert list, the cards and the chart's
readout all write them one way, on the axes' 24-hour clock, with a date only when it is not
today; an alert line says how long ago it was, its time in a tooltip."""
import datetime
import re
import time

import requests
from playwright.sync_api import expect

from server.store import mark_offline

DAY = 86400
US_IN_UTC = {"locale": "en-US", "timezone_id": "UTC"}


def us_time(seconds):
    """A moment as the page writes it in en-US: "17:08:40" today, "11/27, 17:08:40" before."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    today = datetime.datetime.now(datetime.timezone.utc).date()
    if moment.date() == today:
        return f"{moment:%H:%M:%S}"
    year = "" if moment.year == today.year else f"/{moment.year}"
    return f"{moment.month}/{moment.day}{year}, {moment:%H:%M:%S}"


def open_dashboard(open_page, server):
    page = open_page(**US_IN_UTC)
    page.goto(server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")
    return page


def test_an_alert_line_says_how_long_ago_with_its_time_in_a_tooltip(live_server, token_for, open_page):
    token = token_for("kitchen")
    live_server.post("/api/readings", token, json={"temperature": 20})
    requests.put(live_server.url + "/api/devices/kitchen/thresholds/temperature", json={"high": 25}, timeout=5)
    live_server.post("/api/readings", token, json={"temperature": 30})
    raised = requests.get(live_server.url + "/api/alerts", timeout=5).json()["recent"][0]["raised"]
    page = open_dashboard(open_page, live_server)

    stamp = page.locator("#alerts li").first.locator("time")
    expect(stamp).to_have_text(re.compile(r"^\d+ s ago$"))
    expect(stamp).to_have_attribute("title", us_time(raised))
    said = stamp.inner_text()
    expect(stamp).not_to_have_text(said, timeout=10_000)  # it keeps counting
    assert page.console_errors == []


def test_a_time_before_today_has_its_date_on_the_same_clock(live_server, token_for, open_page, redis_client):
    live_server.post("/api/readings", token_for("shed"), json={"temperature": 9})
    last_seen = time.time() - 2 * DAY
    redis_client.zadd("devices", {"shed": last_seen})  # as if silent for two days
    mark_offline(redis_client, time.time())
    page = open_dashboard(open_page, live_server)

    seen = page.locator("#alerts li").first.locator(".detail time")
    expect(seen).to_have_text("2 d ago")
    expect(seen).to_have_attribute("title", us_time(last_seen))
    assert page.console_errors == []


def test_the_chart_readout_reads_the_time_as_the_axes_do(live_server, token_for, open_page):
    start = time.time() - 600
    live_server.post("/api/readings", token_for("kitchen"), json=[{"temperature": 21, "ts": start + n * 60}
                                                                  for n in range(10)])
    page = open_dashboard(open_page, live_server)
    card = page.locator('[data-device="kitchen"]')
    expect(card.locator(".chart")).to_have_attribute("data-points", "10")

    card.locator(".u-over").hover()

    readout = card.locator(".readout time")
    expect(readout).to_have_text(re.compile(r"^(\d{1,2}/\d{1,2}, )?\d{2}:\d{2}:\d{2}$"))  # a date only before midnight
    assert page.console_errors == []
