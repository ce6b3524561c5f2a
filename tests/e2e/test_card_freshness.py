"""A user reads each card at a glance on a phone: what is current, what is not and since
when, and whatever a device names or reports, the card fits the screen."""
import re
import time

from playwright.sync_api import expect

from server.store import DEVICES, device_key, device_readings

MINUTE = 60


def open_card(page, server, device):
    page.goto(server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")
    return page.locator(f'[data-device="{device}"]')


def test_a_device_measuring_118_times_a_second_is_not_stale_while_just_seen(live_server, token_for, browser_page):
    start = time.time() - 1
    second = [{"temperature": 20 + n / 100, "ts": start + n / 118} for n in range(118)]
    live_server.post("/api/readings", token_for("vibration"), json=second)  # a second's readings, sent at once
    card = open_card(browser_page, live_server, "vibration")

    expect(card.locator(".ago")).to_have_text(re.compile(r"^[1-4] s ago$"))
    expect(card.locator(".metrics")).not_to_have_class(re.compile("stale"))
    expect(card.locator(".status")).to_have_text("online")

    expect(card.locator(".metrics")).to_have_class(re.compile("stale"), timeout=20_000)  # once it is silent
    expect(card.locator(".status")).to_have_text(re.compile(r"^stale · last seen \d+ s ago$"))
    assert browser_page.console_errors == []


def test_a_board_reporting_on_change_is_not_stale_before_its_heartbeat_is_overdue(live_server, token_for, redis_client,
                                                                                   browser_page):
    """The firmware posts a change at once and a steady value at each heartbeat: gaps of an
    interval and of a heartbeat, the interval's the more common."""
    gaps = [3, 3, 3, 20] * 4 + [1] * 25  # s: as a 30 s interval and a 200 s heartbeat, ten times faster; a burst
    last = time.time() - 8  # posted a little less than a heartbeat ago
    ts = [last - sum(gaps[n:]) for n in range(len(gaps))] + [last]
    live_server.post("/api/readings", token_for("kitchen"), json=[{"temperature": 20 + n % 2, "ts": t}
                                                                  for n, t in enumerate(ts)])
    redis_client.hset(device_key(redis_client, "kitchen"), "last_seen", repr(last))
    redis_client.zadd(DEVICES, {"kitchen": last})
    card = open_card(browser_page, live_server, "kitchen")

    expect(card.locator(".ago")).to_have_text(re.compile(r"^1[0-9] s ago$"), timeout=20_000)  # judged a while
    assert card.locator(".status").inner_text() == "online"
    assert "stale" not in card.locator(".metrics").get_attribute("class")
    expect(card.locator(".status")).to_have_text(re.compile(r"^stale · last seen \d+ s ago$"), timeout=40_000)


def test_a_metric_the_device_stopped_sending_shows_its_age_and_is_stale(live_server, token_for, browser_page):
    now = time.time()
    three_hours = [{"temperature": 20, "ts": now - 180 * MINUTE + minute * MINUTE} for minute in range(181)]
    three_hours[0]["humidity"] = 45
    live_server.post("/api/readings", token_for("kitchen"), json=three_hours)
    card = open_card(browser_page, live_server, "kitchen")

    humidity = card.locator('[data-metric="humidity"]')
    expect(humidity.locator("dt")).to_have_text("humidity · 3 h ago")
    expect(humidity).to_have_class(re.compile("stale"))
    expect(card.locator('[data-metric="temperature"] dt')).to_have_text("temperature")
    expect(card.locator('[data-metric="temperature"]')).not_to_have_class(re.compile("stale"))
    expect(card.locator(".metrics")).not_to_have_class(re.compile("stale"))


def left_by_an_older_server(redis_client, device, fields):
    """A device as a server with looser checks kept it: any metric names, any version."""
    now = time.time()
    redis_client.xadd(device_readings(redis_client, device), dict(fields, device=device, ts=now))
    redis_client.hset(device_key(redis_client, device), mapping=dict(fields, device=device, ts=now, last_seen=now, status="online"))
    redis_client.zadd(DEVICES, {device: now})


def test_metric_names_that_objects_inherit_show_as_plain_metrics(live_server, redis_client, browser_page):
    inherited = {"__proto__": 1, "constructor": 2, "hasOwnProperty": 3, "toString": 4, "valueOf": 5}
    left_by_an_older_server(redis_client, "lab", dict(inherited, temperature=19))
    card = open_card(browser_page, live_server, "lab")

    for value, name in enumerate(inherited, start=1):
        expect(card.locator(f'[data-metric="{name}"] dd')).to_have_text(str(value))
    expect(card.locator(".u-legend .u-label")).to_have_text(["temperature", *sorted(inherited)])
    card.get_by_text("Alert thresholds").click()
    for name in inherited:
        expect(card.get_by_label("Metric").locator(f'option[value="{name}"]')).to_have_count(1)
    assert browser_page.console_errors == []


def test_long_names_and_versions_fit_a_phone(live_server, token_for, redis_client, browser_page):
    name = "a-very-long-device-name-32-chars"
    live_server.post("/api/readings", token_for(name), json={"temperature": 20, "a_very_long_metric_name_32_chars": 1})
    version = "1." + "0" * 5000
    left_by_an_older_server(redis_client, "lab", {"temperature": 19, "fw": version})
    page = browser_page
    page.goto(live_server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")

    expect(page.locator(f'[data-device="{name}"] .name')).to_have_attribute("title", name)
    expect(page.locator('[data-device="lab"] .firmware')).to_have_attribute("title", f"firmware {version}")
    card = page.locator(f'[data-device="{name}"]')
    card.get_by_text("Alert thresholds").click()
    expect(card.get_by_label("Low")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    for label in card.locator(".thresholds label").all():  # its words on one line, above its field
        assert label.evaluate("""label => {
            const field = label.querySelector("input, select").getBoundingClientRect();
            return field.top - label.getBoundingClientRect().top < 1.5 * parseFloat(getComputedStyle(label).lineHeight);
        }""")


def test_no_card_is_stale_while_the_stream_is_down(start_server, token_for, browser_page):
    server = start_server()
    start = time.time() - 5
    server.post("/api/readings", token_for("kitchen"), json=[{"temperature": 20, "ts": start + n} for n in range(6)])
    card = open_card(browser_page, server, "kitchen")
    expect(card.locator(".ago")).to_have_text(re.compile(r"^[0-4] s ago$"))

    server.stop()
    expect(browser_page.locator("#connection")).to_have_text("reconnecting…")

    expect(card.locator(".ago")).to_have_text(re.compile(r"^([6-9]|\d\d+) s ago$"), timeout=20_000)  # stale, were it live
    expect(card.locator(".metrics")).not_to_have_class(re.compile("stale"))
    assert [error for error in browser_page.console_errors if not error.startswith("Failed to load resource")] == []


def test_a_cards_widest_figures_fit_their_column_on_a_desk(live_server, token_for, open_page):
    live_server.post("/api/readings", token_for("greenhouse"), json={
        "temperature": 21.25, "humidity": 46.55, "pressure": 1013.25, "battery": 3.715})
    page = open_page(viewport={"width": 1280, "height": 900})
    page.goto(live_server.url + "/")
    expect(page.locator('[data-metric="pressure"] dd')).to_have_text("1,013.25 hPa")

    overflowing = page.evaluate("""() => [...document.querySelectorAll('.metrics dd')]
        .filter((dd) => dd.scrollWidth > dd.clientWidth || dd.getBoundingClientRect().right >
                        dd.closest('.card').getBoundingClientRect().right).map((dd) => dd.textContent)""")
    assert overflowing == []
