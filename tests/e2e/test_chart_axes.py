"""A user reads a card's chart by its axes: whatever it draws has an axis (a third unit or a
metric of no known unit shows when clicked in the legend, and stays shown), the figures on an
axis are as round as its step, the time axis of 1 h has a label close to now where there is
room, and a range with no readings keeps the chart's axes and height."""
import datetime
import time
from decimal import Decimal

from playwright.sync_api import expect

from tests.e2e.test_chart_figures import RECORD_TEXTS, UNITS_DRAWN, X_LABELS, Y_LABELS, assert_apart

DESK = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
AXES = {"temperature": "°C", "humidity": "%RH", "battery": "V", "co2": "co2"}  # co2 has no known unit
# The metrics a chart's legend has switched on.
SHOWN = """(box) => [...box.querySelectorAll(".u-legend .u-series")]
  .filter((row) => row.style.display !== "none" && !row.classList.contains("u-off"))
  .map((row) => row.querySelector(".u-label").textContent)"""
UNITS_ARE = f"([canvas, units]) => ({UNITS_DRAWN})(canvas).sort().join() === units.sort().join()"
TIMEOUT = 30_000  # ms: a busy machine


def open_dashboard(open_page, server, viewport=DESK):
    page = open_page(viewport=viewport)
    page.add_init_script(RECORD_TEXTS)
    page.goto(server.url + "/")
    expect(page.locator("#connection")).to_have_text("live", timeout=TIMEOUT)
    return page


def wait_for_units(page, canvas, units):
    page.wait_for_function(UNITS_ARE, arg=[canvas.element_handle(), units], timeout=TIMEOUT)


def test_every_metric_drawn_has_an_axis_and_the_legend_chooses_which_are_drawn(live_server, token_for, open_page):
    start = time.time() - 60
    readings = [{"temperature": 20 + n % 3, "humidity": 40 + n % 5, "battery": 3.7 + n % 4 / 100, "co2": 400 + 10 * n,
                 "ts": start + n} for n in range(20)]
    assert live_server.post("/api/readings", token_for("lab"), json=readings).ok
    page = open_dashboard(open_page, live_server)
    chart = page.locator('[data-device="lab"] .chart')
    expect(chart).to_have_attribute("data-points", "20", timeout=TIMEOUT)
    canvas = chart.locator("canvas")
    page.wait_for_function(f"(canvas) => ({UNITS_DRAWN})(canvas).includes('°C')", arg=canvas.element_handle(),
                           timeout=TIMEOUT)

    assert chart.evaluate(SHOWN) == ["temperature", "humidity"]  # the first two units', one axis each side
    assert sorted(canvas.evaluate(UNITS_DRAWN)) == sorted(["°C", "%RH"])
    legend = chart.locator(".u-legend .u-label")
    legend.get_by_text("battery", exact=True).click()
    wait_for_units(page, canvas, ["°C", "%RH", "V"])
    legend.get_by_text("co2", exact=True).click()
    wait_for_units(page, canvas, ["°C", "%RH", "V", "co2"])  # a metric of no known unit: an axis of its own
    assert chart.evaluate(SHOWN) == ["temperature", "humidity", "battery", "co2"]
    legend.get_by_text("temperature", exact=True).click()
    wait_for_units(page, canvas, ["%RH", "V", "co2"])

    page.reload()  # the browser remembers the choice

    expect(chart).to_have_attribute("data-points", "20", timeout=TIMEOUT)
    wait_for_units(page, canvas, ["%RH", "V", "co2"])
    assert chart.evaluate(SHOWN) == ["humidity", "battery", "co2"]
    assert page.console_errors == []


def written_decimals(figure):
    return len(figure.partition(".")[2])


def step_decimals(step):
    return -min(0, step.normalize().as_tuple().exponent)


def test_axis_figures_are_as_round_as_their_step(live_server, token_for, open_page):
    now = time.time()
    for device, low in [("wide", 18.25), ("narrow", 21.25)]:  # readings with two decimals: 18.25 ... 27.75
        spread = 9.5 if device == "wide" else 1.5
        readings = [{"temperature": low + spread * (n % 2), "ts": now - 60 + n} for n in range(10)]
        assert live_server.post("/api/readings", token_for(device), json=readings).ok
    page = open_dashboard(open_page, live_server)
    figures = {}
    for device in ("wide", "narrow"):
        canvas = page.locator(f'[data-device="{device}"] .chart canvas')
        page.wait_for_function(f"(canvas) => ({Y_LABELS})(canvas).length > 2", arg=canvas.element_handle(),
                               timeout=TIMEOUT)
        figures[device] = canvas.evaluate(Y_LABELS)

    assert all(figure.isdigit() for figure in figures["wide"]), figures  # "18", "20", not "18.00"
    for device, drawn in figures.items():
        step = Decimal(drawn[1]) - Decimal(drawn[0])
        assert all(written_decimals(figure) == step_decimals(step) for figure in drawn), (device, drawn)  # 21.5, 22.0
    assert page.console_errors == []


