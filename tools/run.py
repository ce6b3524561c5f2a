"""``make run``: the whole stack in one command.

Starts the embedded Redis unless ``REDIS_URL`` is set, makes the demo device's token
(kept in ``var/demo-token``, never in git), prints the dashboard URL and a curl that
works, then runs the server under gunicorn's gevent workers until Ctrl-C.
"""
import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import requests

from server import DATA_DIR, ROOT, create_app
from server.auth import issue_token, token_device
from server.embedded_redis import EmbeddedRedis
from server.store import connect

DEMO_DEVICE = "demo"
DEMO_TOKEN_FILE = DATA_DIR / "demo-token"


def demo_token(redis_url):
    """The demo device's token: the saved one while Redis still knows it, else a new one."""
    client = connect(redis_url)
    if DEMO_TOKEN_FILE.exists():
        token = DEMO_TOKEN_FILE.read_text().strip()
        if token_device(client, token) == DEMO_DEVICE:
            return token
    token = issue_token(client, DEMO_DEVICE)
    DEMO_TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    DEMO_TOKEN_FILE.touch(mode=0o600)
    DEMO_TOKEN_FILE.write_text(token + "\n")
    return token


def gunicorn_command(host, port, workers, app="server:create_app()"):
    return [sys.executable, "-m", "gunicorn", "--worker-class", "gevent", "--workers", str(workers),
            "--bind", f"{host}:{port}", "--graceful-timeout", "5", app]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """A gunicorn + gevent server on loopback, for the tests and the benchmark."""

    def __init__(self, redis_url, workers=1, port=None, app="server:create_app()", **settings):
        port = port or free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = dict(os.environ, REDIS_URL=redis_url)
        env.update({f"SENSORCAST_{name}": json.dumps(value) for name, value in settings.items()})
        self.process = subprocess.Popen(gunicorn_command("127.0.0.1", port, workers, app), cwd=ROOT, env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server ({app}) did not start")
            time.sleep(0.1)

    def _ready(self):
        try:
            return requests.get(self.url + "/healthz", timeout=1).ok
        except requests.ConnectionError:
            return False

    def stop(self):
        """Ctrl-C: gunicorn's quick shutdown."""
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=10)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all, so boards can reach it)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    with contextlib.ExitStack() as stack:
        if not os.environ.get("REDIS_URL"):
            os.environ["REDIS_URL"] = stack.enter_context(EmbeddedRedis(DATA_DIR)).url
            print(f"Redis: embedded, data in {DATA_DIR}")
        config = create_app().config
        base = f"http://localhost:{args.port}"
        auth = ""
        if config["AUTH"]:
            auth = f' -H "Authorization: Bearer {demo_token(config["REDIS_URL"])}"'
        print(f"\nDashboard: {base}/\nSend a reading:\n  curl -X POST -H \"Content-Type: text/plain\"{auth}"
              f" -d '{{\"temperature\":56}}' {base}/therm/push\n", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        server = subprocess.Popen(gunicorn_command(args.host, args.port, args.workers))
        try:
            return server.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    sys.exit(main())
