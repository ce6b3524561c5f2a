"""Someone watches the dashboard of a fleet kept on a Redis Cluster: a card for each device,
whichever shard it is in, each live; the server goes away while readings go on arriving
through another instance, and once it is back the page has what it missed, shard by shard."""
from playwright.sync_api import expect

from server.auth import issue_token


def test_a_dashboard_on_a_cluster_follows_every_shard_and_catches_up_after_a_restart(cluster, browser_page):
    client = cluster.sharded_client()
    tokens = {f"room-{n}": issue_token(client, f"room-{n}") for n in range(6)}
    server = cluster.server()
    for name, token in tokens.items():
        server.post("/api/readings", token, json={"temperature": 20})
    page = browser_page
    page.goto(server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")
    cards = {name: page.locator(f'[data-device="{name}"]') for name in tokens}
    for card in cards.values():
        expect(card.locator('[data-metric="temperature"] dd')).to_have_text("20 °C")
    for name, token in tokens.items():
        server.post("/api/readings", token, json={"temperature": 21})
    for card in cards.values():
        expect(card.locator('[data-metric="temperature"] dd')).to_have_text("21 °C")

    port = int(server.url.rsplit(":", 1)[1])
    server.stop()  # the page's stream ends; the fleet goes on posting to another instance
    elsewhere = cluster.server()
    for name, token in tokens.items():
        elsewhere.post("/api/readings", token, json={"temperature": 22})
    server = cluster.server(port=port)
    try:
        for card in cards.values():
            expect(card.locator('[data-metric="temperature"] dd')).to_have_text("22 °C", timeout=20_000)
            expect(card.locator(".chart")).to_have_attribute("data-points", "3")
        expect(page.locator("#connection")).to_have_text("live")
    finally:
        server.stop()
        elsewhere.stop()
