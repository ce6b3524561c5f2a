"""A user who has left boards running for weeks explores them: ranges, units, alerts,
offline devices and exports, at a phone's width."""
import csv
import re
import time

import pytest
from playwright.sync_api import expect

from server.firmware import store_release

HOUR = 3600
WEEK_OF_BUCKETS = re.compile(r"^16[89]$")  # 300 buckets of 34 min: one a reading, the newest two may share


@pytest.fixture
def kitchen(live_server, token_for):
    """A week of hourly kitchen readings (a backlog with measured times), then one now."""
    token = token_for("kitchen")
    start = time.time() - 7 * 24 * HOUR
    live_server.post("/api/readings", token, json=[{"temperature": 18 + hour % 24 / 4, "ts": start + hour * HOUR}
                                                   for hour in range(7 * 24)])
    live_server.post("/api/readings", token, json={"temperature": 20, "humidity": 45, "rssi": -61})
    return lambda **values: live_server.post("/api/readings", token, json=values)


def open_dashboard(page, server):
    page.goto(server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")
    return page.locator('[data-device="kitchen"]')


def test_a_week_is_drawn_as_bands_and_the_range_is_remembered(live_server, kitchen, browser_page, screenshot):
    card = open_dashboard(browser_page, live_server)
    expect(card.locator(".chart")).to_have_attribute("data-points", "1")  # Live's 15 minutes: the reading just now

    browser_page.get_by_label("Range").select_option("7d")

    expect(card.locator(".chart")).to_have_attribute("data-points", WEEK_OF_BUCKETS)
    expect(card.locator(".download")).to_have_attribute("href", re.compile(r"since=\d"))
    screenshot(browser_page, "week")
    browser_page.reload()
    expect(browser_page.get_by_label("Range")).to_have_value("7d")
    browser_page.get_by_label("Range").select_option("24h")
    expect(card.locator(".chart")).to_have_attribute("data-points", re.compile(r"^2[0-9]$"))
    assert browser_page.console_errors == []


def test_fahrenheit_applies_to_values_and_export_and_is_remembered(live_server, kitchen, browser_page):
    card = open_dashboard(browser_page, live_server)
    expect(card.locator('[data-metric="temperature"] dd')).to_have_text("20.00 °C")  # as its history: 18.25 °C...

    browser_page.get_by_role("button", name="Temperature unit").click()

    expect(card.locator('[data-metric="temperature"] dd')).to_have_text("68.00 °F")
    expect(card.locator(".download")).to_have_attribute("href", re.compile("unit=F"))
    browser_page.reload()
    expect(card.locator('[data-metric="temperature"] dd')).to_have_text("68.00 °F")
    kitchen(temperature=25)
    expect(card.locator('[data-metric="temperature"] dd')).to_have_text("77.00 °F")


def test_diagnostics_fold_into_a_details_line(live_server, kitchen, browser_page):
    card = open_dashboard(browser_page, live_server)

    expect(card.locator(".details")).to_have_text("rssi -61 dBm")
    expect(card.locator('[data-metric="rssi"]')).to_have_count(0)


def test_an_alert_set_on_the_card_shows_on_crossing_and_clears(live_server, kitchen, browser_page, screenshot):
    card = open_dashboard(browser_page, live_server)
    card.get_by_text("Alert thresholds").click()
    form = card.locator(".thresholds form")
    form.get_by_label("Metric").select_option("temperature")
    form.get_by_label("High").fill("25")
    form.get_by_role("button", name="Save").click()
    expect(form.locator(".message")).to_have_text("Saved.")

    kitchen(temperature=30)

    alerts = browser_page.locator("#alerts li")
    expect(alerts.first).to_contain_text("kitchen: temperature 30.00 °C, above 25.00 °C")
    expect(card.locator('[data-metric="temperature"]')).to_have_class("alerting")
    screenshot(browser_page, "alerting")
    kitchen(temperature=21)
    expect(alerts.first).to_contain_text("back to 21.00 °C")
    expect(card.locator('[data-metric="temperature"]')).not_to_have_class("alerting")


def test_a_silent_device_is_greyed_with_its_last_seen_time(start_server, token_for, browser_page, screenshot):
    server = start_server(OFFLINE_AFTER=1)
    server.post("/api/readings", token_for("attic"), json={"temperature": 12})
    browser_page.goto(server.url + "/")
    card = browser_page.locator('[data-device="attic"]')

    expect(card).to_have_class(re.compile("offline"))
    expect(card.locator(".status")).to_have_text("offline")
    assert card.locator(".ago").get_attribute("title")
    expect(browser_page.locator("#alerts li").first).to_contain_text("attic went offline")
    screenshot(browser_page, "offline")


def test_cards_keep_their_order_by_name(live_server, token_for, browser_page):
    for name in ("porch", "attic", "kitchen"):
        live_server.post("/api/readings", token_for(name), json={"temperature": 10})
    browser_page.goto(live_server.url + "/")
    expect(browser_page.locator(".card")).to_have_count(3)
    live_server.post("/api/readings", token_for("cellar"), json={"temperature": 10})

    expect(browser_page.locator(".card .name")).to_have_text(["attic", "cellar", "kitchen", "porch"])


def test_the_range_downloads_as_csv(live_server, kitchen, browser_page, tmp_path):
    card = open_dashboard(browser_page, live_server)
    browser_page.get_by_label("Range").select_option("7d")
    expect(card.locator(".chart")).to_have_attribute("data-points", WEEK_OF_BUCKETS)

    with browser_page.expect_download() as download:
        card.get_by_role("link", name="Download CSV").click()
    download.value.save_as(tmp_path / "kitchen.csv")

    rows = list(csv.reader((tmp_path / "kitchen.csv").open(encoding="utf-8")))
    assert rows[0][:3] == ["time", "ts", "temperature (°C)"] and len(rows) >= 1 + 7 * 24


def test_dark_mode_follows_the_system(live_server, kitchen, browser_page, screenshot):
    browser_page.emulate_media(color_scheme="dark")
    open_dashboard(browser_page, live_server)

    background = browser_page.evaluate("getComputedStyle(document.body).backgroundColor")

    assert background == "rgb(17, 21, 28)"
    screenshot(browser_page, "dark")


def test_the_card_shows_the_firmware_and_how_an_update_went(live_server, token_for, browser_page, redis_client):
    token = token_for("kitchen")
    live_server.post("/api/readings", token, json={"temperature": 20, "fw": "0.1.0"})
    card = open_dashboard(browser_page, live_server)
    expect(card.locator(".firmware")).to_have_text("firmware 0.1.0")

    store_release(redis_client, "0.2.0", {"version.py": b'VERSION = "0.2.0"\n'}, devices=["kitchen"])
    expect(card.locator(".firmware")).to_have_text("firmware 0.1.0 (0.2.0 is out)")  # no reload: an event says

    live_server.post("/api/firmware/report", token, json={"version": "0.2.0", "status": "updating"})
    expect(card.locator(".firmware")).to_have_text("firmware 0.1.0, updating to 0.2.0…")
    live_server.post("/api/firmware/report", token,
                     json={"version": "0.2.0", "status": "failed", "reason": "it failed to start"})

    expect(card.locator(".firmware")).to_have_text("firmware 0.1.0; update to 0.2.0 failed: it failed to start")
    browser_page.reload()
    expect(card.locator(".firmware")).to_contain_text("failed: it failed to start")
    store_release(redis_client, "0.2.1", {"version.py": b'VERSION = "0.2.1"\n'})  # the fix, for every device
    expect(card.locator(".firmware")).to_have_text("firmware 0.1.0 (0.2.1 is out)")
    expect(card.locator(".firmware")).not_to_have_class("failed")
