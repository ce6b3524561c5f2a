"""A real Mosquitto (Debian's ``mosquitto``) running deploy/mosquitto/'s configuration
snippet and ACL, included by Debian's own configuration as on a server, on a free
loopback port, with a password file made as ``devices add --mqtt`` makes its lines; and
a device that publishes to it as the firmware will.

It runs in a folder of the test's, as the folder's owner (``user``): Mosquitto started as
root would otherwise drop to the user ``mosquitto``, who may not read the folder, and
nothing of it is chowned. What Mosquitto says of its configuration as it starts (a
deprecated option, a file it cannot read) is kept, for the tests to hold it to nothing."""
import pwd
import shutil
import signal
import socket
import subprocess

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from server import ROOT
from server.mqtt import SERVER_USER, broker_credentials, readings_topic, share_group, subscription
from tests.conftest import eventually
from tools.run import free_port

MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
SNIPPET = ROOT / "deploy" / "mosquitto" / "conf.d" / "sensorcast.conf"
ACL = ROOT / "deploy" / "mosquitto" / "acl"
# Debian's /etc/mosquitto/mosquitto.conf, as the package ships it, with its paths in {folder}
DEBIAN_CONF = """pid_file {folder}/mosquitto.pid
persistence true
persistence_location {folder}/
log_dest file {folder}/mosquitto.log
include_dir {folder}/conf.d
"""
needs_mosquitto = pytest.mark.skipif(not MOSQUITTO, reason="mosquitto is not installed (apt-get install mosquitto)")


class Broker:
    """Debian's configuration with deploy/mosquitto/'s snippet in its ``conf.d``, only the
    port, the password file and the folders changed to this test's."""

    def __init__(self, folder):
        self.folder = folder
        self.port = free_port()
        self.passwords = {}
        self.password_file = folder / "passwords"
        self.password_file.touch(mode=0o600)
        snippet = SNIPPET.read_text()
        for shipped, here in [("listener 1883", f"listener {self.port} 127.0.0.1"),
                              ("/etc/mosquitto/sensorcast/passwords", str(self.password_file)),
                              ("/etc/mosquitto/sensorcast/acl", str(ACL))]:
            assert shipped in snippet, shipped
            snippet = snippet.replace(shipped, here)
        (folder / "conf.d").mkdir()
        (folder / "conf.d" / SNIPPET.name).write_text(snippet)
        self.owner = pwd.getpwuid(folder.stat().st_uid).pw_name
        (folder / "mosquitto.conf").write_text(DEBIAN_CONF.format(folder=folder) + f"user {self.owner}\n")
        self.output = folder / "mosquitto.stderr"  # before the log file opens: the configuration's notes
        self.process = None
        self.add_user(SERVER_USER)

    def add_user(self, user):
        """A broker login, as ``devices add --mqtt`` prints it; a running broker reloads."""
        self.passwords[user], line = broker_credentials(user)
        with self.password_file.open("a") as passwords:
            passwords.write(line + "\n")
        if self.process:
            self.process.send_signal(signal.SIGHUP)
        return self.passwords[user]

    def url(self, user=SERVER_USER):
        return f"mqtt://{user}:{self.passwords[user]}@127.0.0.1:{self.port}"

    def start(self):
        with self.output.open("a") as output:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.folder / "mosquitto.conf")], stderr=output)
        eventually(self._listening)
        return self

    def _listening(self):
        assert self.process.poll() is None, self.output.read_text()
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def complaints(self):
        """Mosquitto's notes, warnings and errors since it first started, but the one that
        a broker run as root gets (the tests may run as root, a server's broker does not)."""
        lines = self.output.read_text().splitlines()
        log = self.folder / "mosquitto.log"
        lines += log.read_text().splitlines() if log.exists() else []
        return [line for line in lines if any(f": {kind}" in line for kind in ("Note", "Warning", "Error"))
                and not (self.owner == "root" and "should not be run as root" in line)]

    def stop(self):
        """A clean stop: Mosquitto saves what it holds, as on a restart."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


def leave_a_session(broker, client_id, redis_client):
    """A server process's session as one left behind: subscribed (with the group of the
    servers of ``redis_client``'s Redis), then disconnected for good."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.username_pw_set(SERVER_USER, broker.passwords[SERVER_USER])
    subscribed = []
    client.on_subscribe = lambda *args: subscribed.append(True)
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", broker.port, clean_start=False, properties=properties)
    client.loop_start()
    client.subscribe(subscription(share_group(redis_client)), qos=1)
    eventually(lambda: subscribed)
    client.disconnect()
    client.loop_stop()


class Publisher:
    """A device's MQTT connection: publishes at QoS 1 and tells what the broker answered."""

    def __init__(self, broker, user):
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"device-{user}", protocol=paho.MQTTv5)
        self.client.username_pw_set(user, broker.passwords[user])
        self.answers = {}
        self.client.on_publish = lambda client, userdata, mid, reason_code, properties: \
            self.answers.__setitem__(mid, reason_code)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        eventually(self.client.is_connected)

    def publish(self, payload, device=None, topic=None):
        """Publish ``payload`` (bytes, or JSON text) and wait for the broker's PUBACK; returns its reason code."""
        return self.publish_all([payload], device, topic)[0]

    def publish_all(self, payloads, device=None, topic=None):
        """Publish each payload in turn, then wait for every PUBACK; returns their reason codes."""
        mids = [self.client.publish(topic or readings_topic(device), payload, qos=1).mid for payload in payloads]
        eventually(lambda: all(mid in self.answers for mid in mids))
        return [self.answers[mid] for mid in mids]

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()