def time_labels(page, server, chosen, now):
    """The labels under kitchen's chart, the ``chosen`` range shown, on a page whose clock
    says ``now`` (Unix seconds, or a datetime): three or more, left to right."""
    page.add_init_script(RECORD_TEXTS)
    page.clock.install(time=now)
    page.goto(server.url + "/")
    page.get_by_label("Range").select_option(chosen)
    chart = page.locator('[data-device="kitchen"] .chart')
    expect(chart).to_have_attribute("data-range", chosen, timeout=TIMEOUT)
    canvas = chart.locator("canvas")
    page.wait_for_function(f"(canvas) => ({X_LABELS})(canvas).length > 2", arg=canvas.element_handle(),
                           timeout=TIMEOUT)
    return canvas.evaluate(X_LABELS)


def test_the_time_axis_of_an_hour_has_a_label_close_to_now_where_there_is_room(live_server, token_for, open_page):
    start = time.time() - 3 * 3600
    readings = [{"temperature": 20 + n % 5, "humidity": 40 + n % 7, "ts": start + n * 60} for n in range(180)]
    assert live_server.post("/api/readings", token_for("kitchen"), json=readings).ok
    hour = int(time.time() // 3600) * 3600 - 3600
    page = open_page(viewport=PHONE)

    labels = time_labels(page, live_server, "1h", hour + 19 * 60 + 30)  # 19½ minutes past the readings' last hour

    newest = time.strftime("%H:%M", time.localtime(hour + 15 * 60))  # not the hour's, 19 minutes before now
    assert labels[-1]["text"] == newest, [label["text"] for label in labels]
    assert_apart(labels)


def test_a_weeks_dates_keep_apart_on_a_phone_though_the_last_is_the_narrowest(live_server, token_for, open_page):
    assert live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 20}).ok
    page = open_page(viewport=PHONE, timezone_id="UTC", locale="en-US")

    labels = time_labels(page, live_server, "7d", datetime.datetime(2026, 11, 1, 12, tzinfo=datetime.timezone.utc))

    assert labels[-1]["text"] == "11/1" and "10/28" in [label["text"] for label in labels]
    assert_apart(labels)


def test_a_range_with_no_readings_keeps_the_charts_axes_and_the_cards_height(live_server, token_for, open_page):
    now = time.time()
    for device, ago in [("attic", 5 * 3600), ("kitchen", 0)]:
        readings = [{"temperature": 20 + n % 3, "humidity": 40 + n % 5, "ts": now - ago - 600 + n * 60} for n in range(10)]
        assert live_server.post("/api/readings", token_for(device), json=readings).ok
    page = open_dashboard(open_page, live_server)
    page.get_by_label("Range").select_option("1h")
    empty, full = (page.locator(f'[data-device="{device}"] .chart') for device in ("attic", "kitchen"))
    expect(empty).to_have_attribute("data-points", "0", timeout=TIMEOUT)
    expect(full).to_have_attribute("data-range", "1h", timeout=TIMEOUT)
    expect(empty.locator(".no-readings")).to_have_text("No readings in this range")

    wait_for_units(page, empty.locator("canvas"), ["°C", "%RH"])
    wait_for_units(page, full.locator("canvas"), ["°C", "%RH"])

    assert [text for text in empty.locator("canvas").evaluate(Y_LABELS) if text] == []  # no figures to mislead
    assert abs(empty.bounding_box()["height"] - full.bounding_box()["height"]) < 1
    assert abs(empty.locator(".u-over").bounding_box()["height"] - full.locator(".u-over").bounding_box()["height"]) < 1
    cards = [page.locator(f'[data-device="{device}"]') for device in ("attic", "kitchen")]
    expect(cards[0].locator(".summary")).to_have_text("temperature: none in this rangehumidity: none in this range")
    assert abs(cards[0].bounding_box()["height"] - cards[1].bounding_box()["height"]) < 1  # side by side, alike
    assert page.console_errors == []
