"""A device sends whatever measured times it likes: its chart rollups stay bounded."""
import time

from server.rollups import rollup_key

DAY = 24 * 3600


def test_readings_measured_before_the_retention_are_kept_but_not_rolled_up(app, client, token_for, redis_client):
    app.config.update(RETENTION=7 * DAY)
    now = time.time()
    years = [now - day * DAY for day in range(9, 3 * 365, 10)]  # one every 10 days, back three years
    headers = {"Authorization": f"Bearer {token_for('attic')}"}

    answer = client.post("/api/readings", json=[{"temperature": 12.5, "ts": ts} for ts in years + [now]],
                         headers=headers)

    assert answer.status_code == 201 and answer.json["stored"] == len(years) + 1
    assert len(list(redis_client.scan_iter(match=rollup_key(redis_client, "attic", "*", "*")))) == 3  # now's slot in each tier
    assert redis_client.xlen("readings:attic") == len(years) + 1


def test_the_10_s_rollups_reach_back_a_day_and_charts_older_than_that_come_from_coarser_ones(
        client, token_for, redis_client):
    now = time.time()
    three_days_ago = [{"temperature": 10 + n % 7, "ts": now - 3 * DAY + n * 10} for n in range(360)]  # an hour
    headers = {"Authorization": f"Bearer {token_for('attic')}"}
    assert client.post("/api/readings", json=three_days_ago, headers=headers).status_code == 201

    since, until = now - 3 * DAY, now - 3 * DAY + 3600
    answer = client.get(f"/api/devices/attic/readings?since={since}&until={until}&buckets=120").json

    assert not list(redis_client.scan_iter(match=rollup_key(redis_client, "attic", 10, "*")))
    assert answer["width"] == 30 and len(answer["buckets"]) == 120  # from the readings themselves


def test_a_device_with_more_metrics_than_a_reading_carries_has_each_in_every_slot_and_no_more_names(
        app, client, token_for, redis_client):
    """Rollups hold a slot for each of a device's metric names, and a device has at most
    MAX_DEVICE_FIELDS names: a token sending ever new ones is refused, and cannot crowd a
    board's own metric out of its slots either."""
    app.config.update(RATE_LIMIT=0)
    hour = (int(time.time()) // 3600 - 1) * 3600
    names = [f"m{n}" for n in range(40)]
    readings = [{"ts": hour + slot * 10 + turn, **{names[(16 * turn + k) % 40]: 1.5 for k in range(16)}}
                for slot in range(360) for turn in range(3)]  # all 40 names in each 10 s slot of an hour
    headers = {"Authorization": f"Bearer {token_for('attic')}"}

    for first in range(0, len(readings), 500):
        assert client.post("/api/readings", json=readings[first:first + 500], headers=headers).status_code == 201
    ever_new = client.post("/api/readings", json=[{"ts": hour + 5, **{f"x{n}": 1 for n in range(16)}},
                                                  {"ts": hour + 6, **{f"y{n}": 1 for n in range(16)}}],
                           headers=headers)

    ten_s_keys = [rollup_key(redis_client, "attic", 10, start) for start in range(hour, hour + 3600, 600)]
    assert sum(map(redis_client.hlen, ten_s_keys)) == 360 * 40  # every name in every slot
    assert ever_new.status_code == 400 and "field names in all" in ever_new.json["error"]
    assert redis_client.xlen("readings:attic") == len(readings)  # the raw history keeps every one


def test_a_value_of_a_hundred_digits_weighs_in_the_rollups_as_a_double_does(client, token_for, redis_client):
    """A leaked token sending 100-digit values (finite, so taken) must not make every
    rollup slot of every metric weigh 400 bytes: what a slot reads back is a double anyway."""
    huge = int("9" * 100)
    now = time.time()
    headers = {"Authorization": f"Bearer {token_for('attic')}"}
    answer = client.post("/api/readings", json={"temperature": 20, "dust": huge, "ts": now}, headers=headers)
    assert answer.status_code == 201

    [summary] = [value for key in redis_client.scan_iter(match=rollup_key(redis_client, "attic", 10, "*"))
                 for field, value in redis_client.hgetall(key).items() if field.endswith(":dust")]
    assert len(summary) < 80 and summary.split()[2] == repr(float(huge))
    answer = client.get(f"/api/devices/attic/readings?since={now - 60}&until={now + 60}&buckets=6").json
    assert answer["buckets"][0]["dust"]["max"] == float(huge)
