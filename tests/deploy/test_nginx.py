"""The deployment a user copies from deploy/: Debian's nginx with TLS in front of two
server instances on one Redis, the shipped nginx.conf and site rendered only with this
test's ports and folders."""
import os
import pathlib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest
import requests

from server import ROOT
from tests.conftest import (Device, EventStream, FollowingBrowser, all_watching,
                            assert_each_reading_stored_once_and_seen_once, eventually)
from tools.run import free_port

pytestmark = pytest.mark.skipif(not shutil.which("nginx"), reason="nginx is not installed (apt-get install nginx)")
SITE = ROOT / "deploy" / "nginx" / "sensorcast.conf"
MAIN = ROOT / "deploy" / "nginx" / "nginx.conf"
TEMPORARY_FILES = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")  # nginx's, kept in the test's folder
SITE_NAMES = sorted({name for names in re.findall(r"server_name ([^;]+);", SITE.read_text()) for name in names.split()})


class Nginx:
    """deploy/'s nginx.conf and site, with test ports, folders and a self-signed
    certificate, under a real nginx once started."""

    def __init__(self, folder, upstream_ports):
        self.folder = folder
        self.http, self.https = free_port(), free_port()
        self.url = f"https://127.0.0.1:{self.https}"
        certificate, key = folder / "cert.pem", folder / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                        "-out", str(certificate)], check=True, capture_output=True)
        self.certificate = certificate
        (folder / "site.conf").write_text(render(SITE.read_text(), {
            **{f"server 127.0.0.1:500{number} ": f"server 127.0.0.1:{port} "
               for number, port in enumerate(upstream_ports, start=1)},
            "listen [::]:80;": "", "listen [::]:443 ssl;": "",
            "listen 80;": f"listen 127.0.0.1:{self.http};", "listen 443 ssl;": f"listen 127.0.0.1:{self.https} ssl;",
            "/etc/letsencrypt/live/sensorcast.example.com/fullchain.pem": str(certificate),
            "/etc/letsencrypt/live/sensorcast.example.com/privkey.pem": str(key)}))
        (folder / "nginx.conf").write_text(render(MAIN.read_text(), {
            "user www-data;": "user root;" if os.geteuid() == 0 else "",
            "pid /run/nginx.pid;": f"pid {folder}/nginx.pid;\ndaemon off;",
            "error_log /var/log/nginx/error.log;": f"error_log {folder}/error.log;",
            "include /etc/nginx/modules-enabled/*.conf;": "",
            "access_log /var/log/nginx/access.log;": "access_log off;\n" + "".join(
                f"{kind}_temp_path {folder}/{kind};\n" for kind in TEMPORARY_FILES),
            "include /etc/nginx/conf.d/*.conf;": "",
            "include /etc/nginx/sites-enabled/*;": f"include {folder}/site.conf;"}))
        self.command = ["nginx", "-c", str(folder / "nginx.conf"), "-p", str(folder)]
        self.process = None

    def start(self):
        self.process = subprocess.Popen(self.command, stderr=subprocess.PIPE, text=True)
        eventually(self.answers)
        return self

    def answers(self):
        assert self.process.poll() is None, self.process.stderr.read()
        try:
            return requests.get(self.url + "/healthz", timeout=2, verify=str(self.certificate)).ok
        except (requests.ConnectionError, requests.Timeout):
            return False

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


def render(text, replacements):
    """``text`` with each ``old: new`` of ``replacements`` made, every one of them found."""
    for old, new in replacements.items():
        assert old in text, f"the shipped file no longer says {old!r}"
        text = text.replace(old, new)
    return text


@pytest.fixture
def deployment(start_server, tmp_path, monkeypatch):
    """Two instances on one Redis behind nginx; requests trust the test's certificate."""
    instances = [start_server(port=free_port(), TRUSTED_PROXIES=1, ALLOWED_HOSTS=SITE_NAMES) for _ in range(2)]
    nginx = Nginx(tmp_path, [int(instance.url.rsplit(":", 1)[1]) for instance in instances]).start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(nginx.certificate))
    yield nginx, instances
    nginx.stop()


def test_the_shipped_nginx_conf_and_site_pass_nginx_s_own_check(tmp_path):
    check = subprocess.run(Nginx(tmp_path, [free_port(), free_port()]).command + ["-t"], capture_output=True,
                           text=True)

    assert check.returncode == 0 and "test is successful" in check.stderr, check.stderr


def serving(instances):
    return [instance.health()["streams"] for instance in instances]


def test_plain_http_is_sent_to_https_and_a_big_body_is_refused_by_nginx(deployment, token_for):
    nginx, _ = deployment

    redirect = requests.get(f"http://127.0.0.1:{nginx.http}/", allow_redirects=False, timeout=5)
    too_big = requests.post(nginx.url + "/api/readings", data=b"[" * 300_000, timeout=5,
                            headers={"Authorization": f"Bearer {token_for('kitchen')}"})

    assert redirect.status_code == 301 and redirect.headers["Location"].startswith("https://")
    assert too_big.status_code == 413


