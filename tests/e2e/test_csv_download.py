"""A user keeps the dashboard open and downloads what it shows as CSV, whenever and for
whichever card."""
import csv

from playwright.sync_api import expect


def download(page, card, path):
    with page.expect_download() as started:
        card.get_by_role("link", name="Download CSV").click()
    started.value.save_as(path)
    return list(csv.reader(path.open(encoding="utf-8")))


def test_the_live_csv_holds_every_reading_up_to_the_click(live_server, token_for, browser_page, tmp_path):
    token = token_for("kitchen")
    live_server.post("/api/readings", token, json={"temperature": 20})
    page = browser_page
    page.goto(live_server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")
    card = page.locator('[data-device="kitchen"]')

    live_server.post("/api/readings", token, json={"temperature": 21.5})  # after the page loaded
    expect(card.locator('[data-metric="temperature"] dd')).to_have_text("21.5 °C")
    rows = download(page, card, tmp_path / "kitchen.csv")

    assert [row[2] for row in rows[1:]] == ["20", "21.5"]


def test_a_device_that_appears_while_the_page_is_open_can_be_downloaded(
        live_server, token_for, browser_page, tmp_path):
    live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 20})
    page = browser_page
    page.goto(live_server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")

    live_server.post("/api/readings", token_for("garage"), json={"temperature": 5})
    garage = page.locator('[data-device="garage"]')
    expect(garage.locator('[data-metric="temperature"] dd')).to_have_text("5 °C")
    rows = download(page, garage, tmp_path / "garage.csv")

    assert rows[0][2] == "temperature (°C)" and [row[2] for row in rows[1:]] == ["5"]
