"""A user at a desk drags across a chart to look closer at that stretch of time, on every card
at once, and goes back; the range shown is in the page's address, to share or to return to
with the browser's Back."""
import re
import time
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

DESK = {"width": 1280, "height": 900}
HOUR = 3600
DEVICES = ("cellar", "kitchen")
CHOOSE_HOUR = "localStorage.setItem('sensorcast.range', JSON.stringify({name: '1h'}))"


def seed(server, token_for):
    start = time.time() - 3 * HOUR
    for device in DEVICES:
        readings = [{"temperature": 15 + n % 10, "ts": start + n * 60} for n in range(3 * 60)]
        assert server.post("/api/readings", token_for(device), json=readings).ok


def charts(page):
    return [page.locator(f'[data-device="{device}"] .chart') for device in DEVICES]


def axis(chart):
    return [float(chart.get_attribute("data-from")), float(chart.get_attribute("data-to"))]


def query(page):
    return parse_qs(urlparse(page.url).query)


def shows(page, name):
    expect(page.get_by_label("Range")).to_have_value(name)
    for chart in charts(page):
        expect(chart).to_have_attribute("data-range", name)


def test_dragging_across_a_chart_shows_that_stretch_on_every_card_and_back_returns(
        live_server, token_for, open_page):
    seed(live_server, token_for)
    page = open_page(viewport=DESK)
    page.add_init_script(CHOOSE_HOUR)
    page.goto(live_server.url + "/")
    shows(page, "1h")
    kitchen = page.locator('[data-device="kitchen"]')
    since, until = axis(kitchen.locator(".chart"))
    plot = kitchen.locator(".u-over").bounding_box()
    y = plot["y"] + plot["height"] / 2

    page.mouse.move(plot["x"] + plot["width"] / 4, y)
    page.mouse.down()
    page.mouse.move(plot["x"] + plot["width"] * 3 / 4, y, steps=8)
    page.mouse.up()

    shows(page, "custom")
    expect(page.get_by_label("From", exact=True)).to_be_visible()
    for chart in charts(page):  # the stretch dragged across: the middle half of the hour
        expect(chart).not_to_have_class(re.compile(r"\bloading\b"))
        zoomed = axis(chart)
        assert zoomed[0] == pytest.approx(since + HOUR / 4, abs=60)
        assert zoomed[1] == pytest.approx(until - HOUR / 4, abs=60)
    assert kitchen.locator(".u-select").bounding_box()["width"] == 0  # the selection is gone
    address = [datetime.fromisoformat(query(page)[name][0]) for name in ("from", "to")]
    assert [moment.timestamp() for moment in address] == axis(charts(page)[0])
    assert all(moment.microsecond == 0 for moment in address)  # to the second, as people read an address
    page.go_back()
    shows(page, "1h")
    page.get_by_label("Range").select_option("live")
    shows(page, "live")
    assert page.console_errors == []


def iso(seconds):
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat()


@pytest.mark.parametrize("address", ["range", "unix", "iso"])
def test_an_address_with_a_range_opens_on_that_range(live_server, token_for, open_page, address):
    seed(live_server, token_for)
    since, until = round(time.time()) - 2 * HOUR, round(time.time()) - HOUR
    search = {"range": "?range=24h", "unix": f"?from={since}&to={until}",
              "iso": f"?from={iso(since)}&to={iso(until)}".replace("+", "%2B")}[address]
    page = open_page(viewport=DESK)
    page.add_init_script(CHOOSE_HOUR)  # remembered in this browser, but the address says otherwise

    page.goto(live_server.url + "/" + search)

    if address == "range":
        shows(page, "24h")
        for chart in charts(page):
            assert axis(chart)[1] - axis(chart)[0] == pytest.approx(24 * HOUR, abs=1)
    else:
        shows(page, "custom")
        for chart in charts(page):
            assert axis(chart) == pytest.approx([since, until], abs=0.01)
    assert page.console_errors == []


def test_the_address_follows_the_range_and_back_returns_to_the_range_before(live_server, token_for, open_page):
    seed(live_server, token_for)
    page = open_page(viewport=DESK)
    page.goto(live_server.url + "/")
    shows(page, "live")
    assert query(page) == {"range": ["live"]}
    picker = page.get_by_label("Range")

    picker.select_option("1h")
    shows(page, "1h")
    picker.select_option("24h")
    shows(page, "24h")
    assert query(page) == {"range": ["24h"]}
    picker.select_option("custom")
    page.get_by_label("From", exact=True).fill(time.strftime("%Y-%m-%dT%H:%M", time.localtime(time.time() - 2 * HOUR)))
    shows(page, "custom")
    since, until = axis(charts(page)[0])
    assert [datetime.fromisoformat(query(page)[name][0]).timestamp() for name in ("from", "to")] == pytest.approx(
        [since, until], abs=0.01)

    page.go_back()
    shows(page, "24h")
    assert query(page) == {"range": ["24h"]}
    page.go_back()
    shows(page, "1h")
    page.go_forward()
    shows(page, "24h")

    page.goto(live_server.url + "/")  # no range in the address: the one last chosen here
    shows(page, "24h")
    assert query(page) == {"range": ["24h"]}
    assert page.console_errors == []
