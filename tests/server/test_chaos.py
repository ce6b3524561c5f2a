"""Things break while browsers watch and a device posts: Redis restarts, the server
restarts, browsers come and go by the thousand. Every accepted reading still reaches
every browser exactly once, and nothing leaks."""
import pathlib
import select
import signal
import socket
import threading
import time

import pytest
import redis
import requests

from server.connections import STALL_SECONDS, UNREACHABLE, connect
from tests.conftest import (Device, FollowingBrowser, all_watching, assert_each_reading_stored_once_and_seen_once,
                            eventually)


@pytest.fixture
def watched(live_server, token_for, redis_client):
    """Three browsers following the server and a device posting to it; at the end, every
    browser must hold every stored reading's id, once each, in order."""
    browsers = [FollowingBrowser(live_server.url) for _ in range(3)]
    eventually(lambda: all_watching(browsers))
    device = Device(live_server.url, token_for("kitchen"))
    yield device
    device.stop()
    assert_each_reading_stored_once_and_seen_once(redis_client, "kitchen", browsers)


def test_redis_restarts_while_browsers_watch(watched, redis_server):
    eventually(lambda: watched.accepted >= 20)

    redis_server.stop()
    redis_server.start()

    accepted = watched.accepted
    eventually(lambda: watched.accepted >= accepted + 20, timeout=60)


def test_the_server_restarts_while_browsers_watch(watched, live_server, start_server):
    eventually(lambda: watched.accepted >= 20)

    live_server.stop()
    start_server(port=int(live_server.url.rsplit(":", 1)[1]))

    accepted = watched.accepted
    eventually(lambda: watched.accepted >= accepted + 20, timeout=60)


def worker_rss_kb(server):
    pid = server.process.pid
    [worker] = pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(pathlib.Path(f"/proc/{worker}/status").read_text().split("VmRSS:")[1].split()[0])


def test_browsers_coming_and_going_by_the_thousand_leak_nothing(start_server, redis_client):
    others = {client["id"] for client in redis_client.client_list()}  # this test's, and any a finished test left
    server = start_server(REDIS_CONNECTIONS=4)

    def come_and_go(times):
        for _ in range(times):
            server.stream().close()

    come_and_go(200)
    eventually(lambda: server.health()["streams"] == 0)
    rss = worker_rss_kb(server)

    come_and_go(2000)

    eventually(lambda: server.health()["streams"] == 0)
    servers = [client for client in redis_client.client_list() if client["id"] not in others]
    assert len(servers) <= 4 + 1  # its pool at most (the hub's subscription included), and the duties' one
    assert worker_rss_kb(server) - rss < 2048


def test_a_connection_put_back_with_an_answer_unread_is_never_handed_out_as_clean(redis_client):
    """A request cut off between its command and the answer (a client that hung up) must
    not leave that answer for the next request to read as its own."""
    pool = redis_client.connection_pool
    connection = pool.get_connection()
    connection.send_command("SET", "answered", "1")
    select.select([connection._sock], [], [], 10)  # the answer, "OK", is in the socket
    pool.release(connection)

    assert redis_client.get("answered") == "1"


def test_a_frozen_redis_is_a_quick_503_for_the_monitor_and_health_is_back_when_it_thaws(live_server, redis_server):
    """A monitor's probe has a timeout of a second or a few: a Redis that takes the
    connection and never answers (stopped, swapping) must not look like a hung server."""
    assert requests.get(live_server.url + "/healthz", timeout=5).status_code == 200
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        frozen = requests.get(live_server.url + "/healthz", timeout=5)
    finally:
        redis_server.process.send_signal(signal.SIGCONT)

    assert frozen.status_code == 503 and frozen.headers["Retry-After"]
    eventually(lambda: requests.get(live_server.url + "/healthz", timeout=5).status_code == 200)


def test_uploads_to_a_frozen_redis_are_told_503_at_once_after_the_first_and_stored_when_it_thaws(
        live_server, redis_server, token_for):
    """A Redis that takes the connections and never answers (stopped, or lost by a network
    that closed nothing): the first upload waits out the timeout; the next ones are told so
    at once, not each after the timeout, holding a board and a connection all that while."""
    token = token_for("greenhouse")
    post = lambda seq, **kwargs: live_server.post("/api/readings", token, json={"temperature": 20, "boot": "b1",
                                                                               "seq": seq}, **kwargs)
    assert post(0).status_code == 201
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        first = post(1, timeout=30)
        next_ones = [post(seq, timeout=5) for seq in range(2, 6)]
    finally:
        redis_server.process.send_signal(signal.SIGCONT)

    assert first.status_code == 503
    assert [answer.status_code for answer in next_ones] == [503] * 4
    assert all(answer.headers["Retry-After"] and "unreachable" in answer.json()["error"] for answer in next_ones)
    eventually(lambda: post(6).status_code == 201)
    assert [reading["seq"] for reading in live_server.history("greenhouse")][-1] == 6


