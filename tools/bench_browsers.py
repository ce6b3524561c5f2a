"""The benchmark's browsers: raw sockets watching ``/stream``, read in one epoll loop,
each reading timed from the ``ts`` its device sent until the kernel received it (the
socket's receive timestamp), so the loop's own delays do not count. As an EventSource
does, a browser whose stream the server ends opens it again at once with the last event
id it saw, and counts the readings replayed to it."""
import array
import os
import re
import select
import socket
import statistics
import struct
import time

SENT_AT = re.compile(rb'"ts": ?([0-9.]+)')
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Python < 3.14 lacks Linux's constant
STAMP_SIZE = socket.CMSG_SPACE(16)

def _arrival(stamps):
    """When the kernel received the bytes (SO_TIMESTAMPNS), so this loop's own delays don't count."""
    for level, kind, data in stamps:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return seconds + nanoseconds / 1e9
    return time.time()


class Browsers:
    """``count`` browsers watching ``/stream``, read in one epoll loop on this thread."""

    def __init__(self, url, count):
        host, port = url.rsplit("/", 1)[1].split(":")
        self.address = (host, int(port))
        self.poll = select.epoll()
        self.sockets, self.buffers, self.last_ids = {}, {}, {}
        self.latencies = array.array("d")
        self.refused = self.reconnects = 0
        for _ in range(count):
            self._open(b"")

    def _open(self, last_id):
        request = b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
        if last_id:
            request += b"Last-Event-ID: %s\r\n" % last_id
        try:
            browser = socket.create_connection(self.address)
            browser.sendall(request + b"\r\n")
        except OSError:
            self.refused += 1
            return
        browser.setblocking(False)
        browser.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sockets[browser.fileno()] = browser
        self.buffers[browser.fileno()] = b""
        self.last_ids[browser.fileno()] = last_id
        self.poll.register(browser.fileno(), select.EPOLLIN)

    def read(self, seconds, until=None):
        """Read for ``seconds`` (or until ``until`` readings), timing each reading by its ``ts``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (until and len(self.latencies) >= until):
            for fd, _ in self.poll.poll(0.05):
                try:
                    data, stamps, _, _ = self.sockets[fd].recvmsg(65536, STAMP_SIZE)
                except ConnectionError:
                    data, stamps = b"", ()
                received = _arrival(stamps)
                if not data:  # the server ended the stream (one far behind): as an EventSource does
                    last_id = self.last_ids[fd]
                    self._forget(fd)
                    self.reconnects += 1
                    self._open(last_id)
                    continue
                data = self.buffers[fd] + data
                if data.startswith(b"HTTP/1.1 ") and not data.startswith(b"HTTP/1.1 200"):
                    self.refused += 1
                    self._forget(fd)
                    continue
                complete = data.rfind(b"\n\n") + 2
                for sent in SENT_AT.findall(data, 0, complete):
                    self.latencies.append(received - float(sent))
                last_id = data.rfind(b"\nid:", 0, complete)
                if last_id >= 0:
                    self.last_ids[fd] = data[last_id + 4:data.index(b"\n", last_id + 4)]
                self.buffers[fd] = data[complete:]

    def _forget(self, fd):
        self.poll.unregister(fd)
        self.sockets.pop(fd).close()
        del self.buffers[fd], self.last_ids[fd]

    def close(self):
        for fd in list(self.sockets):
            self._forget(fd)


def bare_fan_out_ms(count, rounds, frame_bytes=200):
    """The kernel's own floor under a crowd: how long a bare loop takes to write one event's
    bytes to ``count`` loopback sockets (median of ``rounds``), from a process on the
    worker's core while this process reads them in an epoll loop, as ``Browsers`` does.
    Over loopback each write also does the receiving side's kernel work, the browsers'
    on another machine, unless the benchmark steers it to their core (``bench.receiving_on``);
    no server can fan an event out faster on this machine."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=count)
    writer_ready, reader_ready = socket.socketpair()
    frame = b"%X\r\n%b\r\n" % (frame_bytes, b"x" * frame_bytes)  # an event as the stream frames it
    child = os.fork()
    if child == 0:  # the writer, on the worker's core
        os.sched_setaffinity(0, {0})
        peers = [listener.accept()[0] for _ in range(count)]
        times = array.array("d")
        for _ in range(rounds):
            writer_ready.recv(1)
            start = time.perf_counter()
            for peer in peers:
                peer.send(frame)
            times.append(time.perf_counter() - start)
        writer_ready.sendall(times.tobytes())
        os._exit(0)
    readers = [socket.create_connection(listener.getsockname()) for _ in range(count)]
    poll = select.epoll()
    for reader in readers:
        reader.setblocking(False)
        poll.register(reader.fileno(), select.EPOLLIN)
    by_fd = {reader.fileno(): reader for reader in readers}
    for _ in range(rounds):
        reader_ready.send(b"!")
        expected, received = count * len(frame), 0
        while received < expected:
            for fd, _ in poll.poll(1):
                received += len(by_fd[fd].recv(65536))
    times = array.array("d")
    while len(times) < rounds:
        times.frombytes(reader_ready.recv(8 * rounds - 8 * len(times)))
    os.waitpid(child, 0)
    for reader in readers:
        reader.close()
    listener.close()
    return 1000 * statistics.median(times)
