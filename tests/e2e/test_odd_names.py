"""Whatever names the devices chose, every viewer's dashboard shows every card: one
odd device never empties the page for the others."""
import time

from playwright.sync_api import expect

from server.firmware import store_release
from server.store import DEVICES, device_key, device_readings
from tests.e2e.test_chart_figures import RECORD_TEXTS, Y_LABELS

ORDINARY = ("attic", "cellar", "garage", "kitchen", "porch")


def left_by_an_older_server(redis_client, device, fields):
    """A device and its reading as a server from before names were matched whole kept them."""
    now = time.time()
    redis_client.xadd(device_readings(redis_client, device), dict(fields, device=device, ts=now))
    redis_client.hset(device_key(redis_client, device), mapping=dict(fields, device=device, ts=now, last_seen=now, status="online"))
    redis_client.zadd(DEVICES, {device: now})


def test_odd_metric_names_leave_every_card_shown(live_server, token_for, redis_client, browser_page):
    for n, device in enumerate(ORDINARY):
        live_server.post("/api/readings", token_for(device), json={"temperature": 20 + n})
    lab = token_for("lab")  # "constructor" is a name every JavaScript object inherits
    live_server.post("/api/readings", lab, json={"temperature": 19, "constructor": 3})
    left_by_an_older_server(redis_client, "shed", {"temperature": 18, "y\n": 1})
    page = browser_page

    page.goto(live_server.url + "/")

    expect(page.locator("#connection")).to_have_text("live")
    expect(page.locator(".card")).to_have_count(len(ORDINARY) + 2)
    for n, device in enumerate(ORDINARY):
        expect(page.locator(f'[data-device="{device}"] [data-metric="temperature"] dd')).to_have_text(f"{20 + n} °C")
        expect(page.locator(f'[data-device="{device}"] .chart canvas')).to_be_visible()
    expect(page.locator('[data-device="shed"] [data-metric="y\\a "] dd')).to_have_text("1")
    constructor = page.locator('[data-device="lab"] [data-metric="constructor"] dd')
    expect(constructor).to_have_text("3")
    live_server.post("/api/readings", lab, json={"temperature": 19.5, "constructor": 4})
    expect(constructor).to_have_text("4")
    expect(page.locator('[data-device="lab"] .chart')).to_have_attribute("data-points", "2")
    assert page.console_errors == []


def test_a_meter_s_huge_count_fits_its_card_on_a_phone(live_server, token_for, browser_page):
    live_server.post("/api/readings", token_for("meter"), json={"pulses": 12345678901234567, "temperature": 21})
    page = browser_page  # a phone's width

    page.goto(live_server.url + "/")

    count = page.locator('[data-device="meter"] [data-metric="pulses"] dd')
    expect(count).to_have_text("1.235E16")
    assert count.evaluate("(node) => node.scrollWidth <= node.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_a_metric_of_enormous_values_has_figures_on_its_axis_and_a_tiny_negative_reads_zero(live_server, token_for,
                                                                                             open_page):
    now = time.time()
    live_server.post("/api/readings", token_for("lab"), json=[
        {"big": 7.8e98 + n * 1e97, "tiny": -0.0000456, "ts": now - 60 + n * 10} for n in range(6)])
    page = open_page()
    page.add_init_script(RECORD_TEXTS)

    page.goto(live_server.url + "/")

    card = page.locator('[data-device="lab"]')
    expect(card.locator('[data-metric="tiny"] dd')).to_have_text("0.000")  # not -0.000
    expect(card.locator(".summary")).not_to_contain_text("-0")
    page.wait_for_function(f"(canvas) => ({Y_LABELS})(canvas).some((text) => /E98$/.test(text))",
                           arg=card.locator(".chart canvas").element_handle())


def test_a_release_out_shows_on_the_card_of_a_device_named_as_a_javascript_object_property(
        live_server, token_for, redis_client, browser_page):
    for device in ("constructor", "__proto__"):
        live_server.post("/api/readings", token_for(device), json={"temperature": 21, "fw": "0.1.0"})
    page = browser_page
    page.goto(live_server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")

    store_release(redis_client, "0.2.0", {"version.py": b'VERSION = "0.2.0"\n'})

    for device in ("constructor", "__proto__"):
        expect(page.locator(f'[data-device="{device}"] .firmware')).to_have_text("firmware 0.1.0 (0.2.0 is out)")
