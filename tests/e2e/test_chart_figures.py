"""A user reads the figures on a card: the times under its chart stand apart at a desk or on
a phone, whatever the range; a metric's value and its min · avg · max have as many decimals
(its axis's figures, as its step: test_chart_axes.py); and a unit never wraps away from its figure."""
import time

import pytest
from playwright.sync_api import expect

# Each canvas keeps the texts drawn on it since it was last cleared, with where they went.
RECORD_TEXTS = """
const { clearRect, fillText } = CanvasRenderingContext2D.prototype;
CanvasRenderingContext2D.prototype.clearRect = function (...args) {
  this.canvas.texts = [];
  return clearRect.apply(this, args);
};
CanvasRenderingContext2D.prototype.fillText = function (text, x, y, ...rest) {
  const { a, b } = this.getTransform();
  (this.canvas.texts ||= []).push({ text: String(text), x: a * x, y, width: a * this.measureText(text).width,
    align: this.textAlign, rotated: b !== 0 });
  return fillText.call(this, text, x, y, ...rest);
};
"""
# The labels under the x axis, left to right: centred, not rotated, on the lowest line.
X_LABELS = """(canvas) => {
  const centred = canvas.texts.filter((text) => text.align === "center" && !text.rotated);
  const lowest = Math.max(...centred.map((text) => text.y));
  return centred.filter((text) => text.y === lowest).sort((a, b) => a.x - b.x);
}"""
Y_LABELS = """(canvas) => canvas.texts.filter((text) => text.align === "right").map((text) => text.text)"""
UNITS_DRAWN = """(canvas) => (canvas.texts || []).filter((text) => text.rotated).map((text) => text.text)"""
# The widths of the line at which its unit (the last word) starts a line of its own.
UNIT_SPLIT_AT = """(line) => {
  const text = line.firstChild, unit = text.data.lastIndexOf("°");
  const top = (start, end) => {
    const range = document.createRange();
    range.setStart(text, start);
    range.setEnd(text, end);
    return range.getClientRects()[0].top;
  };
  const widths = [];
  for (let width = 40; width <= 400; width += 2) {
    line.style.width = `${width}px`;
    if (top(unit, unit + 1) !== top(unit - 2, unit - 1)) widths.push(width);
  }
  return widths;
}"""
GAP = 6  # canvas pixels between two labels, at least


def assert_apart(labels):
    """Each label GAP pixels or more from the next (X_LABELS's, left to right)."""
    for left, right in zip(labels, labels[1:]):
        assert left["x"] + left["width"] / 2 + GAP <= right["x"] - right["width"] / 2, (left, right)


