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
    assert len(list(redis_client.scan_iter(match=rollup_key("attic", "*", "*")))) == 3  # now's slot in each tier
    assert redis_client.xlen("readings:attic") == len(years) + 1