def test_a_browser_through_nginx_gets_readings_posted_to_either_instance_at_once(deployment, token_for):
    nginx, instances = deployment
    browser = EventStream(nginx.url + "/stream", {})
    token = token_for("kitchen")

    delays = []
    for instance in instances * 2:
        sent = time.monotonic()
        instance.post("/api/readings", token, json={"temperature": 20})
        browser.next_reading()
        delays.append(time.monotonic() - sent)

    # A buffering proxy would hold these small events until its buffer filled: never.
    assert max(delays) < 1.0, delays


def open_stream_from(nginx, source):
    """A browser at address ``source`` opening ``/stream`` through nginx: its status line."""
    context = ssl.create_default_context(cafile=str(nginx.certificate))
    connection = socket.create_connection(("127.0.0.1", nginx.https), source_address=(source, 0))
    browser = context.wrap_socket(connection, server_hostname="127.0.0.1")
    browser.sendall(b"GET /stream HTTP/1.1\r\nHost: sensorcast.example.com\r\n\r\n")
    return browser, browser.recv(64).split(b"\r\n")[0].decode()


def test_the_server_sees_each_browser_s_own_address_through_nginx(start_server, tmp_path, monkeypatch):
    instance = start_server(port=free_port(), TRUSTED_PROXIES=1, ALLOWED_HOSTS=SITE_NAMES,
                            MAX_STREAMS_PER_ADDRESS=1)
    nginx = Nginx(tmp_path, [int(instance.url.rsplit(":", 1)[1])] * 2).start()
    try:
        mine, first = open_stream_from(nginx, "127.0.0.1")
        neighbour, theirs = open_stream_from(nginx, "127.0.0.2")
        again, second = open_stream_from(nginx, "127.0.0.1")
    finally:
        nginx.stop()

    assert (first, theirs) == ("HTTP/1.1 200 OK", "HTTP/1.1 200 OK")
    assert second == "HTTP/1.1 429 TOO MANY REQUESTS"


def test_one_address_has_at_most_limit_conn_requests_under_way_and_the_next_is_told_to_wait(
        start_server, tmp_path):
    per_address = int(re.search(r"limit_conn per_address (\d+);", SITE.read_text())[1])
    instance = start_server(port=free_port(), TRUSTED_PROXIES=1, ALLOWED_HOSTS=SITE_NAMES,
                            MAX_STREAMS_PER_ADDRESS=2 * per_address)
    nginx = Nginx(tmp_path, [int(instance.url.rsplit(":", 1)[1])] * 2).start()
    try:
        held = [open_stream_from(nginx, "127.0.0.1") for _ in range(per_address)]
        one_more = open_stream_from(nginx, "127.0.0.1")
        neighbour = open_stream_from(nginx, "127.0.0.2")
    finally:
        nginx.stop()

    assert {status for _, status in held} == {"HTTP/1.1 200 OK"}
    assert (one_more[1], neighbour[1]) == ("HTTP/1.1 429 Too Many Requests", "HTTP/1.1 200 OK")


def test_a_reconnect_that_lands_on_the_other_instance_replays_without_gap_or_duplicate(deployment, token_for):
    nginx, instances = deployment
    token = token_for("kitchen")
    post = lambda value: requests.post(nginx.url + "/api/readings", json={"temperature": value}, timeout=5,
                                       headers={"Authorization": f"Bearer {token}"})
    browser = EventStream(nginx.url + "/stream", {})
    post(1)
    last = browser.next_reading()["id"]
    first_home = serving(instances)
    browser.close()
    eventually(lambda: sum(serving(instances)) == 0)

    for value in range(2, 12):  # round robin: some reconnect lands on the other instance
        post(value)
        browser = EventStream(nginx.url + "/stream", {"Last-Event-ID": last})
        event = browser.next_reading()
        assert event["data"]["temperature"] == value  # the one missed: no gap, no duplicate
        last = event["id"]
        moved = serving(instances) != first_home
        browser.close()
        eventually(lambda: sum(serving(instances)) == 0)
        if moved:
            return
    pytest.fail("no reconnect ever reached the other instance")


def test_killing_an_instance_loses_no_reading_and_its_browsers_move_over(deployment, token_for, redis_client):
    nginx, instances = deployment
    browsers = [FollowingBrowser(nginx.url) for _ in range(4)]
    eventually(lambda: all_watching(browsers))
    device = Device(nginx.url, token_for("kitchen"))
    eventually(lambda: device.accepted >= 20)

    victim = instances[0]
    pid = victim.process.pid
    workers = pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for process in [pid, *map(int, workers)]:
        os.kill(process, signal.SIGKILL)
    victim.process.wait()

    accepted = device.accepted
    eventually(lambda: device.accepted >= accepted + 20, timeout=60)
    eventually(lambda: instances[1].health()["streams"] == 4)
    device.stop()
    assert_each_reading_stored_once_and_seen_once(redis_client, "kitchen", browsers)
