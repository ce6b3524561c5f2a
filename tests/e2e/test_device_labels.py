"""A user names the devices, sorts their cards into rooms, hides one and deletes another,
from the cards, by keyboard, on a phone; every other open page follows at once."""
import re
import time

import requests
from playwright.sync_api import expect

from server.store import mark_offline


def describe(server, device, **labels):
    """As another page, or ``flask devices name|group|hide``, would."""
    answer = requests.patch(f"{server.url}/api/devices/{device}", json=labels, timeout=5)
    assert answer.ok, answer.text


def open_dashboard(page, server):
    page.goto(server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")


def edit(page, device):
    """The card's Edit device form, opened."""
    card = page.locator(f'[data-device="{device}"]')
    card.get_by_text("Edit device").click()
    return card, card.locator(".labels form")


def labels_of(server, device):
    known = {state["device"]: state for state in requests.get(server.url + "/api/devices", timeout=5).json()["devices"]}
    return {field: known[device][field] for field in ("name", "group", "hidden")} if device in known else None


def test_a_device_is_named_and_grouped_from_its_card_by_keyboard(live_server, token_for, browser_page):
    for device in ("kitchen", "porch"):
        live_server.post("/api/readings", token_for(device), json={"temperature": 20})
    page = browser_page
    open_dashboard(page, live_server)
    card = page.locator('[data-device="kitchen"]')
    headings = page.locator(".group-name:not([hidden])")
    expect(headings).to_have_count(0)  # no groups, no headings

    card.get_by_text("Edit device").focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(card.get_by_label("Name")).to_be_focused()
    page.keyboard.type("Kitchen window")
    page.keyboard.press("Tab")
    page.keyboard.type("Downstairs")
    page.keyboard.press("Enter")

    expect(card.locator(".labels .message")).to_have_text("Saved.")
    expect(card.locator(".name")).to_have_text("Kitchen window")
    expect(card.locator(".name")).to_have_attribute("title", "Kitchen window (kitchen)")
    expect(card.locator(".id")).to_have_text("kitchen")
    expect(headings).to_have_text(["Downstairs", "Ungrouped"])
    expect(page.locator(".card .name")).to_have_text(["Kitchen window", "porch"])
    assert labels_of(live_server, "kitchen") == {"name": "Kitchen window", "group": "Downstairs", "hidden": False}
    assert page.console_errors == []


def test_cards_are_grouped_and_follow_other_pages_live(live_server, token_for, open_page):
    for device in ("attic", "kitchen", "porch", "cellar"):
        live_server.post("/api/readings", token_for(device), json={"temperature": 20})
    describe(live_server, "attic", group="Upstairs")
    describe(live_server, "kitchen", group="Downstairs", name="Kitchen")
    page, other = open_page(), open_page()
    open_dashboard(page, live_server)
    headings = page.locator(".group-name:not([hidden])")
    names = page.locator(".card .name")
    expect(headings).to_have_text(["Downstairs", "Upstairs", "Ungrouped"])
    expect(names).to_have_text(["Kitchen", "attic", "cellar", "porch"])

    open_dashboard(other, live_server)
    card, form = edit(other, "porch")
    form.get_by_label("Name").fill("Porch light")
    form.get_by_label("Group").fill("Upstairs")
    form.get_by_role("button", name="Save").click()

    expect(names).to_have_text(["Kitchen", "attic", "Porch light", "cellar"])
    describe(live_server, "cellar", group="Downstairs")
    expect(headings).to_have_text(["Downstairs", "Upstairs"])  # no ungrouped card is left
    expect(names).to_have_text(["cellar", "Kitchen", "attic", "Porch light"])
    describe(live_server, "kitchen", name="")
    expect(page.locator('[data-device="kitchen"] .name')).to_have_text("kitchen")
    expect(page.locator('[data-device="kitchen"] .id')).to_have_text("")
    assert page.console_errors == [] and other.console_errors == []


def test_a_hidden_device_shows_only_with_show_hidden(live_server, token_for, open_page):
    for device in ("kitchen", "porch"):
        live_server.post("/api/readings", token_for(device), json={"temperature": 20})
    page, other = open_page(), open_page()
    for each in (page, other):
        open_dashboard(each, live_server)
    cards = [each.locator('[data-device="kitchen"]') for each in (page, other)]
    expect(page.get_by_label(re.compile("show hidden"))).to_be_hidden()

    card, form = edit(page, "kitchen")
    form.get_by_role("button", name="Hide").click()

    for each, kitchen in zip((page, other), cards):
        expect(kitchen).to_be_hidden()
        expect(each.get_by_label("show hidden (1)")).to_be_visible()
        expect(each.locator('[data-device="porch"]')).to_be_visible()
    expect(page.get_by_label("show hidden (1)")).to_be_focused()  # the card left; the way back has the focus
    assert labels_of(live_server, "kitchen")["hidden"] is True

    page.keyboard.press("Space")
    expect(cards[0]).to_be_visible()
    expect(cards[0].locator(".id")).to_have_text("kitchen · hidden")
    expect(cards[1]).to_be_hidden()  # each page chooses for itself
    form.get_by_role("button", name="Show").click()

    for each, kitchen in zip((page, other), cards):
        expect(kitchen).to_be_visible()
        expect(each.get_by_label(re.compile("show hidden"))).to_be_hidden()
    assert labels_of(live_server, "kitchen")["hidden"] is False
    assert page.console_errors == [] and other.console_errors == []


def test_a_hidden_device_is_out_of_compare_and_the_alert_list_until_show_hidden(
        live_server, token_for, open_page, redis_client):
    live_server.post("/api/readings", token_for("demo"), json={"temperature": 90})
    live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 20})
    redis_client.zadd("devices", {"demo": time.time() - 300})
    mark_offline(redis_client, time.time() - 200)  # the demo only
    page = open_page(viewport={"width": 1280, "height": 900})
    open_dashboard(page, live_server)
    alerts, summary = page.locator("#alerts"), page.locator("#alerts .active")
    expect(summary).to_have_text("1 active: demo offline")

    card, form = edit(page, "demo")
    form.get_by_role("button", name="Hide").click()

    expect(card).to_be_hidden()
    expect(alerts).to_be_hidden()
    page.get_by_role("button", name="Compare").click()
    dialog = page.get_by_role("dialog", name="Compare devices")
    expect(dialog.locator(".u-legend .u-label")).to_have_text(["kitchen"])
    page.keyboard.press("Escape")

    page.get_by_label("show hidden (1)").check()

    expect(summary).to_have_text("1 active: demo offline")
    expect(alerts.get_by_role("button", name="Acknowledge")).to_be_visible()
    page.get_by_role("button", name="Compare").click()
    expect(dialog.locator(".u-legend .u-label")).to_have_text(["demo", "kitchen"])
    assert page.console_errors == []


