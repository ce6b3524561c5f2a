"""``make bench``: live fan-out and ingest figures, side by side with stock flask-sse.

Fan-out: each server runs under gunicorn with one gevent worker, pinned to the first
core; this process (the browsers and the devices) and a fresh embedded Redis share the
other. Browsers are raw sockets in one epoll loop; a device POSTs readings at a steady
rate, each carrying the time it was sent as ``ts``, so every delivery is timed from the
POST until the browser's socket has it. Stock flask-sse gets the original tutorial's
route, which publishes what it is sent. Crowd: Sensorcast's largest fan-out cell that one
core should carry, 10,000 browsers at 2 events a second, run five times on a fresh server
and each run's figures printed (a p99 that holds in one run may not in the next), beside the
floor the kernel sets: a bare loop writing an event's bytes to as many loopback sockets, read
as the browsers read theirs. Over loopback, each write would also do the receiving side's
kernel work on the writer's core, which a browser's own machine does in real use: where it
may (as root), the crowd's runs have Linux steer loopback's receive work to the browsers'
core (``receiving_on``), and the table's title says which. Not the other tables: at 10
events a second the browsers' one core cannot also do 10,000 sockets' receive work. Churn:
browsers that open a stream and leave at once, by the thousand; what stays behind.
Uploads: readings POSTed one per request and in batches by 32 keep-alive connections,
beside the framework's own floor (``bench_ingest.py``); the same batches into one Redis
and into a Redis Cluster of three primaries (``cluster_table``); and over MQTT through a
real Mosquitto (``bench_mqtt.py``).
Fleet: devices posting as boards do while browsers watch, on ``make run``'s workers
(``bench_fleet.py``). Range queries: for each of 1 h, 24 h and 7 d, a device with all of its
200,000 readings in that range, asked for it as 300 buckets (what the dashboard asks).
Publish: flask-sse's own ``publish`` (a new Redis client each call) against ours (the
pooled client). ``--sections`` runs some of these only, e.g. ``make bench
BENCH_ARGS="--sections ingest,ranges"``.
"""
import argparse
import array
import contextlib
import importlib.util
import os
import pathlib
import platform
import re
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time

import flask_sse
import requests
from flask import Flask, request

from server import create_app
from server.auth import issue_token
from server.connections import connect
from server.embedded_redis import EmbeddedRedis
from server.rollups import TIERS, rollup_key
from server.store import CHANNEL, device_readings
from server.stream import sse as our_sse
from tools.bench_browsers import Browsers, bare_fan_out_ms
from tools.bench_fleet import BROWSERS, DEVICES, cell
from tools.bench_ingest import CLUSTER_BATCH, CONNECTIONS, cluster_table, upload_table
from tools.bench_mqtt import mqtt_ingest
from tools.run import ServerProcess

CHURN_HEARTBEAT = 2  # seconds; a browser that left is forgotten by the second heartbeat after
CHURN_PATIENCE = 10  # seconds a churning browser waits to be let in and answered
SECTIONS = ("fan-out", "crowd", "churn", "ingest", "cluster", "mqtt", "fleet", "ranges", "publish")
CROWD, CROWD_RATE, CROWD_RUNS, CROWD_P99_MS = 10_000, 2.0, 5, 250  # the target: p99 within it in every run
FLOOR_ROUNDS = 20  # events a bare loop writes to the crowd's sockets, after each run
RANGES = {"1 h": 3600, "24 h": 24 * 3600, "7 d": 7 * 24 * 3600}
RECEIVE_STEERING = pathlib.Path("/sys/class/net/lo/queues/rx-0/rps_cpus")
RECEIVE_BACKLOG = pathlib.Path("/proc/sys/net/core/netdev_max_backlog")
STEERED_BACKLOG = 30_000  # packets: an event's 10,000 at once (the default 1,000 drops them, resent 200 ms later)


