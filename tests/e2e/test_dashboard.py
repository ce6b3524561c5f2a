"""Someone opens the dashboard on a phone and watches readings arrive."""
from playwright.sync_api import expect


def test_the_dashboard_shows_history_then_live_readings(live_server, token_for, browser_page, tmp_path):
    token = token_for("kitchen")
    for value in (20.0, 20.5):
        live_server.post("/api/readings", token, json={"temperature": value, "humidity": 40})
    page = browser_page

    page.goto(live_server.url + "/")
    card = page.locator('[data-device="kitchen"]')
    expect(page.locator("#connection")).to_have_text("live")
    expect(card.locator('[data-metric="temperature"] dd')).to_have_text("20.5 °C")
    expect(card.locator(".chart canvas")).to_be_visible()

    live_server.post("/api/readings", token, json={"temperature": 23.25, "humidity": 38})
    live_server.post("/api/readings", token_for("garage"), json={"temperature": 5})

    expect(card.locator('[data-metric="temperature"] dd')).to_have_text("23.3 °C")
    expect(card.locator('[data-metric="humidity"] dd')).to_have_text("38 %RH")
    expect(page.locator('[data-device="garage"] .status')).to_have_text("online")
    expect(card.locator(".ago")).to_contain_text("s ago")
    page.screenshot(path=tmp_path / "dashboard.png", full_page=True)
