"""``make bench``: live fan-out and ingest figures, side by side with stock flask-sse.

Each server runs under gunicorn with one gevent worker on a fresh embedded Redis. Fan-out:
N browsers (raw sockets in greenlets) watch ``/stream`` while events are published on
the ``sse`` channel; we count Redis subscriptions, worker memory and delivery latency.
Ingest: readings POSTed one per request and in batches. Publish: flask-sse's own
``publish`` (a new Redis client each call) against ours (the pooled client).
"""
from gevent import monkey

monkey.patch_all()  # the bench's browsers are greenlets: patch before anything opens sockets

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import flask_sse  # noqa: E402
import gevent  # noqa: E402
import requests  # noqa: E402
from flask import Flask  # noqa: E402

from server import create_app  # noqa: E402
from server.auth import issue_token  # noqa: E402
from server.embedded_redis import EmbeddedRedis  # noqa: E402
from server.store import connect  # noqa: E402
from server.stream import sse as our_sse  # noqa: E402
from tools.run import ServerProcess  # noqa: E402


def stock_app():
    """Stock flask-sse, as its README sets it up (gunicorn target ``tools.bench:stock_app()``)."""
    import os

    app = Flask(__name__)
    app.config["REDIS_URL"] = os.environ["REDIS_URL"]
    app.register_blueprint(flask_sse.sse, url_prefix="/stream")
    app.add_url_rule("/healthz", "healthz", lambda: "ok")
    return app


SERVERS = {"stock flask-sse": "tools.bench:stock_app()", "sensorcast": "server:create_app()"}


def watch(url, expected, received):
    """A browser: read ``expected`` events, noting when each arrived."""
    host, port = url.split("//")[1].split(":")
    with gevent.socket.create_connection((host, int(port))) as browser:
        browser.sendall(b"GET /stream HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
        buffer, seen = b"", 0
        while seen < expected:
            chunk = browser.recv(65536)
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.startswith(b"data:") and b"sent" in line:
                    received.append(time.time() - json.loads(line[5:])["sent"])
                    seen += 1


def worker_rss_mb(server):
    children = pathlib.Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
    return sum(int(line.split()[1]) for pid in children
               for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS")) / 1024


def fan_out(server, redis_client, browsers, events):
    received = []
    baseline = worker_rss_mb(server)
    watchers = [gevent.spawn(watch, server.url, events, received) for _ in range(browsers)]
    gevent.sleep(5)  # every browser connected and subscribed, by whichever design
    subscriptions = len([c for c in redis_client.client_list() if int(c["sub"])])
    rss = worker_rss_mb(server)
    for n in range(events):
        redis_client.publish("sse", json.dumps({"data": {"n": n, "sent": time.time()}, "type": "bench"}))
        gevent.sleep(0.05)
    gevent.joinall(watchers, timeout=30)
    latencies = sorted(received) or [float("nan")]
    return {"redis subscriptions": subscriptions, "worker RSS MB": round(rss, 1),
            "RSS per browser KB": round((rss - baseline) * 1024 / browsers, 1),
            "delivered": f"{len(received)}/{browsers * events}",
            "latency p50 ms": round(1000 * statistics.median(latencies), 1),
            "latency p95 ms": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 1)}


def ingest(server, token, readings, batch):
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    start = time.time()
    for offset in range(0, readings, batch):
        body = [{"temperature": 20 + (offset + i) % 10 / 10} for i in range(batch)]
        session.post(server.url + "/api/readings", json=body if batch > 1 else body[0], headers=headers)
    return round(readings / (time.time() - start))


def publish_rate(app, blueprint, count):
    with app.app_context():
        start = time.time()
        for n in range(count):
            blueprint.publish({"n": n}, type="bench")
        return round(count / (time.time() - start))


def table(title, rows):
    names = list(next(iter(rows.values())))
    print(f"\n{title}\n{'':24}" + "".join(f"{column:>18}" for column in rows))
    for name in names:
        print(f"{name:24}" + "".join(f"{str(values[name]):>18}" for values in rows.values()))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.splitlines()[0])
    parser.add_argument("--browsers", type=int, default=200)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--readings", type=int, default=2000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch, EmbeddedRedis(scratch) as redis_server:
        redis_client = connect(redis_server.url)
        results = {}
        for name, app in SERVERS.items():
            server = ServerProcess(redis_server.url, app=app)
            try:
                results[name] = fan_out(server, redis_client, args.browsers, args.events)
            finally:
                server.stop()
        table(f"Fan-out: {args.browsers} browsers, {args.events} events, one gevent worker", results)

        server = ServerProcess(redis_server.url)
        try:
            token = issue_token(redis_client, "bench")
            table(f"Ingest: {args.readings} readings, one gevent worker", {"sensorcast": {
                "readings/s, 1 per POST": ingest(server, token, args.readings, 1),
                "readings/s, 50 per POST": ingest(server, token, args.readings * 5, 50)}})
        finally:
            server.stop()

        app = create_app({"REDIS_URL": redis_server.url})
        table("Publish from Python (events/s)", {
            "stock flask-sse": {"publish": publish_rate(app, flask_sse.sse, 1000)},
            "sensorcast": {"publish": publish_rate(app, our_sse, 1000)}})
    return 0


if __name__ == "__main__":
    main()
