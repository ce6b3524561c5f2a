"""A user switches ranges on a fleet whose boards have run for days: each card says it is
loading, ends on the range chosen last however fast they click, keeps its x axis on that
range while time passes, and a custom range that ends before it starts is explained."""
import re
import time

import pytest
from playwright.sync_api import Error, expect

DEVICES = ("attic", "cellar", "kitchen")
HOUR = 3600
BUCKETED = re.compile(r"/readings\?buckets=\d+&since=([\d.]+)&until=([\d.]+)")


def seed_fleet(server, token_for, devices=DEVICES):
    start = time.time() - 3 * 24 * HOUR
    for device in devices:
        readings = [{"temperature": 15 + n % 10, "ts": start + n * 600} for n in range(3 * 24 * 6)]
        assert server.post("/api/readings", token_for(device), json=readings).ok


def open_dashboard(page, server):
    page.goto(server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")
    expect(page.locator(".card")).to_have_count(len(DEVICES))


def span_of(request):
    since, until = BUCKETED.search(request.url).groups()
    return float(until) - float(since)


def next_frames(page):
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")


def test_a_week_then_an_hour_ends_on_the_hour_with_a_loading_state(live_server, token_for, browser_page):
    seed_fleet(live_server, token_for)
    held = []
    browser_page.route(BUCKETED, lambda route: held.append(route) if span_of(route.request) > 86400 else route.continue_())
    open_dashboard(browser_page, live_server)
    charts = browser_page.locator(".card .chart")
    picker = browser_page.get_by_label("Range")

    picker.select_option("7d")  # slow to answer: held until the hour is drawn
    for chart in charts.all():
        expect(chart).to_have_class(re.compile(r"\bloading\b"))
        expect(chart).to_have_attribute("aria-busy", "")
    picker.select_option("1h")

    for chart in charts.all():
        expect(chart).to_have_attribute("data-range", "1h")
        expect(chart).not_to_have_class(re.compile(r"\bloading\b"))
    assert len(held) == len(DEVICES)
    for route in held:  # the week's answers arrive late, unless the page gave up on them
        if route.request.failure is None:
            route.continue_()
            route.request.response().finished()
    next_frames(browser_page)
    for chart in charts.all():
        expect(chart).to_have_attribute("data-range", "1h")
        assert float(chart.get_attribute("data-to")) - float(chart.get_attribute("data-from")) == HOUR
    assert browser_page.console_errors == []


def test_an_hour_stays_pinned_to_the_last_hour_and_slides_with_new_readings(live_server, token_for, browser_page):
    token = token_for("kitchen")
    assert live_server.post("/api/readings", token, json=[{"temperature": 20, "ts": time.time() - 600 + n * 60}
                                                          for n in range(10)]).ok
    browser_page.goto(live_server.url + "/")
    expect(browser_page.locator("#connection")).to_have_text("live")
    chart = browser_page.locator('[data-device="kitchen"] .chart')
    browser_page.get_by_label("Range").select_option("1h")
    expect(chart).to_have_attribute("data-range", "1h")
    since, until = float(chart.get_attribute("data-from")), float(chart.get_attribute("data-to"))
    assert until - since == HOUR  # the axis is the hour, not the ten minutes of data
    assert abs(until - time.time()) < 30
    points = int(chart.get_attribute("data-points"))

    with browser_page.expect_request(BUCKETED, timeout=30_000):  # fetched again while the page stays open
        assert live_server.post("/api/readings", token, json={"temperature": 25}).ok
        expect(chart).to_have_attribute("data-points", str(points + 1))  # a live reading joins the hour
        assert float(chart.get_attribute("data-to")) > until  # and the hour moved on

    expect(browser_page.locator('[data-device="kitchen"] .summary')).to_contain_text("max 25 °C")
    assert browser_page.console_errors == []


def test_a_custom_range_that_ends_before_it_starts_is_explained(live_server, token_for, browser_page):
    seed_fleet(live_server, token_for, ["kitchen"])
    browser_page.goto(live_server.url + "/")
    chart = browser_page.locator('[data-device="kitchen"] .chart')
    expect(chart).to_have_attribute("data-range", "live")

    browser_page.get_by_label("Range").select_option("custom")
    browser_page.get_by_label("To", exact=True).fill("2026-05-01T10:00")  # before the From shown

    expect(browser_page.get_by_role("alert")).to_contain_text("From must be before To")
    expect(browser_page.get_by_label("To", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(chart).to_have_attribute("data-range", "live")
    browser_page.get_by_label("From", exact=True).fill("2026-04-30T10:00")
    expect(browser_page.locator(".range-message")).to_be_empty()
    expect(chart).to_have_attribute("data-range", "custom")


def test_an_address_whose_from_is_after_its_to_shows_the_span_between_them(live_server, token_for, browser_page):
    now = time.time()
    seed_fleet(live_server, token_for, ["kitchen"])

    with browser_page.expect_request(BUCKETED) as asked:
        browser_page.goto(live_server.url + f"/?from={int(now - HOUR)}&to={int(now - 3 * HOUR)}")

    since, until = map(float, BUCKETED.search(asked.value.url).groups())
    assert (since, until) == (int(now - 3 * HOUR), int(now - HOUR))
    expect(browser_page.locator('[data-device="kitchen"] .chart')).to_have_attribute("data-range", "custom")
    assert "from=" in browser_page.url and browser_page.get_by_label("Range").input_value() == "custom"


@pytest.mark.parametrize("address, message, wrong", [
    ("?from=1764000000&to=1764000000", "From must be before To", ("true", "true")),
    ("?from=yesterday&to=1764000000", "From and To must be times", ("true", "false")),
    ("?from=1764000000", "From and To must be times", ("false", "true")),
])
def test_an_address_whose_from_and_to_are_no_range_says_why(live_server, token_for, browser_page, address, message,
                                                            wrong):
    seed_fleet(live_server, token_for, ["kitchen"])

    browser_page.goto(live_server.url + "/" + address)

    expect(browser_page.get_by_role("alert")).to_have_text(message + ".")
    for name, invalid in zip(("From", "To"), wrong):
        field = browser_page.get_by_label(name, exact=True)
        expect(field).to_have_attribute("aria-invalid", invalid)
        assert (field.input_value() == "") == (invalid == "true" and "times" in message)  # what the address gave
    expect(browser_page.locator('[data-device="kitchen"] .chart')).to_have_attribute("data-range", "live")
    assert browser_page.get_by_label("Range").input_value() == "custom"
    browser_page.get_by_label("Range").select_option("1h")
    expect(browser_page.locator(".range-message")).to_be_empty()
    assert browser_page.console_errors == []


def test_an_address_naming_a_range_beside_a_from_that_is_no_time_shows_that_range(live_server, token_for,
                                                                                  browser_page):
    seed_fleet(live_server, token_for, ["kitchen"])

    browser_page.goto(live_server.url + "/?range=24h&from=yesterday")

    expect(browser_page.locator('[data-device="kitchen"] .chart')).to_have_attribute("data-range", "24h")
    assert browser_page.get_by_label("Range").input_value() == "24h"
    expect(browser_page.locator(".range-message")).to_be_empty()


def test_the_custom_range_message_keeps_the_header_on_one_line_at_a_desk(live_server, token_for, open_page):
    seed_fleet(live_server, token_for, ["kitchen"])
    page = open_page(viewport={"width": 1280, "height": 900})
    page.goto(live_server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")
    page.get_by_label("Range").select_option("custom")
    page.get_by_label("From", exact=True).fill("2026-05-01T10:00")
    page.get_by_label("To", exact=True).fill("2026-05-02T10:00")
    header = page.locator("body > header")
    one_line = header.bounding_box()["height"]

    page.get_by_label("To", exact=True).fill("2026-04-30T10:00")

    message = page.get_by_role("alert")
    expect(message).to_contain_text("From must be before To")
    assert header.bounding_box()["height"] == one_line
    box = message.bounding_box()
    assert box["width"] > 0 and box["x"] + box["width"] <= 1280  # in sight, not cut off
    assert page.console_errors == []


def test_custom_starts_from_the_range_shown(live_server, token_for, browser_page):
    seed_fleet(live_server, token_for, ["kitchen"])
    browser_page.add_init_script("localStorage.setItem('sensorcast.range', JSON.stringify({name: '24h'}))")
    browser_page.goto(live_server.url + "/")
    chart = browser_page.locator('[data-device="kitchen"] .chart')
    expect(chart).to_have_attribute("data-range", "24h")

    browser_page.get_by_label("Range").select_option("custom")

    since, until = [browser_page.get_by_label(name, exact=True).evaluate("(input) => Date.parse(input.value) / 1000")
                    for name in ("From", "To")]
    assert until - since == pytest.approx(24 * HOUR, abs=60) and until == pytest.approx(time.time(), abs=120)
    expect(chart).to_have_attribute("data-range", "24h")  # until From or To changes
    browser_page.get_by_label("From", exact=True).fill(time.strftime("%Y-%m-%dT%H:%M", time.localtime(since - HOUR)))
    expect(chart).to_have_attribute("data-range", "custom")
    assert browser_page.console_errors == []


# Whether any element that is not the range message, nor holds it, covers part of it.
COVERED = """(message) => {
  const box = message.getBoundingClientRect();
  return [...document.querySelectorAll("h1, label, input, select, button, #connection, #alerts, .card")]
    .filter((node) => !node.contains(message) && node.checkVisibility())
    .map((node) => node.getBoundingClientRect())
    .some((other) => other.left < box.right && box.left < other.right && other.top < box.bottom && box.top < other.bottom);
}"""


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}])
def test_the_custom_range_message_covers_nothing(live_server, token_for, open_page, viewport):
    seed_fleet(live_server, token_for, ["attic", "cellar", "hall", "kitchen"])
    page = open_page(viewport=viewport)
    page.goto(live_server.url + "/")
    expect(page.locator(".card")).to_have_count(4)
    page.get_by_label("Range").select_option("custom")

    page.get_by_label("To", exact=True).fill("2026-04-30T10:00")

    message = page.get_by_role("alert")
    expect(message).to_contain_text("From must be before To")
    assert not message.evaluate(COVERED)
    assert page.console_errors == []


def test_a_range_without_readings_says_so_on_the_card(live_server, token_for, browser_page):
    seed_fleet(live_server, token_for, ["kitchen"])
    open_page = browser_page
    open_page.goto(live_server.url + "/")
    card = open_page.locator('[data-device="kitchen"]')
    expect(card.locator(".chart")).to_have_attribute("data-range", "live")
    expect(card.locator(".no-readings")).to_have_count(0)

    open_page.get_by_label("Range").select_option("custom")
    open_page.get_by_label("From", exact=True).fill("2020-05-01T10:00")
    open_page.get_by_label("To", exact=True).fill("2020-05-02T10:00")

    expect(card.locator(".chart")).to_have_attribute("data-range", "custom")
    expect(card.locator(".chart")).to_contain_text("No readings in this range")
    open_page.get_by_label("Range").select_option("24h")
    expect(card.locator(".no-readings")).to_have_count(0)
    assert open_page.console_errors == []


@pytest.mark.parametrize("address", ["/?range=24h", "/?from={since}&to={until}"], ids=["24h", "custom"])
def test_a_device_that_appears_while_the_page_is_open_is_charted_over_the_range_shown(
        live_server, token_for, browser_page, address):
    now = time.time()
    seed_fleet(live_server, token_for, ["attic"])
    browser_page.goto(live_server.url + address.format(since=int(now - 12 * HOUR), until=int(now + HOUR)))
    expect(browser_page.locator("#connection")).to_have_text("live")
    shown = browser_page.locator('[data-device="attic"] .chart')
    expect(shown).to_have_attribute("data-range", re.compile("24h|custom"))

    live_server.post("/api/readings", token_for("porch"),  # its first readings, from the last hours
                     json=[{"temperature": 10.5 + n, "ts": now - (5 - n) * HOUR} for n in range(6)])

    chart = browser_page.locator('[data-device="porch"] .chart')
    expect(chart).to_have_attribute("data-range", shown.get_attribute("data-range"))
    expect(chart).to_have_attribute("data-points", "6")
    expect(chart.locator(".no-readings")).to_have_count(0)
    expect(browser_page.locator('[data-device="porch"] .summary')).to_have_text("temperature: min 10.5 · avg 13.0 · max 15.5 °C")


def test_an_hours_average_is_of_its_readings_not_of_its_buckets_averages(live_server, token_for, browser_page):
    """Ten readings of 30 in one minute, one of 8 in another: the hour's average is 28, then
    a live reading of 52 in a new bucket makes it 30."""
    now = time.time()
    token = token_for("kiln")
    live_server.post("/api/readings", token, json=[{"temperature": 30, "ts": now - 1800 + n} for n in range(10)]
                     + [{"temperature": 8, "ts": now - 600}])
    browser_page.goto(live_server.url + "/?range=1h")
    expect(browser_page.locator("#connection")).to_have_text("live")
    summary = browser_page.locator('[data-device="kiln"] .summary')
    expect(summary).to_have_text("temperature: min 8 · avg 28 · max 30 °C")

    live_server.post("/api/readings", token, json={"temperature": 52})

    expect(summary).to_have_text("temperature: min 8 · avg 30 · max 52 °C")
    assert browser_page.console_errors == []
