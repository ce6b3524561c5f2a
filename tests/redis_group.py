"""Real Redis processes for failover tests: a primary, its replica and three Sentinels
running deploy/redis/sentinel.conf (only the ports and the primary's address changed),
all the ``redis-server`` binary that the project installs."""
import signal
import subprocess

import redis

from server.embedded_redis import SERVER_BINARY
from server import ROOT
from tests.conftest import eventually
from tools.redis_cluster import answers
from tools.run import free_port

SENTINEL_CONF = ROOT / "deploy" / "redis" / "sentinel.conf"
SERVICE = "sensorcast"


class RedisGroup:
    def __init__(self, folder):
        self.folder = folder
        self.processes = []
        self.log = (folder / "redis.log").open("w")
        self.primary = self._redis("primary")
        self.replica = self._redis("replica", "--replicaof", "127.0.0.1", str(self.primary))
        self.sentinels = [self._sentinel(n) for n in range(3)]
        eventually(self._watching, timeout=60)

    @property
    def sentinel_addresses(self):
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinels)

    def client(self, port):
        return redis.Redis(port=port, decode_responses=True, socket_timeout=5)

    def current_primary(self):
        """The port the Sentinels now name as the primary."""
        with self.client(self.sentinels[0]) as sentinel:
            return int(sentinel.sentinel_get_master_addr_by_name(SERVICE)[1])

    def kill_primary(self):
        """``kill -9``: no goodbye, no last write to disk."""
        self.processes[0].send_signal(signal.SIGKILL)
        self.processes[0].wait()

    def start_former_primary(self):
        """The killed primary back, as its machine's reboot brings it: with its own data
        and settings; the Sentinels make it a replica of the new primary."""
        self.processes[0] = subprocess.Popen(self.processes[0].args, stdout=self.log, stderr=self.log)

    def stop(self):
        for process in self.processes:
            process.kill()
            process.wait()
        self.log.close()

    def _redis(self, name, *options):
        port = free_port()
        folder = self.folder / name
        folder.mkdir()
        self._start(["--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", "",
                     "--appendonly", "yes", *options])
        eventually(lambda: answers(port))
        return port

    def _sentinel(self, n):
        port = free_port()
        conf = SENTINEL_CONF.read_text()
        for shipped, here in [("port 26379", f"port {port}\nbind 127.0.0.1"),
                              ("sensorcast 192.0.2.10 6379 2", f"{SERVICE} 127.0.0.1 {self.primary} 2")]:
            assert shipped in conf, shipped
            conf = conf.replace(shipped, here)
        path = self.folder / f"sentinel-{n}.conf"
        path.write_text(conf)
        self._start([str(path), "--sentinel"])
        eventually(lambda: answers(port))
        return port

    def _start(self, arguments):
        self.processes.append(subprocess.Popen([str(SERVER_BINARY), *arguments], stdout=self.log,
                                               stderr=self.log))

    def _watching(self):
        """Each Sentinel knows the replica and the two others: a failover can happen."""
        for port in self.sentinels:
            with self.client(port) as sentinel:
                if not (sentinel.sentinel_slaves(SERVICE) and len(sentinel.sentinel_sentinels(SERVICE)) == 2):
                    return False
        with self.client(self.replica) as replica:
            return replica.info("replication")["master_link_status"] == "up"
