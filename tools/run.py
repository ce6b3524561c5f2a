"""``make run``: the whole stack in one command.

Starts the embedded Redis unless ``REDIS_URL`` is set (and starts it again should it
die), makes the demo device's token (kept in ``var/demo-token``, never in git), prints
the dashboard URL, a curl that works and whether reading needs a login (and a warning
when the server would believe any client's X-Forwarded-For), then runs the server under
gunicorn's gevent workers until Ctrl-C.
"""
import argparse
import contextlib
import json
import logging
import os
import pathlib
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import requests

from server import DATA_DIR, DEFAULTS, ROOT, SERVER_URL_FILE, create_app
from server.auth import issue_token, token_device
from server.connections import UNREACHABLE, BadSetting, client_for
from server.embedded_redis import EmbeddedRedis, RedisWontStayUp, runs_embedded
from server.guard import proxy_warning
from server.ingest import LEGACY_DEVICE
from server.mqtt import DEFAULT_PORTS, readings_topic
from server.store import VIEWERS

DEMO_DEVICE = "demo"
REQUEST_ROOM = 1000  # connections per worker beyond its streams: uploads, API, health
SPARE_FILES = 64  # log files, Redis connections, the listening socket
# gevent records where each greenlet was spawned: about 3.5 KB per open stream, read by nobody.
GEVENT_ENV = {"GEVENT_TRACK_GREENLET_TREE": "false"}
DEMO_TOKEN_FILE = "demo-token"
SUPERVISE_SECONDS = 0.5
GUNICORN_CONFIG = ROOT / "gunicorn.conf.py"


def demo_token(config, data_dir):
    """The demo device's token: the saved one while Redis still knows it, else a new one."""
    client = client_for(config)
    saved = data_dir / DEMO_TOKEN_FILE
    if saved.exists():
        token = saved.read_text().strip()
        if token_device(client, token) == DEMO_DEVICE:
            return token
    token = issue_token(client, DEMO_DEVICE)
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.touch(mode=0o600)
    saved.write_text(token + "\n")
    return token


def gunicorn_command(host, port, workers, max_streams, app="server:create_app()"):
    """gunicorn with our settings (``gunicorn.conf.py``), each worker accepting
    ``REQUEST_ROOM`` connections more than the streams it may hold, so that open
    dashboards never starve uploads or health checks."""
    return [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONFIG), "--workers", str(workers),
            "--worker-connections", str(max_streams + REQUEST_ROOM), "--bind", f"{host}:{port}", app]


