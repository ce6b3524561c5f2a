"""A user reads a device's chart at a desk: it fills the card, reads out what is under the
cursor in their language, leaves breaks as breaks, draws the thresholds, sums up the range,
opens large, and puts several devices' same metric side by side."""
import re
import time

import pytest
import requests
from playwright.sync_api import expect

from tests.conftest import eventually
from tests.e2e.conftest import RECORD_CHART_TEXT

DESK = {"width": 1280, "height": 900}
MINUTE = 60
# Whether the canvas column at time t (Unix seconds) of a chart from `from` to `to` holds a
# pixel of the first series' red.
RED_AT = """([device, t, from, to]) => {
  const box = document.querySelector(`[data-device="${device}"] .chart`);
  const canvas = box.querySelector("canvas"), over = box.querySelector(".u-over");
  const c = canvas.getBoundingClientRect(), o = over.getBoundingClientRect();
  const scale = canvas.width / c.width;
  const x = Math.round((o.left - c.left + ((t - from) / (to - from)) * o.width) * scale);
  const column = canvas.getContext("2d").getImageData(x - 1, 0, 3, canvas.height).data;
  for (let i = 0; i < column.length; i += 4) {
    const [r, g, b, a] = column.slice(i, i + 4);
    if (a > 100 && r > 150 && g < 120 && b < 130) return true;
  }
  return false;
}"""


def post(server, token, readings):
    assert server.post("/api/readings", token, json=readings).ok


