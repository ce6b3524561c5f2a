"""deploy/'s systemd unit, started with its own command line and settings as systemd would
(paths moved from /opt/sensorcast to this checkout): two instances side by side share
no gunicorn control socket, and, with nobody watching, a silent device is still reported."""
import json
import os
import shlex
import subprocess
import sys

import pytest
import requests

from server import ROOT
from tests.conftest import eventually
from tools.run import free_port

UNIT = ROOT / "deploy" / "systemd" / "sensorcast@.service"
INSTALLED = "/opt/sensorcast"


def unit_settings(name):
    """The values of the unit's ``name=`` lines, continuation lines joined."""
    lines = UNIT.read_text().replace("\\\n", " ").splitlines()
    return [line.split("=", 1)[1] for line in lines if line.startswith(name + "=")]


class Instance:
    """``systemctl start sensorcast@PORT``, without systemd."""

    def __init__(self, home, redis_url, **settings):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = shlex.split(unit_settings("ExecStart")[0].replace("%i", str(port)))
        command = [sys.executable, "-m", "gunicorn"] + [word.replace(INSTALLED, str(ROOT)) for word in command[1:]]
        env = {name: value for name, value in os.environ.items() if name != "XDG_RUNTIME_DIR"}
        env.update(line.split("=", 1) for line in unit_settings("Environment"))
        env.update({f"SENSORCAST_{name}": json.dumps(value) for name, value in settings.items()},
                   HOME=str(home), REDIS_URL=redis_url)
        assert unit_settings("WorkingDirectory") == [INSTALLED]
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        eventually(self.answers, timeout=60)

    def answers(self):
        assert self.process.poll() is None, "the instance ended"
        try:
            return requests.get(self.url + "/healthz", timeout=2).ok
        except (requests.ConnectionError, requests.Timeout):
            return False

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture
def two_instances(tmp_path, redis_server, redis_client):
    instances = [Instance(tmp_path, redis_server.url, OFFLINE_AFTER=1) for _ in range(2)]
    yield instances
    for instance in instances:
        instance.stop()


def test_two_instances_share_no_control_socket(two_instances, tmp_path):
    assert all(instance.answers() for instance in two_instances)
    assert list(tmp_path.rglob("*.ctl")) == []


def test_with_nobody_watching_the_instances_report_a_silent_device_once(two_instances, client, token_for,
                                                                        redis_client):
    client.post("/api/readings", json={"temperature": -18},  # through neither instance
                headers={"Authorization": f"Bearer {token_for('freezer')}"})

    eventually(lambda: redis_client.xlen("alerts") == 1, timeout=30)
    assert json.loads(redis_client.xrange("alerts")[0][1]["json"])["state"] == "offline"
    assert redis_client.hget("device:freezer", "status") == "offline"
