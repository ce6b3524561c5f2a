"""Browsers watch /stream: live readings, replay after a reconnect, one subscription per process."""
import json
import re
import socket

import pytest
from flask_sse import sse as stock_sse

from server.connections import connect
from tests.conftest import eventually


def test_the_tutorials_curl_reaches_a_watching_browser(live_server, token_for):
    browser = live_server.stream()
    live_server.post("/therm/push", token_for("therm"), data='{"temperature":56}',
                     headers={"Content-Type": "text/plain"})

    event = browser.next_reading()

    assert event["data"]["device"] == "therm" and event["data"]["temperature"] == 56
    assert event["id"].count("-") == 1


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
def test_a_live_event_arrives_whole_in_the_framing_of_the_browser_s_http(live_server, token_for, version):
    """Under HTTP/1.1 each write is one chunk (the stream writes them itself once live); 1.0 has no chunks."""
    host, port = live_server.url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as browser:
        browser.sendall(f"GET /stream {version}\r\nHost: 127.0.0.1\r\n\r\n".encode())
        received = browser.recv(4096)
        eventually(lambda: live_server.health()["streams"] == 1)
        live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 21.5})
        head, _, body = received.partition(b"\r\n\r\n")
        events = dechunk if version == "HTTP/1.1" else bytes
        while b'"temperature": 21.5' not in events(body):
            body += browser.recv(4096)

    assert (b"Transfer-Encoding: chunked" in head) == (version == "HTTP/1.1")
    reading = next(event for event in events(body).split(b"\n\n") if b"event:reading" in event)
    assert json.loads(reading.split(b"\ndata:")[1].split(b"\n")[0])["temperature"] == 21.5


def test_a_burst_larger_than_a_browser_s_socket_takes_arrives_whole_and_in_order(start_server, app):
    """A stream that has caught up is written to by the hub itself; what its socket does not
    take at once is finished by the stream, before anything that came after it."""
    server = start_server(CLIENT_BUFFER=16 * 1024 * 1024)  # more than a socket's buffers take at once
    host, port = server.url.rsplit("/", 1)[1].split(":")
    with socket.socket() as browser:
        browser.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        browser.connect((host, int(port)))
        browser.sendall(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = browser.recv(4096)
        eventually(lambda: server.health()["streams"] == 1)
        with app.app_context():
            for n in range(400):
                stock_sse.publish({"n": n, "padding": "x" * 10_000}, type="bulk")
        browser.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # now it reads on
        while b'"n": 399' not in dechunk(received.partition(b"\r\n\r\n")[2]):
            received += browser.recv(1 << 16)

    events = dechunk(received.partition(b"\r\n\r\n")[2]).split(b"\n\n")
    bulk = [json.loads(event.split(b"data:")[1]) for event in events if b"event:bulk" in event]
    assert [event["n"] for event in bulk] == list(range(400))


def dechunk(body):
    """What the whole chunks of a chunked body hold; an AssertionError where its framing breaks."""
    data = b""
    while b"\r\n" in body:
        size, _, rest = body.partition(b"\r\n")
        assert re.fullmatch(rb"[0-9A-F]+", size), body[:40]
        if len(rest) < int(size, 16) + 2:  # the last one is not all in yet
            break
        assert rest[int(size, 16):int(size, 16) + 2] == b"\r\n", rest[:40]
        data, body = data + rest[:int(size, 16)], rest[int(size, 16) + 2:]
    return data


def test_headers_arrive_at_once_and_heartbeats_keep_an_idle_stream_alive(live_server):
    browser = live_server.stream()

    assert browser.response.headers["Content-Type"].startswith("text/event-stream")
    assert browser.response.headers["X-Accel-Buffering"] == "no"
    browser.skip_heartbeats(3)  # the one it opens with, and two more


def test_a_closed_browser_is_forgotten_by_the_heartbeats(live_server):
    browsers = [live_server.stream() for _ in range(3)]
    assert live_server.health()["streams"] == 3

    for browser in browsers[1:]:
        browser.close()

    eventually(lambda: live_server.health()["streams"] == 1)
    browsers[0].skip_heartbeats(4)


def test_a_silent_device_is_announced_offline_then_online_again(start_server, token_for):
    server = start_server(OFFLINE_AFTER=1)
    token = token_for("attic")
    browser = server.stream()
    server.post("/api/readings", token, json={"temperature": 3})

    statuses = [browser.next_of("device")["data"]["status"] for _ in range(2)]
    server.post("/api/readings", token, json={"temperature": 4})

    assert statuses == ["new", "offline"]
    assert browser.next_of("device")["data"]["status"] == "online"


def test_a_reconnecting_browser_gets_exactly_what_it_missed_then_live(live_server, token_for):
    token = token_for("kitchen")
    browser = live_server.stream()
    live_server.post("/api/readings", token, json={"temperature": 1})
    last_seen = browser.next_reading()["id"]
    browser.close()
    for value in (2, 3, 4):
        live_server.post("/api/readings", token, json={"temperature": value})

    again = live_server.stream(**{"Last-Event-ID": last_seen})
    replayed = [again.next_reading()["data"]["temperature"] for _ in range(3)]
    live_server.post("/api/readings", token, json={"temperature": 5})

    assert replayed == [2, 3, 4]
    assert again.next_reading()["data"]["temperature"] == 5


@pytest.mark.parametrize("foreign_id", ["1764000000000-0_1764000000001-0", "abc", "0x1-0", "9" * 5000])
def test_a_browser_back_with_an_id_this_server_never_gave_is_told_to_reload_not_left_with_a_gap(
        live_server, token_for, foreign_id):
    token = token_for("kitchen")
    newest = live_server.post("/api/readings", token, json={"temperature": 1}).json()["ids"][0]

    browser = live_server.stream(**{"Last-Event-ID": foreign_id})
    reset = browser.next_event()
    live_server.post("/api/readings", token, json={"temperature": 2})

    assert reset == {"event": "reset", "data": {"oldest": newest}}  # nothing replayed: live from here
    assert browser.next_reading()["data"]["temperature"] == 2


def test_a_browser_back_from_beyond_the_newest_reading_gets_the_next_ones_live(live_server, token_for):
    token = token_for("kitchen")
    live_server.post("/api/readings", token, json={"temperature": 1})

    browser = live_server.stream(**{"Last-Event-ID": f"{2**64 - 1}-{2**64 - 1}"})  # the largest id there is
    live_server.post("/api/readings", token, json={"temperature": 2})

    assert browser.next_event()["data"]["temperature"] == 2  # nothing replayed, no reset, not closed


def test_a_first_seen_device_is_announced(live_server, token_for):
    browser = live_server.stream()
    live_server.post("/api/readings", token_for("garage"), json={"temperature": 3})

    event = browser.next_event()

    assert event["event"] == "device"
    assert event["data"]["device"] == "garage" and event["data"]["status"] == "new"


def test_a_reading_posted_to_one_process_reaches_a_browser_of_another(start_server, token_for):
    first, second = start_server(), start_server()
    browser = second.stream()

    first.post("/api/readings", token_for("kitchen"), json={"temperature": 19.5})

    assert browser.next_reading()["data"]["temperature"] == 19.5


def test_many_browsers_on_one_worker_share_one_redis_subscription(live_server, redis_client, token_for):
    browsers = [live_server.stream() for _ in range(5)]
    live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 7})

    assert all(b.next_reading()["data"]["temperature"] == 7 for b in browsers)
    subscribers = [c for c in redis_client.client_list() if int(c["sub"]) or int(c["psub"])]
    assert len(subscribers) == 1