def test_deleting_a_device_asks_first_then_removes_its_card_everywhere(live_server, token_for, open_page):
    for device in ("kitchen", "porch"):
        live_server.post("/api/readings", token_for(device), json={"temperature": 20})
    requests.put(live_server.url + "/api/devices/kitchen/thresholds/temperature", json={"high": 25}, timeout=5)
    live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 30})
    page, other = open_page(), open_page()
    for each in (page, other):
        open_dashboard(each, live_server)
        expect(each.locator("#alerts .active")).to_have_text("1 active: kitchen temperature high")
    card, form = edit(page, "kitchen")

    form.get_by_role("button", name="Delete…").click()
    confirm = form.locator(".confirm")
    expect(confirm).to_contain_text("Delete this device and all its history?")
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Enter")  # Cancel
    expect(confirm).to_be_hidden()
    expect(form.get_by_role("button", name="Delete…")).to_be_focused()
    assert labels_of(live_server, "kitchen") is not None

    form.get_by_role("button", name="Delete…").click()
    confirm.get_by_role("button", name="Delete for good").click()

    for each in (page, other):
        expect(each.locator('[data-device="kitchen"]')).to_have_count(0)
        expect(each.locator(".card .name")).to_have_text(["porch"])
        expect(each.locator("#alerts .active")).to_have_text("None active.")
    assert labels_of(live_server, "kitchen") is None
    assert page.console_errors == [] and other.console_errors == []


def test_a_device_deleted_with_its_token_revoked_cannot_post_again(live_server, token_for, browser_page):
    kitchen, porch = token_for("kitchen"), token_for("porch")
    for token in (kitchen, porch):
        live_server.post("/api/readings", token, json={"temperature": 20})
    page = browser_page
    open_dashboard(page, live_server)
    card, form = edit(page, "kitchen")

    form.get_by_role("button", name="Delete…").click()
    confirm = form.locator(".confirm")
    expect(confirm).to_contain_text("comes back as new when it posts again")
    expect(confirm.get_by_label("also revoke its token")).to_be_checked()
    confirm.get_by_role("button", name="Delete for good").click()
    expect(card).to_have_count(0)

    assert live_server.post("/api/readings", kitchen, json={"temperature": 21}).status_code == 401
    live_server.post("/api/readings", porch, json={"temperature": 22})
    expect(page.locator('[data-device="porch"] [data-metric="temperature"] dd')).to_have_text("22 °C")
    expect(page.locator(".card .name")).to_have_text(["porch"])
    assert labels_of(live_server, "kitchen") is None
    assert page.console_errors == []


def test_labels_and_alerts_fit_a_phone(live_server, token_for, browser_page, screenshot):
    device = "a-device-with-a-name-32-chars-xx"
    token = token_for(device)
    live_server.post("/api/readings", token, json={"temperature": 20})
    describe(live_server, device, name="W" * 64, group="G" * 32)
    requests.put(f"{live_server.url}/api/devices/{device}/thresholds/temperature", json={"high": 25}, timeout=5)
    live_server.post("/api/readings", token, json=[{"temperature": t} for _ in range(5) for t in (30, 20)])
    live_server.post("/api/readings", token, json={"temperature": 30})
    page = browser_page
    open_dashboard(page, live_server)
    expect(page.locator("#alerts li .repeats").first).to_be_visible()
    edit(page, device)
    expect(page.get_by_role("textbox", name="Name")).to_have_value("W" * 64)

    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "phone")
