"""``make bench``'s uploads, side by side with their peers on the same machine in the same
run: stock flask-sse's push (the original tutorial's route), Sensorcast's ``POST
/api/readings``, and a bare Flask view and a bare WSGI callable that parse the JSON body
and answer 201 (what the framework itself costs). Each runs under gunicorn with one
gevent worker pinned to core 0; the load is ``CONNECTIONS`` keep-alive connections, each
POSTing and waiting for the answer before its next (as ``wrk -c32`` does), driven by one
epoll loop on the other core, with Redis. For batches, two more figures tell the worker
from Redis: readings a second per second of the worker's CPU ("per worker core"), and the
ingest script's time in Redis a reading (Redis's ``commandstats``)."""
import itertools
import json
import re
import select
import socket
import time

from flask import Flask, request

from server.auth import issue_token
from server.connections import client_for, connect
from tools.redis_cluster import RedisCluster
from tools.run import ServerProcess

CONNECTIONS = 32
BATCHES = (50, 500)  # readings a request, for Sensorcast's batch figures
BOARD_BATCH = 50  # readings a request as boards send them after a time offline
CLUSTER_BATCH = 50
CLUSTER_DEVICES = CONNECTIONS  # each connection its own device: spread over every shard
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)


def bare_flask_app():
    """A Flask view doing only what any upload needs (gunicorn ``tools.bench_ingest:bare_flask_app()``)."""
    app = Flask(__name__)
    app.add_url_rule("/healthz", "healthz", lambda: "ok")

    @app.post("/api/readings")
    def readings():
        return {"stored": _count(request.get_json())}, 201

    return app


def bare_wsgi(environ, start_response):
    """The same as a bare WSGI callable (gunicorn ``tools.bench_ingest:bare_wsgi``)."""
    if environ["REQUEST_METHOD"] != "POST":  # /healthz
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]
    readings = json.loads(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
    body = json.dumps({"stored": _count(readings)}).encode()
    start_response("201 Created", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _count(readings):
    return len(readings) if isinstance(readings, list) else 1


def answer_end(data):
    """Where the first whole HTTP answer in ``data`` ends, or None while it is not all in."""
    head_end = data.find(b"\r\n\r\n")
    length = CONTENT_LENGTH.search(data, 0, head_end) if head_end >= 0 else None
    if length is None or len(data) < head_end + 4 + int(length.group(1)):
        return None
    return head_end + 4 + int(length.group(1))


def answered_per_second(url, uploads, seconds):
    """Requests answered a second over ``seconds``, and how many of them were not 2xx;
    ``uploads``: (path, headers, body) of each connection's requests, in turn. A body may
    be a function that writes each request's body anew (a board's next seqs)."""
    host, port = url.rsplit("/", 1)[1].split(":")
    poll, connections, buffers, requests = select.epoll(), {}, {}, {}
    for n in range(CONNECTIONS):
        path, headers, body = uploads[n % len(uploads)]
        connection = socket.create_connection((host, int(port)))
        connection.setblocking(False)
        fd = connection.fileno()
        connections[fd], buffers[fd] = connection, b""
        requests[fd] = _requests(host, path, headers, body)
        poll.register(fd, select.EPOLLIN)
        connection.send(requests[fd]())
    answered = failed = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for fd, _ in poll.poll(0.1):
            data = buffers[fd] + connections[fd].recv(65536)
            while (end := answer_end(data)) is not None:
                answered += 1
                failed += not data.startswith(b"HTTP/1.1 2")
                data = data[end:]
                connections[fd].send(requests[fd]())
            buffers[fd] = data
    for connection in connections.values():
        connection.close()
    return answered / seconds, failed


def _requests(host, path, headers, body):
    """A function giving a connection's next request's bytes (made once for a body that
    does not change: the load generator shares its core with Redis)."""
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in headers.items()))

    def request(content):
        return f"{head}Content-Length: {len(content)}\r\n\r\n".encode() + content

    if callable(body):
        return lambda: request(body())
    whole = request(body)
    return lambda: whole


def board_batches(device, batch):
    """The bodies a board posting ``batch`` readings at a time sends, each with its next
    seqs, its readings as the firmware writes them (firmware/node.py, uplink.py)."""
    seqs = itertools.count(1)

    def next_body():
        ts = int(time.time())
        return json.dumps([{"device": device, "fw": "0.1.0", "uptime": 3600 + seq, "heap": 98304 - seq % 512,
                            "temperature": round(21 + seq % 97 / 37, 2), "humidity": round(40 + seq % 89 / 31, 2),
                            "ts": ts - batch + n, "rssi": -61 - seq % 7, "boot": "a81f09c2", "seq": seq}
                           for n, seq in enumerate(itertools.islice(seqs, batch))]).encode()

    return next_body