def test_anything_published_with_flask_sse_reaches_our_browsers(app, live_server):
    browser = live_server.stream()

    with app.app_context():
        stock_sse.publish({"note": "hello"}, type="greeting")

    assert browser.next_event() == {"event": "greeting", "data": {"note": "hello"}}


def test_redis_down_is_503_with_retry_after_and_recovers_without_restart(start_server, token_for,
                                                                         redis_server):
    token = token_for("kitchen")
    server = start_server()
    redis_server.stop()
    try:
        answer = server.post("/api/readings", token, json={"temperature": 20})
        assert answer.status_code == 503 and answer.headers["Retry-After"]
        assert "unreachable" in answer.json()["error"]
    finally:
        redis_server.start()
    assert server.post("/api/readings", token, json={"temperature": 20}).status_code == 201


def test_embedded_redis_keeps_history_across_a_restart(redis_server, client, token_for):
    client.post("/api/readings", json={"temperature": 20},
                headers={"Authorization": f"Bearer {token_for('kitchen')}"})

    redis_server.stop()
    redis_server.start()

    assert connect(redis_server.url).xlen("readings:kitchen") == 1


def test_one_ipv6_subscriber_cannot_take_every_stream_by_moving_about_its_64(app, client):
    """A home or a rented server has a /64 of IPv6 addresses: they count as one address."""
    app.config.update(MAX_STREAMS_PER_ADDRESS=2)

    def stream_from(address):
        return client.get("/stream", buffered=False, environ_base={"REMOTE_ADDR": address})

    mine = [stream_from("2001:db8:1:2::1"), stream_from("2001:db8:1:2::beef")]
    greedy = stream_from("2001:db8:1:2:ffff:ffff:ffff:fffe")
    neighbour = stream_from("2001:db8:1:3::1")

    assert [answer.status_code for answer in mine] == [200, 200]
    assert greedy.status_code == 429 and "2001:db8:1:2::/64 already has 2 streams open" in greedy.json["error"]
    assert neighbour.status_code == 200
    for answer in [*mine, neighbour]:
        answer.close()
