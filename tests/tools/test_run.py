"""make run: the whole stack in one command, which keeps its embedded Redis alive; and
make provision's MQTT options."""
import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading

import pytest
import redis
import requests

import simulator.__main__ as simulator_cli
from server import ROOT
from server.embedded_redis import EmbeddedRedis
from tests.conftest import eventually
from tools import provision
from tools.run import flask_command, free_port

KILLED = "embedded Redis ended (exit code -9); starting it again from its append-only file"


def _as_from_a_shell():
    """SIGINT as a shell leaves it to a command: this test process may have blocked it
    (gevent's loop, made by a test before, does) and a child would keep it blocked."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Stack:
    """``make run`` on a free port (of loopback unless ``host`` says otherwise) with the
    ``SENSORCAST_`` settings given, its embedded Redis in a folder of the test's own, and
    a runtime folder of its own (where gunicorn would put a control socket)."""

    def __init__(self, data, runtime, host="127.0.0.1", **settings):
        self.data, self.runtime = data, runtime
        runtime.mkdir()
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {name: value for name, value in os.environ.items() if name != "REDIS_URL"}
        env.update({f"SENSORCAST_{name}": value for name, value in settings.items()})
        env["XDG_RUNTIME_DIR"] = str(self.runtime)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tools.run", "--host", host, "--port", self.url.rsplit(":", 1)[1],
             "--workers", "1", "--data", str(data)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,  # as from a terminal of its own: ``ctrl_c`` reaches its process group
            preexec_fn=_as_from_a_shell)
        self.output = []
        threading.Thread(target=lambda: self.output.extend(self.process.stdout), daemon=True).start()
        eventually(self.answers)

    def answers(self):
        try:
            return requests.get(self.url + "/healthz", timeout=2).ok
        except (requests.ConnectionError, requests.Timeout):
            return False

    def post(self, value):
        """The upload's status code, or None when nothing listens (the run ended)."""
        token = (self.data / "demo-token").read_text().strip()
        try:
            return requests.post(self.url + "/therm/push", data=str(value), timeout=5,
                                 headers={"Authorization": f"Bearer {token}"}).status_code
        except requests.ConnectionError:
            return None

    def redis_pid(self):
        """The pid the embedded Redis writes as it starts, before it loads its data (None
        while the file is being written)."""
        try:
            return int((self.data / "redis.pid").read_text())
        except ValueError:
            return None

    def kill_redis(self):
        pid = self.redis_pid()
        os.kill(pid, signal.SIGKILL)
        return pid

    def log(self):
        return "".join(self.output)

    def supervision(self):
        """What ``make run`` said about its embedded Redis, line by line."""
        return [line for line in self.log().splitlines() if line.startswith("embedded Redis")]

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)

    def ctrl_c(self):
        """What a terminal does on Ctrl-C: SIGINT to the whole foreground process group."""
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"make run did not end within 30 s of Ctrl-C:\n{self.log()}\n{self.processes()}")

    def processes(self):
        """``make run``'s process and those it started, as ``ps`` shows them."""
        table = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,stat=,args="], capture_output=True, text=True).stdout
        rows = [line.split(None, 3) for line in table.splitlines()]
        ours = {str(self.process.pid)}
        for _ in range(3):
            ours |= {pid for pid, ppid, *_ in rows if ppid in ours}
        return "\n".join(" ".join(row) for row in rows if row[0] in ours)


def fill(redis_socket, keys=1_000_000):
    """Give a Redis an append-only file that takes a second or so to load: a million keys, in
    commands of a hundred (Redis answers LOADING between every thousand commands it replays)."""
    with redis.Redis(unix_socket_path=str(redis_socket)) as client:
        pipeline = client.pipeline(transaction=False)
        for first in range(0, keys, 100):
            pipeline.mset({f"filler:{n}": "x" * 10 for n in range(first, first + 100)})
        pipeline.execute()


@pytest.fixture
def stack(tmp_path):
    running = Stack(tmp_path / "var", tmp_path / "run")
    yield running
    running.stop()


def test_make_run_prints_the_dashboard_a_working_curl_and_that_reading_is_open(stack):
    eventually(lambda: "Viewers: none" in stack.log())

    assert f"Dashboard: http://localhost:{stack.url.rsplit(':', 1)[1]}/" in stack.log()
    assert "curl -X POST" in stack.log() and stack.post(56) == 201
    assert "(the original tutorial's push, as the device demo; a device of your own posts to /api/readings" in (
        stack.log())
    assert requests.get(stack.url + "/api/devices/demo/readings", timeout=5).json()["readings"][0]["temperature"] == 56


