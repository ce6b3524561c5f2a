"""``make run``: the whole stack in one command.

Starts the embedded Redis unless ``REDIS_URL`` is set, makes the demo device's token
(kept in ``var/demo-token``, never in git), prints the dashboard URL and a curl that
works, then runs the server under gunicorn's gevent workers until Ctrl-C.
"""
import argparse
import contextlib
import os
import signal
import subprocess
import sys

from server import DATA_DIR, create_app
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


def gunicorn_command(host, port, workers):
    return [sys.executable, "-m", "gunicorn", "--worker-class", "gevent", "--workers", str(workers),
            "--bind", f"{host}:{port}", "--graceful-timeout", "5", "server:create_app()"]


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
