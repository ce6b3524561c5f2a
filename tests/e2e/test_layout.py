"""A user with a wide screen and a few rooms of one or two devices each: the rooms sit side
by side instead of each taking a row of its own; on a phone, the header's controls wrap onto
a few rows, every one in sight."""
import re

import requests
from playwright.sync_api import expect

DESK = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
PHONE_HEADER = 200  # px: the header's rows, custom range and all, leave most of a phone to the cards
CHARTS_FILL_THEIR_CARDS = """() => [...document.querySelectorAll(".card .chart")].every((box) => {
  const width = box.querySelector("canvas")?.getBoundingClientRect().width;
  return width <= box.clientWidth && width >= 0.9 * box.clientWidth;
})"""


def test_small_groups_share_a_row_on_a_wide_screen(live_server, token_for, open_page):
    rooms = {"attic": "Upstairs", "bedroom": "Upstairs", "kitchen": "Downstairs", "shed": ""}
    for device, group in rooms.items():
        live_server.post("/api/readings", token_for(device), json={"temperature": 20})
        assert requests.patch(f"{live_server.url}/api/devices/{device}", json={"group": group}, timeout=5).ok
    page = open_page(viewport=DESK)
    page.goto(live_server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")
    expect(page.locator(".group-name:not([hidden])")).to_have_text(["Downstairs", "Upstairs", "Ungrouped"])
    cards = {device: page.locator(f'[data-device="{device}"]') for device in rooms}
    expect(cards["shed"].locator("canvas")).to_be_visible()

    tops = {device: card.bounding_box()["y"] for device, card in cards.items()}
    assert tops["kitchen"] == tops["attic"] == tops["bedroom"]  # three cards, two rooms, one row
    widths = {round(card.bounding_box()["width"]) for card in cards.values()}
    assert max(widths) - min(widths) <= 2  # the cards are alike
    page.wait_for_function(CHARTS_FILL_THEIR_CARDS)
    assert page.evaluate("document.documentElement.scrollWidth") <= DESK["width"]
    assert page.console_errors == []


def test_on_a_phone_every_header_control_is_in_sight_with_no_sideways_scrolling(
        live_server, app, client, token_for, open_page, screenshot):
    for device in ("kitchen", "porch"):
        live_server.post("/api/readings", token_for(device), json={"temperature": 20})
    assert client.patch("/api/devices/porch", json={"hidden": True}).status_code == 200
    app.test_cli_runner().invoke(args=["viewers", "add", "ana"], input="correct horse\ncorrect horse\n")
    page = open_page(viewport=PHONE)
    page.goto(live_server.url + "/")
    page.get_by_label("Name").fill("ana")
    page.get_by_label("Password").fill("correct horse")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#connection")).to_have_text("live")
    expect(page.get_by_label(re.compile("show hidden"))).to_be_visible()
    page.get_by_label("Range").select_option("custom")
    expect(page.get_by_label("From", exact=True)).to_be_visible()
    screenshot(page, "phone-header")

    controls = [page.locator("#connection"), page.get_by_label("Range"), page.get_by_label("From", exact=True),
                page.get_by_label("To", exact=True), page.get_by_role("button", name="Temperature unit"),
                page.get_by_role("button", name="Compare"), page.get_by_label(re.compile("show hidden")),
                page.get_by_role("button", name="Log out ana")]
    for control in controls:  # as the page first shows it: nothing scrolled
        box = control.bounding_box()
        assert 0 <= box["x"] and box["x"] + box["width"] <= PHONE["width"], control
        assert 0 <= box["y"] and box["y"] + box["height"] <= page.locator("header").bounding_box()["height"], control
    assert page.evaluate("""[document.documentElement, ...document.querySelectorAll("header, header *")]
        .every((node) => node.scrollWidth <= node.clientWidth || getComputedStyle(node).overflowX === "visible")""")
    assert page.locator("header").bounding_box()["height"] <= PHONE_HEADER
    page.get_by_label(re.compile("show hidden")).check()
    expect(page.locator('[data-device="porch"]')).to_be_visible()
    page.get_by_role("button", name="Log out ana").click()
    expect(page.locator("form.login")).to_be_visible()
    assert page.console_errors == []
