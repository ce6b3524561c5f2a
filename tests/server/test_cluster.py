"""A fleet on a real Redis Cluster of three primaries: its devices' keys spread over every
primary in shards (server/shards.py), each browser gets every reading exactly once, also
across a restart of the server that it replays through, and a replay merges the shards
in id order (server/positions.py); a viewer logs in, and a request without tokens is of
one device. With a replica for each primary, one primary's death loses no reading."""
import os
import subprocess
import sys
import time

import requests
from werkzeug.security import generate_password_hash

from server import ROOT, create_app
from server.auth import issue_token
from server.connections import client_for
from server.firmware import TARGETS, store_release, target_release
from server.store import READINGS, device_readings, trim_histories
from tests.conftest import Device, EventStream, FollowingBrowser, assert_every_device_seen_once_by_each, eventually


def test_a_fleet_is_spread_over_every_primary_and_each_browser_sees_each_reading_once(cluster):
    client = cluster.sharded_client()
    tokens = {f"device-{n}": issue_token(client, f"device-{n}") for n in range(12)}
    server = cluster.server(workers=2)
    browsers = [FollowingBrowser(server.url), FollowingBrowser(server.url, hang_up=0.4),
                FollowingBrowser(server.url, hang_up=0.4)]  # two on a flaky network, to either worker
    eventually(lambda: all(browser.watching.is_set() for browser in browsers))
    devices = [Device(server.url, token) for token in tokens.values()]
    eventually(lambda: all(device.accepted >= 10 for device in devices), timeout=60)

    port = int(server.url.rpartition(":")[2])
    server.stop()  # every browser reconnects to the next server with where it stood in each shard
    server = cluster.server(port=port, workers=2)
    try:
        accepted = [device.accepted for device in devices]
        eventually(lambda: all(device.accepted >= was + 30 for device, was in zip(devices, accepted)), timeout=90)
        for device in devices:
            device.stop()

        assert_every_device_seen_once_by_each(client, tokens, browsers)
        assert browsers[0].ids[-1].count("_") == cluster.shards - 1  # where it stands in each shard
        for port in cluster.ports:  # the shards' keys are on every primary
            with cluster.node(port) as node:
                assert node.dbsize() > 0
        assert all(client.xlen(key) for key in client.shards.each(READINGS))  # 12 devices reached all 6 shards
        cli = subprocess.run([sys.executable, "-m", "flask", "--app", "server", "devices", "list"], cwd=ROOT,
                             env=dict(os.environ, SENSORCAST_REDIS_CLUSTER=cluster.nodes,
                                      SENSORCAST_REDIS_SHARDS=str(cluster.shards)),
                             capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0 and all(name in cli.stdout for name in tokens), cli.stderr
    finally:
        server.stop()


def test_a_browser_back_after_a_while_is_replayed_every_shards_readings_in_id_order(cluster):
    client = cluster.sharded_client()
    tokens = {f"device-{n}": issue_token(client, f"device-{n}") for n in range(6)}
    server = cluster.server()
    try:
        def post(name, value):
            answer = server.post("/api/readings", tokens[name], json={"temperature": value})
            assert answer.status_code == 201, answer.text
            return answer.json()["ids"][0]

        post("device-0", 1)  # the other shards have no reading yet: where the browser stands in them is 0-0
        left_at = requests.get(server.url + "/api/devices", timeout=10).json()["last_id"]
        missed = [(name, post(name, value)) for value in (2, 3) for name in tokens]

        stream = EventStream(server.url + "/stream", {"Last-Event-ID": left_at})
        replayed = [stream.next_event() for _ in missed]
        stream.response.close()
    finally:
        server.stop()
    assert [event["event"] for event in replayed] == ["reading"] * len(missed)  # no reset: none was lost
    assert [(event["data"]["device"], event["data"]["id"]) for event in replayed] == sorted(
        missed, key=lambda pair: tuple(map(int, pair[1].split("-"))))
    assert len(left_at.split("_")) == cluster.shards and left_at.count("0-0") >= 1


def test_a_viewer_logs_in_to_a_clusters_dashboard(cluster):
    cluster.sharded_client().hset("viewers", "ana", generate_password_hash("correct horse"))
    server = cluster.server()
    try:
        viewer = requests.Session()
        assert viewer.get(server.url + "/api/devices", timeout=10).status_code == 401
        wrong = viewer.post(server.url + "/login", data={"name": "ana", "password": "wrong horse"}, timeout=30)
        right = viewer.post(server.url + "/login", data={"name": "ana", "password": "correct horse"}, timeout=30,
                            allow_redirects=False)
        devices = viewer.get(server.url + "/api/devices", timeout=10)
    finally:
        server.stop()
    assert wrong.status_code == 401 and right.status_code == 302
    assert devices.json() == {"devices": [], "last_id": None}


def test_without_tokens_a_request_for_two_devices_is_refused_whole_on_a_cluster(cluster):
    server = cluster.server(AUTH=False)
    try:
        answer = server.post("/api/readings", json=[{"device": "attic", "temperature": 20},
                                                    {"device": "cellar", "temperature": 12}])
        alone = server.post("/api/readings", json=[{"device": "attic", "temperature": 20}] * 2)
        devices = requests.get(server.url + "/api/devices", timeout=10).json()["devices"]
    finally:
        server.stop()
    assert answer.status_code == 400 and "of one device" in answer.json()["error"]
    assert alone.status_code == 201 and [device["device"] for device in devices] == ["attic"]


def test_a_devices_buckets_on_a_cluster_say_as_of_which_reading_they_are(cluster):
    """Its rollups and its newest reading are read in one transaction on its node."""
    server = cluster.server(AUTH=False)
    try:
        now = time.time()
        assert server.post("/api/readings", json=[{"device": "attic", "temperature": 20 + n, "ts": now - 60 + n}
                                                  for n in range(3)]).status_code == 201
        newest = requests.get(server.url + "/api/devices/attic/readings?limit=1", timeout=10).json()["readings"][0]["id"]
        answer = requests.get(f"{server.url}/api/devices/attic/readings?buckets=1&since={now - 600}&until={now}",
                              timeout=10).json()
    finally:
        server.stop()
    assert answer["newest"] == newest
    assert answer["buckets"][0]["temperature"] == {"min": 20, "avg": 21, "max": 22, "count": 3}


def test_every_history_on_every_primary_is_trimmed_to_retention(cluster):
    """The minute's trim (store.trim_histories) reaches each device's history on its own node."""
    server = cluster.server(AUTH=False)
    try:
        devices = [f"room-{n}" for n in range(12)]
        for device in devices:
            assert server.post("/api/readings", json={"device": device, "temperature": 20}).status_code == 201
    finally:
        server.stop()
    client = cluster.sharded_client()

    trim_histories(client, time.time() + 60, retention=30)

    assert [client.xlen(device_readings(client, device)) for device in devices] == [0] * 12


def test_a_primary_dies_its_replica_takes_over_and_no_reading_is_lost_or_seen_twice(replicated_cluster):
    cluster = replicated_cluster
    client = cluster.sharded_client()
    tokens = {f"device-{n}": issue_token(client, f"device-{n}") for n in range(6)}
    server = cluster.server()
    try:
        browser = FollowingBrowser(server.url)
        eventually(browser.watching.is_set)
        devices = [Device(server.url, token) for token in tokens.values()]
        eventually(lambda: all(device.accepted >= 10 for device in devices), timeout=60)

        victim = cluster.primaries()[0]
        cluster.kill(victim)
        killed_at, accepted = time.monotonic(), [device.accepted for device in devices]
        eventually(lambda: victim not in cluster.primaries() and len(cluster.primaries()) == 3, timeout=60)
        eventually(lambda: all(device.accepted >= was + 10 for device, was in zip(devices, accepted)), timeout=90)
        answered_again_after = time.monotonic() - killed_at
        for device in devices:
            device.stop()

        stored = {name: client.xrange(device_readings(client, name)) for name in tokens}
        eventually(lambda: sum(map(len, stored.values())) == len(browser.readings), timeout=60)
        browser.stop()
    finally:
        server.stop()
    for name, entries in stored.items():  # a reading answered 201 and lost would be a missing seq
        assert [int(fields["seq"]) for _, fields in entries] == list(range(1, len(entries) + 1))
        assert [entry_id for device, entry_id in browser.readings if device == name] == [
            entry_id for entry_id, _ in entries]
    print(f"every device's uploads were answered 201 again {answered_again_after:.1f} s after a primary died")


def test_a_primary_down_with_no_replica_is_503_with_retry_after_until_it_is_back(cluster):
    client = cluster.sharded_client()
    token = issue_token(client, "kitchen")
    server = cluster.server()
    try:
        assert server.post("/api/readings", token, json={"temperature": 20}).status_code == 201
        kitchens = client.get_node_from_key(client.shards.prefix("kitchen")).port
        other = next(port for port in cluster.ports if port != kitchens)  # the cluster stops for kitchen too
        cluster.kill(other)

        answers = []  # 201 until the cluster finds the primary gone (cluster-node-timeout)

        def refused():
            answers.append(server.post("/api/readings", token, json={"temperature": 21}))
            health = requests.get(server.url + "/healthz", timeout=30)
            return answers[-1].status_code == 503 and answers[-1].headers["Retry-After"] and health.status_code == 503
        eventually(refused, timeout=60)
        cluster.start(other)
        eventually(lambda: server.post("/api/readings", token, json={"temperature": 22}).status_code == 201,
                   timeout=90)
    finally:
        server.stop()
    stored = [fields["temperature"] for _, fields in client.xrange(device_readings(client, "kitchen"))]
    assert {answer.status_code for answer in answers} <= {201, 503}  # never a server error
    assert stored == ["20"] + ["21"] * [answer.status_code for answer in answers].count(201) + ["22"]


def test_settings_that_cannot_work_are_refused_at_start_in_one_line(cluster):
    cluster.sharded_client().set("readings-kept", 1)  # 6 shards' data from here on
    for settings, says in [({"SENSORCAST_REDIS_SHARDS": "0"}, "whole number from 1 to 256"),
                           ({"SENSORCAST_REDIS_SHARDS": "abc"}, "whole number from 1 to 256"),
                           ({"SENSORCAST_REDIS_CLUSTER": "localhost"}, "host:port,host:port"),
                           ({"SENSORCAST_REDIS_SHARDS": "3"}, "set SENSORCAST_REDIS_SHARDS=6"),
                           ({"SENSORCAST_REDIS_CLUSTER": "127.0.0.1:1"}, "cannot reach Redis")]:
        env = dict(os.environ, **{"SENSORCAST_REDIS_CLUSTER": cluster.nodes, "SENSORCAST_REDIS_SHARDS": "6", **settings})
        cli = subprocess.run([sys.executable, "-m", "flask", "--app", "server", "devices", "list"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=60)
        assert cli.returncode != 0 and says in cli.stderr and "Traceback" not in cli.stderr, (settings, cli.stderr)


def test_a_release_is_published_and_rolled_back_by_hand_on_a_cluster(cluster):
    client = client_for(create_app({"REDIS_CLUSTER": cluster.nodes}).config)
    store_release(client, "0.2.0", {"node.py": b"two", "uplink.py": b"two"})
    store_release(client, "0.3.0", {"node.py": b"three"})

    target_release(client, "0.2.0")

    assert client.hgetall(TARGETS) == {"*": "0.2.0"}
