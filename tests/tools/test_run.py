"""make run: the whole stack in one command, which keeps its embedded Redis alive."""
import os
import signal
import subprocess
import sys
import threading

import pytest
import requests

from server import ROOT
from tests.conftest import eventually
from tools.run import free_port


class Stack:
    """``make run`` on a free port, its embedded Redis in a folder of the test's own."""

    def __init__(self, data):
        self.data = data
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {name: value for name, value in os.environ.items() if name != "REDIS_URL"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tools.run", "--host", "127.0.0.1", "--port", self.url.rsplit(":", 1)[1],
             "--workers", "1", "--data", str(data)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output = []
        threading.Thread(target=lambda: self.output.extend(self.process.stdout), daemon=True).start()
        eventually(self.answers)

    def answers(self):
        try:
            return requests.get(self.url + "/healthz", timeout=2).ok
        except (requests.ConnectionError, requests.Timeout):
            return False

    def post(self, value):
        token = (self.data / "demo-token").read_text().strip()
        return requests.post(self.url + "/therm/push", data=str(value), timeout=5,
                             headers={"Authorization": f"Bearer {token}"}).status_code

    def kill_redis(self):
        os.kill(int((self.data / "redis.pid").read_text()), signal.SIGKILL)

    def log(self):
        return "".join(self.output)


@pytest.fixture
def stack(tmp_path):
    running = Stack(tmp_path)
    yield running
    running.process.terminate()
    running.process.wait(timeout=30)


def test_make_run_prints_the_dashboard_a_working_curl_and_that_reading_is_open(stack):
    eventually(lambda: "Viewers: none" in stack.log())

    assert f"Dashboard: http://localhost:{stack.url.rsplit(':', 1)[1]}/" in stack.log()
    assert "curl -X POST" in stack.log() and stack.post(56) == 201


def test_a_killed_redis_is_started_again_and_keeps_what_was_accepted(stack):
    assert stack.post(21.5) == 201

    stack.kill_redis()

    eventually(lambda: stack.post(22.5) == 201)
    history = requests.get(stack.url + "/api/devices/demo/readings", timeout=5).json()["readings"]
    assert [reading["temperature"] for reading in history] == [21.5, 22.5]
    assert "starting it again from its append-only file" in stack.log()


def test_a_redis_that_will_not_stay_up_ends_the_run_with_a_clear_message(stack):
    (stack.data / "appendonly.aof").write_text("this is not an append-only file\n")

    stack.kill_redis()

    assert stack.process.wait(timeout=60) == 1
    eventually(lambda: "make run: embedded Redis did not start" in stack.log())