def stock_app():
    """Stock flask-sse as the tutorial sets it up (gunicorn target ``tools.bench:stock_app()``)."""
    app = Flask(__name__)
    app.config["REDIS_URL"] = os.environ["REDIS_URL"]
    app.register_blueprint(flask_sse.sse, url_prefix="/stream")
    app.add_url_rule("/healthz", "healthz", lambda: "ok")

    @app.post("/therm/push")
    def push():
        flask_sse.sse.publish(request.get_json(force=True), type="reading")
        return "ok", 201

    return app


class Server:
    """One of the two servers under test, as a device posts to it."""

    def __init__(self, name, redis_server, redis_client, clients, **settings):
        self.name = name
        self.stock = name == "stock flask-sse"
        self.redis = redis_client
        self.process = ServerProcess(
            redis_server.url, app="tools.bench:stock_app()" if self.stock else "server:create_app()",
            cpus={0}, MAX_STREAMS=clients, MAX_STREAMS_PER_ADDRESS=clients, CONNECTIONS_PER_ADDRESS=clients + 1000,
            RATE_LIMIT=0, **settings)
        self.url = self.process.url
        self.headers = {} if self.stock else {"Authorization": f"Bearer {issue_token(redis_client, 'bench')}"}
        self.path = "/therm/push" if self.stock else "/api/readings"

    def watching(self):
        """How many browsers the server is serving: stock flask-sse subscribes each one."""
        if self.stock:
            return self.redis.pubsub_numsub(CHANNEL)[0][1]
        return requests.get(self.url + "/healthz", timeout=30).json()["streams"]

    def worker_rss_kb(self):
        return self.process.worker_usage()[1] * 1024

    def stop(self):
        self.process.stop()


def post_readings(server, rate, seconds, sent):
    """A device POSTing ``rate`` readings a second for ``seconds``, counting them in ``sent``."""
    session = requests.Session()
    start = time.monotonic()
    for n in range(int(rate * seconds)):
        time.sleep(max(0.0, start + n / rate - time.monotonic()))
        try:
            sent.append(session.post(server.url + server.path, headers=server.headers, timeout=30,
                                     json={"temperature": 20 + n % 10 / 10, "ts": time.time()}).status_code)
        except requests.RequestException:
            sent.append(None)


def fan_out(server, clients, rates, seconds):
    """Rows of figures for ``clients`` browsers, one row per rate."""
    baseline = server.worker_rss_kb()
    browsers = Browsers(server.url, clients)
    settled, watching = -1, 0
    while watching != settled and watching < clients:
        settled = watching
        browsers.read(3)
        watching = server.watching()
    rss_per_client = (server.worker_rss_kb() - baseline) / clients
    rows = []
    for rate in rates:
        browsers.latencies, browsers.reconnects = array.array("d"), 0
        sent = []
        device = threading.Thread(target=post_readings, args=(server, rate, seconds, sent))
        device.start()
        while device.is_alive():
            browsers.read(0.5)
        redis_connections = server.redis.info("clients")["connected_clients"] - 1
        expected = len([status for status in sent if status == 201]) * len(browsers.sockets)
        arrived = -1
        while arrived < len(browsers.latencies) < expected:  # until all came, or none for 5 s
            arrived = len(browsers.latencies)
            browsers.read(5, until=expected)
        rows.append(_row(server.name, clients, rate, browsers, sent, redis_connections, rss_per_client))
    browsers.close()
    return rows


def _row(name, clients, rate, browsers, sent, redis_connections, rss_per_client):
    latencies = sorted(browsers.latencies) or [float("nan")]
    wanted = len(sent) * clients
    return {"clients": clients, "events/s": rate, "server": name,
            "delivered": f"{100 * len(browsers.latencies) / wanted:.1f} %",
            "p50 ms": f"{1000 * statistics.median(latencies):.0f}",
            "p99 ms": f"{1000 * latencies[int(0.99 * (len(latencies) - 1))]:.0f}",
            "Redis conns": redis_connections, "RSS/client KB": f"{rss_per_client:.1f}",
            "browsers refused": browsers.refused, "reconnects": browsers.reconnects,
            "POSTs failed": len([s for s in sent if s != 201])}


