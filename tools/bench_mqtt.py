"""``make bench``'s MQTT ingest: readings published at QoS 1 to a real Mosquitto (Debian's,
started here on a free loopback port, anonymous) and stored by one gevent worker, timed
from the first publish until the last reading is in the device's history."""
import json
import os
import shutil
import subprocess
import time

import paho.mqtt.client as paho
import requests
from paho.mqtt.enums import CallbackAPIVersion

from server.mqtt import readings_topic
from server.store import device_key, device_readings
from tools.run import ServerProcess, free_port, wait_for

MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
DEVICE = "bench-mqtt"


class Mosquitto:
    """A broker that queues whatever the server has not taken yet (no limit), for the bench only."""

    def __init__(self, folder):
        self.port = free_port()
        conf = folder / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
                        + ("user root\n" if os.geteuid() == 0 else ""))
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stderr=subprocess.DEVNULL)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(timeout=10)


def mqtt_ingest(redis_server, redis_client, folder, readings, batches=(1, 50)):
    """Readings a second stored from MQTT, for each message size in ``batches``; {} when
    Mosquitto is not installed."""
    if not MOSQUITTO:
        return {}
    figures = {}
    with Mosquitto(folder) as broker:
        server = ServerProcess(redis_server.url, cpus={0}, RATE_LIMIT=0, MQTT_URL=f"mqtt://127.0.0.1:{broker.port}",
                               HOMEASSISTANT_PREFIX="")
        try:
            wait_for(lambda: requests.get(server.url + "/healthz", timeout=30).json().get("mqtt") == "up",
                     "the server's MQTT client connecting")
            for batch in batches:
                redis_client.delete(device_readings(redis_client, DEVICE), device_key(redis_client, DEVICE))
                figures[f"readings/s, {batch} per message"] = _publish(broker.port, redis_client, readings, batch)
        finally:
            server.stop()
    return figures


def _publish(port, redis_client, readings, batch):
    device = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{DEVICE}-{batch}", protocol=paho.MQTTv5)
    device.connect("127.0.0.1", port)
    device.loop_start()
    boot = f"b{batch}"
    start = time.monotonic()
    for first in range(1, readings + 1, batch):
        body = [{"temperature": 20 + seq % 10 / 10, "boot": boot, "seq": seq} for seq in range(first, first + batch)]
        device.publish(readings_topic(DEVICE), json.dumps(body if batch > 1 else body[0]), qos=1)
    wait_for(lambda: redis_client.xlen(device_readings(redis_client, DEVICE)) >= readings, "the MQTT ingest",
             timeout=600)
    elapsed = time.monotonic() - start
    device.disconnect()
    device.loop_stop()
    return round(readings / elapsed)

