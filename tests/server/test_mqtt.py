"""Readings over MQTT, through a real Mosquitto running deploy/mosquitto/'s configuration
and ACL, into real gunicorn servers: stored as HTTP stores them, each once, none lost."""
import base64
import hashlib
import json
import os
import pathlib
import signal
import time

import pytest
import requests
from paho.mqtt.reasoncodes import ReasonCode

from server import ROOT
from server.embedded_redis import EmbeddedRedis
from server.mqtt import SERVER_USER, Subscriber, readings_topic
from server.mqtt_sessions import slot_lock
from tests.conftest import LiveServer, eventually
from tests.mqtt_broker import Publisher, leave_a_session, needs_mosquitto
from tests.server.test_metrics import scrape

pytestmark = needs_mosquitto


@pytest.fixture
def device(broker):
    """A device's MQTT connection, its login made as ``devices add --mqtt`` makes it."""
    devices = []

    def connect(name):
        broker.add_user(name)
        devices.append(Publisher(broker, name))
        return devices[-1]

    yield connect
    for publisher in devices:
        publisher.close()


def seqs(server, device):
    return [reading["seq"] for reading in server.history(device)]


def test_the_shipped_broker_configuration_starts_without_a_note_or_a_warning(broker):
    """deploy/mosquitto/ as Mosquitto 2 reads it: no deprecated option, nothing it cannot open."""
    assert broker.complaints() == []


def test_readings_published_over_mqtt_reach_the_history_and_the_stream(mqtt_server, device):
    server = mqtt_server()
    stream = server.stream()
    kitchen = device("kitchen")
    assert not kitchen.publish(json.dumps({"temperature": 21.5, "boot": "b1", "seq": 1}), "kitchen").is_failure
    kitchen.publish(json.dumps([{"temperature": 21.6, "seq": 2, "boot": "b1"},
                                {"temperature": 21.7, "humidity": 40, "seq": 3, "boot": "b1"}]), "kitchen")
    eventually(lambda: seqs(server, "kitchen") == [1, 2, 3])
    events = [stream.next_reading() for _ in range(3)]
    assert [event["data"]["temperature"] for event in events] == [21.5, 21.6, 21.7]
    assert {event["data"]["device"] for event in events} == {"kitchen"}
    assert [event["id"] for event in events] == [reading["id"] for reading in server.history("kitchen")]
    stream.close()


def test_http_and_mqtt_readings_of_one_device_interleave_with_no_duplicate_and_no_gap(mqtt_server, device,
                                                                                     token_for):
    server = mqtt_server()
    kitchen, token = device("kitchen"), token_for("kitchen")
    for seq in range(1, 21):
        reading = {"temperature": 20 + seq / 10, "boot": "mix", "seq": seq}
        if seq % 2:
            assert server.post("/api/readings", token, json=reading).status_code == 201
            kitchen.publish(json.dumps(reading), "kitchen")  # the same reading again, the other way
        else:
            kitchen.publish(json.dumps(reading), "kitchen")
            eventually(lambda: seqs(server, "kitchen")[-1:] == [seq])
            assert server.post("/api/readings", token, json=reading).json()["duplicates"] == 1
    eventually(lambda: scrape(server).get(("sensorcast_readings_duplicate_total", (("transport", "mqtt"),))) == 10)
    assert seqs(server, "kitchen") == list(range(1, 21))
    figures = scrape(server)
    assert figures[("sensorcast_readings_stored_total", (("transport", "mqtt"),))] == 10
    assert figures[("sensorcast_readings_stored_total", (("transport", "http"),))] == 10


def test_a_bad_message_is_logged_once_and_dropped_and_the_next_is_stored(mqtt_server, device, tmp_path):
    log = tmp_path / "server.log"
    server = mqtt_server(log=str(log))
    kitchen = device("kitchen")
    bad = [b"not json", b'{"temperature": "warm"}', json.dumps({"device": "attic", "temperature": 20}),
           json.dumps({"temp\nerature": 20}), b"[]", b"\xff\xfe"]
    kitchen.publish_all(bad, "kitchen")
    kitchen.publish(json.dumps({"temperature": 19.5, "boot": "b", "seq": 1}), "kitchen")
    eventually(lambda: seqs(server, "kitchen") == [1])
    lines = [line for line in log.read_text().splitlines() if "dropped a message" in line]
    assert len(lines) == len(bad)
    assert all("'sensorcast/kitchen/readings'" in line and "device 'kitchen'" in line for line in lines)
    assert any("'temp\\nerature: " in line for line in lines), lines  # quoted, on one line
    assert any("'a reading names another device than the topic'" in line for line in lines), lines
    assert server.health() == {"status": "ok", "streams": 0, "mqtt": "up"}
    figures = scrape(server)
    assert figures[("sensorcast_uploads_refused_total", (("reason", "invalid"), ("transport", "mqtt")))] == 5
    assert figures[("sensorcast_uploads_refused_total", (("reason", "forbidden"), ("transport", "mqtt")))] == 1