def test_make_run_says_which_broker_it_takes_readings_from_and_no_password(tmp_path):
    stack = Stack(tmp_path / "var", tmp_path / "run", MQTT_URL="mqtt://sensorcast.server:secret@127.0.0.1:1")
    try:
        eventually(lambda: "MQTT: readings from the broker at 127.0.0.1:1 (sensorcast/<device>/readings;" in stack.log())
        assert "secret" not in stack.log()
    finally:
        stack.stop()


def test_ctrl_c_stops_make_run_quietly_and_leaves_nothing_running(stack):
    redis_pid = stack.redis_pid()

    assert stack.ctrl_c() == 0

    assert "starting it again" not in stack.log() and "Traceback" not in stack.log(), stack.log()
    assert "the server ended" not in stack.log()
    eventually(lambda: not os.path.exists(f"/proc/{redis_pid}"))
    assert not stack.answers()


@pytest.mark.parametrize("ending", [signal.SIGHUP, signal.SIGTERM], ids=["its terminal closed", "stopped"])
def test_make_run_ended_by_a_closed_terminal_or_a_stop_leaves_nothing_running(stack, ending):
    started = [line.split()[0] for line in stack.processes().splitlines()]

    stack.process.send_signal(ending)

    assert stack.process.wait(timeout=30) == 0
    eventually(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in started), timeout=30)
    assert len(started) >= 3 and not stack.answers()  # make run, gunicorn's master and worker, Redis


def test_make_simulate_posts_to_the_port_make_run_serves_until_it_ends(stack):
    assert simulator_cli.running_server(stack.data) == f"http://localhost:{stack.url.rsplit(':', 1)[1]}"

    stack.stop()
    assert simulator_cli.running_server(stack.data) == "http://localhost:5000"


def test_make_run_given_a_port_number_says_where_the_servers_port_goes():
    """PORT is the board's serial port (make flash, deploy, provision): not silently ignored."""
    answer = subprocess.run(["make", "run", "PORT=30555"], cwd=ROOT, capture_output=True, text=True, timeout=60)

    assert answer.returncode == 2 and 'RUN_ARGS="--port 30555"' in answer.stderr


@pytest.mark.parametrize("setting, value", [("SENSORCAST_RATE_LIMIT", "ten"), ("SENSORCAST_HEARTBEAT", "-1"),
                                            ("SENSORCAST_TRUSTED_PROXIES", "1.5"), ("SENSORCAST_MAX_FUTURE", "1e400"),
                                            ("SENSORCAST_RETENTION", "2000000000"), ("SENSORCAST_MAX_BATCH", "0")])
def test_make_run_refuses_a_number_setting_out_of_bounds_in_one_line(tmp_path, setting, value):
    answer = subprocess.run([sys.executable, "-m", "tools.run", "--port", str(free_port()), "--data", str(tmp_path)],
                            cwd=ROOT, env=dict(os.environ, **{setting: value}), capture_output=True, text=True,
                            timeout=60)

    assert answer.returncode == 2 and f"{setting}: must be a " in answer.stderr
    assert "Traceback" not in answer.stderr


def test_make_provision_given_make_runs_data_folder_points_a_board_at_that_server(stack, emulated_board, tmp_path):
    """``make run RUN_ARGS="--data DIR"``, whose Redis and port are not the usual ones."""
    env = {name: value for name, value in os.environ.items() if name != "REDIS_URL"}
    env.update(WIFI_SSID="lab", WIFI_PASSWORD="secret-password", RELEASE_KEY=str(tmp_path / "release-key.pem"))
    provisioned = subprocess.run(["make", "-s", "provision", f"PORT={emulated_board.port}", "DEVICE=attic",
                                  f"DATA={stack.data}"], cwd=ROOT, capture_output=True, text=True, env=env)

    assert provisioned.returncode == 0, provisioned.stdout + provisioned.stderr
    settings = json.loads((emulated_board.flash / "settings.json").read_text())
    assert settings["server"] == f"http://{provision.lan_address()}:{stack.url.rsplit(':', 1)[1]}"
    answer = requests.post(stack.url + "/api/readings", json={"temperature": 20}, timeout=5,
                           headers={"Authorization": f"Bearer {settings['token']}"})
    assert answer.status_code == 201