def open_dashboard(open_page, server, **options):
    page = open_page(viewport=DESK, **options)
    page.goto(server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")
    return page


def test_the_chart_fills_most_of_the_card(live_server, token_for, open_page):
    post(live_server, token_for("kitchen"), {"temperature": 21, "humidity": 40, "rssi": -60})
    page = open_dashboard(open_page, live_server)
    card = page.locator('[data-device="kitchen"]')
    expect(card.locator(".chart canvas")).to_be_visible()

    plot = card.locator(".u-over").bounding_box()
    chart = card.locator(".chart").bounding_box()
    assert plot["height"] >= 180  # it was 117 px
    assert chart["height"] >= 0.4 * card.bounding_box()["height"]  # the tallest part of the card


def test_one_reading_gives_an_axis_of_minutes_around_it(live_server, token_for, open_page):
    post(live_server, token_for("kitchen"), {"temperature": 21})
    page = open_page(viewport=DESK)
    page.add_init_script(RECORD_CHART_TEXT)
    page.goto(live_server.url + "/")
    card = page.locator('[data-device="kitchen"]')
    expect(card.locator(".chart")).to_have_attribute("data-points", "1")

    page.wait_for_function("() => [...window.chartTexts].some((text) => /^\\d{1,2}:\\d{2}/.test(text))")
    assert not [text for text in page.evaluate("[...window.chartTexts]") if re.fullmatch(r"20\d\d", text)]
    span = float(card.locator(".chart").get_attribute("data-to")) - float(card.locator(".chart").get_attribute("data-from"))
    assert 60 <= span <= 3600


def test_a_long_break_is_drawn_as_a_gap_not_a_line(live_server, token_for, open_page):
    step = 20  # seconds: all of it within Live's 15 minutes
    start = time.time() - 40 * step
    before = [{"temperature": 20 + n % 3, "ts": start + n * step} for n in range(20)]
    after = [{"temperature": 20 + n % 3, "ts": start + (34 + n) * step} for n in range(5)]  # 14 steps silent
    post(live_server, token_for("kitchen"), before + after)
    page = open_dashboard(open_page, live_server)
    chart = page.locator('[data-device="kitchen"] .chart')
    expect(chart).to_have_attribute("data-points", "25")

    first, last = (float(chart.get_attribute(name)) for name in ("data-from", "data-to"))  # the axis
    assert page.evaluate(RED_AT, ["kitchen", start + 10.5 * step, first, last])  # the line where it measured
    assert not page.evaluate(RED_AT, ["kitchen", start + 26.5 * step, first, last])  # and nothing across the break


def test_a_slow_stretch_before_a_burst_is_drawn_as_a_line_not_as_dots(live_server, token_for, open_page):
    """The burst's readings come hundredths of a second apart, the stretch's a minute:
    each is usual where it is, and neither is a break."""
    token = token_for("lathe")
    now = time.time()
    post(live_server, token, [{"temperature": 20 + n % 2, "ts": now - 700 + n * 60} for n in range(11)])
    post(live_server, token, [{"temperature": 25 + n % 2, "ts": now - 30 + n * 0.02} for n in range(300)])
    page = open_dashboard(open_page, live_server)
    chart = page.locator('[data-device="lathe"] .chart')
    expect(chart).to_have_attribute("data-points", "311")

    first, last = (float(chart.get_attribute(name)) for name in ("data-from", "data-to"))
    for between in (now - 700 + 3.5 * 60, now - 700 + 7.5 * 60):  # half way from one reading to the next
        assert page.evaluate(RED_AT, ["lathe", between, first, last])


def test_hovering_reads_out_the_time_and_each_value_in_the_page_language(live_server, token_for, open_page):
    start = time.time() - 10 * MINUTE
    post(live_server, token_for("kitchen"), [{"temperature": 21.25, "humidity": 40.5, "ts": start + n * MINUTE}
                                             for n in range(10)])
    page = open_dashboard(open_page, live_server, locale="de-DE")
    card = page.locator('[data-device="kitchen"]')
    expect(card.locator(".chart")).to_have_attribute("data-points", "10")

    card.locator(".u-over").hover()

    readout = card.locator(".readout")
    expect(readout).to_be_visible()
    expect(readout.locator("time")).to_have_text(re.compile(r"^(\d{1,2}\.\d{1,2}\., )?\d{2}:\d{2}:\d{2}$"))
    expect(card.locator('[data-metric="temperature"] dd')).to_have_text("21,25 °C")
    expect(readout).to_contain_text("temperature 21,25 °C")  # as the card says it
    expect(readout).to_contain_text("humidity 40,5 %")


@pytest.mark.parametrize("viewport", [DESK, {"width": 390, "height": 844}])
def test_the_readout_keeps_clear_of_the_value_axes(live_server, token_for, open_page, viewport):
    start = time.time() - 14.5 * MINUTE  # across Live's 15 minutes
    for device in ("attic", "cellar", "hall", "kitchen"):  # a row of four cards at a desk
        post(live_server, token_for(device), [{"temperature": 21.25 + n, "humidity": 40.5, "ts": start + n * 95}
                                              for n in range(10)])
    page = open_page(viewport=viewport)
    page.goto(live_server.url + "/")
    over = page.locator('[data-device="kitchen"] .u-over')
    expect(page.locator('[data-device="kitchen"] .chart')).to_have_attribute("data-points", "10")
    plot = over.bounding_box()

    for x in (2, plot["width"] / 2, plot["width"] - 2):
        over.hover(position={"x": x, "y": plot["height"] / 2})
        readout = page.locator('[data-device="kitchen"] .readout')
        expect(readout).to_be_visible()
        box = readout.bounding_box()
        assert plot["x"] <= box["x"] and box["x"] + box["width"] <= plot["x"] + plot["width"], (x, box, plot)
    assert page.console_errors == []


def test_the_readout_says_each_value_in_full_and_nothing_where_the_device_was_silent(
        live_server, token_for, open_page):
    now, hour = time.time(), 60 * MINUTE
    def readings(since, count):  # every ten minutes
        return [{"temperature": 12.25 + n % 7 / 10, "battery": 3.99 - n / 1000, "ts": since + n * 10 * MINUTE}
                for n in range(count)]
    post(live_server, token_for("kitchen"), readings(now - 20 * hour, 24) + readings(now - 2 * hour, 12))
    page = open_page()  # a phone
    page.goto(live_server.url + "/")
    page.get_by_role("button", name="Temperature unit").click()  # °F: longer figures
    page.get_by_label("Range").select_option("24h")
    card = page.locator('[data-device="kitchen"]')
    expect(card.locator(".chart")).to_have_attribute("data-range", "24h")
    expect(card.locator('[data-metric="temperature"] dd')).to_have_text(re.compile("°F$"))
    over, readout = card.locator(".u-over"), card.locator(".readout")
    plot = over.bounding_box()
    at = lambda hours_ago: {"x": plot["width"] * (24 - hours_ago) / 24, "y": plot["height"] / 2}

    for hours_ago in (18, 1, 0.5):  # over the evening's readings, the morning's, and by the right edge
        over.hover(position=at(hours_ago))
        expect(readout).to_contain_text("battery")
        assert "–" not in readout.inner_text()  # a bucket of one reading has no min–max to tell
        box = readout.bounding_box()
        assert plot["x"] <= box["x"] and box["x"] + box["width"] <= plot["x"] + plot["width"], (hours_ago, box, plot)
        assert readout.evaluate("(box) => [box, ...box.children].every((row) => row.scrollWidth <= row.clientWidth)")

    over.hover(position=at(9))  # the night, when it sent nothing

    expect(readout).to_be_hidden()
    assert page.console_errors == []


def test_the_readout_gives_a_bucket_of_several_readings_its_min_and_max(live_server, token_for, open_page):
    now = time.time()
    post(live_server, token_for("kitchen"), [{"temperature": 20 + n % 5, "ts": now - 2 * 60 * MINUTE + n * MINUTE}
                                             for n in range(120)])  # five a bucket at 24 h, 20 to 24 °C
    page = open_page()
    page.goto(live_server.url + "/?range=24h")
    card = page.locator('[data-device="kitchen"]')
    expect(card.locator(".chart")).to_have_attribute("data-range", "24h")
    plot = card.locator(".u-over").bounding_box()

    card.locator(".u-over").hover(position={"x": plot["width"] * (24 - 1) / 24, "y": plot["height"] / 2})

    expect(card.locator(".readout")).to_contain_text(re.compile(r"temperature 2\d\s°C \(2\d–2\d\)"))


def test_thresholds_are_drawn_on_the_chart_and_follow_the_form(live_server, token_for, open_page):
    post(live_server, token_for("kitchen"), [{"temperature": 21 + n / 10, "ts": time.time() - 60 + n} for n in range(5)])
    requests.put(live_server.url + "/api/devices/kitchen/thresholds/temperature", json={"low": 18, "high": 25}, timeout=5)
    page = open_dashboard(open_page, live_server)
    card = page.locator('[data-device="kitchen"]')

    expect(card.locator(".chart .threshold")).to_have_text(["low 18.0 °C", "high 25.0 °C"])  # as the values: 21.1 °C...
    card.get_by_text("Alert thresholds").click()
    form = card.locator(".thresholds form")
    form.get_by_label("Metric").select_option("temperature")
    form.get_by_label("High").fill("30")
    form.get_by_role("button", name="Save").click()

    expect(card.locator(".chart .threshold")).to_have_text(["low 18.0 °C", "high 30.0 °C"])
    assert page.console_errors == []


def test_the_card_sums_up_the_range_it_shows(live_server, token_for, open_page):
    token = token_for("kitchen")
    post(live_server, token, [{"temperature": t, "ts": time.time() - 30 + n} for n, t in enumerate([20, 22])])
    page = open_dashboard(open_page, live_server)
    summary = page.locator('[data-device="kitchen"] .summary')
    expect(summary).to_have_text("temperature: min 20 · avg 21 · max 22 °C")

    post(live_server, token, {"temperature": 24})

    expect(summary).to_have_text("temperature: min 20 · avg 22 · max 24 °C")


def test_a_chart_opens_large_and_escape_closes_it(live_server, token_for, open_page):
    token = token_for("kitchen")
    post(live_server, token, [{"temperature": 20 + n % 4, "ts": time.time() - 300 + n * 10} for n in range(30)])
    page = open_dashboard(open_page, live_server)

    page.get_by_role("button", name="Open kitchen's chart large").click()

    dialog = page.get_by_role("dialog", name="kitchen")
    expect(dialog.locator("canvas")).to_be_visible()
    assert dialog.locator("canvas").bounding_box()["width"] >= 0.85 * DESK["width"]
    post(live_server, token, {"temperature": 30})  # and it stays live
    expect(page.locator('[data-device="kitchen"] .chart')).to_have_attribute("data-points", "31")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert page.console_errors == []


def test_two_devices_same_metric_on_one_chart(live_server, token_for, open_page):
    now = time.time()
    for device, base in [("kitchen", 21), ("cellar", 12)]:  # across Live's 15 minutes
        post(live_server, token_for(device), [{"temperature": base + n % 3, "humidity": 50, "ts": now - 870 + n * 45}
                                              for n in range(20)])
    page = open_dashboard(open_page, live_server)
    expect(page.locator(".card")).to_have_count(2)

    page.get_by_role("button", name="Compare").click()
    dialog = page.get_by_role("dialog", name="Compare devices")
    dialog.get_by_label("Metric").select_option("temperature")

    expect(dialog.locator(".u-legend .u-label")).to_have_text(["cellar", "kitchen"])
    expect(dialog.locator("canvas")).to_be_visible()
    dialog.locator(".u-over").hover()
    expect(dialog.locator(".readout")).to_contain_text("cellar")
    expect(dialog.locator(".readout")).to_contain_text("kitchen")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert page.console_errors == []


def test_compare_gives_each_of_twenty_devices_its_own_colour(live_server, token_for, open_page):
    rooms = [f"room-{n:02}" for n in range(1, 21)]
    for n, device in enumerate(rooms):
        post(live_server, token_for(device), [{"temperature": 15 + n, "ts": time.time() - 60 + s} for s in range(3)])
    page = open_dashboard(open_page, live_server)
    expect(page.locator(".card")).to_have_count(20)

    page.get_by_role("button", name="Compare").click()

    dialog = page.get_by_role("dialog", name="Compare devices")
    expect(dialog.locator(".u-legend .u-label")).to_have_text(rooms)
    colours = dialog.locator(".u-legend .u-marker").evaluate_all(
        "(markers) => markers.map((marker) => getComputedStyle(marker).borderColor)")
    assert len(set(colours)) == 20, colours
    assert page.console_errors == []


def name(server, device, label):
    assert requests.patch(f"{server.url}/api/devices/{device}", json={"name": label}, timeout=5).ok


def test_large_and_compare_say_the_devices_names_in_the_pages_order(live_server, token_for, open_page):
    now = time.time()
    for device, label, base in [("esp-1", "Cellar", 12), ("esp-2", "Attic", 18), ("esp-3", "Kitchen", 21)]:
        post(live_server, token_for(device), [{"temperature": base + n % 3, "ts": now - 870 + n * 45} for n in range(20)])
        name(live_server, device, label)
    requests.put(live_server.url + "/api/devices/esp-3/thresholds/temperature", json={"high": 25}, timeout=5)
    page = open_dashboard(open_page, live_server)
    expect(page.locator(".card .name")).to_have_text(["Attic", "Cellar", "Kitchen"])

    page.get_by_role("button", name="Open esp-3's chart large").click()
    expect(page.get_by_role("dialog", name="Kitchen")).to_be_visible()
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Compare").click()
    dialog = page.get_by_role("dialog", name="Compare devices")

    expect(dialog.locator(".u-legend .u-label")).to_have_text(["Attic", "Cellar", "Kitchen"])
    expect(dialog.locator(".threshold")).to_have_text(["Kitchen high 25 °C"])
    dialog.locator(".u-over").hover()
    expect(dialog.locator(".readout .key")).to_have_text(["Attic", "Cellar", "Kitchen"])
    assert page.console_errors == []


def test_a_long_device_name_in_the_compare_legend_stays_beside_its_colour_on_a_phone(live_server, token_for,
                                                                                   open_page):
    now = time.time()
    for device, label in [("esp-1", "Cellar"), ("esp-2", "The workshop's freezer at the back of the garden shed")]:
        post(live_server, token_for(device), [{"temperature": 12 + n % 3, "ts": now - 870 + n * 45} for n in range(20)])
        name(live_server, device, label)
    page = open_page()  # a phone's screen
    page.goto(live_server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")
    page.get_by_role("button", name="Compare").click()
    legend = page.get_by_role("dialog", name="Compare devices").locator(".u-legend .u-series").nth(1)
    expect(legend.locator(".u-label")).to_have_text("The workshop's freezer at the back of the garden shed")

    marker, label = legend.locator(".u-marker").bounding_box(), legend.locator(".u-label").bounding_box()
    assert abs((marker["y"] + marker["height"] / 2) - (label["y"] + label["height"] / 2)) < 4  # on one line
    assert label["x"] + label["width"] <= 390


NARROWER_THAN = "([selector, most]) => document.querySelector(selector).getBoundingClientRect().width <= most"


def test_large_and_compare_charts_follow_the_window_size(live_server, token_for, open_page):
    post(live_server, token_for("kitchen"), [{"temperature": 20 + n % 4, "ts": time.time() - 300 + n * 10}
                                             for n in range(30)])
    page = open_dashboard(open_page, live_server)

    canvas = page.locator("dialog .chart canvas")
    for button in ("Open kitchen's chart large", "Compare"):
        page.set_viewport_size(DESK)
        page.get_by_role("button", name=button).click()
        expect(canvas).to_be_visible()
        assert canvas.bounding_box()["width"] >= 0.85 * DESK["width"]

        page.set_viewport_size({"width": 800, "height": 600})

        page.wait_for_function(NARROWER_THAN, arg=["dialog .chart canvas", 0.96 * 800])
        page.keyboard.press("Escape")
        expect(page.locator("dialog")).to_be_hidden()
    assert page.console_errors == []


# Whether the texts of any two threshold lines shown cover each other.
LABELS_OVERLAP = """(lines) => {
  const boxes = lines.filter((line) => line.innerText.trim()).map((line) => {
    const text = document.createRange();
    text.selectNodeContents(line);
    return text.getBoundingClientRect();
  });
  return boxes.some((a, i) => boxes.slice(i + 1)
    .some((b) => a.top < b.bottom && b.top < a.bottom && a.left < b.right && b.left < a.right));
}"""


def test_threshold_labels_stand_on_their_own_background_apart_from_each_other(live_server, token_for, open_page):
    now = time.time()
    for device in ("attic", "cellar", "kitchen"):
        post(live_server, token_for(device), [{"temperature": 15.5 + n % 10, "ts": now - 300 + n * 10} for n in range(20)])
        requests.put(f"{live_server.url}/api/devices/{device}/thresholds/temperature", json={"low": 20, "high": 20.5},
                     timeout=5)
    page = open_dashboard(open_page, live_server)
    card_labels = page.locator('[data-device="kitchen"] .threshold')
    expect(card_labels).to_have_text(["low 20.0 °C", "high 20.5 °C"])

    assert not card_labels.evaluate_all(LABELS_OVERLAP)
    background = "(line) => getComputedStyle(line.querySelector('*') || line).backgroundColor"
    assert card_labels.first.evaluate(background) != "rgba(0, 0, 0, 0)"
    page.get_by_role("button", name="Compare").click()
    dialog = page.get_by_role("dialog", name="Compare devices")
    expect(dialog.locator(".threshold")).to_have_count(6)
    assert not dialog.locator(".threshold").evaluate_all(LABELS_OVERLAP)
    assert page.console_errors == []


def test_every_threshold_of_a_card_is_labelled_where_its_lines_come_close(live_server, token_for, open_page):
    now = time.time()
    post(live_server, token_for("office"), [{"temperature": 10 + n, "humidity": 5 * n, "ts": now - 300 + n * 10}
                                            for n in range(21)])  # 10-30 °C and 0-100 %: 20 °C and 50 % level
    for metric, limit in (("temperature", {"low": 20, "high": 20.1}), ("humidity", {"low": 50, "high": 50.5})):
        requests.put(f"{live_server.url}/api/devices/office/thresholds/{metric}", json=limit, timeout=5)
    page = open_dashboard(open_page, live_server)
    labels = page.locator('[data-device="office"] .threshold')
    expect(labels).to_have_count(4)

    shown = "(lines) => lines.filter((line) => getComputedStyle(line.firstChild).visibility !== 'hidden').length"
    eventually(lambda: labels.evaluate_all(shown) == 4)
    assert not labels.evaluate_all(LABELS_OVERLAP)
    assert page.console_errors == []


# Each canvas keeps the lengths of the horizontal lines stroked on it since it was last
# cleared, and its texts with their alignment.
RECORD_LINES = """
const { beginPath, clearRect, fillText, lineTo, moveTo, stroke } = CanvasRenderingContext2D.prototype;
Object.assign(CanvasRenderingContext2D.prototype, {
  clearRect(...args) {
    Object.assign(this.canvas, { lines: [], texts: [] });
    return clearRect.apply(this, args);
  },
  fillText(text, ...rest) {
    this.canvas.texts?.push({ text: String(text), align: this.textAlign });
    return fillText.call(this, text, ...rest);
  },
  beginPath() { this.path = []; return beginPath.call(this); },
  moveTo(x, y) { this.path?.push([x, y, true]); return moveTo.call(this, x, y); },
  lineTo(x, y) { this.path?.push([x, y, false]); return lineTo.call(this, x, y); },
  stroke(...args) {
    (this.path || []).forEach(([x, y, start], i) => !start && y === this.path[i - 1][1]
      && this.canvas.lines?.push(Math.abs(x - this.path[i - 1][0])));
    return stroke.apply(this, args);
  },
});
"""
# The horizontal lines across the whole plot, and the figures on the left (first) value axis.
GRID_AND_FIGURES = """(canvas) => {
  const longest = Math.max(...canvas.lines);
  return [canvas.lines.filter((length) => length > longest * 0.9).length,
    canvas.texts.filter((text) => text.align === "right").length];
}"""


def test_a_chart_with_two_value_axes_draws_one_set_of_grid_lines(live_server, token_for, open_page):
    post(live_server, token_for("kitchen"), [{"temperature": 20 + n % 3, "humidity": 40 + n % 7, "ts": time.time() - 60 + n}
                                             for n in range(20)])
    page = open_page(viewport=DESK)
    page.add_init_script(RECORD_LINES)
    page.goto(live_server.url + "/")
    canvas = page.locator('[data-device="kitchen"] .chart canvas')
    expect(canvas).to_be_attached()
    page.wait_for_function("(canvas) => canvas.texts?.some((text) => text.align === 'right')", arg=canvas.element_handle())

    grid_lines, figures = canvas.evaluate(GRID_AND_FIGURES)

    assert grid_lines == figures
    assert page.console_errors == []


def test_compare_opens_on_the_first_metric_in_the_cards_order(live_server, token_for, open_page):
    for device in ("cellar", "kitchen"):
        post(live_server, token_for(device), [{"humidity": 40 + n, "temperature": 20 + n, "ts": time.time() - 60 + n}
                                              for n in range(5)])
    page = open_dashboard(open_page, live_server)
    expect(page.locator('[data-device="kitchen"] .metrics dt')).to_have_text(["temperature", "humidity"])

    page.get_by_role("button", name="Compare").click()

    dialog = page.get_by_role("dialog", name="Compare devices")
    expect(dialog.get_by_label("Metric")).to_have_value("temperature")
    expect(dialog.get_by_label("Metric").locator("option")).to_have_text(["temperature", "humidity"])
    expect(dialog.locator(".u-legend .u-label")).to_have_text(["cellar", "kitchen"])
    assert page.console_errors == []


# How many pixels of the dialog's chart are of the second series' teal (#00798c).
TEAL_PIXELS = """() => {
  const canvas = document.querySelector("dialog .chart canvas");
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let count = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    const [r, g, b, a] = pixels.slice(i, i + 4);
    count += a > 200 && r < 40 && Math.abs(g - 121) < 25 && Math.abs(b - 140) < 25;
  }
  return count;
}"""
DIALOG_CHART = 'document.querySelector("dialog .chart canvas")'
NUMBERS_DRAWN = f"() => [...({DIALOG_CHART}.texts ?? [])].filter((text) => /^-?[\\d.,]+$/.test(text)).map(Number)"


def test_a_device_with_one_reading_is_a_dot_on_the_compare_chart_on_an_axis_around_it(
        live_server, token_for, open_page):
    now = time.time()
    post(live_server, token_for("kitchen"), [{"temperature": 21 + n % 3, "ts": now - 300 + n} for n in range(300)])
    post(live_server, token_for("shed"), {"temperature": 12, "humidity": 55, "ts": now - 150})
    page = open_page(viewport=DESK)
    page.add_init_script(RECORD_CHART_TEXT)
    page.goto(live_server.url + "/")
    expect(page.locator('[data-device="kitchen"] .chart')).to_have_attribute("data-points", "300")

    page.get_by_role("button", name="Compare").click()
    dialog = page.get_by_role("dialog", name="Compare devices")
    expect(dialog.locator(".u-legend .u-label")).to_have_text(["kitchen", "shed"])
    page.wait_for_function(f"() => ({TEAL_PIXELS})() >= 10")  # the shed's one reading, among the kitchen's 300

    page.evaluate(f"{DIALOG_CHART}.texts?.clear()")  # the cards behind the dialog may redraw meanwhile
    dialog.get_by_label("Metric").select_option("humidity")
    expect(dialog.locator(".u-legend .u-label")).to_have_text(["shed"])
    page.wait_for_function(f"() => ({NUMBERS_DRAWN})().length >= 2")
    assert all(50 <= figure <= 60 for figure in page.evaluate(NUMBERS_DRAWN))  # not from 0 to 110
    assert page.console_errors == []
