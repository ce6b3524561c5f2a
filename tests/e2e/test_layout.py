"""A user with a wide screen and a few rooms of one or two devices each: the rooms sit side
by side instead of each taking a row of its own."""
import requests
from playwright.sync_api import expect

DESK = {"width": 1280, "height": 900}
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
