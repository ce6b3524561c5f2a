"""A device owner posts readings: what is stored, what is refused, and why."""
import gzip
import hashlib
import json
import time

import pytest
import requests

from server import create_app
from server.auth import revoke_tokens
from server.duties import Duties
from server.retries import WINDOW, seqs_key
from server.store import READING_BYTES, READINGS, device_key, device_readings
from tests.conftest import TEST_SETTINGS, eventually
from tools.run import free_port


def post(client, body, token=None, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post("/api/readings", json=body, headers=headers, **kwargs)


def test_one_reading_is_stored_in_history_latest_and_firehose(client, token_for, redis_client):
    answer = post(client, {"device": "kitchen", "temperature": 21.4, "humidity": 40}, token_for("kitchen"))

    assert answer.status_code == 201
    [entry_id] = answer.json["ids"]
    assert redis_client.xrange(READINGS)[0][0] == entry_id
    assert redis_client.xrange(device_readings(redis_client, "kitchen"))[0][0] == entry_id
    latest = redis_client.hgetall(device_key(redis_client, "kitchen"))
    assert (latest["temperature"], latest["humidity"]) == ("21.4", "40")
    assert redis_client.zscore("devices", "kitchen") is not None


def test_a_batch_is_stored_in_order_in_one_request(client, token_for, redis_client):
    batch = [{"temperature": 20 + i, "seq": i, "boot": "b1"} for i in range(50)]

    answer = post(client, batch, token_for("kitchen"))

    assert answer.json["stored"] == 50
    history = redis_client.xrange(device_readings(redis_client, "kitchen"))
    assert [fields["temperature"] for _, fields in history] == [str(20 + i) for i in range(50)]


def test_uploads_go_on_after_redis_forgot_the_ingest_script(client, token_for, redis_client):
    token = token_for("kitchen")
    assert post(client, {"temperature": 20}, token).status_code == 201

    redis_client.script_flush()  # as a Redis restarted without its data would have
    answer = post(client, {"temperature": 21}, token)

    assert answer.status_code == 201
    assert [fields["temperature"] for _, fields in redis_client.xrange(READINGS)] == ["20", "21"]


def test_a_retried_upload_is_stored_once(client, token_for, redis_client):
    token = token_for("kitchen")
    batch = [{"temperature": 20, "seq": 1, "boot": "b1"}, {"temperature": 21, "seq": 2, "boot": "b1"}]
    post(client, batch, token)

    retry = post(client, batch + [{"temperature": 22, "seq": 3, "boot": "b1"}], token)

    assert retry.json["stored"] == 1 and retry.json["duplicates"] == 2
    assert retry.json["ids"][:2] == [None, None]
    assert redis_client.xlen(device_readings(redis_client, "kitchen")) == 3


def test_a_retried_batch_that_spans_a_reboot_is_stored_once(client, token_for, redis_client):
    """The board sent its last reading of one boot and its first of the next together,
    and never heard back: however often it sends them again, each is stored once."""
    token = token_for("kitchen")
    batch = [{"temperature": 20, "seq": 5, "boot": "before"}, {"temperature": 21, "seq": 1, "boot": "after"}]
    assert post(client, batch, token).json["stored"] == 2

    retries = [post(client, batch, token) for _ in range(3)]

    assert [retry.json["duplicates"] for retry in retries] == [2, 2, 2]
    assert redis_client.xlen(device_readings(redis_client, "kitchen")) == 2
    changed = post(client, [dict(batch[0], temperature=30)], token)
    assert changed.status_code == 409  # the earlier boot's seq 5 holds another reading


def test_two_readings_of_one_request_at_one_boot_and_seq_are_a_conflict(client, token_for, redis_client):
    token = token_for("kitchen")
    batch = [{"temperature": 20, "seq": 7, "boot": "b1"}, {"temperature": 21, "seq": 7, "boot": "b1"}]

    answers = [post(client, batch, token) for _ in range(2)]

    assert [answer.status_code for answer in answers] == [409, 409]
    assert redis_client.xlen(device_readings(redis_client, "kitchen")) == 0
    same_twice = post(client, [batch[0], batch[0]], token)
    assert same_twice.status_code == 201 and same_twice.json["duplicates"] == 1


def test_a_retry_of_a_reading_stored_by_an_earlier_version_is_still_known(client, token_for, redis_client):
    """Earlier versions kept the digest of a reading's values as ``json.dumps`` sorts and
    writes them; a board's retry that spans an upgrade must still match it."""
    reading = {"temperature": -3.25, "humidity": 41, "pressure": 1013.25, "lux": 2e-05, "fw": "1.4.0+b.2",
               "seq": 9, "boot": "B-x_1"}
    values = {"device": "kitchen", **{name: value for name, value in reading.items() if name not in ("seq", "boot")}}
    earlier = hashlib.blake2b(json.dumps(values, sort_keys=True).encode(), digest_size=4).digest()
    assert post(client, reading, token_for("kitchen")).status_code == 201
    slot = 3 * (reading["seq"] % WINDOW)

    stored = redis_client.bitfield(seqs_key(redis_client, "kitchen")).get("u32", f"#{slot + 2}").execute()[0]

    assert stored == int.from_bytes(earlier, "big")


def test_a_reading_with_a_seq_and_no_boot_leaves_the_boards_retries_known(client, token_for):
    token = token_for("kitchen")
    assert post(client, {"temperature": 20, "seq": 10, "boot": "f1"}, token).json["stored"] == 1

    assert post(client, {"temperature": 21, "seq": 3}, token).json["stored"] == 1  # another sender, seq only

    retry = post(client, {"temperature": 20, "seq": 10, "boot": "f1"}, token)
    assert retry.json["duplicates"] == 1 and retry.json["known"] == {"boot": "f1", "seq": 10}
    assert post(client, {"temperature": 30, "seq": 10, "boot": "f1"}, token).status_code == 409
    assert client.get("/api/devices").json["devices"][0]["seq"] == 3  # the value shown is the latest reading's


def test_a_retry_is_known_across_the_upgrade_that_keeps_the_boots_seq_apart(client, token_for, redis_client):
    token = token_for("kitchen")
    assert post(client, {"temperature": 20, "seq": 10, "boot": "f1"}, token).json["stored"] == 1
    redis_client.hdel(device_key(redis_client, "kitchen"), "boot_seq")  # as versions before it left the device

    assert post(client, {"temperature": 20, "seq": 10, "boot": "f1"}, token).json["duplicates"] == 1


def test_the_answer_says_which_boot_and_seq_the_server_knows_so_a_poisoned_boot_shows(client, token_for):
    token = token_for("kitchen")
    assert post(client, {"temperature": 20, "seq": 1, "boot": "b1"}, token).json["known"] == {"boot": "b1", "seq": 1}
    poisoned = post(client, {"temperature": 99, "seq": 2**53 - 1, "boot": "b1"}, token)  # a leaked token

    answer = post(client, [{"temperature": 21, "seq": 2, "boot": "b1"}], token)

    assert poisoned.json["stored"] == 1
    assert answer.json["duplicates"] == 1 and answer.json["ids"] == [None]
    assert answer.json["known"] == {"boot": "b1", "seq": 2**53 - 1}  # a seq the board never sent
    assert post(client, {"temperature": 21, "boot": "b1", "seq": 3}, token).json["known"] == {"boot": "b1",
                                                                                              "seq": 2**53 - 1}
    assert post(client, {"temperature": 21}, token_for("attic")).json["known"] == {"boot": None, "seq": None}


def test_no_reader_ever_sees_a_boards_boot_id(live_server, token_for):
    """Whoever knew it could plant readings at the seqs the board is about to send, and
    over MQTT the board would never hear of it: the boot id stays between board and server."""
    stream = live_server.stream()
    try:
        answer = live_server.post("/api/readings", token_for("kitchen"), json={"temperature": 20, "seq": 7,
                                                                              "boot": "b0a7d"})
        live = stream.next_reading()["data"]
    finally:
        stream.close()
    [device] = requests.get(live_server.url + "/api/devices", timeout=10).json()["devices"]
    [stored] = live_server.history("kitchen")
    export = requests.get(live_server.url + "/api/devices/kitchen/readings.csv", timeout=10).text

    assert answer.status_code == 201 and answer.json()["known"] == {"boot": "b0a7d", "seq": 7}  # the board's own
    assert live["seq"] == stored["seq"] == device["seq"] == 7
    assert "boot" not in live and "boot" not in stored and "boot" not in device
    assert "b0a7d" not in export


def test_a_request_learns_nothing_of_a_boot_it_did_not_send(client, token_for):
    token = token_for("kitchen")
    post(client, {"temperature": 20, "seq": 7, "boot": "b0a7d"}, token)  # the board

    assert post(client, {"temperature": 21}, token).json["known"] == {"boot": None, "seq": None}
    assert post(client, {"temperature": 21, "seq": 1, "boot": "guess"}, token).json["known"] == {"boot": "guess",
                                                                                                 "seq": 1}


def test_a_reading_planted_at_the_boards_next_seq_is_a_conflict_not_a_duplicate(client, token_for, redis_client):
    token = token_for("kitchen")
    post(client, {"temperature": 20, "seq": 1, "boot": "b1"}, token)
    post(client, {"temperature": 99, "seq": 2, "boot": "b1"}, token)  # someone with a leaked token

    answer = post(client, [{"temperature": 21, "seq": 2, "boot": "b1"}, {"temperature": 22, "seq": 3, "boot": "b1"}],
                  token)

    assert answer.status_code == 409
    assert answer.json["conflict"] == {"boot": "b1", "seq": 2} and answer.json["known"] == {"boot": "b1", "seq": 2}
    assert "new boot" in answer.json["error"]
    assert redis_client.xlen(device_readings(redis_client, "kitchen")) == 2  # nothing of the refused request
    resent = post(client, [{"temperature": 21, "seq": 1, "boot": "b2"}, {"temperature": 22, "seq": 2, "boot": "b2"}],
                  token)
    assert resent.json["stored"] == 2


def test_a_reading_planted_ahead_makes_none_of_the_boards_next_readings_a_duplicate(client, token_for, redis_client):
    token = token_for("kitchen")
    post(client, {"temperature": 20, "seq": 1, "boot": "b1"}, token)
    post(client, {"temperature": 99, "seq": 6, "boot": "b1"}, token)  # a leaked token, a few seqs ahead

    answer = post(client, [{"temperature": 20 + seq, "seq": seq, "boot": "b1"} for seq in range(2, 6)], token)
    again = post(client, [{"temperature": 20 + seq, "seq": seq, "boot": "b1"} for seq in range(2, 6)], token)

    assert answer.json["stored"] == 4 and again.json["duplicates"] == 4
    assert answer.json["known"] == {"boot": "b1", "seq": 6}
    assert redis_client.hget(device_key(redis_client, "kitchen"), "temperature") == "99"  # the latest stays the highest seq's


def test_a_token_revoked_while_its_device_keeps_posting_is_refused_at_once(client, token_for, redis_client):
    token = token_for("kitchen")
    assert post(client, {"temperature": 20}, token).status_code == 201  # this process now knows the token

    revoke_tokens(redis_client, "kitchen")

    refused = post(client, {"temperature": 21}, token)
    assert refused.status_code == 401 and "revoked" in refused.json["error"]
    assert post(client, {"temperature": 21}, token).status_code == 401
    assert redis_client.xlen(device_readings(redis_client, "kitchen")) == 1
    assert post(client, {"temperature": 22}, token_for("kitchen")).status_code == 201


@pytest.mark.parametrize("body", [{"temperature": 999}, {"temperature": 20, "device": "attic"}, "{not json"],
                         ids=["refused reading", "another device", "broken JSON"])
def test_a_revoked_token_is_told_401_whatever_it_sends_where_it_was_known(client, token_for, redis_client, body):
    token = token_for("kitchen")
    assert post(client, {"temperature": 20}, token).status_code == 201  # this process now knows the token
    revoke_tokens(redis_client, "kitchen")

    answer = (post(client, body, token) if isinstance(body, dict) else
              client.post("/api/readings", data=body, content_type="application/json",
                          headers={"Authorization": f"Bearer {token}"}))

    assert answer.status_code == 401 and "kitchen" not in answer.get_data(as_text=True)


def test_a_known_device_is_answered_as_it_was_at_its_first_upload(client, token_for):
    """The first upload makes the token known to this process; the next ones are stored below
    Flask (ingest.FastUploads), with the same answer."""
    token = token_for("kitchen")

    first, second = (post(client, {"temperature": 20 + n, "seq": n, "boot": "b1"}, token) for n in range(2))

    assert first.status_code == second.status_code == 201
    assert set(first.headers.keys()) == set(second.headers.keys())
    assert second.headers["Content-Type"] == "application/json"
    assert second.headers["X-Content-Type-Options"] == first.headers["X-Content-Type-Options"] == "nosniff"
    assert list(second.json) == list(first.json) and b" " not in second.data  # Flask's key order, compact
    assert second.json["known"] == {"boot": "b1", "seq": 1} and second.json["stored"] == 1


def test_a_known_device_s_refused_upload_is_refused_as_at_first_and_counted_once(client, token_for, redis_client):
    token = token_for("kitchen")
    assert post(client, {"temperature": 20}, token).status_code == 201

    refused = post(client, {"temperature": "warm"}, token)

    assert refused.status_code == 400 and refused.json["field"] == "temperature"
    assert redis_client.hget("metrics", "refused:http:invalid") == "1"
    assert redis_client.xlen(device_readings(redis_client, "kitchen")) == 1


def test_a_known_device_s_upload_no_replica_confirmed_is_a_503_and_stored_once(app, client, token_for,
                                                                               redis_client):
    token = token_for("kitchen")
    assert post(client, {"temperature": 20}, token).status_code == 201
    app.config.update(WAIT_REPLICAS=1, WAIT_MS=10)  # this Redis has no replica: stored, but never confirmed

    answer = post(client, {"temperature": 21}, token)

    assert answer.status_code == 503 and answer.headers["Retry-After"] == str(app.config["RETRY_AFTER"])
    assert redis_client.xlen(device_readings(redis_client, "kitchen")) == 2


def test_a_known_device_s_conflict_counts_once_against_its_rate_limit(app, client, token_for):
    app.config.update(RATE_LIMIT=0.1, RATE_BURST=3)  # one request every 10 s, 3 at once
    token = token_for("kitchen")
    assert post(client, {"temperature": 20, "seq": 1, "boot": "b1"}, token).status_code == 201

    planted = post(client, {"temperature": 25, "seq": 1, "boot": "b1"}, token)

    assert planted.status_code == 409 and planted.json["conflict"] == {"boot": "b1", "seq": 1}
    assert post(client, {"temperature": 21, "seq": 2, "boot": "b1"}, token).status_code == 201  # the third
    assert post(client, {"temperature": 22, "seq": 3, "boot": "b1"}, token).status_code == 429


def test_a_reboot_starts_a_new_sequence(client, token_for, redis_client):
    token = token_for("kitchen")
    post(client, {"temperature": 20, "seq": 1, "boot": "b1"}, token)

    after_reboot = post(client, {"temperature": 20, "seq": 1, "boot": "b2"}, token)

    assert after_reboot.json["stored"] == 1


def test_a_missing_or_unsynced_time_is_stamped_on_arrival(client, token_for, redis_client):
    token = token_for("kitchen")
    post(client, [{"temperature": 20}, {"temperature": 21, "ts": 12.5}], token)

    stamps = [float(fields["ts"]) for _, fields in redis_client.xrange(device_readings(redis_client, "kitchen"))]
    assert all(stamp > 1.7e9 for stamp in stamps)


@pytest.mark.parametrize("body, field", [
    ({"device": "Kitchen!", "temperature": 20}, "device"),
    ({"temperature": "warm"}, "temperature"),
    ({"temperature": True}, "temperature"),
    ({"temperature": 900}, "temperature"),
    ({"humidity": -3}, "humidity"),
    ({"temperature": 20, "ts": 4102444800}, "ts"),
    ({"temperature": 20, "seq": -1}, "seq"),
    ({"temperature": 20, "boot": ""}, "boot"),
    ({"ts": 1764000000}, "body"),
    ([{"temperature": 20}, {"temperature": None}], "[1].temperature"),
    ([], "body"),
    (["not an object"], "[0]"),
])
def test_invalid_readings_are_refused_naming_the_field(client, token_for, body, field):
    answer = post(client, body, token_for("kitchen"))

    assert answer.status_code == 400
    assert answer.json["field"] == field
    assert answer.json["error"].startswith(field)


@pytest.mark.parametrize("value, said", [(150.0001, "150.0001 °C is outside -60..150"),
                                         (12345678901234567, "12345678901234567 °C is outside -60..150")])
def test_a_value_just_out_of_range_is_named_as_sent(client, token_for, value, said):
    answer = post(client, {"temperature": value}, token_for("kitchen"))

    assert answer.status_code == 400 and answer.json["error"] == f"temperature: {said}"


@pytest.mark.parametrize("seq", [-1, 2**53, 1.5])
def test_a_seq_out_of_its_range_is_told_the_range(client, token_for, seq):
    answer = post(client, {"temperature": 20, "boot": "b1", "seq": seq}, token_for("kitchen"))

    assert answer.status_code == 400 and answer.json["error"] == "seq: must be a whole number from 0 to 2^53 - 1"


def test_a_body_that_is_no_json_is_refused_as_every_reading_is(client, token_for):
    answer = client.post("/api/readings", data="{not json", content_type="application/json",
                         headers={"Authorization": f"Bearer {token_for('kitchen')}"})

    assert answer.status_code == 400 and answer.json["field"] == "body"
    assert answer.json["error"].startswith("body: not valid JSON")


@pytest.mark.parametrize("body", [gzip.compress(b'{"temperature": 20}', mtime=0), b'{"temperature": 20}'],
                         ids=["compressed", "only labelled so"])
def test_a_compressed_body_is_refused_saying_so(client, token_for, body):
    headers = {"Authorization": f"Bearer {token_for('kitchen')}"}
    client.post("/api/readings", json={"temperature": 19}, headers=headers)  # a token the worker knows now

    answer = client.post("/api/readings", data=body, content_type="application/json",
                         headers=dict(headers, **{"Content-Encoding": "gzip"}))

    assert answer.status_code == 415
    assert "Content-Encoding" in answer.json["error"]


def test_nan_and_infinity_are_refused(client, token_for):
    for literal in ("NaN", "Infinity", "-Infinity"):
        answer = client.post("/api/readings", data='{"temperature": %s}' % literal,
                             content_type="application/json",
                             headers={"Authorization": f"Bearer {token_for('kitchen')}"})
        assert answer.status_code == 400 and answer.json["field"] == "temperature"


def test_a_refused_batch_stores_nothing_and_loses_nothing_stored_before(client, token_for, redis_client):
    token = token_for("kitchen")
    post(client, {"temperature": 20}, token)

    post(client, [{"temperature": 21}, {"temperature": "oops"}], token)

    assert redis_client.xlen(device_readings(redis_client, "kitchen")) == 1


def test_broken_json_oversized_bodies_and_other_content_types_are_refused(client, token_for):
    auth = {"Authorization": f"Bearer {token_for('kitchen')}"}
    broken = client.post("/api/readings", data="{", content_type="application/json", headers=auth)
    form = client.post("/api/readings", data={"temperature": "20"}, headers=auth)
    huge = client.post("/api/readings", data="[" + "1," * 200_000 + "1]",
                       content_type="application/json", headers=auth)

    assert broken.status_code == 400 and "not valid JSON" in broken.json["error"]
    assert form.status_code == 415 and "application/json" in form.json["error"]
    assert huge.status_code == 413


def test_the_tutorials_push_still_works(client, token_for, redis_client):
    token = token_for("therm")
    for body in ('{"temperature":56}', "56"):
        answer = client.post("/therm/push", data=body, content_type="text/plain",
                             headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 201
    temperatures = [f["temperature"] for _, f in redis_client.xrange(device_readings(redis_client, "therm"))]
    assert temperatures == ["56", "56"]


def test_history_older_than_the_retention_is_trimmed_on_the_next_write(app, client, token_for,
                                                                     redis_client):
    app.config["RETENTION"] = 1
    headers = {"Authorization": f"Bearer {token_for('kitchen')}"}
    client.post("/api/readings", json={"temperature": 20}, headers=headers)
    time.sleep(1.2)

    client.post("/api/readings", json={"temperature": 21}, headers=headers)

    assert [f["temperature"] for _, f in redis_client.xrange(device_readings(redis_client, "kitchen"))] == ["21"]
    assert redis_client.xlen(READINGS) == 2


def test_a_device_over_its_rate_limit_is_told_to_wait_and_others_post_on(app, client, token_for,
                                                                          redis_client):
    app.config.update(RATE_LIMIT=0.1, RATE_BURST=3)  # one request every 10 s, 3 at once
    stuck, neighbour = token_for("kitchen"), token_for("garage")

    answers = [post(client, {"temperature": 20}, stuck) for _ in range(4)]

    assert [answer.status_code for answer in answers] == [201, 201, 201, 429]
    assert 5 <= int(answers[-1].headers["Retry-After"]) <= 10
    assert "too many requests" in answers[-1].json["error"]
    assert redis_client.xlen(device_readings(redis_client, "kitchen")) == 3
    assert post(client, {"temperature": 5}, neighbour).status_code == 201


def test_a_leaked_token_cannot_flood_redis_with_big_batches(app, client, token_for, redis_client):
    app.config.update(READINGS_RATE_LIMIT=10, READINGS_BURST=1000)  # a backlog of 1000 at once
    leaked = token_for("kitchen")
    batch = [{"temperature": 20 + n / 1000} for n in range(500)]

    answers = [post(client, batch, leaked) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [201, 201, 429]
    assert 40 <= int(answers[-1].headers["Retry-After"]) <= 50  # 500 readings at 10 a second
    assert redis_client.xlen(device_readings(redis_client, "kitchen")) == 1000


def test_a_readings_limit_of_0_is_none_while_requests_are_still_limited(app, client, token_for, redis_client):
    app.config.update(READINGS_RATE_LIMIT=0, READINGS_BURST=10, RATE_LIMIT=0.1, RATE_BURST=3)
    token = token_for("kitchen")
    batch = [{"temperature": 20 + n / 1000} for n in range(500)]

    answers = [post(client, batch, token) for _ in range(4)]

    assert [answer.status_code for answer in answers] == [201, 201, 201, 429]  # the fourth request, not a reading
    assert redis_client.xlen(device_readings(redis_client, "kitchen")) == 1500


def test_a_device_told_to_wait_is_refused_before_its_body_is_read_until_the_wait_is_over(app, client,
                                                                                          token_for):
    app.config.update(RATE_LIMIT=0.5, RATE_BURST=1)  # one request every 2 s
    token = token_for("kitchen")
    assert post(client, {"temperature": 20}, token).status_code == 201
    assert post(client, {"temperature": 21}, token).status_code == 429

    garbage = client.post("/api/readings", data=b"{" * 100_000, content_type="application/json",
                          headers={"Authorization": f"Bearer {token}"})

    assert garbage.status_code == 429 and 0 < int(garbage.headers["Retry-After"]) <= 2  # not parsed: no 400
    eventually(lambda: post(client, {"temperature": 22}, token).status_code == 201)


def test_a_device_cannot_overwrite_its_own_status_with_a_metric(client, token_for):
    token = token_for("kitchen")
    post(client, {"temperature": 20}, token)

    answer = post(client, {"temperature": 21, "last_seen": 0, "status": 1}, token)

    assert answer.status_code == 400 and answer.json["field"] == "last_seen"
    assert "reserved" in answer.json["error"]
    kitchen = client.get("/api/devices").json["devices"][0]
    assert kitchen["online"] is True and kitchen["temperature"] == 20


def test_nothing_the_server_adds_to_a_device_or_a_reading_can_be_sent_as_a_metric(client, token_for,
                                                                                  redis_client):
    token = token_for("kitchen")
    sent = {"temperature": 20, "boot": "a1", "seq": 1, "fw": "0.1.0", "ts": time.time()}
    post(client, sent, token)
    client.post("/api/firmware/report", json={"version": "0.2.0", "status": "failed", "reason": "boom"},
                headers={"Authorization": f"Bearer {token}"})

    added = set(redis_client.hgetall(device_key(redis_client, "kitchen")))
    added |= set(client.get("/api/devices").json["devices"][0])
    added |= set(client.get("/api/devices/kitchen/readings").json["readings"][0])
    added |= set(client.get("/api/devices/kitchen/readings?buckets=1").json["buckets"][0])
    added -= set(sent) | {"device"}

    assert added >= {"last_seen", "status", "fw_update", "fw_status", "fw_error", "fw_target", "online", "id", "t"}
    for name in sorted(added):
        answer = post(client, {"temperature": 21, name: 1}, token)
        assert answer.status_code == 400 and answer.json["field"] == name


def test_a_device_s_history_is_capped_by_size_as_well_as_by_age(app, client, token_for, redis_client):
    app.config.update(HISTORY_MAXLEN=1000, RATE_LIMIT=0)
    token = token_for("kitchen")

    for first in range(0, 2500, 500):
        backlog = [{"temperature": 20, "seq": n, "boot": "b"} for n in range(first, first + 500)]
        assert post(client, backlog, token).status_code == 201

    kept = redis_client.xrange(device_readings(redis_client, "kitchen"))
    assert 1000 <= len(kept) < 1200  # trimmed a whole block of entries at a time
    assert int(kept[-1][1]["seq"]) == 2499
    assert redis_client.xlen(READINGS) == 2500


def test_one_token_s_largest_readings_hold_no_more_memory_than_the_caps_allow_for_small_ones(
        app, client, token_for, redis_client):
    """A reading counts once per READING_BYTES of its JSON against HISTORY_MAXLEN and
    STREAM_MAXLEN: sixteen metrics with the longest names and values shorten the history
    instead of multiplying its memory."""
    app.config.update(HISTORY_MAXLEN=1000, STREAM_MAXLEN=1000, RATE_LIMIT=0)
    token, names = token_for("evil"), [f"m{n:031d}" for n in range(40)]

    for first in range(0, 2500, 200):
        largest = [{names[(n + k) % 40]: -1.2345678901234567e+99 for k in range(16)} for n in range(first, first + 200)]
        assert post(client, largest, token).status_code == 201

    budget = 1000 * READING_BYTES
    assert redis_client.memory_usage(device_readings(redis_client, "evil"), samples=0) < 1.3 * budget
    assert redis_client.memory_usage(READINGS, samples=0) < 1.3 * budget
    assert redis_client.xlen(device_readings(redis_client, "evil")) < 400  # about 1,000 readings' worth of bytes


def test_a_few_of_the_heaviest_readings_take_their_share_of_the_caps_not_the_others_readings(
        app, client, token_for, redis_client):
    """One token's five heaviest readings cut neither the other devices' replay window (the
    shared readings stream) nor its own device's history down to what nine times as many would need."""
    app.config.update(HISTORY_MAXLEN=1000, STREAM_MAXLEN=1000, RATE_LIMIT=0)
    fleet, evil = token_for("kitchen"), token_for("evil")
    for first in range(0, 1500, 500):
        assert post(client, [{"temperature": 20, "seq": n, "boot": "b"} for n in range(first, first + 500)],
                    fleet).status_code == 201
    assert post(client, [{"temperature": 20, "seq": n, "boot": "b"} for n in range(1500, 1505)], evil).status_code == 201

    heaviest = [{f"m{n:031d}": -(10**22 + k) for n in range(16)} for k in range(5)]
    assert post(client, heaviest, evil).status_code == 201
    assert post(client, heaviest, fleet).status_code == 201

    assert redis_client.xlen(READINGS) >= 900
    assert redis_client.xlen(device_readings(redis_client, "kitchen")) >= 900


def test_histories_are_trimmed_to_retention_without_writes_even_while_redis_is_full(app, client, token_for,
                                                                                     redis_client, monkeypatch):
    """The ingest trims a history at each write. A device gone silent writes nothing, and a
    full Redis refuses every write: it must not stay full for good with readings past RETENTION."""
    app.config.update(RETENTION=1)
    assert post(client, [{"temperature": 20 + n} for n in range(50)], token_for("shed")).status_code == 201
    monkeypatch.setattr(Duties, "trim_seconds", 0.1)
    duties = app.extensions["sensorcast.duties"].start()
    redis_client.config_set("maxmemory", 1)  # as full as it gets
    try:
        eventually(lambda: redis_client.xlen(device_readings(redis_client, "shed")) == 0)
    finally:
        redis_client.config_set("maxmemory", 0)
        duties.stop()


def test_a_full_redis_refuses_uploads_with_507_and_keeps_what_it_has(client, token_for, redis_client, caplog):
    token = token_for("kitchen")
    assert post(client, {"temperature": 20}, token).status_code == 201

    redis_client.config_set("maxmemory", 1)  # as full as it gets
    try:
        for _ in range(20):  # a fleet posting meanwhile
            post(client, {"temperature": 21}, token)
        answer = post(client, {"temperature": 21}, token)
        limit = client.put("/api/devices/kitchen/thresholds/temperature", json={"high": 30})
        health = client.get("/healthz")
    finally:
        redis_client.config_set("maxmemory", 0)

    assert answer.status_code == 507 and "database is full" in answer.json["error"]
    assert answer.headers["Retry-After"] == "60"  # boards keep their readings, and ask again then
    said = [record.getMessage() for record in caplog.records if "Redis is full" in record.getMessage()]
    assert len(said) == 11 and said[-1].endswith("the next times this minute go unlogged")  # not one an upload
    assert limit.status_code == 507 and "database is full" in limit.json["error"]
    assert health.status_code == 200 and health.json["status"] == "full"
    assert [fields["temperature"] for _, fields in redis_client.xrange(device_readings(redis_client, "kitchen"))] == ["20"]
    assert post(client, {"temperature": 22}, token).status_code == 201


def test_a_full_redis_asks_a_device_back_before_its_silence_would_count_as_offline(app, client, token_for,
                                                                                   redis_client):
    app.config.update(OFFLINE_AFTER=10)
    token = token_for("kitchen")
    assert post(client, {"temperature": 20}, token).status_code == 201

    redis_client.config_set("maxmemory", 1)
    try:
        answer = post(client, {"temperature": 21}, token)
    finally:
        redis_client.config_set("maxmemory", 0)

    assert answer.status_code == 507 and answer.headers["Retry-After"] == "5"  # not 60: offline after 10


def test_a_leaked_token_cannot_give_its_device_ever_more_metric_names(client, token_for, redis_client):
    token = token_for("kitchen")
    assert post(client, {"temperature": 20, "humidity": 40}, token).status_code == 201

    floods = [post(client, [{f"m{batch}_{n}": 1 for n in range(16)} for _ in range(2)], token) for batch in range(5)]

    assert [answer.status_code for answer in floods][-1] == 400
    assert "field names in all" in floods[-1].json["error"]
    assert redis_client.hlen(device_key(redis_client, "kitchen")) <= 64
    assert post(client, {"temperature": 21, "humidity": 41}, token).status_code == 201  # known names go on


def test_uploads_refused_for_too_many_names_count_against_the_rate_and_ask_redis_once_each(client, token_for,
                                                                                         redis_client):
    token = token_for("kitchen")
    for batch in range(4):  # every field name the device may have, and more
        post(client, [{f"m{batch}_{n}": 1 for n in range(16)}], token)
    calls = redis_client.info("commandstats")["cmdstat_evalsha"]["calls"]

    answers = [post(client, [{f"new_{n}": 1 for n in range(16)}] * 500, token).status_code for _ in range(8)]

    assert answers[0] == 400 and 429 in answers  # then told to wait, its bodies refused before they are read
    stored_or_refused = answers.index(429) + 1  # each once, in one call: the 429's too
    assert redis_client.info("commandstats")["cmdstat_evalsha"]["calls"] - calls == stored_or_refused


def test_a_value_too_large_to_sum_into_the_charts_is_refused(client, token_for):
    answer = post(client, {"big": 1.7e308}, token_for("kitchen"))

    assert answer.status_code == 400 and "at most 1e+100" in answer.json["error"]


def test_a_whole_number_past_what_a_double_holds_reads_back_as_it_was_sent(client, token_for):
    token = token_for("kitchen")

    assert post(client, {"count": 2**53 + 1, "temperature": 21}, token).status_code == 201

    [reading] = client.get("/api/devices/kitchen/readings").json["readings"]
    assert reading["count"] == 2**53 + 1 and reading["temperature"] == 21
    [device] = client.get("/api/devices").json["devices"]
    assert device["count"] == 2**53 + 1


def test_a_fleet_posting_all_night_while_redis_is_away_logs_a_few_lines_a_minute(caplog):
    """Each upload is a 503 that says to come back, but the log does not get a line for
    each: a fleet posting to a server whose Redis is away all night must not fill the disk."""
    app = create_app(dict(TEST_SETTINGS, REDIS_URL=f"redis://127.0.0.1:{free_port()}", TESTING=True))
    client = app.test_client()

    answers = [post(client, {"temperature": 20 + n / 10}, "a-token") for n in range(30)]

    assert {(answer.status_code, answer.headers["Retry-After"]) for answer in answers} == {(503, "5")}
    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("Redis did not answer")]
    assert len(lines) == 11 and lines[-1].endswith("the next times this minute go unlogged")
