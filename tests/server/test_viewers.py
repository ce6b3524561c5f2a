"""The owner puts the dashboard on the internet: once a viewer exists, reading needs a
login; device tokens and viewer logins never stand in for each other."""
import threading
import time

import pytest
import requests
from werkzeug.security import check_password_hash, generate_password_hash

from server import logins
from tests.conftest import eventually


@pytest.fixture
def add_viewer(app):
    def add(name, password):
        result = app.test_cli_runner().invoke(args=["viewers", "add", name], input=f"{password}\n{password}\n")
        assert result.exit_code == 0, result.output
    return add


def log_in(client, name, password, next_page="/", address="127.0.0.1"):
    return client.post(f"/login?next={next_page}", data={"name": name, "password": password},
                       environ_base={"REMOTE_ADDR": address})


def test_the_command_line_lists_the_viewers_or_says_that_reading_is_open(app, add_viewer):
    runner = app.test_cli_runner()
    assert "reading is open to anyone" in runner.invoke(args=["viewers", "list"]).output

    add_viewer("ana", "a long enough password")

    assert runner.invoke(args=["viewers", "list"]).output == "ana\n"


def test_with_no_viewer_reading_is_open(client):
    assert client.get("/").status_code == 200
    assert client.get("/api/devices").status_code == 200


def test_once_a_viewer_exists_every_read_needs_a_login(client, add_viewer):
    add_viewer("ana", "correct horse")

    page = client.get("/")
    assert page.status_code == 302 and page.headers["Location"] == "/login?next=/"
    assert client.get("/api/devices").status_code == 401
    assert client.get("/api/devices/kitchen/readings").status_code == 401
    assert client.get("/stream").status_code == 401
    assert client.get("/healthz").status_code == 200
    assert client.get("/login").status_code == 200


def test_a_shared_link_to_a_range_opens_on_that_range_after_the_login(client, add_viewer):
    add_viewer("ana", "correct horse")
    shared = "/?from=2026-11-28T00:00:00Z&to=2026-11-28T06:00:00Z"

    to_login = client.get(shared).headers["Location"]
    logged_in = client.post(to_login, data={"name": "ana", "password": "correct horse"})

    assert logged_in.status_code == 302 and logged_in.headers["Location"] == shared


