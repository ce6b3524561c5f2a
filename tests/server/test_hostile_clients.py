"""One client on the network or one hostile web page against the server: slow and
oversized bodies, answers never read, cross-site requests, DNS rebinding, forwarded
addresses. Each is refused clearly, and the server's own pages and devices go on as before."""
import contextlib
import http.client
import socket
import time

import pytest
import requests

from tests.conftest import eventually


SLOW_LOGIN = (b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
              b"Content-Length: 100000\r\n\r\nname=")


def slow_body(server, source="127.0.0.1", start=SLOW_LOGIN):
    """A connection that has sent a login's headers and the first bytes of its body."""
    host, port = server.url.rsplit("/", 1)[1].split(":")
    slow = socket.create_connection((host, int(port)), source_address=(source, 0))
    slow.sendall(start)
    return slow


def slow_upload(token):
    """The start of a device's upload, which a known token's takes the way below Flask (ingest.FastUploads)."""
    return (b"POST /api/readings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\nContent-Length: 100000\r\n\r\n[")


@pytest.mark.parametrize("sender", ["a login form", "a known device"])
def test_a_body_sent_a_byte_at_a_time_is_cut_off(start_server, token_for, sender):
    server = start_server(BODY_TIMEOUT=1)
    token = token_for("kitchen")
    assert server.post("/api/readings", token, json={"temperature": 20}).status_code == 201
    slow = slow_body(server, start=SLOW_LOGIN if sender == "a login form" else slow_upload(token))
    slow.settimeout(0.3)
    answer, deadline = b"", time.monotonic() + 60
    while not answer and time.monotonic() < deadline:  # a byte now and then, until the server answers
        try:
            answer = slow.recv(200)
        except TimeoutError:
            slow.sendall(b"a")

    assert answer.startswith(b"HTTP/1.1 408")
    assert server.health()["status"] == "ok"


def test_a_device_told_to_wait_is_refused_at_once_however_slowly_its_body_comes(start_server, token_for):
    server = start_server(RATE_LIMIT=0.1, RATE_BURST=1, BODY_TIMEOUT=60)
    token = token_for("kitchen")
    assert [server.post("/api/readings", token, json={"temperature": 20}).status_code for _ in range(2)] == [201, 429]

    slow = slow_body(server, start=slow_upload(token))
    slow.settimeout(10)  # its body would be waited for 60 s

    assert slow.recv(200).startswith(b"HTTP/1.1 429")
    slow.close()


def test_one_address_cannot_hold_more_than_a_few_slow_bodies(start_server, token_for):
    server = start_server(BODY_TIMEOUT=60, BODIES_PER_ADDRESS=3)
    held = [slow_body(server) for _ in range(3)]
    answer, deadline = b"", time.monotonic() + 30
    while not answer and time.monotonic() < deadline:  # once the first are being read, the next is refused
        held.append(slow_body(server))
        held[-1].settimeout(2)
        with contextlib.suppress(TimeoutError):
            answer = held[-1].recv(200)

    assert answer.startswith(b"HTTP/1.1 429") and b"Retry-After: 60" in answer
    host, port = server.url.rsplit("/", 1)[1].split(":")
    device = http.client.HTTPConnection(host, int(port), timeout=10, source_address=("127.0.0.2", 0))
    device.request("POST", "/api/readings", body=b'{"temperature": 21}',
                   headers={"Content-Type": "application/json", "Authorization": f"Bearer {token_for('kitchen')}"})
    assert device.getresponse().status == 201
    for connection in held:
        connection.close()


CHART_LIBRARY = b"GET /static/vendor/uPlot.iife.min.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"  # 51 KB
PIPELINED = 10


def never_reading(server):
    """A connection that asks for the chart library ``PIPELINED`` times over and reads none
    of it, with a small window (receive buffer and segments), so that the server's
    writes stall with little of the answers in the kernel's buffers."""
    host, port = server.url.rsplit("/", 1)[1].split(":")
    hog = socket.socket()
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    hog.connect((host, int(port)))
    hog.sendall(CHART_LIBRARY * PIPELINED)
    return hog


def answers(url):
    try:
        return requests.get(url, timeout=5).ok
    except (requests.ConnectionError, requests.Timeout):
        return False


