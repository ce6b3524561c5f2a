"""``make bench``'s fleet and crowd at once, on ``make run``'s defaults (a worker per core,
not pinned): devices post as the firmware does, one reading each every ``INTERVAL``
seconds at their own moment in it, while browsers watch everything. The devices are a
process of their own, an epoll loop over ``CONNECTIONS`` keep-alive connections; each
upload is timed from when it was due (so a queue on our side counts against us), each
delivery from that moment until the browser's socket had it (``bench_browsers.py``);
a browser the server drops for falling behind reconnects and replays, as a real one does.
All browsers come from one address, so the per-address stream cap is lifted; nothing
else is changed."""
import multiprocessing
import os
import re
import select
import socket
import statistics
import time

import requests

from server.auth import issue_token
from tools.bench_browsers import Browsers
from tools.bench_ingest import answer_end
from tools.run import ServerProcess

INTERVAL = 10  # seconds between a device's readings, as a board's default
DEVICES = (100, 1000, 5000)
BROWSERS = (10, 1000, 5000)
CONNECTIONS = 64
OPEN_STREAMS = re.compile(r"^sensorcast_open_streams (\S+)$", re.MULTILINE)


def upload(url, tokens, seconds, results):
    """Each device posts every INTERVAL s for ``seconds``; puts ``[(latency, status), ...]``
    in ``results`` (status 0: the connection closed before the answer)."""
    address = url.rsplit("/", 1)[1].split(":")
    address = (address[0], int(address[1]))
    rounds = max(1, int(seconds // INTERVAL))
    due = sorted((n * INTERVAL + i * INTERVAL / len(tokens), token) for n in range(rounds)
                 for i, token in enumerate(tokens))
    poll, idle, busy, buffers, timed = select.epoll(), [], {}, {}, []

    def connect():
        connection = socket.create_connection(address)
        connection.setblocking(False)
        poll.register(connection.fileno(), select.EPOLLIN)
        buffers[connection.fileno()] = b""
        return connection

    def replace(connection):  # the server closed it (idle past its keep-alive)
        poll.unregister(connection.fileno())
        connection.close()
        idle.append(connect())

    idle.extend(connect() for _ in range(min(CONNECTIONS, len(tokens))))
    start, next_due = time.time(), 0
    while next_due < len(due) or busy:
        now = time.time() - start
        while idle and next_due < len(due) and due[next_due][0] <= now:
            at, token = due[next_due]
            next_due += 1
            body = b'{"temperature": 21.5, "ts": %.6f}' % (start + at)
            request = (b"POST /api/readings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                       b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s" % (token, len(body), body))
            connection = idle.pop()
            try:
                connection.send(request)
            except OSError:  # closed by the server meanwhile: on a new one
                replace(connection)
                connection = idle.pop()
                connection.send(request)
            busy[connection.fileno()] = (connection, start + at)
        wait = min(0.05, due[next_due][0] - now) if next_due < len(due) and idle else 0.05
        for fd, _ in poll.poll(max(0.0, wait)):
            if fd not in busy:  # an idle one the server closed
                stale = next(connection for connection in idle if connection.fileno() == fd)
                idle.remove(stale)
                replace(stale)
                continue
            connection, sent_at = busy[fd]
            try:
                received = connection.recv(65536)
            except ConnectionError:  # reset: the server closed it as the request came (counted as refused)
                received = b""
            data = buffers[fd] + received
            if received and answer_end(data) is None:
                buffers[fd] = data
                continue
            del busy[fd]
            timed.append((time.time() - sent_at, int(data[9:12]) if received else 0))
            buffers[fd] = b""
            if received:
                idle.append(connection)
            else:
                replace(connection)
    results.put(timed)


def _open_streams(url):
    return float(OPEN_STREAMS.search(requests.get(url + "/metrics", timeout=30).text).group(1))


def cell(redis_server, redis_client, devices, browsers, seconds):
    """One row: ``devices`` posting and ``browsers`` watching for ``seconds``."""
    redis_client.flushall()
    tokens = [issue_token(redis_client, f"d{n}").encode() for n in range(devices)]
    server = ServerProcess(redis_server.url, workers=os.cpu_count(), cpus=set(range(os.cpu_count())),
                           MAX_STREAMS_PER_ADDRESS=browsers, CONNECTIONS_PER_ADDRESS=browsers + devices + 1000)
    try:
        watching = Browsers(server.url, browsers)
        while _open_streams(server.url) < browsers - watching.refused:
            watching.read(1)
        watchers = len(watching.sockets)
        cpu_before, _ = server.worker_usage()
        results = multiprocessing.get_context("fork").Queue()
        fleet = multiprocessing.get_context("fork").Process(target=upload, args=(server.url, tokens, seconds, results))
        began = time.monotonic()
        fleet.start()
        while fleet.is_alive() and results.empty():
            watching.read(0.5)
        timed = results.get(timeout=60)
        fleet.join()
        elapsed = time.monotonic() - began
        cpu_after, rss = server.worker_usage()
        stored = sum(1 for _, status in timed if status == 201)
        expected = stored * watchers
        arrived = -1
        while arrived < len(watching.latencies) < expected:  # until all came, or none for 5 s
            arrived = len(watching.latencies)
            watching.read(5, until=expected)
        watching.close()
    finally:
        server.stop()
    uploads = sorted(latency for latency, _ in timed) or [float("nan")]
    deliveries = sorted(watching.latencies) or [float("nan")]
    return {"devices": devices, "browsers": browsers, "uploads": len(timed), "refused": len(timed) - stored,
            "upload p50 ms": _ms(statistics.median(uploads)), "upload p99 ms": _ms(_p99(uploads)),
            "delivery p50 ms": _ms(statistics.median(deliveries)), "delivery p99 ms": _ms(_p99(deliveries)),
            "delivered": f"{100 * len(watching.latencies) / max(expected, 1):.1f} %", "reconnects": watching.reconnects,
            "worker CPU": f"{100 * (cpu_after - cpu_before) / elapsed:.0f} %", "worker RSS MB": f"{rss:.0f}"}


def _p99(ordered):
    return ordered[int(0.99 * (len(ordered) - 1))]


def _ms(seconds):
    return f"{1000 * seconds:.0f}"
