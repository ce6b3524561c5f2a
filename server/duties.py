"""What a server process does from the moment it starts, whether or not anyone watches:
the offline sweep, which turns a device's silence into ``offline`` alerts (and sends
where a flapping metric stands once its device may alert again: ``alerting.py``) and
trims every history to ``RETENTION`` each minute (``store.trim_histories``), the alert
webhook, the MQTT subscriber and the Home Assistant publisher, which also turns a board's
last will into the same ``offline`` at once (with ``MQTT_URL`` set: ``mqtt.py``,
``mqtt_sessions.py``, ``homeassistant.py``) and this process's line in
``metrics:processes`` (``metrics.py``).

gunicorn starts them in every worker once it has loaded the app (``gunicorn.conf.py``'s
``post_worker_init``), so that no browser and no request is needed. However many
processes and instances run, each alert is raised once and posted once: the sweep's Lua
call marks a device offline only once from a cutoff shared in Redis (a last will's, only
if the device is not offline yet), and the webhook
delivers from one process at a time (``webhook.py``).
"""
import logging
import threading
import time

import redis

from .alerting import resume_muted
from .connections import UNREACHABLE, client_for, is_busy, is_full
from .homeassistant import Discovery
from .metrics import process_name, report_process
from .mqtt_sessions import start_subscriber
from .store import CHANNEL, mark_offline, trim_histories
from .webhook import Webhook

log = logging.getLogger(__name__)


class Duties:
    sweep_seconds = 1.0
    trim_seconds = 60.0  # between trims of every history to RETENTION (store.trim_histories)

    def __init__(self, config, extensions=None, slot_folder=None):
        self.config = config
        self.extensions = extensions if extensions is not None else {}  # the app's: its hub, once made
        self.slot_folder = slot_folder  # where MQTT client-id slots are locked (mqtt_sessions.py)
        self.webhook = None
        self.mqtt = None
        self.homeassistant = None
        self.stopping = threading.Event()

    def start(self):
        client = client_for(self.config, max_connections=4)
        threading.Thread(target=self._sweep, args=(client,), name="offline-sweep", daemon=True).start()
        if self.config["WEBHOOK_URL"]:
            self.webhook = Webhook(client, self.config["WEBHOOK_URL"])
        if self.config["MQTT_URL"]:
            self.mqtt = start_subscriber(client_for(self.config, max_connections=2), self.config,
                                         self.slot_folder)
            self.homeassistant = Discovery(client_for(self.config, max_connections=4), self.config).start()
        return self

    def mqtt_state(self):
        """This process's MQTT client: "up" or "down"; None when MQTT is not configured."""
        if self.mqtt is None:
            return None
        return "up" if self.mqtt.connected else "down"

    def stop(self):
        self.stopping.set()
        if self.webhook:
            self.webhook.stop()
        if self.mqtt:
            self.mqtt.stop()
        if self.homeassistant:
            self.homeassistant.stop()

    def _sweep(self, client):
        """Every ``sweep_seconds``: mark the devices silent for ``OFFLINE_AFTER`` offline (none
        until ``OFFLINE_AFTER`` after Redis was last found full or away: each sweep writes, so
        either fails it), send the muted alerts that may go now, and say how this process is
        (its open streams, its MQTT client); every ``trim_seconds``, first trim the histories
        to ``RETENTION``."""
        failing = False
        process = process_name()
        trim_at = unheard_at = 0.0
        while not self.stopping.wait(self.sweep_seconds):
            try:
                if time.monotonic() >= trim_at:
                    trim_histories(client, time.time(), self.config["RETENTION"])
                    trim_at = time.monotonic() + self.trim_seconds
                mark_offline(client, time.time() - self.config["OFFLINE_AFTER"], unheard_at)
                resume_muted(client, time.time(), CHANNEL)
                hub = self.extensions.get("sensorcast.hub")
                report_process(client, process, hub.client_count() if hub else 0, self.mqtt_state(),
                               self.mqtt.stored_messages if self.mqtt else 0)
            except Exception as error:  # Redis away or full, or a bug: the sweep outlives either
                if is_full(error) or is_busy(error) or isinstance(error, UNREACHABLE):  # nothing is stored meanwhile:
                    unheard_at = time.time()  # no device is silent for it
                if not failing:
                    log.warning("offline sweep: %s; trying again every %g s", error, self.sweep_seconds,
                                exc_info=not isinstance(error, redis.exceptions.RedisError))
                failing = True
            else:
                if failing:
                    log.info("offline sweep: Redis is back")
                failing = False