def test_clients_that_never_read_their_answers_are_cut_off_and_uploads_and_health_checks_go_on(
        start_server, token_for, tmp_path):
    server = start_server(CLIENT_LAG=2, MAX_STREAMS=1, CONNECTIONS_PER_ADDRESS=2000,  # 1001 connections a worker
                          log=tmp_path / "server.log")
    hogs = [never_reading(server) for _ in range(1100)]

    eventually(lambda: answers(server.url + "/healthz"), timeout=60)
    upload = server.post("/api/readings", token_for("kitchen"), json={"temperature": 21})

    assert upload.status_code == 201
    log = (tmp_path / "server.log").read_text()
    assert log.count("Cut off a client") == 1 and "Traceback" not in log  # one line a minute, however many
    for hog in hogs:
        hog.close()


def test_garbage_sent_in_a_loop_does_not_fill_the_log(start_server, tmp_path):
    server = start_server(log=tmp_path / "server.log")
    host, port = server.url.rsplit("/", 1)[1].split(":")

    for _ in range(200):
        with socket.create_connection((host, int(port))) as garbage:
            garbage.sendall(b"\x16\x03\x01 not HTTP at all\r\n\r\n")
            assert garbage.recv(100).startswith(b"HTTP/1.1 400")

    assert server.health()["status"] == "ok"
    assert (tmp_path / "server.log").read_text().count("Invalid request") == 1


