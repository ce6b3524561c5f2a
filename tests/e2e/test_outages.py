"""A user watches the dashboard while the server, or its Redis, goes away and comes back,
and while the owner starts requiring a login: each card says it is out of touch and that its
chart is not current, not "online", until the server answers again; while Redis is away the
page says at once that it waits for the server, not "live"; a page opened while Redis is
away says so, and fills in once it is back; a page whose login is now needed goes to the
login page at once; and while the network drops a page's stream without a word, the page
notices by the missing heartbeats and opens it again."""
import re
import socket
import threading

import pytest
from playwright.sync_api import expect

from server.auth import issue_token
from server.connections import connect
from server.embedded_redis import EmbeddedRedis
from tests.conftest import LiveServer

OUT_OF_TOUCH = re.compile(r"^no connection · last seen \d+ (s|min) ago$")


def test_while_the_server_is_away_each_card_says_so_and_why_its_chart_is_old(
        start_server, token_for, browser_page):
    server = start_server()
    token = token_for("kitchen")
    server.post("/api/readings", token, json={"temperature": 20})
    page = browser_page
    page.goto(server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")
    page.get_by_label("Range").select_option("1h")  # fetched again every 12 s
    card = page.locator('[data-device="kitchen"]')
    expect(card.locator(".chart")).to_have_attribute("data-points", re.compile(r"^\d+$"))
    expect(card.locator(".status")).to_have_text("online")

    port = int(server.url.rsplit(":", 1)[1])
    server.stop()

    expect(card.locator(".status")).to_have_text(OUT_OF_TOUCH, timeout=20_000)
    expect(card.locator(".chart-error")).to_have_text("Chart not updated: no connection", timeout=30_000)
    expect(card.locator(".chart-error")).to_be_visible()

    start_server(port=port)

    expect(page.locator("#connection")).to_have_text("live", timeout=60_000)
    expect(card.locator(".status")).to_have_text("online")
    expect(card.locator(".chart-error")).to_be_hidden(timeout=30_000)
    expect(card.locator(".chart-error")).to_have_text("")


@pytest.fixture
def own_redis(tmp_path):
    """A server on a Redis of its own, which the test stops and starts, and a kitchen that posted."""
    with EmbeddedRedis(tmp_path) as redis_server:
        client = connect(redis_server.url)
        server = LiveServer(redis_server.url)
        try:
            server.post("/api/readings", issue_token(client, "kitchen"), json={"temperature": 20})
            yield redis_server, server
        finally:
            server.stop()
            client.connection_pool.disconnect()


def test_while_redis_is_away_each_card_says_so(own_redis, browser_page):
    redis_server, server = own_redis
    page = browser_page
    page.goto(server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")
    card = page.locator('[data-device="kitchen"]')
    expect(card.locator(".status")).to_have_text("online")
    server.post("/api/readings", issue_token(connect(redis_server.url), "kitchen"), json={"temperature": 23})
    expect(card.locator(".metrics")).to_contain_text("23")  # the stream's replay is over: it is live

    redis_server.stop()

    expect(page.locator("#connection")).to_have_text("waiting for the server…")  # before the stream is closed
    expect(card.locator(".status")).to_have_text(OUT_OF_TOUCH, timeout=60_000)
    redis_server.start()
    expect(page.locator("#connection")).to_have_text("live", timeout=90_000)
    expect(card.locator(".status")).to_have_text("online")


def test_a_dashboard_opened_while_redis_is_away_says_so_and_fills_in_once_it_is_back(own_redis, browser_page):
    redis_server, server = own_redis
    redis_server.stop()

    browser_page.goto(server.url + "/")

    expect(browser_page.locator("#empty")).to_contain_text(
        "Could not load the devices: the database is unreachable", timeout=30_000)
    redis_server.start()
    card = browser_page.locator('[data-device="kitchen"]')
    expect(card.locator(".status")).to_have_text("online", timeout=60_000)
    expect(browser_page.locator("#connection")).to_have_text("live")
    expect(card.locator(".metrics")).to_contain_text("20")


def test_a_page_whose_login_became_needed_goes_to_the_login_page_at_once(start_server, app, browser_page):
    server = start_server(RETRY_MS=60_000)  # the browser itself would try again only after a minute
    page = browser_page
    page.goto(server.url + "/")
    expect(page.locator("#connection")).to_have_text("live")

    app.test_cli_runner().invoke(args=["viewers", "add", "ana"], input="correct horse\ncorrect horse\n")

    expect(page.locator("form.login")).to_be_visible(timeout=20_000)
    assert page.url.startswith(server.url + "/login")


class DroppingNetwork:
    """A TCP relay between the browser and ``server_url`` that can drop every connection open
    now without a word, as a NAT or a phone's network does: each stays open, and nothing
    passes either way any more. Connections made after pass."""

    def __init__(self, server_url):
        self.server = server_url.removeprefix("http://").split(":")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = []  # [browser side, server side, dropped]
        threading.Thread(target=self._accept, daemon=True).start()

    def drop_all(self):
        for connection in self.connections:
            connection[2] = True

    def _accept(self):
        while True:
            try:
                browser, _ = self.listener.accept()
            except OSError:
                return
            connection = [browser, socket.create_connection((self.server[0], int(self.server[1]))), False]
            self.connections.append(connection)
            for source, target in ((connection[0], connection[1]), (connection[1], connection[0])):
                threading.Thread(target=self._relay, args=(connection, source, target), daemon=True).start()

    def _relay(self, connection, source, target):
        try:
            while data := source.recv(65536):
                if not connection[2]:
                    target.sendall(data)
        except OSError:
            pass
        finally:
            target.close()

    def close(self):
        self.listener.close()
        for browser, server, _ in self.connections:
            browser.close()
            server.close()


def kitchen_through(network, page):
    """The dashboard opened through ``network``, live: the kitchen's card."""
    page.goto(network.url + "/")
    expect(page.locator("#connection")).to_have_text("live")
    return page.locator('[data-device="kitchen"]')


def test_a_stream_the_network_dropped_without_a_word_is_opened_again_and_misses_nothing(
        start_server, token_for, browser_page):
    server = start_server(HEARTBEAT=1)  # the page gives a silent stream three heartbeats
    token = token_for("kitchen")
    server.post("/api/readings", token, json={"temperature": 20})
    network = DroppingNetwork(server.url)
    try:
        page = browser_page
        card = kitchen_through(network, page)
        expect(card.locator(".metrics")).to_contain_text("20")

        network.drop_all()
        server.post("/api/readings", token, json={"temperature": 23})

        expect(card.locator(".metrics")).to_contain_text("23", timeout=60_000)
        expect(page.locator("#connection")).to_have_text("live")
    finally:
        network.close()


def test_while_the_network_holds_a_stream_silent_the_page_says_so_and_blames_no_device(
        start_server, token_for, browser_page):
    server = start_server(HEARTBEAT=5)  # a heartbeat 5 s overdue: "no word", and three of them: opened again
    token = token_for("kitchen")
    network = DroppingNetwork(server.url)
    posting = threading.Event()

    def post_every_second():
        while not posting.wait(1):
            server.post("/api/readings", token, json={"temperature": 20})
    threading.Thread(target=post_every_second, daemon=True).start()
    try:
        page = browser_page
        card = kitchen_through(network, page)
        expect(card.locator(".status")).to_have_text("online")

        network.drop_all()  # the kitchen goes on posting: the page hears none of it
        expect(page.locator("#connection")).to_have_text("no word from the server…", timeout=20_000)
        expect(card.locator(".status")).to_have_text(OUT_OF_TOUCH)
        assert "stale" not in card.locator(".status").get_attribute("class")
        expect(page.locator("#connection")).to_have_text("live", timeout=30_000)  # opened again
        expect(card.locator(".status")).to_have_text("online")
    finally:
        posting.set()
        network.close()
