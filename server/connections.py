"""How the server reaches Redis: one Redis (``REDIS_URL``), the primary that Sentinels
name (``REDIS_SENTINELS``), or a Redis Cluster (``REDIS_CLUSTER``, its keys in shards:
``shards.py``). Every client caps its connections, and whatever cannot reach Redis now
raises one of ``UNREACHABLE``, which the server answers 503 with ``Retry-After`` and the
CLI in one line, never a traceback.
"""
import select
import threading
import time

import redis
import redis.cluster
import redis.sentinel
from flask import current_app
from gevent.monkey import get_original

from .settings import number_out_of_bounds
from .shards import MAX_SHARDS, Shards

CLIENT_NAME = "sensorcast"  # in CLIENT LIST, so an operator sees which connections are ours
LAYOUT = "shards"  # on a cluster: how many shards its data is kept in, written at first use

# A Redis that cannot serve now: away, slow, or (a cluster) missing the primary of some
# slots, or moving them.
UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ClusterError,
               redis.exceptions.TryAgainError, redis.exceptions.SlotNotCoveredError)


def is_busy(error):
    """Whether a Redis error says a script (any client's) has run past Redis's
    ``lua-time-limit``, so it answers nothing else until it ends: away, for now."""
    return str(error).startswith("BUSY ")


def is_full(error):
    """Whether a Redis error says it is at its ``maxmemory`` and refuses writes (a script's
    error says so only in its text): the server answers 507 with ``Retry-After``."""
    return isinstance(error, redis.exceptions.OutOfMemoryError) or "OOM command not allowed" in str(error)


def get_redis(app=None):
    """The process's one Redis client (a connection pool), made on first use; the current
    app's, unless ``app`` is given (outside of a request)."""
    app = app or current_app
    client = app.extensions.get("sensorcast.redis")
    if client is None:
        client = client_for(app.config, app.config["REDIS_CONNECTIONS"])
        app.extensions["sensorcast.redis"] = client
    return client


class BadSetting(ValueError):
    """A setting that cannot work: said in one line by the CLI and ``make run``, and the
    end of a server process that has it."""


def check_settings(config):
    """``BadSetting`` naming the setting that cannot work, before any client is made: a
    Redis setting, or a number out of bounds (``SENSORCAST_RATE_LIMIT=ten``, a ``MAX_BATCH``
    of 1.5 or a ``RETENTION`` of centuries would otherwise be a 500 at every upload)."""
    shards = config["REDIS_SHARDS"]
    if not (type(shards) is int and 1 <= shards <= MAX_SHARDS):
        raise BadSetting(f"SENSORCAST_REDIS_SHARDS: must be a whole number from 1 to {MAX_SHARDS}, not {shards!r}")
    wrong = number_out_of_bounds(config)
    if wrong:
        raise BadSetting(wrong)
    for name in ("REDIS_CLUSTER", "REDIS_SENTINELS"):
        if config[name]:
            _addresses(config[name], name)
    if config["REDIS_CLUSTER"] and config["WAIT_REPLICAS"]:
        raise BadSetting("SENSORCAST_WAIT_REPLICAS is for a primary and its replicas (Sentinel), not a Redis Cluster")