def test_a_viewer_logs_in_with_a_cookie_scripts_cannot_read(client, add_viewer, redis_client):
    add_viewer("ana", "correct horse")

    answer = log_in(client, "ana", "correct horse")

    assert answer.status_code == 302 and answer.headers["Location"] == "/"
    [cookie] = [c for c in answer.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert redis_client.hget("viewers", "ana").startswith("scrypt:")
    assert client.get("/").status_code == 200
    assert client.get("/api/devices").status_code == 200
    stream = client.get("/stream", buffered=False)
    assert stream.status_code == 200
    stream.close()


@pytest.mark.parametrize("name, password", [("ana", "wrong"), ("bob", "correct horse"), ("", "")])
def test_a_wrong_login_is_refused_without_saying_which_part(client, add_viewer, name, password):
    add_viewer("ana", "correct horse")

    answer = log_in(client, name, password)

    assert answer.status_code == 401 and "Wrong name or password" in answer.get_data(as_text=True)
    assert client.get("/api/devices").status_code == 401


def test_a_new_password_or_a_removal_ends_the_sessions_within_seconds(app, client, add_viewer):
    add_viewer("ana", "correct horse")
    log_in(client, "ana", "correct horse")
    assert client.get("/api/devices").status_code == 200

    add_viewer("ana", "battery staple")
    eventually(lambda: client.get("/api/devices").status_code == 401)

    log_in(client, "ana", "battery staple")
    assert client.get("/api/devices").status_code == 200
    app.test_cli_runner().invoke(args=["viewers", "remove", "ana"])
    typo = app.test_cli_runner().invoke(args=["viewers", "remove", "ana"])
    assert typo.exit_code == 2 and "no viewer 'ana'" in typo.output  # not "reading is open to anyone again"
    add_viewer("bob", "x")
    eventually(lambda: client.get("/api/devices").status_code == 401)


def test_device_tokens_and_viewer_logins_never_stand_in_for_each_other(client, add_viewer, token_for):
    add_viewer("ana", "correct horse")
    token = token_for("kitchen")

    assert client.get("/api/devices", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    log_in(client, "ana", "correct horse")
    assert client.post("/api/readings", json={"temperature": 20}).status_code == 401


@pytest.mark.parametrize("next_page", ["//evil.example/", "/%09/evil.example", "/%5Cevil.example",
                                       "/%0d%0aSet-Cookie:%20x=1", "https://evil.example/"])
def test_login_only_sends_you_back_to_this_server(client, add_viewer, next_page):
    add_viewer("ana", "correct horse")

    answer = log_in(client, "ana", "correct horse", next_page=next_page)

    assert answer.status_code == 302 and answer.headers["Location"] == "/"


def test_guessing_passwords_is_stopped_per_address_and_per_name(client, add_viewer):
    add_viewer("ana", "correct horse")
    add_viewer("bob", "tr0ub4dor")

    guesses = [log_in(client, "ana", f"guess {n}").status_code for n in range(10)]
    right_at_last = log_in(client, "ana", "correct horse")
    ana_from_elsewhere = log_in(client, "ana", "correct horse", address="192.0.2.7")
    bob_from_elsewhere = log_in(client, "bob", "tr0ub4dor", address="192.0.2.7")

    assert guesses == [401] * 10
    assert right_at_last.status_code == 429 and 0 < int(right_at_last.headers["Retry-After"]) <= 60
    assert "too many failed logins" in right_at_last.json["error"]
    assert ana_from_elsewhere.status_code == 429
    assert bob_from_elsewhere.status_code == 302


def test_a_viewer_is_never_locked_out_of_a_place_they_logged_in_from(app, add_viewer):
    add_viewer("ana", "correct horse")
    home, phone, attacker, borrowed = (app.test_client() for _ in range(4))
    assert log_in(home, "ana", "correct horse", address="198.51.100.5").status_code == 302
    assert log_in(phone, "ana", "correct horse", address="192.0.2.80").status_code == 302  # at a café
    phone.post("/logout")

    guesses = [log_in(attacker, "ana", f"guess {n}", address="203.0.113.9").status_code for n in range(15)]
    phone_on_the_train = log_in(phone, "ana", "correct horse", address="192.0.2.7")
    a_borrowed_laptop = log_in(borrowed, "ana", "correct horse", address="192.0.2.8")
    at_home = log_in(home, "ana", "correct horse", address="198.51.100.5")

    assert guesses == [401] * 10 + [429] * 5
    assert phone_on_the_train.status_code == 302  # her browser, on a new network
    assert a_borrowed_laptop.status_code == 429  # a new browser at a new address waits out the attack
    assert at_home.status_code == 302


def test_guesses_from_one_ipv6_subscriber_count_as_one_address(client, add_viewer):
    add_viewer("ana", "correct horse")
    guesses = [log_in(client, f"user{n}", "123456", address=f"2001:db8:1:1::{n:x}").status_code
               for n in range(1, 12)]
    neighbour = log_in(client, "ana", "correct horse", address="2001:db8:1:2::1")

    assert guesses == [401] * 10 + [429]  # eleven addresses of one /64
    assert neighbour.status_code == 302


def test_a_viewer_logging_in_from_a_known_place_goes_before_every_waiting_stranger(app, add_viewer, monkeypatch):
    add_viewer("ana", "correct horse")
    home = app.test_client()
    assert log_in(home, "ana", "correct horse", address="198.51.100.5").status_code == 302
    checked, releases = [], {}

    def held_check(password_hash, password):
        checked.append(password)
        if password in releases:
            releases[password].wait(timeout=60)
        return check_password_hash(password_hash, password)

    def log_in_later(name, password, address, client=None):
        thread = threading.Thread(target=log_in, args=(client or app.test_client(), name, password),
                                  kwargs={"address": address})
        thread.start()
        return thread

    monkeypatch.setattr(logins, "check_password_hash", held_check)
    releases.update({f"hold {n}": threading.Event() for n in range(logins.HASHING_AT_ONCE)})
    attempts = [log_in_later(f"user{n}", f"hold {n}", f"203.0.113.{n}") for n in range(logins.HASHING_AT_ONCE)]
    try:
        eventually(lambda: len(checked) == logins.HASHING_AT_ONCE)  # every slot is taken
        attempts.append(log_in_later("mallory", "a stranger's guess", "203.0.113.50"))
        eventually(lambda: len(logins._hashing.lines[1]) == 1)
        attempts.append(log_in_later("ana", "correct horse", "192.0.2.7", client=home))
        eventually(lambda: len(logins._hashing.lines[0]) == 1)
        releases["hold 0"].set()
        eventually(lambda: len(checked) == logins.HASHING_AT_ONCE + 2)
    finally:
        for release in releases.values():
            release.set()
        for thread in attempts:
            thread.join()

    assert checked[logins.HASHING_AT_ONCE:] == ["correct horse", "a stranger's guess"]


def test_logins_sent_at_once_from_one_address_are_checked_one_at_a_time_up_to_the_limit(app, add_viewer,
                                                                                        monkeypatch):
    add_viewer("ana", "correct horse")
    burst, checked, answers = 20, [], []
    all_in = threading.Event()  # each login of the burst is being checked or has its answer

    def note():
        if len(checked) + len(answers) >= burst:
            all_in.set()

    def held_check(password_hash, password):
        checked.append(password)
        note()
        all_in.wait(timeout=60)
        return check_password_hash(password_hash, password)

    def guess(n):
        answers.append(log_in(app.test_client(), "ana", f"guess {n}").status_code)
        note()

    monkeypatch.setattr(logins, "check_password_hash", held_check)
    guessers = [threading.Thread(target=guess, args=(n,)) for n in range(burst)]
    for guesser in guessers:
        guesser.start()
    for guesser in guessers:
        guesser.join()
    checked_at_once = len(checked)
    one_after_another = [log_in(app.test_client(), "ana", f"guess {n}").status_code for n in range(burst)]

    assert checked_at_once == 1 and sorted(answers) == [401] + [429] * (burst - 1)
    assert one_after_another == [401] * 9 + [429] * (burst - 9)
    assert len(checked) == app.config["LOGIN_FAILURES"]


def test_a_login_that_waits_too_long_for_its_turn_gets_503_and_still_counts(app, client, add_viewer, monkeypatch,
                                                                            redis_client):
    add_viewer("ana", "correct horse")
    app.config["LOGIN_QUEUE_SECONDS"] = 0
    checking, done = threading.Semaphore(0), threading.Event()

    def held_check(password_hash, password):
        if password == "hold":
            checking.release()
            done.wait(timeout=60)
        return check_password_hash(password_hash, password)

    monkeypatch.setattr(logins, "check_password_hash", held_check)
    holders = [threading.Thread(target=log_in, args=(app.test_client(), "ana", "hold"),
                                kwargs={"address": f"203.0.113.{n}"}) for n in range(logins.HASHING_AT_ONCE)]
    for holder in holders:
        holder.start()
    try:
        assert all(checking.acquire(timeout=60) for _ in holders)  # every slot is taken
        answer = log_in(client, "ana", "correct horse", address="198.51.100.5")
    finally:
        done.set()
        for holder in holders:
            holder.join()

    assert answer.status_code == 503 and int(answer.headers["Retry-After"]) > 0
    assert redis_client.get("login-failures:address:198.51.100.5") == "1"
    assert log_in(client, "ana", "correct horse", address="198.51.100.5").status_code == 302


class Attacker:
    """Logs in with random names from one address (``X-Forwarded-For``), one login after
    another, until the attack is over; keeps each answer's status."""

    def __init__(self, url, address, attack_over):
        self.url, self.address, self.attack_over = url, address, attack_over
        self.answers = []
        self.thread = threading.Thread(target=self._guess, daemon=True)
        self.thread.start()

    def _guess(self):
        while not self.attack_over.is_set():
            form = {"name": f"user{len(self.answers)}", "password": "123456"}
            self.answers.append(requests.post(self.url + "/login", data=form, timeout=120, allow_redirects=False,
                                              headers={"X-Forwarded-For": self.address}).status_code)


def test_a_viewer_gets_in_while_attackers_at_16_addresses_keep_every_check_busy(start_server, redis_client):
    redis_client.hset("viewers", "ana", generate_password_hash("correct horse"))
    # as many guesses as a few thousand addresses could make; and time enough for a loaded machine
    server = start_server(TRUSTED_PROXIES=1, LOGIN_FAILURES=1_000_000, LOGIN_QUEUE_SECONDS=120)
    attack_over = threading.Event()
    attackers = [Attacker(server.url, f"203.0.113.{n}", attack_over) for n in range(16)]
    try:
        eventually(lambda: all(attacker.answers for attacker in attackers), timeout=120)
        ana = requests.post(server.url + "/login", data={"name": "ana", "password": "correct horse"}, timeout=120,
                            allow_redirects=False, headers={"X-Forwarded-For": "198.51.100.5"})
    finally:
        attack_over.set()
        for attacker in attackers:
            attacker.thread.join()

    assert ana.status_code == 302
    assert {status for attacker in attackers for status in attacker.answers} == {401}  # queued, never refused


def test_a_login_being_checked_never_holds_the_servers_other_connections(live_server, redis_client):
    # scrypt's cost is kept in the hash: this one takes seconds to check, not 0.1 s
    redis_client.hset("viewers", "ana", generate_password_hash("correct horse", method="scrypt:131072:8:4"))
    checked = threading.Event()
    threading.Thread(target=lambda: (requests.post(live_server.url + "/login", timeout=120, data={
        "name": "ana", "password": "correct horse"}), checked.set()), daemon=True).start()

    answered_meanwhile = 0
    while not checked.is_set():
        requests.get(live_server.url + "/healthz", timeout=120)
        answered_meanwhile += not checked.is_set()

    assert answered_meanwhile >= 20


def test_logging_out_ends_the_session_for_good(client, add_viewer):
    add_viewer("ana", "correct horse")
    log_in(client, "ana", "correct horse")
    cookie = client.get_cookie("session").value

    client.post("/logout")
    client.set_cookie("session", cookie)  # someone replays the cookie they copied

    assert client.get("/api/devices").status_code == 401
    log_in(client, "ana", "correct horse")
    assert client.get("/api/devices").status_code == 200


def test_logging_in_and_out_in_a_loop_stops_before_it_fills_redis(client, add_viewer, redis_client, monkeypatch):
    """Each logout is kept until its cookie would have expired: whoever has a password and
    loops would grow Redis (and every process's copy of the logged-out sessions) without end."""
    monkeypatch.setattr(logins, "LOGINS_AN_HOUR", 3)
    add_viewer("ana", "correct horse")
    add_viewer("bob", "tr0ub4dor")
    for _ in range(3):
        assert log_in(client, "ana", "correct horse").status_code == 302
        client.post("/logout")

    fourth = log_in(client, "ana", "correct horse")

    assert fourth.status_code == 429 and 3500 < int(fourth.headers["Retry-After"]) <= 3600
    assert fourth.json["error"].startswith("3 logins of this name in an hour")
    assert redis_client.hlen("logged-out") == 3
    assert log_in(client, "bob", "tr0ub4dor").status_code == 302


def stream_ends(browser, within=30):
    """Whether the stream ends within ``within`` seconds; heartbeats arrive meanwhile."""
    deadline = time.monotonic() + within
    for _ in browser.lines:
        if time.monotonic() > deadline:
            return False
    return True


@pytest.mark.parametrize("change", ["a new password", "removal", "logging out"])
def test_an_open_stream_ends_with_its_viewers_access(live_server, app, add_viewer, change):
    add_viewer("ana", "correct horse")
    add_viewer("bob", "tr0ub4dor")
    ana = requests.Session()
    assert ana.post(live_server.url + "/login", data={"name": "ana", "password": "correct horse"},
                    allow_redirects=False).status_code == 302
    cookie = ana.cookies["session"]
    browser = live_server.stream(Cookie=f"session={cookie}")
    other = live_server.stream(Cookie=f"session={cookie}")
    assert browser.response.status_code == 200
    browser.skip_heartbeats(1)

    if change == "a new password":
        add_viewer("ana", "battery staple")
    elif change == "removal":
        app.test_cli_runner().invoke(args=["viewers", "remove", "ana"])
    else:
        ana.post(live_server.url + "/logout")

    assert stream_ends(browser) and stream_ends(other)


def test_a_stream_opened_while_reading_was_open_ends_once_a_viewer_is_added(live_server, add_viewer):
    browser = live_server.stream()
    browser.skip_heartbeats(1)

    add_viewer("ana", "correct horse")

    assert stream_ends(browser)