def test_make_simulate_with_make_runs_data_folder_feeds_that_server(stack, monkeypatch, capsys):
    """Another ``make run --data DIR`` beside the usual one: the simulator given the same
    folder posts to its server with tokens of its Redis."""
    monkeypatch.delenv("REDIS_URL", raising=False)

    assert simulator_cli.main(["--data", str(stack.data), "--prefix", "other", "--devices", "1",
                               "--interval", "0.2", "--duration", "2"]) == 0

    assert "refused" not in capsys.readouterr().err
    answer = requests.get(stack.url + "/api/devices/other-1/readings", timeout=5)
    assert answer.ok and answer.json()["readings"]


def test_make_run_warns_when_any_client_could_claim_any_address(tmp_path):
    exposed = Stack(tmp_path / "var", tmp_path / "run", host="0.0.0.0", TRUSTED_PROXIES="1")
    try:
        eventually(lambda: "WARNING: SENSORCAST_TRUSTED_PROXIES=1 while listening on 0.0.0.0" in exposed.log())
    finally:
        exposed.stop()


def test_make_run_keeps_its_data_to_itself_caps_its_memory_and_opens_no_control_socket(stack):
    assert stack.post(20) == 201

    data = [stack.data, *stack.data.iterdir()]
    assert {path.name for path in data} >= {"appendonly.aof", "redis.log", "demo-token"}
    assert [path.name for path in data if path.stat().st_mode & 0o077] == []
    maxmemory = redis.Redis(unix_socket_path=str(stack.data / "redis.sock")).config_get("maxmemory")
    assert maxmemory == {"maxmemory": str(1024**3)}
    assert list(stack.runtime.iterdir()) == []


def test_make_run_takes_a_memory_cap_given_in_bytes(tmp_path):
    """SENSORCAST_REDIS_MAXMEMORY=536870912, which the settings read as a number, not "512mb"."""
    capped = Stack(tmp_path / "var", tmp_path / "run", REDIS_MAXMEMORY="536870912")
    try:
        eventually(lambda: capped.post(20) == 201, timeout=60)
        maxmemory = redis.Redis(unix_socket_path=str(capped.data / "redis.sock")).config_get("maxmemory")
        assert maxmemory == {"maxmemory": "536870912"}
    finally:
        capped.stop()


def test_make_run_on_a_cluster_starts_no_redis_of_its_own_and_its_hints_and_simulator_reach_the_cluster(
        tmp_path, cluster, monkeypatch):
    stack = Stack(tmp_path / "var", tmp_path / "run", REDIS_CLUSTER=cluster.nodes)
    try:
        eventually(lambda: "Viewers: none" in stack.log())
        assert f"Redis: the cluster at {cluster.nodes}, its data in 6 shards" in stack.log()
        assert stack.post(56) == 201 and not (stack.data / "redis.pid").exists()
        hint = f"SENSORCAST_REDIS_CLUSTER={cluster.nodes} {flask_command()} --app server viewers add NAME"
        assert hint in stack.log()

        monkeypatch.setenv("SENSORCAST_REDIS_CLUSTER", cluster.nodes)  # as make simulate beside it has
        tokens = simulator_cli.local_tokens(["sim-1", "sim-2"], tmp_path)
        assert [stack_post(stack, token) for token in tokens.values()] == [201, 201]
    finally:
        stack.stop()


def stack_post(stack, token):
    return requests.post(stack.url + "/api/readings", json={"temperature": 20}, timeout=5,
                         headers={"Authorization": f"Bearer {token}"}).status_code


def test_a_killed_redis_is_started_again_and_keeps_what_was_accepted(stack):
    assert stack.post(21.5) == 201
    aof = stack.data / "appendonly.aof"
    eventually(lambda: b"21.5" in aof.read_bytes())  # written out within 2 s even on a busy disk (everysec)

    stack.kill_redis()

    eventually(lambda: stack.post(22.5) == 201)
    history = requests.get(stack.url + "/api/devices/demo/readings", timeout=5).json()["readings"]
    assert [reading["temperature"] for reading in history] == [21.5, 22.5]
    assert "starting it again from its append-only file" in stack.log()