def test_a_broken_chunked_body_is_a_clear_400_and_no_traceback(start_server, tmp_path):
    server = start_server(log=tmp_path / "server.log")
    host, port = server.url.rsplit("/", 1)[1].split(":")

    for _ in range(3):
        with socket.create_connection((host, int(port))) as broken:
            broken.sendall(b"POST /api/readings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
            assert broken.recv(100).startswith(b"HTTP/1.1 400")

    assert "Traceback" not in (tmp_path / "server.log").read_text()


def test_a_chunked_body_over_the_cap_is_refused_not_cut(live_server, token_for):
    readings = b"[" + b",".join([b'{"temperature":20.5}'] * 13000) + b"]"  # 260 KB, over 256 KB
    padded = b'{"temperature":20.5}' + b" " * 300_000  # valid JSON if cut at the cap

    answers = [live_server.post("/api/readings", token_for("kitchen"), data=iter([body[:100_000], body[100_000:]]),
                                headers={"Content-Type": "application/json"}) for body in (readings, padded)]

    assert [answer.status_code for answer in answers] == [413, 413]
    assert "over 262144 bytes" in answers[1].json()["error"]
    assert live_server.history("kitchen") == []


@pytest.fixture
def ana(client, app, token_for):
    """A viewer logged in on this client, and a device with a threshold to change."""
    app.test_cli_runner().invoke(args=["viewers", "add", "ana"], input="correct horse\ncorrect horse\n")
    client.post("/login", data={"name": "ana", "password": "correct horse"})
    client.post("/api/readings", json={"temperature": 20}, headers={"Authorization": f"Bearer {token_for('kitchen')}"})
    return client


@pytest.mark.parametrize("browser_says", [{"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}])
def test_a_cross_site_page_cannot_log_a_viewer_out_or_change_thresholds(ana, browser_says):
    logout = ana.post("/logout", headers=browser_says)
    change = ana.put("/api/devices/kitchen/thresholds/temperature", json={"high": 99}, headers=browser_says)
    clear = ana.delete("/api/devices/kitchen/thresholds/temperature", headers=browser_says)
    login = ana.post("/login", data={"name": "ana", "password": "correct horse"}, headers=browser_says)

    assert [answer.status_code for answer in (logout, change, clear, login)] == [403] * 4
    assert "own pages" in change.json["error"]
    assert ana.get("/api/devices/kitchen/thresholds").json["thresholds"] == {}
    assert ana.get("/api/devices").status_code == 200  # still logged in


def test_the_dashboard_s_own_requests_and_devices_go_on(ana, token_for):
    own = {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}

    change = ana.put("/api/devices/kitchen/thresholds/temperature", json={"high": 30}, headers=own)
    upload = ana.post("/api/readings", json={"temperature": 21},
                      headers={"Authorization": f"Bearer {token_for('kitchen')}", "Origin": "https://evil.example"})

    assert change.status_code == 200 and upload.status_code == 201
    assert ana.post("/logout", headers=own).status_code == 302


def test_thresholds_take_json_only(ana):
    answer = ana.put("/api/devices/kitchen/thresholds/temperature", data='{"high": 99}',
                     headers={"Content-Type": "text/plain"})

    assert answer.status_code == 415


@pytest.mark.parametrize("host, status", [("evil.example", 400), ("evil.example:5000", 400),
                                          ("192.168.1.20:5000", 200), ("[::1]:5000", 200),
                                          ("localhost:5000", 200), (socket.gethostname() + ".local", 200)])
def test_with_reading_open_a_page_must_name_this_server(client, host, status):
    answer = client.get("/api/devices", headers={"Host": host})

    assert answer.status_code == status
    if status == 400:
        assert "SENSORCAST_ALLOWED_HOSTS" in answer.json["error"]


def test_with_viewers_a_rebinding_page_reads_nothing_and_cannot_lock_the_viewer_out(app, ana):
    rebound = {"Host": "evil.example", "Sec-Fetch-Site": "same-origin"}  # to the browser, the page's own origin
    guesses = [ana.post("/login", data={"name": "ana", "password": "guess"}, headers=rebound)
               for _ in range(app.config["LOGIN_FAILURES"] + 1)]
    reading = ana.get("/api/devices", headers=rebound)

    assert {answer.status_code for answer in guesses + [reading]} == {400}
    assert ana.post("/login", data={"name": "ana", "password": "correct horse"}).status_code == 302


def test_names_the_owner_allows_are_answered(app, client):
    app.config["ALLOWED_HOSTS"] = "sensorcast.lan,other.lan"

    assert client.get("/api/devices", headers={"Host": "sensorcast.lan:5000"}).status_code == 200
    assert client.get("/healthz", headers={"Host": "anything.example"}).status_code == 200


@pytest.mark.parametrize("authorization", ["Basic Zm9vOmJhcg==", "Bearer made-up", "x"])
def test_no_authorization_header_opens_what_the_host_check_closes(client, token_for, authorization):
    client.post("/api/readings", json={"temperature": 20}, headers={"Authorization": f"Bearer {token_for('kitchen')}"})
    rebound = {"Host": "evil.example", "Authorization": authorization}

    reading = client.get("/api/devices", headers=rebound)
    changing = client.put("/api/devices/kitchen/thresholds/temperature", json={"high": -40}, headers=rebound)

    assert reading.status_code == 400 and changing.status_code == 400
    assert client.get("/api/devices/kitchen/thresholds").json["thresholds"] == {}


def test_trusting_proxies_while_listening_beyond_loopback_is_warned_of_at_start(start_server, tmp_path):
    start_server(host="0.0.0.0", TRUSTED_PROXIES=1, log=tmp_path / "exposed.log")
    start_server(TRUSTED_PROXIES=1, log=tmp_path / "behind.log")

    assert "SENSORCAST_TRUSTED_PROXIES=1 while listening on 0.0.0.0" in (tmp_path / "exposed.log").read_text()
    assert "X-Forwarded-For" not in (tmp_path / "behind.log").read_text()


def test_one_address_cannot_take_every_connection_the_worker_accepts(start_server, token_for):
    """Connections opened faster than those that stop reading are cut off would fill the
    worker's: past CONNECTIONS_PER_ADDRESS at once, an address's next is refused as it comes."""
    server = start_server(CONNECTIONS_PER_ADDRESS=5)
    host, port = server.url.rsplit("/", 1)[1].split(":")
    held = [server.stream() for _ in range(5)]

    with socket.create_connection((host, int(port)), timeout=10) as one_too_many:
        refused = one_too_many.recv(200)
    device = http.client.HTTPConnection(host, int(port), timeout=10, source_address=("127.0.0.2", 0))
    device.request("POST", "/api/readings", body=b'{"temperature": 21}',
                   headers={"Content-Type": "application/json", "Authorization": f"Bearer {token_for('kitchen')}"})

    assert all(stream.response.status_code == 200 for stream in held)
    assert refused.startswith(b"HTTP/1.1 429") and b"Retry-After: 1" in refused
    assert device.getresponse().status == 201
    for stream in held:
        stream.close()
    eventually(lambda: requests.get(server.url + "/healthz", timeout=5).ok)  # its connections are its own again
