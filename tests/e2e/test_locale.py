"""A user in Germany reads the dashboard: every number and date on it is written the
German way, the browser's, from the cards to the chart's axes."""
import re
import time

import requests
from playwright.sync_api import expect

from tests.e2e.conftest import RECORD_CHART_TEXT

GERMAN_TIME = re.compile(r"^(\d{1,2}\.\d{1,2}\., )?\d{2}:\d{2}:\d{2}$")  # the date only when not today


def test_a_german_browser_reads_numbers_and_dates_the_german_way(live_server, token_for, open_page):
    token = token_for("kitchen")
    now = time.time()
    live_server.post("/api/readings", token, json=[{"temperature": 25 + minute / 20, "ts": now - 1200 + minute * 60}
                                                   for minute in range(20)])
    requests.put(live_server.url + "/api/devices/kitchen/thresholds/temperature", json={"high": 25.5}, timeout=5)
    page = open_page(locale="de-DE")
    page.add_init_script(RECORD_CHART_TEXT)
    page.goto(live_server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")
    card = page.locator('[data-device="kitchen"]')

    live_server.post("/api/readings", token, json={"temperature": 25.9, "rssi": -61.5})

    expect(card.locator('[data-metric="temperature"] dd')).to_have_text("25,90 °C")
    expect(card.locator(".details")).to_have_text("rssi -61,5 dBm")
    alert = page.locator("#alerts li").first
    expect(alert.locator("span")).to_have_text("kitchen: temperature 25,90 °C, above 25,50 °C")
    expect(alert.locator("time")).to_have_text(re.compile(r"^\d+ s ago$"))
    expect(alert.locator("time")).to_have_attribute("title", GERMAN_TIME)
    expect(card.locator(".ago")).to_have_attribute("title", GERMAN_TIME)
    page.wait_for_function("[...window.chartTexts].some((text) => /^\\d{2}:\\d{2}$/.test(text))")  # the time axis
    page.wait_for_function("[...window.chartTexts].some((text) => /^\\d+,\\d+$/.test(text))")  # the °C axis
    english = [text for text in page.evaluate("[...window.chartTexts]")
               if re.search(r"[ap]m$|^-?\d+\.\d+$|/", text)]
    assert english == []
    assert page.console_errors == []