def client_for(config, max_connections=8, timeout=10):
    """A client of the Redis that ``config`` names: the ``REDIS_CLUSTER`` (at most
    ``max_connections`` to each node), or the primary that the ``REDIS_SENTINELS`` know as
    ``REDIS_SERVICE`` (found again at each new connection, so a failover is followed), or
    else ``REDIS_URL``, whose user and password hold in every case (its database too,
    but for a cluster, which has only one)."""
    check_settings(config)
    url = redis.connection.parse_url(config["REDIS_URL"])
    credentials = {name: url[name] for name in ("username", "password") if name in url}
    if config["REDIS_CLUSTER"]:
        options = _pool_options(max_connections, timeout)
        del options["health_check_interval"], options["timeout"]  # a cluster's client checks its nodes itself;
        # a blocking pool's wait for a free connection is its own default (20 s): a node's client takes no timeout
        cluster = Cluster(Shards(config["REDIS_SHARDS"]), **options, **credentials,
                          startup_nodes=[redis.cluster.ClusterNode(host, port)
                                         for host, port in _addresses(config["REDIS_CLUSTER"])])
        try:
            cluster.connected()  # a cluster of another shard count is refused at start
        except redis.exceptions.ConnectionError:
            pass  # away now: tried again at the first use
        return cluster
    if not config["REDIS_SENTINELS"]:
        return connect(config["REDIS_URL"], max_connections, timeout)
    sentinel = redis.sentinel.Sentinel(_addresses(config["REDIS_SENTINELS"]), socket_connect_timeout=2,
                                       socket_timeout=2,
                                       sentinel_kwargs={"socket_connect_timeout": 2, "socket_timeout": 2})
    return sentinel.master_for(config["REDIS_SERVICE"], connection_pool_class=_SentinelBlockingPool,
                               connection_class=_ours(redis.sentinel.SentinelManagedConnection),
                               **_pool_options(max_connections, timeout), **credentials,
                               **({"db": url["db"]} if "db" in url else {}))


class Cluster:
    """A Redis Cluster's client, made at its first use, as one Redis's connects at its
    first command: a cluster that cannot be reached is a ConnectionError then (503, tried
    again at the next use), not a server that fails to start. It knows how the keys are
    split (``shards``), and refuses a cluster whose data was kept in another number of
    shards: its devices' keys would not be found."""

    def __init__(self, shards, **options):
        self.shards = shards
        self._options = options
        self._client = None
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._client or self.connected(), name)

    def connected(self):
        """The cluster's client, made now if it was not yet."""
        with self._lock:
            if self._client is None:
                try:
                    client = redis.cluster.RedisCluster(connection_pool_class=redis.BlockingConnectionPool,
                                                        **self._options)
                except redis.exceptions.RedisClusterException as error:
                    raise redis.exceptions.ConnectionError(f"cannot reach the Redis Cluster: {error}") from None
                count = len(self.shards.prefixes)
                client.set(LAYOUT, count, nx=True)
                kept = int(client.get(LAYOUT))
                if kept != count:
                    client.close()
                    raise BadSetting(f"this Redis Cluster keeps Sensorcast's data in {kept} shards, not "
                                     f"{count}: set SENSORCAST_REDIS_SHARDS={kept}")
                self._client = client
            return self._client


def _addresses(text, setting="REDIS_CLUSTER"):
    """``host:port,…`` as (host, port) pairs; ``BadSetting`` naming ``setting`` for anything else."""
    pairs = [address.strip().rpartition(":") for address in text.split(",")] if isinstance(text, str) else [("",) * 3]
    if not all(host and port.isdigit() and 0 < int(port) < 65536 for host, _, port in pairs):
        raise BadSetting(f"SENSORCAST_{setting}: must be host:port,host:port,…, not {text!r}")
    return [(host, int(port)) for host, _, port in pairs]


def connect(url, max_connections=8, timeout=10):
    """A client whose pool holds at most ``max_connections``: past that, callers wait for
    one (up to ``socket_timeout``), so no crowd of requests can flood Redis with connections."""
    pool = redis.BlockingConnectionPool.from_url(url, **_pool_options(max_connections, timeout))
    pool.connection_class = _ours(pool.connection_class)
    return redis.Redis(connection_pool=pool)


def run_script(client, script, keys, args):
    """What ``script(keys, args, client=client)`` answers, in fewer steps on one Redis's
    client (or a Sentinel primary's): a pooled connection, EVALSHA sent, its answer read.
    redis-py 8 wraps each command in argument checks, retries and observability hooks,
    which cost a batch upload more of the worker's time than sending and reading it. A
    connection that fails is closed (by redis-py) and the error raised, not retried: a
    script that stores readings could store them twice. Any other client (a cluster's, a
    pipeline) runs it as redis-py does."""
    if type(client) is not redis.Redis:
        return script(keys, args, client=client)
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        try:
            connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            return connection.read_response()
        except redis.exceptions.NoScriptError:  # a Redis that restarted, or was flushed of scripts: not run
            connection.send_command("EVAL", script.script, len(keys), *keys, *args)
            return connection.read_response()
    finally:
        pool.release(connection)