def test_a_redis_killed_again_while_it_loads_its_data_is_started_again(stack):
    assert stack.post(21.5) == 201
    fill(stack.data / "redis.sock")

    killed = stack.kill_redis()
    eventually(lambda: stack.redis_pid() not in (killed, None))
    stack.kill_redis()  # the replacement, still loading the append-only file

    eventually(lambda: stack.post(22.5) == 201 or stack.process.poll() is not None, timeout=60)
    assert stack.process.poll() is None, stack.log()  # make run kept going
    history = requests.get(stack.url + "/api/devices/demo/readings", timeout=5).json()["readings"]
    assert [reading["temperature"] for reading in history] == [21.5, 22.5]
    eventually(lambda: "embedded Redis is back" in stack.supervision())
    assert stack.supervision() == [KILLED, KILLED, "embedded Redis is back"]  # the replacement died loading


def test_a_redis_that_will_not_stay_up_ends_the_run_with_a_clear_message(stack):
    (stack.data / "appendonly.aof").write_text("this is not an append-only file\n")

    stack.kill_redis()

    assert stack.process.wait(timeout=60) == 1
    eventually(lambda: f"make run: embedded Redis died 4 times in 60 s; see {stack.data / 'redis.log'}"
               in stack.log())


def test_an_append_only_file_slower_to_load_than_the_start_timeout_is_waited_for(tmp_path):
    with EmbeddedRedis(tmp_path) as redis_server:
        fill(redis_server.socket)
    redis_server.start_timeout = 0.3  # loading a million keys takes longer

    with redis_server, redis.Redis(unix_socket_path=str(redis_server.socket)) as client:
        assert client.exists("filler:999999")


def test_a_second_make_run_on_the_same_data_is_refused_and_harms_nothing(stack):
    assert stack.post(20) == 201
    second = subprocess.run([sys.executable, "-m", "tools.run", "--host", "127.0.0.1", "--port", str(free_port()),
                             "--workers", "1", "--data", str(stack.data)], cwd=ROOT, capture_output=True, text=True,
                            env={name: value for name, value in os.environ.items() if name != "REDIS_URL"},
                            timeout=120)

    assert second.returncode == 1 and "another Redis already runs in" in second.stderr
    assert (stack.data / "redis.sock").exists() and stack.post(21) == 201


def test_make_run_on_a_port_already_taken_says_so_before_printing_an_address(stack, tmp_path):
    taken = stack.url.rsplit(":", 1)[1]
    second = subprocess.run([sys.executable, "-m", "tools.run", "--host", "127.0.0.1", "--port", taken,
                             "--workers", "1", "--data", str(tmp_path / "other")], cwd=ROOT, capture_output=True,
                            text=True, env={name: value for name, value in os.environ.items() if name != "REDIS_URL"},
                            timeout=120)

    assert second.returncode == 1 and "Dashboard:" not in second.stdout
    assert f"port {taken} is taken" in second.stderr and f'RUN_ARGS="--port {int(taken) + 1}"' in second.stderr
    assert stack.post(21) == 201


def test_make_provision_points_a_board_at_the_mqtt_broker_with_a_login_the_broker_takes(emulated_board, live_server,
                                                                                         redis_server, tmp_path):
    env = dict(os.environ, REDIS_URL=redis_server.url, WIFI_SSID="lab", WIFI_PASSWORD="secret-password",
               RELEASE_KEY=str(tmp_path / "release-key.pem"))
    provisioned = subprocess.run(["make", "-s", "provision", f"PORT={emulated_board.port}", "DEVICE=attic",
                                  f"SERVER={live_server.url}", "TRANSPORT=mqtt", "BROKER=mqtt://broker.lan:1884"],
                                 cwd=ROOT, capture_output=True, text=True, env=env)

    assert provisioned.returncode == 0, provisioned.stdout + provisioned.stderr
    settings = json.loads((emulated_board.flash / "settings.json").read_text())
    assert {name: settings[name] for name in ("transport", "mqtt_host", "mqtt_port", "mqtt_user")} == {
        "transport": "mqtt", "mqtt_host": "broker.lan", "mqtt_port": 1884, "mqtt_user": "attic"}
    user, _, stored = provisioned.stdout.splitlines()[-1].partition(":")  # the broker's password-file line
    _, scheme, iterations, salt, digest = stored.split("$")
    assert (user, scheme) == ("attic", "7")
    assert base64.b64decode(digest) == hashlib.pbkdf2_hmac("sha512", settings["mqtt_password"].encode(),
                                                           base64.b64decode(salt), int(iterations))
    assert live_server.post("/api/readings", settings["token"], json={"temperature": 20}).status_code == 201