def test_a_message_too_large_for_the_server_is_counted_and_logged_and_the_next_is_stored(mqtt_server, device,
                                                                                        tmp_path):
    log = tmp_path / "server.log"
    server = mqtt_server(log=str(log))
    kitchen = device("kitchen")
    batch = json.dumps([{"temperature": 20, "boot": "b", "seq": seq} for seq in range(1, 10_001)])
    assert len(batch) > 256 * 1024  # the server's limit, below the broker's: the broker takes it
    assert not kitchen.publish(batch, "kitchen").is_failure
    kitchen.publish(json.dumps({"temperature": 21, "boot": "b", "seq": 1}), "kitchen")
    eventually(lambda: seqs(server, "kitchen") == [1])
    too_large = ("sensorcast_uploads_refused_total", (("reason", "too_large"), ("transport", "mqtt")))
    assert scrape(server)[too_large] == 1
    lines = [line for line in log.read_text().splitlines() if "dropped a message" in line]
    assert len(lines) == 1 and "'more than 262144 bytes'" in lines[0], lines


def test_a_device_over_its_rate_limit_has_its_messages_stored_later_in_order(mqtt_server, device):
    server = mqtt_server(RATE_LIMIT=5, RATE_BURST=2)
    kitchen = device("kitchen")
    kitchen.publish_all([json.dumps({"temperature": 20, "boot": "fast", "seq": seq}) for seq in range(1, 16)],
                        "kitchen")
    eventually(lambda: seqs(server, "kitchen") == list(range(1, 16)))


def test_a_device_flooding_at_qos_0_past_its_rate_limit_has_the_excess_dropped_not_held(mqtt_server, device,
                                                                                        tmp_path):
    log = tmp_path / "server.log"
    server = mqtt_server(RATE_LIMIT=0.1, RATE_BURST=1, log=str(log))  # one stored, then a wait of 10 s
    kitchen = device("kitchen")
    flood = 300
    for seq in range(1, flood + 1):
        kitchen.client.publish("sensorcast/kitchen/readings", json.dumps({"temperature": 20, "seq": seq}), qos=0)

    held = Subscriber.held_per_topic
    dropped = ("sensorcast_uploads_refused_total", (("reason", "held"), ("transport", "mqtt")))
    eventually(lambda: scrape(server).get(dropped, 0) >= flood - 1 - held)
    assert scrape(server)[dropped] <= flood - held
    lines = [line for line in log.read_text().splitlines() if "kitchen" in line and "dropped" in line]
    assert len(lines) == Subscriber.logged_per_minute + 1  # then only counted
    assert "not logged" in lines[-1]


def stored_at(reading):
    """When the server stored ``reading``: the Unix time in its stream id."""
    return int(reading["id"].partition("-")[0]) / 1000


def test_readings_without_ts_get_the_time_they_arrived_though_their_device_must_wait(mqtt_server, device):
    server = mqtt_server(RATE_LIMIT=0.5, RATE_BURST=1)  # one stored at once, then one every 2 s
    kitchen = device("kitchen")  # a board without a clock: no ts
    published = time.time()
    kitchen.publish_all([json.dumps({"temperature": 20 + n}) for n in range(3)], "kitchen")
    eventually(lambda: len(server.history("kitchen")) == 3)
    readings = server.history("kitchen")
    assert [reading["temperature"] for reading in readings] == [20, 21, 22]
    assert all(reading["ts"] >= published for reading in readings)
    assert stored_at(readings[-1]) - readings[-1]["ts"] >= 2  # stored 4 s after it came, stamped when it came


def test_a_board_that_skipped_seqs_has_its_next_reading_stored_at_once(mqtt_server, device):
    server = mqtt_server(MQTT_ADOPT_AFTER=600)
    kitchen = device("kitchen")
    kitchen.publish(json.dumps({"temperature": 20, "boot": "b", "seq": 1}), "kitchen")
    kitchen.publish(json.dumps({"temperature": 21, "boot": "b", "seq": 5}), "kitchen")  # its buffer overflowed
    kitchen.publish(json.dumps({"temperature": 22, "boot": "late", "seq": 40}), "kitchen")  # a boot begun elsewhere
    eventually(lambda: seqs(server, "kitchen") == [1, 5, 40])


