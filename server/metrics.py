"""``GET /metrics``: Prometheus' text format (prometheus_client), right however many
worker processes and instances run, whichever of them Prometheus happens to scrape.

Nothing is kept in a process's memory: device figures are read from Redis at scrape
time (``device:<id>``, ``devices``); counters live in the Redis hash ``metrics``
(HINCRBY, by every process: ``stored:<transport>`` and ``duplicates:<transport>`` in the
ingest script itself, ``refused:<transport>:<reason>``, ``webhook:<outcome>`` for each
try to post an alert, ``closed:<reason>`` for each stream client the hub closed); and each process writes what only it knows (its open
streams, whether its MQTT client is connected) into ``metrics:processes`` every second
(``duties.py``), where a scrape sums the fresh entries and forgets the stale ones.

It shows every device's latest values, so it is open only while reading is (no viewer
exists); with ``METRICS_TOKEN`` set it needs ``Authorization: Bearer <METRICS_TOKEN>``,
and once viewers exist it needs that token.

A Redis that is down or hung is what Prometheus must be told, not a failed scrape: the
scrape reads Redis through a client of its own that gives up after ``SCRAPE_TIMEOUT``
seconds, well within Prometheus' default scrape timeout of 10 s, and then answers 200 with
``sensorcast_redis_up 0`` alone (whether viewers guard the readings is unknown then, but
no reading can be shown either).
"""
import hmac
import json
import logging
import collections
import os
import socket
import time

import redis
from flask import Blueprint, Response, abort, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .connections import client_for, get_redis
from .readings import NOT_METRICS, decode_fields
from .shards import shards_of
from .store import device_key, known_devices
from .viewers import Accounts

bp = Blueprint("metrics", __name__)
log = logging.getLogger(__name__)

COUNTERS = "metrics"
PROCESSES = "metrics:processes"
PROCESS_FRESH = 10  # seconds a process's entry counts after it was written
PROCESS_FORGET = 300  # seconds after which a scrape removes it
INGEST_ENDPOINTS = {"ingest.post_readings": "http", "ingest.therm_push": "http"}
REFUSALS = {400: "invalid", 401: "unauthorized", 403: "forbidden", 408: "timeout", 413: "too_large",
            409: "conflict", 415: "not_json", 429: "rate_limited"}  # 503 and 507: Redis itself is away or full
# every transport's refusals, shown from 0 so a dashboard's rate() works from the first one
# why mqtt.py drops a message
MQTT_REFUSALS = INVALID, FORBIDDEN, REVOKED, CONFLICT, TOO_LARGE, HELD = (
    "invalid", "forbidden", "revoked", "conflict", "too_large", "held")
REFUSED_BY_TRANSPORT = {"http": tuple(REFUSALS.values()), "mqtt": MQTT_REFUSALS}
SCRAPE_TIMEOUT = 2.0


def process_name():
    return f"{socket.gethostname()}:{os.getpid()}"


def count(client, field, amount=1):
    """Add to a counter; a Redis error loses the figure, never what was being counted."""
    try:
        client.hincrby(COUNTERS, field, amount)
    except redis.exceptions.RedisError as error:
        log.warning("metrics: could not count %s: %s", field, error)


def count_refused(client, transport, reason):
    count(client, f"refused:{transport}:{reason}")


def report_process(client, name, streams, mqtt, mqtt_messages=0):
    """What only this process knows: its open streams, its MQTT client ("up", "down", or
    None when not configured) and the MQTT messages it stored since it started."""
    client.hset(PROCESSES, name, json.dumps({"at": time.time(), "streams": streams, "mqtt": mqtt,
                                             "mqtt_messages": mqtt_messages}))


@bp.after_app_request
def count_refusal(response):
    """Count every upload refused, by why (the ones stored are counted as they are stored)."""
    transport = INGEST_ENDPOINTS.get(request.endpoint)
    reason = REFUSALS.get(response.status_code)
    if transport and reason:
        count_refused(get_redis(), transport, reason)
    return response


def scrape_redis():
    """The process's Redis client for scrapes: two connections, each read given up after
    ``SCRAPE_TIMEOUT`` (the shared client waits 10 s, as long as Prometheus does)."""
    client = current_app.extensions.get("sensorcast.metrics-redis")
    if client is None:
        client = client_for(current_app.config, max_connections=2, timeout=SCRAPE_TIMEOUT)
        current_app.extensions["sensorcast.metrics-redis"] = client
    return client


