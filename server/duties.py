"""What a server process does from the moment it starts, whether or not anyone watches:
the offline sweep, which turns a device's silence into ``offline`` alerts, and the
alert webhook.

gunicorn starts them in every worker once it has loaded the app (``gunicorn.conf.py``'s
``post_worker_init``), so that no browser and no request is needed. However many
processes and instances run, each alert is raised once and posted once: the sweep's Lua
call marks a device offline only once from a cutoff shared in Redis, and the webhook
delivers from one process at a time (``webhook.py``).
"""
import logging
import threading
import time

import redis

from .store import connect, mark_offline
from .webhook import Webhook

log = logging.getLogger(__name__)


class Duties:
    sweep_seconds = 1.0

    def __init__(self, config):
        self.config = config
        self.webhook = None
        self.stopping = threading.Event()

    def start(self):
        client = connect(self.config["REDIS_URL"], max_connections=4)
        threading.Thread(target=self._sweep, args=(client,), name="offline-sweep", daemon=True).start()
        if self.config["WEBHOOK_URL"]:
            self.webhook = Webhook(client, self.config["WEBHOOK_URL"])
        return self

    def stop(self):
        self.stopping.set()
        if self.webhook:
            self.webhook.stop()

    def _sweep(self, client):
        """Every ``sweep_seconds``: mark the devices silent for ``OFFLINE_AFTER`` offline."""
        failing = False
        while not self.stopping.wait(self.sweep_seconds):
            try:
                mark_offline(client, time.time() - self.config["OFFLINE_AFTER"])
            except redis.exceptions.RedisError as error:
                if not failing:
                    log.warning("offline sweep: %s; trying again every %g s", error, self.sweep_seconds)
                failing = True
            else:
                if failing:
                    log.info("offline sweep: Redis is back")
                failing = False