def test_a_redis_held_by_another_clients_endless_script_is_a_503_until_the_script_is_killed(
        live_server, redis_server, redis_client, token_for):
    """Redis answers nothing but BUSY while a script runs past its lua-time-limit (here:
    someone's loop on a Redis the server shares): the board and the monitor are told to
    come back, as for a Redis away, not shown a server error."""
    token = token_for("greenhouse")
    assert live_server.post("/api/readings", token, json={"temperature": 20}).status_code == 201
    redis_client.config_set("lua-time-limit", 100)
    endless = threading.Thread(target=_endless_script, args=(redis_server.url,))
    endless.start()
    try:
        eventually(lambda: live_server.post("/api/readings", token, json={"temperature": 21}).status_code == 503)
        busy = [live_server.post("/api/readings", token, json={"temperature": 22}),
                requests.get(live_server.url + "/healthz", timeout=10)]
    finally:
        eventually(lambda: _kill_script(redis_client))
        endless.join()
        redis_client.config_set("lua-time-limit", 5000)

    assert [(answer.status_code, "unreachable" in answer.text, bool(answer.headers.get("Retry-After")))
            for answer in busy] == [(503, True, True)] * 2
    assert live_server.post("/api/readings", token, json={"temperature": 23}).status_code == 201
    stored = [reading["temperature"] for reading in live_server.history("greenhouse")]
    assert 22 not in stored and stored[-1] == 23  # 21s went in until the script began


def _endless_script(url):
    try:
        redis.Redis.from_url(url).eval("while true do end", 0)
    except redis.exceptions.ResponseError:  # killed
        pass


def _kill_script(client):
    try:
        return client.script_kill()
    except redis.exceptions.ResponseError:  # not running yet
        return False


def test_a_redis_frozen_past_the_connections_health_checks_is_used_again_once_it_thaws(redis_server):
    """Each command to a frozen Redis fails as Redis away (a ConnectionError, never an
    AttributeError of redis-py's about a Unix socket's port), and once it thaws the next
    command after the pause works, though every connection is then due a health check."""
    frozen_client = connect(redis_server.url, timeout=1)
    frozen_client.connection_pool.connection_kwargs["health_check_interval"] = 1
    frozen_client.ping()
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        failures = []
        for _ in range(8):
            with pytest.raises(UNREACHABLE) as failure:
                frozen_client.set("frozen", 1)
            failures.append(failure.value)
            time.sleep(0.5)
    finally:
        redis_server.process.send_signal(signal.SIGCONT)

    assert any("unanswered" in str(failure) for failure in failures)  # told at once, not after the timeout
    eventually(lambda: _answers(frozen_client), timeout=STALL_SECONDS + 5)


def _answers(client):
    try:
        return client.set("frozen", 1)
    except UNREACHABLE:
        return False


def test_a_subscription_that_read_two_messages_at_once_still_has_the_second_to_give(redis_client):
    """The hub asks its subscription whether a message waits before it reads one: the
    answer counts what was read from the socket but not yet handed out, as well as the socket."""
    pubsub = redis_client.pubsub()
    pubsub.subscribe("quick")
    assert pubsub.get_message(timeout=10)["type"] == "subscribe"
    with redis_client.pipeline(transaction=False) as pipe:
        pipe.publish("quick", "1")
        pipe.publish("quick", "2")
        pipe.execute()
    both = 2 * len(b"*3\r\n$7\r\nmessage\r\n$5\r\nquick\r\n$1\r\n1\r\n")
    eventually(lambda: len(pubsub.connection._sock.recv(both, socket.MSG_PEEK)) == both)

    assert pubsub.get_message(timeout=1)["data"] == "1"  # both are read from the socket here
    assert pubsub.connection.can_read(timeout=0)
    assert pubsub.get_message(timeout=0)["data"] == "2"
    pubsub.close()