def churn(server, cycles):
    """Browsers that open ``/stream`` and leave at once, ``cycles`` times, twice: what stays
    behind after each round, once the server has had two heartbeats to notice. A server
    that stops answering (stock flask-sse holds a Redis connection for each browser that
    ever came, and may run out) is given up on, and the row says at which browser."""
    host, port = server.url.rsplit("/", 1)[1].split(":")
    row = {"server": server.name, "cycles": f"2 x {cycles}",
           "Redis conns": server.redis.info("clients")["connected_clients"],
           "RSS MB": f"{server.worker_rss_kb() / 1024:.1f}", "gave up": ""}
    for round_ in ("1st", "2nd"):
        for cycle in range(cycles):
            try:
                with socket.create_connection((host, int(port)), timeout=CHURN_PATIENCE) as browser:
                    browser.sendall(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    if not server.stock:  # stock flask-sse sends nothing before its first event
                        browser.recv(4096)
            except OSError as error:
                row["gave up"] = f"{round_} round, browser {cycle + 1}: {error}"
                break
        time.sleep(2 * CHURN_HEARTBEAT + 1)
        row.update({f"conns after {round_}": server.redis.info("clients")["connected_clients"],
                    f"RSS after {round_}": f"{server.worker_rss_kb() / 1024:.1f}",
                    f"open after {round_}": server.watching()})
    return row


def range_queries(url, redis_client, readings, buckets=300, tries=5):
    """A row per range: a device with ``readings`` readings measured evenly over the range
    (up to now, stored 500 per POST) asks for it as ``buckets``: milliseconds (median of
    ``tries``), and what its history and its rollups take in Redis."""
    session = requests.Session()
    rows = []
    for name, seconds in RANGES.items():
        device = "range-" + name.replace(" ", "")
        headers = {"Authorization": f"Bearer {issue_token(redis_client, device)}"}
        start, step = time.time() - seconds, seconds / readings
        began = time.perf_counter()
        for offset in range(0, readings, 500):
            session.post(url + "/api/readings", headers=headers, json=[
                {"temperature": 20 + n % 50 / 10, "humidity": 40, "ts": start + n * step}
                for n in range(offset, min(offset + 500, readings))]).raise_for_status()
        stored = readings / (time.perf_counter() - began)
        took = []
        for _ in range(tries):
            began = time.perf_counter()
            session.get(f"{url}/api/devices/{device}/readings?buckets={buckets}&since={start}"
                        f"&until={start + seconds}").raise_for_status()
            took.append(1000 * (time.perf_counter() - began))
        rollups = sum(redis_client.memory_usage(key, samples=0)
                      for key in redis_client.scan_iter(rollup_key(redis_client, device, "*", "*")))
        rows.append({"range": name, "readings": readings, "buckets": buckets,
                     "ms": round(statistics.median(took)), "stored, readings/s": round(stored),
                     "history MB": f"{redis_client.memory_usage(device_readings(redis_client, device), samples=0) / 2**20:.1f}",
                     "rollups MB": f"{rollups / 2**20:.1f}"})
    return rows


def board_week(url, redis_client, interval=30, days=7):
    """What a board at the firmware's defaults costs Redis over ``RETENTION`` (a week): a
    reading every ``interval`` s with its five metrics, boot and seq, measured evenly over
    the week up to now; MB by kind of key (the shared ``readings`` stream is capped for all)."""
    headers = {"Authorization": f"Bearer {issue_token(redis_client, 'board')}"}
    count, start = days * 86400 // interval, time.time() - days * 86400
    session = requests.Session()
    for offset in range(0, count, 500):
        session.post(url + "/api/readings", headers=headers, json=[
            {"temperature": 18 + n % 60 / 10, "humidity": 40 + n % 200 / 10, "rssi": -60 - n % 20,
             "heap": 80000 + n % 997 * 8, "uptime": n * interval, "boot": "b1", "seq": n + 1,
             "ts": start + n * interval} for n in range(offset, min(offset + 500, count))]).raise_for_status()
    kinds = {"history": [device_readings(redis_client, "board")],
             **{f"{size} s rollups": list(redis_client.scan_iter(rollup_key(redis_client, "board", size, "*")))
                for size, _, _ in TIERS},
             "the rest": [key for key in redis_client.scan_iter("*board*")
                          if not key.startswith(("rollup:", "readings"))]}
    row = {"readings": count}
    for kind, keys in kinds.items():
        row[f"{kind} MB"] = sum(redis_client.memory_usage(key, samples=0) for key in keys) / 2**20
    total = sum(row[f"{kind} MB"] for kind in kinds)
    row = {name: f"{value:.2f}" if name.endswith("MB") else value for name, value in row.items()}
    return [dict(row, **{"total MB": f"{total:.2f}", "boards in 1 GB": int(1024 / total)})]


def publish_rate(app, blueprint, count):
    with app.app_context():
        start = time.time()
        for n in range(count):
            blueprint.publish({"n": n}, type="bench")
        return round(count / (time.time() - start))


def print_table(title, rows):
    columns = list(rows[0])
    widths = {column: max(len(column), *(len(str(row[column])) for row in rows)) for column in columns}
    print(f"\n{title}\n" + "  ".join(f"{column:>{widths[column]}}" for column in columns))
    for row in rows:
        print("  ".join(f"{str(row[column]):>{widths[column]}}" for column in columns), flush=True)


@contextlib.contextmanager
def receiving_on(core):
    """Loopback's receive work done on ``core`` (Linux's receive packet steering), with a
    backlog deep enough for a crowd's packets, both put back after; yields whether that
    could be done (it takes root), for the crowd table's title to say."""
    saved = [(path, path.read_text()) for path in (RECEIVE_STEERING, RECEIVE_BACKLOG) if path.exists()]
    try:
        RECEIVE_BACKLOG.write_text(str(max(STEERED_BACKLOG, int(RECEIVE_BACKLOG.read_text()))))
        RECEIVE_STEERING.write_text(f"{1 << core:x}")
        steered = True
    except OSError:
        steered = False
    try:
        yield steered
    finally:
        for path, text in saved:
            with contextlib.suppress(OSError):
                path.write_text(text)


def machine():
    cpu = re.search(r"model name\s*: (.*)", pathlib.Path("/proc/cpuinfo").read_text())
    parser = "C" if importlib.util.find_spec("gunicorn_h1c") else "Python"  # make's setup builds the C one if it can
    return (f"{os.cpu_count()} cores ({cpu.group(1) if cpu else platform.machine()}), Python "
            f"{platform.python_version()}, gunicorn's {parser} HTTP parser")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1000,5000,10000", help="browser counts, comma-separated")
    parser.add_argument("--rates", default="2,10", help="readings per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=10, help="how long each rate runs")
    parser.add_argument("--servers", default="stock flask-sse,sensorcast")
    parser.add_argument("--readings", type=int, default=2000, help="readings for the ingest figures")
    parser.add_argument("--churn", type=int, default=10_000, help="browsers that come and go")
    parser.add_argument("--fleet-seconds", type=float, default=20, help="how long each fleet and crowd cell runs")
    parser.add_argument("--range-readings", type=int, default=200_000, help="readings of each range query's device")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="which to run, comma-separated")
    args = parser.parse_args(argv)
    sections = args.sections.split(",")
    clients = [int(count) for count in args.clients.split(",")]
    rates = [float(rate) for rate in args.rates.split(",")]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds as Ctrl-C does: receiving_on puts settings back
    peers_core = os.cpu_count() - 1
    if peers_core:
        os.sched_setaffinity(0, {peers_core})  # Redis, started below, inherits it

    with tempfile.TemporaryDirectory() as scratch, EmbeddedRedis(scratch) as redis_server:
        redis_client = connect(redis_server.url)
        if "fan-out" in sections:
            rows = []
            for count in clients:
                for name in args.servers.split(","):
                    redis_client.flushall()
                    server = Server(name, redis_server, redis_client, count)
                    try:
                        rows += fan_out(server, count, rates, args.seconds)
                    finally:
                        server.stop()
                    print_table("", rows[-len(rates):])
            print_table(f"Fan-out on {machine()}: one gevent worker on core 0; browsers, device and "
                        f"Redis on the other core; {args.seconds:g} s per rate", rows)

        if "crowd" in sections:
            with receiving_on(peers_core) as steered:
                rows = []
                for run in range(1, CROWD_RUNS + 1):
                    redis_client.flushall()
                    server = Server("sensorcast", redis_server, redis_client, CROWD)
                    try:
                        [row] = fan_out(server, CROWD, [CROWD_RATE], args.seconds)
                    finally:
                        server.stop()
                    rows.append({"run": run, **{name: row[name] for name in (
                                     "delivered", "p50 ms", "p99 ms", "browsers refused", "reconnects", "POSTs failed")},
                                 f"p99 <= {CROWD_P99_MS} ms": "yes" if float(row["p99 ms"]) <= CROWD_P99_MS else "no",
                                 "a bare loop's writes, ms": f"{bare_fan_out_ms(CROWD, FLOOR_ROUNDS):.0f}"})
                receiving = "the browsers' core" if steered else "the worker's core (steering it takes root)"
                print_table(f"Crowd on {machine()}, loopback's receive work on {receiving}: {CROWD:,} browsers at "
                            f"{CROWD_RATE:g} readings a second, {CROWD_RUNS} runs, one gevent worker on core 0; "
                            f"{args.seconds:g} s each", rows)

        if "churn" in sections:
            rows = []
            for name in args.servers.split(","):
                redis_client.flushall()
                server = Server(name, redis_server, redis_client, args.churn, HEARTBEAT=CHURN_HEARTBEAT)
                try:
                    rows.append(churn(server, args.churn))
                finally:
                    server.stop()
            print_table(f"Churn: browsers opening /stream and leaving at once; heartbeat {CHURN_HEARTBEAT} s, "
                        "one gevent worker", rows)

        if "ingest" in sections:
            redis_client.flushall()
            print_table(f"Uploads on {machine()}: one gevent worker on core 0; {CONNECTIONS} keep-alive "
                        f"connections and Redis on the other core; {args.seconds:g} s each",
                        upload_table(redis_server, redis_client, args.seconds))

        if "cluster" in sections:
            print_table(f"Past one Redis: batches of {CLUSTER_BATCH} from {CONNECTIONS} devices, make run's two "
                        f"workers; Redis and the load share the cores; {args.seconds:g} s each",
                        cluster_table(redis_server, pathlib.Path(scratch), args.seconds))

        if "mqtt" in sections:
            redis_client.flushall()
            figures = mqtt_ingest(redis_server, redis_client, pathlib.Path(scratch), args.readings * 5)
            print_table(f"MQTT ingest: {args.readings * 5} readings at QoS 1 through Mosquitto, one gevent worker",
                        [figures] if figures else [{"skipped": "mosquitto is not installed"}])

        if "fleet" in sections:
            rows = []
            for devices in DEVICES:
                for browsers in BROWSERS:
                    rows.append(cell(redis_server, redis_client, devices, browsers, args.fleet_seconds))
                    print_table("", rows[-1:])
            print_table(f"Fleet and crowd on {machine()}: make run's workers (one per core, not pinned); each "
                        f"device posts a reading every 10 s; {args.fleet_seconds:g} s a cell", rows)

        if "ranges" in sections:
            redis_client.flushall()
            server = ServerProcess(redis_server.url, cpus={0}, RATE_LIMIT=0)
            try:
                print_table("Range queries: a device with all its readings in the range, one gevent worker",
                            range_queries(server.url, redis_client, args.range_readings))
                print_table("A board's week in Redis: a reading every 30 s (the firmware's default) of five metrics",
                            board_week(server.url, redis_client))
            finally:
                server.stop()

        if "publish" in sections:
            app = create_app({"REDIS_URL": redis_server.url})
            print_table("Publish from Python (events/s)", [
                {"server": "stock flask-sse", "publish": publish_rate(app, flask_sse.sse, 1000)},
                {"server": "sensorcast", "publish": publish_rate(app, our_sse, 1000)}])
    return 0


if __name__ == "__main__":
    sys.exit(main())
