"""Crowds, bursts and stalled browsers on real gunicorn: nobody starves the sensors, a
backfill is not slowness, a browser that stops reading is let go, a gap is announced."""
import socket

from flask_sse import sse as stock_sse

from tests.conftest import Device, FollowingBrowser, assert_every_device_seen_once_by_each, eventually


def open_raw_stream(server, source="127.0.0.1", receive_buffer=None, last_event_id=None):
    """A browser's connection to ``/stream`` from ``source``; returns it and its status line."""
    host, port = server.url.rsplit("/", 1)[1].split(":")
    connection = socket.socket()
    if receive_buffer:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    connection.bind((source, 0))
    connection.connect((host, int(port)))
    replay = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
    connection.sendall(f"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{replay}\r\n".encode())
    return connection, connection.recv(64).split(b"\r\n")[0].decode()


def test_streams_past_the_cap_are_refused_and_uploads_still_get_through(start_server, token_for):
    server = start_server(MAX_STREAMS=20, MAX_STREAMS_PER_ADDRESS=100)
    browsers = [server.stream() for _ in range(20)]

    refused = [server.stream() for _ in range(5)]
    upload = server.post("/therm/push", token_for("therm"), data="21.5")

    assert upload.status_code == 201
    assert {browser.response.status_code for browser in browsers} == {200}
    assert {browser.response.status_code for browser in refused} == {503}
    assert refused[0].response.headers["Retry-After"] == "5"
    assert "20 streams" in refused[0].response.json()["error"]
    assert server.health()["streams"] == 20


def test_one_address_cannot_take_every_stream(start_server):
    server = start_server(MAX_STREAMS_PER_ADDRESS=2)
    mine = [server.stream() for _ in range(2)]

    greedy = server.stream()
    _, neighbour = open_raw_stream(server, source="127.0.0.2")

    assert [browser.response.status_code for browser in mine] == [200, 200]
    assert greedy.response.status_code == 429 and greedy.response.headers["Retry-After"]
    assert neighbour == "HTTP/1.1 200 OK"


def test_a_full_buffer_of_readings_reaches_every_browser_without_a_reconnect(live_server, token_for):
    browsers = [live_server.stream() for _ in range(3)]
    backlog = [{"temperature": 20 + n / 100, "seq": n, "boot": "b1"} for n in range(500)]

    answer = live_server.post("/api/readings", token_for("cellar"), json=backlog)

    assert answer.json()["stored"] == 500
    for browser in browsers:
        assert [browser.next_reading()["data"]["seq"] for _ in range(500)] == list(range(500))
    assert live_server.health()["streams"] == 3


def test_a_browser_that_stops_reading_is_let_go_while_the_others_get_everything(
        start_server, app):
    server = start_server(CLIENT_BUFFER=256 * 1024, CLIENT_LAG=2)
    stalled, status = open_raw_stream(server, receive_buffer=4096)
    reader = server.stream()
    assert status == "HTTP/1.1 200 OK"
    padding = "x" * 60_000

    with app.app_context():
        for n in range(1000):
            if server.health()["streams"] == 1:
                break
            stock_sse.publish({"n": n, "padding": padding}, type="bulk")
            assert reader.next_event()["data"]["n"] == n
        stock_sse.publish({"n": "after"}, type="bulk")

    assert server.health()["streams"] == 1
    assert reader.next_event()["data"]["n"] == "after"
    stalled.settimeout(10)
    while stalled.recv(1 << 20):
        pass  # the server closed it: what was in flight drains, then the end


def test_a_browser_back_after_the_replay_window_gets_reset_then_what_is_kept(
        start_server, token_for, redis_client):
    server = start_server(STREAM_MAXLEN=100)
    token = token_for("porch")
    first = server.post("/api/readings", token, json={"temperature": 1}).json()["ids"][0]
    for _ in range(2):
        server.post("/api/readings", token, json=[{"temperature": 2}] * 500)
    oldest_kept = redis_client.xrange("readings", count=1)[0][0]

    browser = server.stream(**{"Last-Event-ID": first})
    reset = browser.next_event()
    replayed = [browser.next_reading()["id"] for _ in range(redis_client.xlen("readings"))]

    assert reset == {"event": "reset", "data": {"oldest": oldest_kept}}
    assert replayed[0] == oldest_kept and len(set(replayed)) == len(replayed)


def test_a_browser_back_from_further_than_max_replay_gets_reset_then_the_newest(start_server, token_for,
                                                                               redis_client):
    server = start_server(MAX_REPLAY=100)
    token = token_for("porch")
    first = server.post("/api/readings", token, json={"temperature": 1}).json()["ids"][0]
    ids = [entry_id for _ in range(2) for entry_id in
           server.post("/api/readings", token, json=[{"temperature": 2}] * 500).json()["ids"]]

    browser = server.stream(**{"Last-Event-ID": first})
    reset = browser.next_event()
    replayed = [browser.next_reading()["id"] for _ in range(100)]
    server.post("/api/readings", token, json={"temperature": 3})

    assert reset == {"event": "reset", "data": {"oldest": ids[-100]}}
    assert replayed == ids[-100:]
    assert browser.next_reading()["data"]["temperature"] == 3
    exactly_max_replay_behind = server.stream(**{"Last-Event-ID": ids[-100]})  # 99 + the one posted
    assert exactly_max_replay_behind.next_event()["event"] == "reading"  # all replayed: no reset


def test_a_crowd_replaying_from_far_back_and_reading_nothing_keeps_no_upload_waiting(start_server, token_for,
                                                                                    redis_client):
    server = start_server(REDIS_CONNECTIONS=2)
    token = token_for("porch")
    with redis_client.pipeline(transaction=False) as pipe:  # a busy week's firehose
        for n in range(20_000):
            pipe.xadd("readings", {"device": "porch", "temperature": "21.5", "humidity": "40", "ts": str(n)})
        pipe.execute()

    crowd = [open_raw_stream(server, last_event_id="0-1")[0] for _ in range(90)]
    uploads = [server.post("/api/readings", token, json={"temperature": n}).status_code for n in range(30)]
    health = server.health()

    assert uploads == [201] * 30 and health["status"] == "ok"
    for connection in crowd:
        connection.close()


def test_a_browser_within_the_replay_window_gets_no_reset(live_server, token_for):
    token = token_for("porch")
    first = live_server.post("/api/readings", token, json={"temperature": 1}).json()["ids"][0]
    live_server.post("/api/readings", token, json={"temperature": 2})

    browser = live_server.stream(**{"Last-Event-ID": first})

    assert browser.next_event()["event"] == "reading"
    eventually(lambda: live_server.health()["streams"] == 1)


def test_phones_on_a_flaky_network_get_every_reading_of_a_busy_fleet_once(start_server, token_for, redis_client):
    server = start_server(workers=2)  # a reconnect may reach the worker whose hub has heard less
    tokens = {f"room-{n}": token_for(f"room-{n}") for n in range(6)}
    phones = [FollowingBrowser(server.url, hang_up=0.2) for _ in range(6)]
    eventually(lambda: all(phone.watching.is_set() for phone in phones))

    devices = [Device(server.url, token, batch=5) for token in tokens.values()]
    eventually(lambda: all(device.accepted >= 1000 for device in devices), timeout=120)
    for device in devices:
        device.stop()

    assert_every_device_seen_once_by_each(redis_client, tokens, phones)
