"""A user sets a kitchen's alert thresholds on its card, switches to °F with the form
open, edits one limit, and later clears the threshold."""
import re

import pytest
import requests
from playwright.sync_api import expect


def open_thresholds(page, server):
    page.goto(server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")
    card = page.locator('[data-device="kitchen"]')
    card.get_by_text("Alert thresholds").click()
    form = card.locator(".thresholds form")
    form.get_by_label("Metric").select_option("temperature")
    return card, form


def save(form, **values):
    form.locator(".message").evaluate("node => { node.textContent = ''; }")
    for name, value in values.items():
        form.get_by_label(name).fill(value)
    form.get_by_role("button", name="Save").click()
    expect(form.locator(".message")).to_have_text("Saved.")


def stored_threshold(server, metric="temperature"):
    return requests.get(server.url + "/api/devices/kitchen/thresholds", timeout=5).json()["thresholds"][metric]


def test_editing_one_limit_in_fahrenheit_keeps_the_others_as_stored(live_server, token_for, browser_page):
    live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 20})
    page = browser_page
    card, form = open_thresholds(page, live_server)
    save(form, Low="18", High="25", Hysteresis="0.5")

    page.get_by_role("button", name="Temperature unit").click()

    expect(form.get_by_label("Low")).to_have_accessible_name(re.compile(r"^Low \(°F\)"))
    expect(form.get_by_label("Hysteresis")).to_have_accessible_name(re.compile(r"^Hysteresis \(°F\)"))
    expect(form.get_by_label("Low")).to_have_value("64.4")
    expect(form.get_by_label("High")).to_have_value("77")
    expect(form.get_by_label("Hysteresis")).to_have_value("0.9")
    save(form, High="80")

    limit = stored_threshold(live_server)
    assert limit["low"] == 18 and limit["hysteresis"] == 0.5
    assert limit["high"] == 26.667  # (80 - 32) * 5 / 9, to 3 decimals
    expect(form.get_by_label("High")).to_have_value("80")
    expect(form.get_by_label("Low")).to_have_value("64.4")
    save(form, Hysteresis="1.8")
    assert stored_threshold(live_server)["hysteresis"] == pytest.approx(1.0)
    assert page.console_errors == []


def test_clearing_a_threshold_clears_the_red_at_once(live_server, token_for, browser_page):
    token = token_for("kitchen")
    live_server.post("/api/readings", token, json={"temperature": 20})
    page = browser_page
    card, form = open_thresholds(page, live_server)
    save(form, High="25")
    live_server.post("/api/readings", token, json={"temperature": 30})
    temperature = card.locator('[data-metric="temperature"]')
    expect(temperature).to_have_class(re.compile("alerting"))

    form.get_by_role("button", name="Clear").click()

    expect(form.locator(".message")).to_have_text("Cleared.")
    expect(temperature).not_to_have_class(re.compile("alerting"))
    live_server.post("/api/readings", token, json={"temperature": 31})
    expect(temperature.locator("dd")).to_have_text("31 °C")
    expect(temperature).not_to_have_class(re.compile("alerting"))
    assert requests.get(live_server.url + "/api/alerts", timeout=5).json()["active"] == []
    assert page.console_errors == []


def test_a_low_above_the_high_is_explained_on_the_form(live_server, token_for, browser_page):
    live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 20})
    requests.put(live_server.url + "/api/devices/kitchen/thresholds/temperature", json={"high": 25}, timeout=5)
    page = browser_page
    card, form = open_thresholds(page, live_server)
    expect(form.get_by_label("High")).to_have_value("25")  # the form shows what is stored

    form.get_by_label("Low").fill("30")
    form.get_by_role("button", name="Save").click()

    expect(form.locator(".message")).to_have_text("low: must be below high")
    assert stored_threshold(live_server) == {"high": 25, "hysteresis": 0}
    assert page.console_errors == []