def allow_open_files(max_streams):
    """Raise this process's open-file limit (which gunicorn inherits) to what ``max_streams``
    need; returns the streams that fit under the hard limit."""
    wanted = max_streams + REQUEST_ROOM + SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return min(max_streams, soft - REQUEST_ROOM - SPARE_FILES)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, what, timeout=60):
    """Wait until ``condition()`` is true; past ``timeout`` s, TimeoutError saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(0.02)


def port_free(host, port):
    """Whether the server could listen on ``host``:``port`` now."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class ServerProcess:
    """A gunicorn + gevent server, for the tests and the benchmark: on loopback unless
    ``host`` says otherwise, reached through loopback either way."""

    def __init__(self, redis_url, workers=1, port=None, app="server:create_app()", cpus=None, log=None,
                 host="127.0.0.1", **settings):
        port = port or free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = dict(os.environ, REDIS_URL=redis_url, **GEVENT_ENV)
        env.update({f"SENSORCAST_{name}": json.dumps(value) for name, value in settings.items()})
        max_streams = allow_open_files(settings.get("MAX_STREAMS", DEFAULTS["MAX_STREAMS"]))
        env["SENSORCAST_MAX_STREAMS"] = str(max_streams)
        self.process = subprocess.Popen(gunicorn_command(host, port, workers, max_streams, app),
                                        cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                        stderr=open(log, "w") if log else subprocess.DEVNULL,
                                        preexec_fn=cpus and (lambda: os.sched_setaffinity(0, cpus)))
        deadline = time.monotonic() + 60
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError(f"the server ({app}) did not start")
            time.sleep(0.1)

    def _ready(self):
        try:
            return requests.get(self.url + "/healthz", timeout=1).ok
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or busy starting
            return False

    def worker_usage(self):
        """(CPU seconds, RSS MB) summed over the server's workers: what the benchmark reports."""
        pid = self.process.pid
        cpu = rss = 0.0
        for worker in pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            fields = pathlib.Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            rss += int(re.search(r"VmRSS:\s+(\d+)", pathlib.Path(f"/proc/{worker}/status").read_text()).group(1)) / 1024
        return cpu, rss

    def stop(self):
        """Ctrl-C: gunicorn's quick shutdown."""
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=10)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all, so boards can reach it)")
    parser.add_argument("--port", type=int, default=5000, help="the port the server listens on (default 5000)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="default: one per core")
    parser.add_argument("--data", type=pathlib.Path, default=DATA_DIR, help="the embedded Redis's folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return run(args)
    except RedisWontStayUp as error:
        print(f"make run: {error}; stopping", file=sys.stderr)
        return 1
    except UNREACHABLE as error:
        print(f"make run: cannot reach Redis ({error}): is it running where the settings say?", file=sys.stderr)
        return 1
    except BadSetting as error:
        print(f"make run: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def run(args):
    """Redis, then the server, until one of them ends; returns the exit code."""
    if not port_free(args.host, args.port):
        print(f"make run: port {args.port} is taken (another make run, or another program): stop it, "
              f'or choose another with RUN_ARGS="--port {args.port + 1}"', file=sys.stderr)
        return 1
    with contextlib.ExitStack() as stack:
        redis_server = None
        config = create_app().config
        if config["REDIS_CLUSTER"]:
            print(f"Redis: the cluster at {config['REDIS_CLUSTER']}, its data in {config['REDIS_SHARDS']} shards")
        elif runs_embedded(config):
            redis_server = stack.enter_context(EmbeddedRedis(args.data, config["REDIS_MAXMEMORY"]))
            os.environ["REDIS_URL"] = redis_server.url
            print(f"Redis: embedded, data in {args.data}")
            config = create_app().config
        base = f"http://localhost:{args.port}"
        print_front_door(config, base, args.data)
        warning = proxy_warning(config["TRUSTED_PROXIES"], [args.host])
        if warning:
            print(f"WARNING: {warning}\n", file=sys.stderr, flush=True)
        max_streams = allow_open_files(config["MAX_STREAMS"])
        if max_streams < config["MAX_STREAMS"]:
            os.environ["SENSORCAST_MAX_STREAMS"] = str(max_streams)
            print(f"Streams: {max_streams} per worker, as many as the open-file limit allows (ulimit -Hn)")
        for ending in (signal.SIGTERM, signal.SIGHUP):  # a stop, or its terminal closed: end what it started
            signal.signal(ending, lambda *_: sys.exit(0))
        os.environ.update(GEVENT_ENV)
        # Its own session: a terminal's Ctrl-C reaches only this process, which stops the
        # server gracefully, then Redis, in that order.
        server = subprocess.Popen(gunicorn_command(args.host, args.port, args.workers, max_streams),
                                  start_new_session=True)
        args.data.mkdir(parents=True, exist_ok=True)
        url_file = args.data / SERVER_URL_FILE
        url_file.unlink(missing_ok=True)
        url_file.touch(mode=0o600)  # the data folder is this user's alone
        url_file.write_text(base)
        try:
            code = supervise(server, redis_server)
        finally:
            url_file.unlink(missing_ok=True)
            server.terminate()
            server.wait()
        print(f"make run: the server ended (exit code {code}); see its log above", file=sys.stderr)
        return code or 1


def flask_command():
    """The flask CLI of the environment this runs in, as typed from here (.venv/bin/flask)."""
    flask = pathlib.Path(sys.executable).with_name("flask")
    relative = os.path.relpath(flask)
    return str(flask) if relative.startswith("..") else relative


def print_front_door(config, base, data_dir):
    """The dashboard's address, a curl that works, and whether reading needs a login."""
    auth = ""
    if config["AUTH"]:
        auth = f' -H "Authorization: Bearer {demo_token(config, data_dir)}"'
    viewers = client_for(config).hlen(VIEWERS)
    where = {"REDIS_URL": config["REDIS_URL"]} if config["REDIS_URL"] != DEFAULTS["REDIS_URL"] else {}
    where |= {f"SENSORCAST_{name}": config[name] for name in ("REDIS_SENTINELS", "REDIS_CLUSTER", "REDIS_SHARDS")
              if config[name] != DEFAULTS[name]}
    flask = " ".join([*(f"{name}={value}" for name, value in where.items()), f"{flask_command()} --app server"])
    mqtt = urlsplit(config["MQTT_URL"])
    print(f"\nDashboard: {base}/\nSend a reading:\n  curl -X POST -H \"Content-Type: text/plain\"{auth}"
          f" -d '{{\"temperature\":56}}' {base}/therm/push\n"
          f"  (the original tutorial's push, as the device {DEMO_DEVICE if config['AUTH'] else LEGACY_DEVICE}; "
          "a device of your own posts to /api/readings with a token: README, Sending readings)\n"
          + (f"MQTT: readings from the broker at {mqtt.hostname}:{mqtt.port or DEFAULT_PORTS[mqtt.scheme]} "
             f"({readings_topic('<device>')}; {base}/healthz says whether it is up)\n" if mqtt.hostname else "")
          + (f"Viewers: {viewers}; reading needs a login\n" if viewers else
             "Viewers: none, so anyone who can reach this port sees the readings and can edit or\n"
             "delete devices (revoking their tokens) and their thresholds; add one with\n"
             f"  {flask} viewers add NAME\n"), flush=True)


def supervise(server, redis_server):
    """Wait for the server to end, starting the embedded Redis again whenever it dies."""
    while True:
        try:
            return server.wait(timeout=SUPERVISE_SECONDS)
        except subprocess.TimeoutExpired:
            if redis_server:
                redis_server.revive()


if __name__ == "__main__":
    sys.exit(main())