def test_two_server_processes_store_each_message_exactly_once(mqtt_server, device, redis_client):
    servers = [mqtt_server(), mqtt_server()]
    devices = [f"room-{number}" for number in range(8)]
    publishers = {name: device(name) for name in devices}
    for name in devices:  # no boot and no seq: a message stored twice would show
        publishers[name].publish_all([json.dumps({"n": n}) for n in range(25)], name)
    # with boot and seq, dealt out to both, so maybe stored out of order: none taken for a retry
    publishers["room-0"].publish_all([json.dumps({"temperature": 20 + seq / 10, "boot": "b", "seq": seq})
                                      for seq in range(1, 31)], "room-0")
    eventually(lambda: all(len(servers[0].history(name)) >= 25 for name in devices), timeout=60)
    for name in devices:
        assert sorted(reading["n"] for reading in servers[0].history(name) if "n" in reading) == list(range(25))
    eventually(lambda: sorted(reading["seq"] for reading in servers[0].history("room-0") if "seq" in reading)
               == list(range(1, 31)))
    assert redis_client.hmget("device:room-0", "seq", "temperature") == ["30", "23.0"]  # seq 30's, stored last or not
    def shares():  # each process's stored messages, as it reports them every second
        return [count for (name, _), count in scrape(servers[0]).items() if name == "sensorcast_mqtt_messages_total"]
    eventually(lambda: sum(shares()) == 8 * 25 + 30)
    assert len(shares()) == 2 and all(shares()), shares()  # both took part


def test_a_second_server_with_a_redis_of_its_own_on_the_same_broker_takes_no_readings_from_the_first(
        mqtt_server, broker, device, tmp_path):
    """A second make run (--data elsewhere) trying things out beside the one in use: each
    Redis gets every reading, none of the first's goes to the second's alone."""
    first = mqtt_server()
    with EmbeddedRedis(tmp_path / "second") as other_redis:
        second = LiveServer(other_redis.url, MQTT_URL=broker.url(), MQTT_CLIENT_ID=f"test-{tmp_path.name}-second")
        try:
            eventually(lambda: second.health().get("mqtt") == "up", timeout=60)
            kitchen = device("kitchen")

            kitchen.publish_all([json.dumps({"temperature": 20, "boot": "b", "seq": seq}) for seq in range(1, 41)],
                                "kitchen")

            eventually(lambda: seqs(first, "kitchen") == list(range(1, 41)))
            eventually(lambda: seqs(second, "kitchen") == list(range(1, 41)))
        finally:
            second.stop()


def test_messages_a_killed_server_held_unacknowledged_are_stored_when_it_is_back(mqtt_server, device,
                                                                                redis_client):
    server = mqtt_server(RATE_LIMIT=1, RATE_BURST=1)  # it holds most of them, waiting
    kitchen = device("kitchen")
    kitchen.publish_all([json.dumps({"temperature": 20, "boot": "b", "seq": seq}) for seq in range(1, 11)], "kitchen")
    eventually(lambda: len(seqs(server, "kitchen")) >= 2)
    workers = pathlib.Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
    for pid in [server.process.pid, *map(int, workers)]:
        os.kill(pid, signal.SIGKILL)
    server.process.wait()
    assert redis_client.xlen("readings:kitchen") < 10  # the rest was in its hands, unacknowledged
    server = mqtt_server()
    eventually(lambda: seqs(server, "kitchen") == list(range(1, 11)))


@pytest.mark.parametrize("left_behind", ["by a worker of this host before a reload", "by another instance"])
def test_a_session_no_process_holds_any_more_is_emptied_by_a_live_one(left_behind, mqtt_server, broker, device,
                                                                      redis_client, tmp_path):
    here = left_behind.endswith("reload")
    server = mqtt_server(MQTT_ADOPT_AFTER=1 if not here else 600)
    client_id = f"test-{tmp_path.name}-7" if here else "elsewhere-0"
    leave_a_session(broker, client_id, redis_client)  # the broker now deals it every other message
    kitchen = device("kitchen")
    kitchen.publish_all([json.dumps({"temperature": 20, "boot": "b", "seq": seq}) for seq in range(1, 21)], "kitchen")
    said = time.time() - (0 if here else 100)  # an instance elsewhere must have been silent a while
    redis_client.hset("mqtt-sessions", client_id, repr(said))  # as its process said while it lived
    eventually(lambda: sorted(seqs(server, "kitchen")) == list(range(1, 21)))  # its share stored late, each once
    eventually(lambda: not redis_client.hexists("mqtt-sessions", client_id))  # ended, and forgotten
    kitchen.publish_all([json.dumps({"temperature": 21, "boot": "b", "seq": seq}) for seq in range(21, 31)], "kitchen")
    eventually(lambda: seqs(server, "kitchen")[20:] == list(range(21, 31)))  # none dealt to it any more
    assert sorted(seqs(server, "kitchen")) == list(range(1, 31))


