"""A user watches Live at a desk, with a board that posts once a minute beside one that posts
every second, and a busy one: every card and the Compare view show the same last 15 minutes,
which slide on with time, and a busy board's chart stays bounded while its value stays current,
and reaches back over the whole window on a page opened afresh as on one left open."""
import re
import time

import pytest
from playwright.sync_api import expect

DESK = {"width": 1280, "height": 900}
MINUTE = 60
LIVE = 15 * MINUTE


def post(server, token, readings):
    for start in range(0, len(readings), 500):  # the server's batch limit
        assert server.post("/api/readings", token, json=readings[start:start + 500]).ok


def open_live(open_page, server):
    page = open_page(viewport=DESK)
    page.goto(server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")
    return page


def axis(box):
    """A chart's x axis, [from, to] in Unix seconds, as the page writes it on the chart's box."""
    return [float(box.get_attribute("data-from")), float(box.get_attribute("data-to"))]


def test_every_card_and_compare_show_the_same_last_15_minutes(live_server, token_for, open_page):
    now = time.time()
    post(live_server, token_for("porch"), [{"temperature": 10 + n % 5, "ts": now - 180 * MINUTE + n * MINUTE}
                                           for n in range(181)])  # once a minute for three hours
    post(live_server, token_for("fan"), [{"temperature": 30 + n % 3, "ts": now - 120 + n} for n in range(121)])
    page = open_live(open_page, live_server)
    porch, fan = (page.locator(f'[data-device="{device}"] .chart') for device in ("porch", "fan"))

    expect(porch).to_have_attribute("data-points", re.compile(r"^1[56]$"))  # the last 15 of its 181
    expect(fan).to_have_attribute("data-points", "121")
    for chart in (porch, fan):
        since, until = axis(chart)
        assert until - since == pytest.approx(LIVE, abs=1)
        assert until == pytest.approx(time.time(), abs=30)

    page.get_by_role("button", name="Compare").click()
    dialog = page.get_by_role("dialog", name="Compare devices")
    expect(dialog.locator(".u-legend .u-label")).to_have_text(["fan", "porch"])
    compared = dialog.locator(".chart")
    expect(compared).to_have_attribute("data-to", re.compile(r"\d"))
    since, until = axis(compared)
    assert until - since == pytest.approx(LIVE, abs=1)  # not the porch's three hours
    assert until == pytest.approx(time.time(), abs=30)
    expect(page.get_by_label("Range").locator("option:checked")).to_have_text("Live 15 min")  # as the picker says
    assert page.console_errors == []


def test_the_window_slides_on_and_older_readings_drop_off(live_server, token_for, open_page):
    now = time.time()
    post(live_server, token_for("porch"), [{"temperature": 12, "ts": now - LIVE + 30}, {"temperature": 14, "ts": now - 30}])
    page = open_live(open_page, live_server)
    chart = page.locator('[data-device="porch"] .chart')
    expect(chart).to_have_attribute("data-points", "2")
    expect(page.locator('[data-device="porch"] .summary')).to_contain_text("min\u00a012")
    since, until = axis(chart)

    expect(chart).to_have_attribute("data-points", "1", timeout=60_000)  # with no new reading

    later_since, later_until = axis(chart)
    assert later_since > since + 5 and later_until > until + 5
    assert later_until - later_since == pytest.approx(LIVE, abs=1)
    expect(page.locator('[data-device="porch"] .summary')).to_contain_text("min\u00a014")
    assert page.console_errors == []


def test_a_busy_board_keeps_a_bounded_chart_over_the_whole_window_and_a_current_value(
        start_server, token_for, open_page):
    live_server = start_server(READINGS_RATE_LIMIT=1000, READINGS_BURST=5000)  # a board let post hundreds a second
    token = token_for("lathe")
    now = time.time()
    post(live_server, token, [{"temperature": 10, "ts": now - 10 * MINUTE + n * 1.2} for n in range(500)])
    page = open_live(open_page, live_server)
    card = page.locator('[data-device="lathe"]')
    expect(card.locator(".chart")).to_have_attribute("data-points", "500")

    for batch in range(10):  # two thousand readings within seconds
        post(live_server, token, [{"temperature": 30 + n % 10 / 10} for n in range(200)])
    post(live_server, token, [{"temperature": 31.5}])

    expect(card.locator('[data-metric="temperature"] dd')).to_have_text("31.5 °C")
    expect(card.locator(".summary")).to_contain_text("max\u00a031.5", timeout=20_000)
    assert int(card.locator(".chart").get_attribute("data-points")) <= 500
    expect(card.locator(".summary")).to_contain_text("min\u00a010.0")  # the window's start is still drawn
    assert page.console_errors == []


def test_a_busy_boards_chart_opened_afresh_reaches_as_far_back_as_one_left_open(start_server, token_for, open_page):
    """Its newest 500 readings span seconds: the rest of the window comes spread out."""
    live_server = start_server(READINGS_RATE_LIMIT=1000, READINGS_BURST=5000)
    token = token_for("lathe")
    now = time.time()
    post(live_server, token, [{"temperature": 10, "ts": now - 10 * MINUTE + n * 1.2} for n in range(500)])
    for batch in range(10):
        post(live_server, token, [{"temperature": 30 + n % 10 / 10} for n in range(200)])

    page = open_live(open_page, live_server)

    card = page.locator('[data-device="lathe"]')
    expect(card.locator(".summary")).to_contain_text("min\u00a010.0")  # ten minutes ago
    expect(card.locator(".summary")).to_contain_text("max\u00a030.9")  # and now
    assert int(card.locator(".chart").get_attribute("data-points")) <= 500
    assert page.console_errors == []


def test_a_busy_boards_summary_counts_every_reading_not_only_those_its_chart_keeps(start_server, token_for, open_page):
    """A slow stretch, then a burst: the chart keeps a spread of points, mostly the slow
    stretch's, while the figures under it are of all 2,000 readings, and of no reading
    measured before the window, on a page left open as on one opened afterwards."""
    live_server = start_server(READINGS_RATE_LIMIT=1000, READINGS_BURST=5000)
    token = token_for("lathe")
    left_open = open_live(open_page, live_server)
    now = time.time()
    slow = [{"temperature": 20 + n % 5 / 10, "ts": now - 800 + n * 0.6} for n in range(1000)]
    burst = [{"temperature": 40 + n % 5 / 10, "ts": now - 100 + n * 0.01} for n in range(1000)]
    slow[500]["temperature"], burst[500]["temperature"] = 5.0, 45.0
    readings = slow + burst
    post(live_server, token, [{"temperature": 0.5, "ts": now - LIVE - 1}, *readings])
    average = sum(reading["temperature"] for reading in readings) / len(readings)
    figures = f"temperature: min\u00a05.0 · avg\u00a0{average:.1f} · max\u00a045.0 °C"

    card = left_open.locator('[data-device="lathe"]')
    expect(card.locator(".summary")).to_have_text(figures, timeout=20_000)
    assert int(card.locator(".chart").get_attribute("data-points")) <= 500

    opened_afresh = open_live(open_page, live_server)
    expect(opened_afresh.locator('[data-device="lathe"] .summary')).to_have_text(figures)
    assert left_open.console_errors == [] and opened_afresh.console_errors == []


def test_a_busy_boards_figures_on_a_fresh_page_count_a_backlog_it_sent_last(start_server, token_for, open_page):
    """Its newest 500 readings by arrival are a backlog measured before all the others: the
    figures are still of every reading in the window, the spike among the others too."""
    live_server = start_server(READINGS_RATE_LIMIT=1000, READINGS_BURST=5000)
    token = token_for("lathe")
    now = time.time()
    recent = [{"temperature": 20 + n % 10 / 10, "ts": now - 600 + n * 0.3857} for n in range(1400)]
    recent[700]["temperature"] = 35.0
    backlog = [{"temperature": 10.0, "ts": now - 800 + n / 4} for n in range(400)]
    post(live_server, token, recent)
    post(live_server, token, backlog)
    readings = recent + backlog
    average = sum(reading["temperature"] for reading in readings) / len(readings)

    page = open_live(open_page, live_server)

    expect(page.locator('[data-device="lathe"] .summary')).to_have_text(
        f"temperature: min\u00a010.0 · avg\u00a0{average:.1f} · max\u00a035.0 °C")
    assert page.console_errors == []