_os_poll = get_original("select", "poll")


class _QuickCheck:
    """Before each command the pool checks that its connection holds no unread answer,
    by polling the socket without waiting. Under gevent that poll goes round the event
    loop (about 50 µs, a tenth of an upload); the system's own poll says the same in 2.
    Only when it finds something (data, or the server gone), or when hiredis's reader holds
    bytes read but not yet parsed (a subscription's next messages), is redis-py's check asked."""

    def can_read(self, timeout=0):
        reader = getattr(self._parser, "_reader", None)
        if timeout == 0 and self._sock is not None and reader is not None and not reader.has_data():
            poller = _os_poll()
            poller.register(self._sock, select.POLLIN)
            if not poller.poll(0):
                return False
        return super().can_read(timeout)


STALL_SECONDS = 5.0
_stalled = {}  # a Redis's address -> until when no command is sent to it: it left one unanswered


class _StallGuard:
    """A Redis that leaves a command unanswered for the whole socket timeout (stopped, or
    lost by a network that closed nothing) is sent no other for ``STALL_SECONDS``: this
    process's requests are told 503 at once, not each after the timeout, holding a board
    and one of the worker's connections that long. Then one command tries it again; the
    others are refused until its answer, or its timeout, says whether Redis is back. A
    poll's timeout (a subscription's) and a wait cut short (a health check's) are no stall."""

    def send_packed_command(self, command, check_health=True):
        if _stalled and check_health:  # not a health check's PING nor a handshake: they are part of a command
            address = self._address()
            until = _stalled.get(address, 0.0)
            now = time.monotonic()
            if now < until:
                raise redis.exceptions.ConnectionError(
                    f"Redis left a command unanswered; asked again in {until - now:.1f} s")
            if until:
                _stalled[address] = now + (self.socket_timeout or STALL_SECONDS)  # this command finds out
        return super().send_packed_command(command, check_health)

    def read_response(self, *args, **kwargs):
        asked = time.monotonic()
        try:
            response = super().read_response(*args, **kwargs)
        except redis.exceptions.TimeoutError:
            if "timeout" not in kwargs and time.monotonic() - asked >= (self.socket_timeout or float("inf")):
                _stalled[self._address()] = time.monotonic() + STALL_SECONDS
            raise
        if _stalled:
            _stalled.pop(self._address(), None)
        return response

    def _address(self):
        return self.host, self.port  # a Unix socket's: its path (_UnixAddress)


class _UnixAddress:
    """redis-py notes a failed connection by host and port, which a Unix socket's lacks:
    a connection to a stopped Redis's socket must be a ConnectionError, not an AttributeError."""

    port = None

    @property
    def host(self):
        return self.path


_OURS = {base: type(base.__name__, (*mixins, base), {}) for base, mixins in (
    (redis.Connection, (_QuickCheck, _StallGuard)),
    (redis.UnixDomainSocketConnection, (_QuickCheck, _StallGuard, _UnixAddress)),
    (redis.sentinel.SentinelManagedConnection, (_QuickCheck, _StallGuard)),
    (redis.SSLConnection, (_StallGuard,)))}


def _ours(connection_class):
    """``connection_class`` with ``_StallGuard``, and ``_QuickCheck``'s poll but over TLS,
    whose own buffer is left to redis-py. A Redis Cluster's client makes its nodes'
    connections itself."""
    return _OURS.get(connection_class, connection_class)


def _pool_options(max_connections, timeout):
    """``timeout``: seconds a call waits for a free connection, and for Redis's answer."""
    return dict(max_connections=max_connections, timeout=timeout, decode_responses=True, client_name=CLIENT_NAME,
                socket_connect_timeout=min(2, timeout), socket_timeout=timeout, health_check_interval=30)


class _SentinelBlockingPool(redis.sentinel.SentinelConnectionPool, redis.BlockingConnectionPool):
    """Sentinel's pool (it asks the sentinels where the primary is for each new connection,
    and drops connections to a former one) with the cap of ``connect``'s pool."""