def test_a_worker_of_a_restart_that_starts_late_still_finds_its_own_session_free(mqtt_server, redis_client,
                                                                                    tmp_path):
    prefix = f"test-{tmp_path.name}"
    server = mqtt_server(workers=2)
    eventually(lambda: set(redis_client.hkeys("mqtt-sessions")) == {f"{prefix}-0", f"{prefix}-1"})
    server.stop()

    restarted = time.time()
    server = mqtt_server(workers=1)  # its first worker is up and has looked for sessions to take over twice
    beats = set()
    eventually(lambda: beats.add(float(redis_client.hget("mqtt-sessions", f"{prefix}-0"))) or
               len({beat for beat in beats if beat > restarted}) >= 3)
    late = slot_lock(ROOT / "var", prefix, 1)  # the second, slower, comes now

    assert late is not None and redis_client.hexists("mqtt-sessions", f"{prefix}-1")  # not taken over meanwhile
    late.close()


def test_the_broker_refuses_a_device_publishing_as_another(mqtt_server, device, redis_client):
    server = mqtt_server()
    attic = device("attic")
    device("kitchen")
    answer = attic.publish(json.dumps({"temperature": 99}), "kitchen")
    assert answer == ReasonCode(answer.packetType, "Not authorized")
    attic.publish(json.dumps({"temperature": 15}), "attic")  # published after, so stored after
    eventually(lambda: len(server.history("attic")) == 1)
    assert server.history("kitchen") == [] and redis_client.exists("device:kitchen") == 0


@pytest.mark.parametrize("command, deleted", [(["devices", "revoke", "kitchen"], False),
                                              (["devices", "delete", "kitchen", "--revoke", "--yes"], True),
                                              (None, True)],
                         ids=["flask devices revoke", "flask devices delete --revoke", "DELETE ?revoke=1"])
def test_a_device_whose_tokens_are_revoked_is_refused_over_mqtt_until_it_is_added_again(command, deleted, mqtt_server,
                                                                                        device, app, redis_client,
                                                                                        tmp_path):
    log = tmp_path / "server.log"
    server = mqtt_server(log=str(log))
    runner = app.test_cli_runner()
    runner.invoke(args=["devices", "add", "kitchen"])  # provisioned: a token, and a broker login
    kitchen = device("kitchen")

    def reading(seq):
        return json.dumps({"temperature": 20, "boot": "b", "seq": seq})
    kitchen.publish(reading(1), "kitchen")
    eventually(lambda: seqs(server, "kitchen") == [1])

    if command:
        said = runner.invoke(args=command).output
    else:
        assert requests.delete(f"{server.url}/api/devices/kitchen?revoke=1", timeout=10).status_code == 204
    assert not kitchen.publish(reading(2), "kitchen").is_failure  # its broker login still works
    refused = ("sensorcast_uploads_refused_total", (("reason", "revoked"), ("transport", "mqtt")))
    eventually(lambda: scrape(server).get(refused) == 1 or 2 in seqs(server, "kitchen"))
    kept = [] if deleted else [1]
    assert seqs(server, "kitchen") == kept
    assert (redis_client.zscore("devices", "kitchen") is None) == deleted  # a deleted one does not come back
    lines = [line for line in log.read_text().splitlines() if "dropped a message" in line]
    assert len(lines) == 1 and "device 'kitchen'" in lines[0] and "its tokens were revoked" in lines[0], lines
    if command:  # and the command says so
        assert "revoked 1 token(s)" in said and "the server refuses its readings, over MQTT too" in said, said

    runner.invoke(args=["devices", "add", "kitchen"])
    kitchen.publish(reading(3), "kitchen")
    eventually(lambda: seqs(server, "kitchen") == kept + [3])


def test_the_broker_refuses_a_device_publishing_its_own_state(mqtt_server, device):
    mqtt_server()
    kitchen = device("kitchen")
    answer = kitchen.publish(json.dumps({"temperature": -40}), topic="sensorcast/kitchen/state")  # Home Assistant's
    assert answer == ReasonCode(answer.packetType, "Not authorized")
    assert not kitchen.publish("offline", topic="sensorcast/kitchen/status").is_failure  # its last will's topic
    assert not kitchen.publish(json.dumps({"temperature": 20}), "kitchen").is_failure


