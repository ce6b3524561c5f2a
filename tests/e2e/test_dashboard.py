"""Someone opens the dashboard on a phone and watches readings arrive, under a strict
Content-Security-Policy and with nothing wrong in the browser's console."""
from playwright.sync_api import expect


def test_the_dashboard_shows_history_then_live_readings(live_server, token_for, browser_page, tmp_path):
    token = token_for("kitchen")
    for value in (20.0, 20.5):
        live_server.post("/api/readings", token, json={"temperature": value, "humidity": 40})
    page = browser_page

    answer = page.goto(live_server.url + "/")
    card = page.locator('[data-device="kitchen"]')
    expect(page.locator("#connection")).to_have_text("live")
    expect(card.locator('[data-metric="temperature"] dd')).to_have_text("20.5 °C")
    expect(card.locator(".chart canvas")).to_be_visible()

    live_server.post("/api/readings", token, json={"temperature": 23.25, "humidity": 38})
    live_server.post("/api/readings", token_for("garage"), json={"temperature": 5})

    expect(card.locator('[data-metric="temperature"] dd')).to_have_text("23.25 °C")
    expect(card.locator('[data-metric="humidity"] dd')).to_have_text("38 %RH")
    expect(page.locator('[data-device="garage"] .status')).to_have_text("online")
    expect(card.locator(".ago")).to_contain_text("s ago")
    page.screenshot(path=tmp_path / "dashboard.png", full_page=True)
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert page.console_errors == []


def test_a_dashboard_back_after_the_replay_window_reloads_its_history(
        start_server, token_for, browser_page):
    token = token_for("porch")
    server = start_server(STREAM_MAXLEN=100)
    server.post("/api/readings", token, json={"temperature": 10})
    page = browser_page
    page.goto(server.url + "/")
    card = page.locator('[data-device="porch"]')
    expect(card.locator('[data-metric="temperature"] dd')).to_have_text("10 °C")

    port = server.url.rsplit(":", 1)[1]
    server.stop()  # the phone sleeps; meanwhile the porch sends a thousand readings
    elsewhere = start_server(STREAM_MAXLEN=100)
    for batch in range(2):
        elsewhere.post("/api/readings", token, json=[{"temperature": 20 + batch}] * 500)
    start_server(STREAM_MAXLEN=100, port=int(port))

    expect(card.locator('[data-metric="temperature"] dd')).to_have_text("21 °C", timeout=20_000)
    expect(page.locator("#connection")).to_have_text("live")
    expect(card.locator(".chart")).to_have_attribute("data-points", "500")


def test_a_viewer_logs_in_watches_and_logs_out(live_server, app, token_for, browser_page):
    app.test_cli_runner().invoke(args=["viewers", "add", "ana"], input="correct horse\ncorrect horse\n")
    live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 19})
    page = browser_page

    page.goto(live_server.url + "/")
    expect(page.locator("form.login")).to_be_visible()
    page.get_by_label("Name").fill("ana")
    page.get_by_label("Password").fill("correct horse")
    page.get_by_role("button", name="Log in").click()

    expect(page.locator("#connection")).to_have_text("live")
    expect(page.locator('[data-device="kitchen"] [data-metric="temperature"] dd')).to_have_text("19 °C")
    page.get_by_role("button", name="Log out ana").click()
    expect(page.locator("form.login")).to_be_visible()
    assert page.console_errors == []


def test_a_card_keeps_showing_new_values_once_its_device_has_more_readings_than_the_chart(
        live_server, token_for, browser_page):
    token = token_for("freezer")
    backlog = [{"temperature": -20 + n / 1000, "seq": n, "boot": "b1"} for n in range(600)]
    live_server.post("/api/readings", token, json=backlog[:500])
    live_server.post("/api/readings", token, json=backlog[500:])
    page = browser_page
    page.goto(live_server.url + "/")
    card = page.locator('[data-device="freezer"]')
    expect(card.locator(".chart")).to_have_attribute("data-points", "500")

    for value in (-18, -17.5, -17):
        live_server.post("/api/readings", token, json={"temperature": value})
        expect(card.locator('[data-metric="temperature"] dd')).to_have_text(f"{value:.3f} °C")  # as the backlog

    expect(card.locator(".chart")).to_have_attribute("data-points", "500")
    assert page.console_errors == []