def test_stored_limits_that_load_late_never_overwrite_what_the_user_typed(live_server, token_for, browser_page):
    live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 20})
    requests.put(live_server.url + "/api/devices/kitchen/thresholds/temperature", json={"low": 10}, timeout=5)
    page = browser_page
    page.goto(live_server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")
    card = page.locator('[data-device="kitchen"]')
    expect(card.locator(".chart canvas")).to_be_attached()
    held = []  # the first load of the form's limits, let through once the user typed
    page.route("**/api/devices/kitchen/thresholds", lambda route: route.continue_() if held else held.append(route))

    card.get_by_text("Alert thresholds").click()
    form = card.locator(".thresholds form")
    form.get_by_label("High").fill("25")
    while not held:  # Playwright hands the route over between its calls
        page.wait_for_timeout(20)
    held[0].continue_()

    expect(form.get_by_label("Low")).to_have_value("10")
    expect(form.get_by_label("High")).to_have_value("25")
    form.get_by_role("button", name="Save").click()
    expect(form.locator(".message")).to_have_text("Saved.")
    assert stored_threshold(live_server) == {"low": 10, "high": 25, "hysteresis": 0}
    assert page.console_errors == []


def test_a_threshold_changed_elsewhere_shows_at_once_on_the_card_and_its_form(live_server, token_for, browser_page):
    live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 20})
    page = browser_page
    card, form = open_thresholds(page, live_server)
    expect(card.locator(".chart canvas")).to_be_attached()
    url = live_server.url + "/api/devices/kitchen/thresholds/temperature"

    requests.put(url, json={"low": 10, "high": 25}, timeout=5)  # as another page or the CLI does

    expect(card.locator(".threshold")).to_have_text(["low 10 °C", "high 25 °C"])
    expect(form.get_by_label("High")).to_have_value("25")
    expect(form.get_by_label("Low")).to_have_value("10")
    form.get_by_label("Low").fill("12")
    requests.put(url, json={"high": 26}, timeout=5)
    expect(card.locator(".threshold")).to_have_text(["high 26 °C"])
    expect(form.get_by_label("High")).to_have_value("26")
    expect(form.get_by_label("Low")).to_have_value("12")  # what the user typed stays
    requests.delete(url, timeout=5)
    expect(card.locator(".threshold")).to_have_count(0)
    expect(form.get_by_label("High")).to_have_value("")
    assert page.console_errors == []


def test_a_limit_typed_in_fahrenheit_is_stored_to_3_decimals_and_reads_back_as_typed(
        live_server, token_for, browser_page):
    live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 20})
    page = browser_page
    card, form = open_thresholds(page, live_server)
    page.get_by_role("button", name="Temperature unit").click()
    expect(form.get_by_label("Hysteresis")).to_have_accessible_name(re.compile(r"^Hysteresis \(°F\)"))
    expect(form.get_by_label("Hysteresis")).to_have_value("0.5")  # a new limit's

    save(form, High="70")

    assert stored_threshold(live_server) == {"high": 21.111, "hysteresis": 0.278}
    expect(form.get_by_label("High")).to_have_value("70")
    expect(form.get_by_label("Hysteresis")).to_have_value("0.5")
    page.reload()
    card, form = open_thresholds(page, live_server)
    expect(form.get_by_label("High")).to_have_value("70")
    page.get_by_role("button", name="Temperature unit").click()
    expect(form.get_by_label("Hysteresis")).to_have_value("0.278")  # as saved, in °C
    assert page.console_errors == []


def test_saved_goes_once_a_form_is_edited_again(live_server, token_for, browser_page):
    live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 20})
    page = browser_page
    card, form = open_thresholds(page, live_server)
    save(form, High="25")
    form.get_by_label("High").fill("26")
    expect(form.locator(".message")).to_have_text("")

    card.get_by_text("Edit device").click()
    labels = card.locator(".labels form")
    labels.get_by_label("Name").fill("Kitchen")
    labels.get_by_role("button", name="Save").click()
    expect(labels.locator(".message")).to_have_text("Saved.")
    labels.get_by_label("Name").press("s")
    expect(labels.locator(".message")).to_have_text("")
    assert page.console_errors == []


def test_a_battery_limit_reads_back_as_saved_and_its_new_hysteresis_fits_a_battery(live_server, token_for,
                                                                                   browser_page):
    live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 20, "battery": 4.1})
    page = browser_page
    card, form = open_thresholds(page, live_server)
    form.get_by_label("Metric").select_option("battery")
    expect(form.get_by_label("Hysteresis")).to_have_value("0.05")  # 0.5 V: a low alert that never ends

    save(form, Low="3.905")

    assert stored_threshold(live_server, metric="battery") == {"low": 3.905, "hysteresis": 0.05}
    expect(form.get_by_label("Low")).to_have_value("3.905")