def upload_table(redis_server, redis_client, seconds):
    """One row per server: one reading a request, and for Sensorcast batches of 50 and 500
    of one small reading each, and batches of 50 as boards send them (each connection a
    board of its own, every reading with its boot and the next seq)."""
    token = issue_token(redis_client, "bench")
    peers = [("stock flask-sse push", "tools.bench:stock_app()", "/therm/push", {}),
             ("sensorcast", "server:create_app()", "/api/readings", {"Authorization": f"Bearer {token}"}),
             ("bare Flask view", "tools.bench_ingest:bare_flask_app()", "/api/readings", {}),
             ("bare WSGI callable", "tools.bench_ingest:bare_wsgi", "/api/readings", {})]
    batches = [(str(batch), batch, [("/api/readings", {"Authorization": f"Bearer {token}"},
                                     json.dumps([{"temperature": 20 + n % 10 / 10} for n in range(batch)]).encode())])
               for batch in BATCHES]
    boards = [("/api/readings", {"Authorization": f"Bearer {issue_token(redis_client, f'board-{n}')}"},
               board_batches(f"board-{n}", BOARD_BATCH)) for n in range(CONNECTIONS)]
    batches.append((f"boards' {BOARD_BATCH}", BOARD_BATCH, boards))
    rows = []
    for name, app, path, headers in peers:
        server = ServerProcess(redis_server.url, app=app, cpus={0}, RATE_LIMIT=0)
        try:
            reading = json.dumps({"temperature": 21.5}).encode()
            rate, failed = answered_per_second(server.url, [(path, headers, reading)], seconds)
            row = {"server": name, "requests/s, 1 reading": round(rate), "not 2xx": failed}
            for label, batch, uploads in batches:
                row[f"readings/s, {label} a request"] = row[f"per worker core, {label}"] = ""
                row[f"script µs a reading, {label}"] = ""
                if name == "sensorcast":
                    redis_client.config_resetstat()
                    cpu_before = server.worker_usage()[0]
                    rate, failed = answered_per_second(server.url, uploads, seconds)
                    busy = (server.worker_usage()[0] - cpu_before) / seconds
                    script_us = redis_client.info("commandstats")["cmdstat_evalsha"]["usec"] / (rate * seconds * batch)
                    row[f"readings/s, {label} a request"] = round(rate * batch)
                    row[f"per worker core, {label}"] = round(rate * batch / busy)
                    row[f"script µs a reading, {label}"] = f"{script_us:.0f}"
                    row["not 2xx"] += failed
            rows.append(row)
        finally:
            server.stop()
    stock = rows[0]["requests/s, 1 reading"]
    for row in rows:
        row["× stock"] = f"{row['requests/s, 1 reading'] / stock:.1f}"
    return rows


def cluster_table(redis_server, folder, seconds):
    """Batches of ``CLUSTER_BATCH`` from ``CLUSTER_DEVICES`` devices (each connection posts
    as one of them) into one Redis and into a Redis Cluster of three primaries
    (``REDIS_SHARDS`` 6), with make run's two workers; then the cluster again with one
    device's readings only, all stored on one node, to show what every reading's live
    event costs the other nodes (plain pub/sub is broadcast to them all). On this machine
    the nodes share the cores with the workers and the load, so what the cluster changes is
    shown by each node's CPU: what a reading costs, and the rate at which the busiest
    node's core would be full."""
    rows = []
    for name, clustered, devices in (("one Redis", False, CLUSTER_DEVICES),
                                     ("cluster, 3 primaries", True, CLUSTER_DEVICES),
                                     ("cluster, one device", True, 1)):
        cluster = RedisCluster(folder / f"cluster-{len(rows)}") if clustered else None
        settings = {"REDIS_CLUSTER": cluster.nodes} if cluster else {}
        try:
            nodes = [cluster.node(port) for port in cluster.ports] if cluster else [connect(redis_server.url)]
            client = client_for({"REDIS_URL": redis_server.url, "REDIS_SENTINELS": "", "WAIT_REPLICAS": 0,
                                 "REDIS_CLUSTER": settings.get("REDIS_CLUSTER", ""), "REDIS_SHARDS": 6})
            for node in nodes:
                node.flushall()
            uploads = [("/api/readings", {"Authorization": f"Bearer {issue_token(client, f'bench-{n}')}"},
                        json.dumps([{"temperature": 20 + k % 10 / 10} for k in range(CLUSTER_BATCH)]).encode())
                       for n in range(devices)]
            server = ServerProcess(redis_server.url, workers=2, RATE_LIMIT=0, **settings)
            try:
                cpu_before = [_cpu_seconds(node) for node in nodes]
                rate, failed = answered_per_second(server.url, uploads, seconds)
                busy = sorted(((_cpu_seconds(node) - before) / seconds for node, before in zip(nodes, cpu_before)),
                              reverse=True)
            finally:
                server.stop()
            readings = rate * CLUSTER_BATCH
            rows.append({"Redis": name, "devices": devices, f"readings/s, {CLUSTER_BATCH} a request": round(readings),
                         "not 2xx": failed, "Redis CPU µs a reading": f"{sum(busy) / readings * 1e6:.0f}",
                         "each node's CPU": " / ".join(f"{share:.0%}" for share in busy),
                         "readings/s at a full busiest node": round(readings / busy[0])})
        finally:
            if cluster:
                cluster.stop()
    return rows


def _cpu_seconds(node):
    info = node.info("cpu")
    return info["used_cpu_sys"] + info["used_cpu_user"]