def open_dashboard(open_page, server, viewport):
    page = open_page(viewport=viewport)
    page.add_init_script(RECORD_TEXTS)
    page.goto(server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")
    return page


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}])
# Live's 15 minutes in a narrow card have room for two times a minute or more apart ("14:02"); an hour or a day, three.
@pytest.mark.parametrize("chosen, minutes, every, least", [("live", 5, 5, 2), ("1h", 60, 60, 3), ("24h", 24 * 60, 600, 3)])
def test_the_time_labels_under_a_chart_do_not_run_together(live_server, token_for, open_page, viewport, chosen, minutes,
                                                           every, least):
    start = time.time() - minutes * 60
    readings = [{"temperature": 20 + n % 5, "humidity": 40 + n % 7, "ts": start + n * every}
                for n in range(minutes * 60 // every)]
    for device in ["attic", "hall", "kitchen", "shed"]:  # a row of four cards at a desk, each with two axes
        assert live_server.post("/api/readings", token_for(device), json=readings).ok
    page = open_dashboard(open_page, live_server, viewport)
    page.get_by_label("Range").select_option(chosen)
    chart = page.locator('[data-device="kitchen"] .chart')
    expect(chart).to_have_attribute("data-range", chosen)
    expect(chart).not_to_have_attribute("data-points", "0")
    canvas = chart.locator("canvas")
    page.wait_for_function(f"(canvas) => ({X_LABELS})(canvas).length > 0", arg=canvas.element_handle())

    labels = canvas.evaluate(X_LABELS)
    assert len(labels) >= least, labels
    assert_apart(labels)
    assert page.console_errors == []


def test_a_metric_has_as_many_decimals_on_its_card_and_its_summary(live_server, token_for, open_page):
    token = token_for("kitchen")
    readings = [{"temperature": t, "ts": time.time() - 60 + n} for n, t in enumerate([20, 21.5, 22, 21])]
    assert live_server.post("/api/readings", token, json=readings).ok
    page = open_dashboard(open_page, live_server, {"width": 1280, "height": 900})
    card = page.locator('[data-device="kitchen"]')

    expect(card.locator('[data-metric="temperature"] dd')).to_have_text("21.0 °C")
    expect(card.locator(".summary")).to_have_text("temperature: min 20.0 · avg 21.1 · max 22.0 °C")
    assert page.console_errors == []


def test_a_card_s_figures_keep_one_number_of_decimals_when_a_reading_elsewhere_adds_some(live_server, token_for,
                                                                                          open_page):
    readings = [{"temperature": t, "ts": time.time() - 60 + n} for n, t in enumerate([56, 57])]
    assert live_server.post("/api/readings", token_for("boiler"), json=readings).ok
    page = open_dashboard(open_page, live_server, {"width": 1280, "height": 900})
    card = page.locator('[data-device="boiler"]')
    expect(card.locator('[data-metric="temperature"] dd')).to_have_text("57 °C")

    assert live_server.post("/api/readings", token_for("lab"), json={"temperature": 21.125}).ok

    expect(card.locator(".summary")).to_have_text("temperature: min 56.000 · avg 56.500 · max 57.000 °C")
    expect(card.locator('[data-metric="temperature"] dd')).to_have_text("57.000 °C")
    assert page.console_errors == []


def test_a_metric_has_the_decimals_its_readings_have_and_fahrenheit_adds_none(live_server, token_for, open_page):
    start = time.time() - 60
    falling = [{"battery": 4.04 - n * 0.03, "ts": start + n} for n in range(4)]
    readings = falling + [{"battery": 3.71, "soil_moisture": 0.237, "temperature": 21.3, "ts": start + 10}]
    assert live_server.post("/api/readings", token_for("field"), json=readings).ok
    page = open_dashboard(open_page, live_server, {"width": 1280, "height": 900})
    card = page.locator('[data-device="field"]')

    expect(card.locator('[data-metric="battery"] dd')).to_have_text("3.71 V")
    expect(card.locator('[data-metric="soil_moisture"] dd')).to_have_text("0.237")
    expect(card.locator('[data-summary="battery"]')).to_have_text("battery: min 3.71 · avg 3.94 · max 4.04 V")
    expect(card.locator('[data-metric="temperature"] dd')).to_have_text("21.3 °C")
    page.get_by_role("button", name="Temperature unit").click()
    expect(card.locator('[data-metric="temperature"] dd')).to_have_text("70.3 °F")  # not 70.34
    assert page.console_errors == []


# Whether any pixel of the canvas is of the first series' red (#d1495b), its band's faint fill included.
ANY_RED = """(canvas) => {
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 0; i < pixels.length; i += 4) {
    const [r, g, b, a] = pixels.slice(i, i + 4);
    if (a > 20 && r > 150 && g < 120 && b < 130) return true;
  }
  return false;
}"""


def test_a_metric_switched_off_in_the_legend_takes_its_band_and_axis_with_it(live_server, token_for, open_page):
    start = time.time() - 3 * 3600
    readings = [{"temperature": 20 + n % 5, "humidity": 40 + n % 7, "ts": start + n * 60} for n in range(180)]
    assert live_server.post("/api/readings", token_for("kitchen"), json=readings).ok
    page = open_dashboard(open_page, live_server, {"width": 1280, "height": 900})
    page.get_by_label("Range").select_option("24h")
    chart = page.locator('[data-device="kitchen"] .chart')
    expect(chart).to_have_attribute("data-range", "24h")
    canvas = chart.locator("canvas")
    page.wait_for_function(f"(canvas) => ({UNITS_DRAWN})(canvas).includes('°C')", arg=canvas.element_handle())
    assert canvas.evaluate(ANY_RED)

    chart.locator(".u-legend .u-label").get_by_text("temperature", exact=True).click()

    page.wait_for_function(f"(canvas) => ({UNITS_DRAWN})(canvas).join() === '%RH'", arg=canvas.element_handle())
    assert not canvas.evaluate(ANY_RED)
    assert page.console_errors == []


def test_a_unit_never_wraps_away_from_its_figure(live_server, token_for, open_page):
    readings = [{"temperature": t, "ts": time.time() - 60 + n} for n, t in enumerate([20.5, 21.5])]
    assert live_server.post("/api/readings", token_for("kitchen"), json=readings).ok
    page = open_dashboard(open_page, live_server, {"width": 1280, "height": 900})
    summary = page.locator('[data-device="kitchen"] .summary span')
    expect(summary).to_have_text("temperature: min 20.5 · avg 21.0 · max 21.5 °C")

    split_at = summary.evaluate(UNIT_SPLIT_AT)

    assert split_at == []