@pytest.mark.parametrize("qos", [1, 0], ids=["qos 1", "qos 0, as ESPHome and Tasmota publish"])
def test_messages_published_while_the_server_is_stopped_are_stored_when_it_is_back(mqtt_server, device, qos):
    server = mqtt_server()
    kitchen = device("kitchen")
    reading = lambda seq: json.dumps({"temperature": 20, "boot": "b", "seq": seq})
    kitchen.publish(reading(1), "kitchen")
    eventually(lambda: seqs(server, "kitchen") == [1])
    server.stop()
    for seq in range(2, 31):
        kitchen.client.publish(readings_topic("kitchen"), reading(seq), qos=qos).wait_for_publish(timeout=10)
    kitchen.publish(reading(31), "kitchen")  # its PUBACK: the broker has taken every one before it
    server = mqtt_server()
    eventually(lambda: seqs(server, "kitchen") == list(range(1, 32)))


def test_http_goes_on_while_the_broker_is_away_and_mqtt_comes_back(mqtt_server, broker, device, token_for):
    server = mqtt_server()
    broker.stop()
    eventually(lambda: server.health().get("mqtt") == "down")
    assert server.post("/api/readings", token_for("kitchen"), json={"temperature": 20}).status_code == 201
    broker.start()
    eventually(lambda: server.health().get("mqtt") == "up", timeout=60)
    device("kitchen").publish(json.dumps({"temperature": 21}), "kitchen")
    eventually(lambda: len(server.history("kitchen")) == 2)


def test_a_retained_reading_is_stored_once_however_often_the_server_subscribes_again(mqtt_server, broker, device):
    server = mqtt_server()
    kitchen = device("kitchen")
    retained = lambda payload: kitchen.client.publish(readings_topic("kitchen"), payload, qos=1, retain=True)
    retained(json.dumps({"temperature": 44.4})).wait_for_publish(timeout=10)  # as Tasmota's SensorRetain sends it
    eventually(lambda: len(server.history("kitchen")) == 1)

    broker.stop()
    broker.start()  # the server subscribes again, and the broker hands it the retained reading
    eventually(lambda: server.health().get("mqtt") == "up" and kitchen.client.is_connected(), timeout=60)
    retained(b"").wait_for_publish(timeout=10)  # the device clears it
    kitchen.publish(json.dumps({"temperature": 21.5}), "kitchen")

    eventually(lambda: len(server.history("kitchen")) >= 2)
    assert [reading["temperature"] for reading in server.history("kitchen")] == [44.4, 21.5]
    assert scrape(server)[("sensorcast_uploads_refused_total", (("reason", "invalid"), ("transport", "mqtt")))] == 0


def test_devices_add_mqtt_prints_a_broker_login(app):
    output = app.test_cli_runner().invoke(args=["devices", "add", "--mqtt", "kitchen"]).output.splitlines()
    assert output[0].startswith("token (HTTP and updates): ") and output[1] == "MQTT username: kitchen"
    password = output[2].removeprefix("MQTT password: ")
    assert output[3] == "publishes to: sensorcast/kitchen/readings"
    user, _, stored = output[-1].partition(":")
    _, scheme, iterations, salt, digest = stored.split("$")
    assert (user, scheme) == ("kitchen", "7")
    assert base64.b64decode(digest) == hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt),
                                                           int(iterations))
    assert SERVER_USER not in output[-1]


def test_a_server_whose_broker_login_is_wrong_says_so_once_not_at_every_try(start_server, broker, tmp_path):
    """A password mistyped on a Friday is refused every few seconds all weekend: the log
    says it once for each client, not at every try."""
    right = broker.password_file.read_text()
    broker.password_file.write_text("".join(line for line in right.splitlines(keepends=True)
                                            if not line.startswith(SERVER_USER + ":")))
    broker.process.send_signal(signal.SIGHUP)
    log = tmp_path / "server.log"
    server = start_server(MQTT_URL=broker.url(), MQTT_CLIENT_ID=f"test-{tmp_path.name}", log=log)

    eventually(lambda: broker_log(broker).count("not authorised") >= 8, timeout=60)  # both clients, many tries
    refusals = [line for line in log.read_text().splitlines() if "refused" in line]
    broker.password_file.write_text(right)
    broker.process.send_signal(signal.SIGHUP)

    assert len(refusals) == 2 and all("Not authorized" in line for line in refusals)  # readings, Home Assistant
    eventually(lambda: server.health().get("mqtt") == "up", timeout=60)


def broker_log(broker):
    return (broker.folder / "mosquitto.log").read_text()