@bp.get("/metrics")
def metrics():
    token = current_app.config["METRICS_TOKEN"]
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            abort(401, "send 'Authorization: Bearer <SENSORCAST_METRICS_TOKEN>'")
    scrape = Scrape(scrape_redis(), current_app.config["OFFLINE_AFTER"])
    try:
        if not token and not Accounts(scrape.redis).allows(None):  # not get_accounts(): its client waits 10 s
            abort(403, "viewers guard the readings: set SENSORCAST_METRICS_TOKEN and give it to Prometheus")
        scrape.read()
    except redis.exceptions.RedisError as error:
        log.warning("metrics: Redis: %s", error)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(scrape)
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class Scrape:
    """A prometheus_client collector of what ``read`` found in Redis, once per scrape."""

    def __init__(self, client, offline_after):
        self.redis = client
        self.offline_after = offline_after
        self.families = None  # until Redis answered

    def read(self):
        self.families = list(self._from_redis(time.time()))

    def collect(self):
        up = GaugeMetricFamily("sensorcast_redis_up", "1 if Redis answered this scrape")
        up.add_metric([], int(self.families is not None))
        yield up
        yield from self.families or ()

    def _from_redis(self, now):
        devices = [device for device, _ in known_devices(self.redis)]
        counter_keys = {COUNTERS, *shards_of(self.redis).each(COUNTERS)}  # the ingest script counts in its shard
        with self.redis.pipeline(transaction=False) as pipe:
            for device in devices:
                pipe.hgetall(device_key(self.redis, device))
            for key in counter_keys:
                pipe.hgetall(key)
            pipe.hgetall(PROCESSES)
            replies = pipe.execute()
        states, counted, processes = replies[:len(devices)], replies[len(devices):-1], replies[-1]
        counters = collections.Counter()
        for fields in counted:
            counters.update({field: int(value) for field, value in fields.items()})
        yield from self._devices(devices, states, now)
        yield from self._counters(counters)
        yield from self._processes(processes, now)

    def _devices(self, devices, states, now):
        value = GaugeMetricFamily("sensorcast_device_value", "a device's latest value of each metric",
                                  labels=["device", "metric"])
        seen = GaugeMetricFamily("sensorcast_device_last_seen_timestamp_seconds", "when the device last sent",
                                 labels=["device"])
        age = GaugeMetricFamily("sensorcast_device_last_seen_age_seconds", "seconds since the device last sent",
                                labels=["device"])
        online = GaugeMetricFamily("sensorcast_device_online", "1 while the device is online", labels=["device"])
        for device, fields in zip(devices, states):
            if "last_seen" not in fields:
                continue
            last_seen = float(fields["last_seen"])
            for name, number in decode_fields({k: v for k, v in fields.items() if k not in NOT_METRICS}).items():
                value.add_metric([device, name], number)
            seen.add_metric([device], last_seen)
            age.add_metric([device], max(0.0, now - last_seen))
            online.add_metric([device], int(fields.get("status") != "offline" and now - last_seen <= self.offline_after))
        yield from (value, seen, age, online)

    def _counters(self, counters):
        stored = CounterMetricFamily("sensorcast_readings_stored", "readings stored", labels=["transport"])
        duplicates = CounterMetricFamily("sensorcast_readings_duplicate", "readings received again (a retry) and "
                                         "not stored twice", labels=["transport"])
        refused = CounterMetricFamily("sensorcast_uploads_refused", "uploads (requests, messages) refused, by reason",
                                      labels=["transport", "reason"])
        webhook = CounterMetricFamily("sensorcast_webhook_posts", "tries to post an alert to the webhook, by outcome "
                                      "(delivered, failed: tried again, given_up)", labels=["outcome"])
        closed = CounterMetricFamily("sensorcast_stream_clients_closed", "live stream clients the server closed, by "
                                     "why (behind: too slow to read, stalled: a write stalled, access: logged out)",
                                     labels=["reason"])
        families = {"stored": stored, "duplicates": duplicates, "refused": refused, "webhook": webhook,
                    "closed": closed}
        zero = {f"refused:{transport}:{reason}": 0 for transport, reasons in REFUSED_BY_TRANSPORT.items()
                for reason in reasons}
        zero |= {f"{kind}:{transport}": 0 for kind in ("stored", "duplicates") for transport in REFUSED_BY_TRANSPORT}
        for field, number in sorted((zero | counters).items()):
            kind, _, labels = field.partition(":")
            if kind in families:
                families[kind].add_metric(labels.split(":"), int(number))
        yield from families.values()

    def _processes(self, processes, now):
        live = GaugeMetricFamily("sensorcast_processes", "server processes that reported in the last 10 s")
        streams = GaugeMetricFamily("sensorcast_open_streams", "open /stream connections, all processes")
        mqtt = GaugeMetricFamily("sensorcast_mqtt_connected", "1 while the process's MQTT client is connected",
                                 labels=["process"])
        messages = CounterMetricFamily("sensorcast_mqtt_messages", "MQTT messages the process stored since it started",
                                       labels=["process"])
        fresh, stale = [], []
        for name, text in processes.items():
            entry = json.loads(text)
            if now - entry["at"] <= PROCESS_FRESH:
                fresh.append((name, entry))
            elif now - entry["at"] > PROCESS_FORGET:
                stale.append(name)
        if stale:
            self.redis.hdel(PROCESSES, *stale)
        live.add_metric([], len(fresh))
        streams.add_metric([], sum(entry["streams"] for _, entry in fresh))
        for name, entry in sorted(fresh):
            if entry["mqtt"]:
                mqtt.add_metric([name], int(entry["mqtt"] == "up"))
                messages.add_metric([name], entry["mqtt_messages"])
        yield from (live, streams, mqtt, messages)
