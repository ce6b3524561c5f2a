"""Releases on the server: only device tokens read them, each device gets what targets it."""
import hashlib

import pytest

from server.firmware import store_release


@pytest.fixture
def release(redis_client):
    return store_release(redis_client, "0.2.0", {"node.py": b"print('new')\n", "version.py": b'VERSION = "0.2.0"\n'})


def get(client, path, token):
    return client.get(path, headers={"Authorization": f"Bearer {token}"})


def test_a_board_behind_is_offered_the_release_and_one_up_to_date_is_not(client, token_for, release):
    token = token_for("kitchen")

    assert get(client, "/api/firmware?fw=0.1.0", token).json == {"version": "0.2.0"}
    assert get(client, "/api/firmware?fw=0.2.0", token).status_code == 204
    manifest = get(client, "/api/firmware/0.2.0", token).json
    node = next(entry for entry in manifest["files"] if entry["path"] == "node.py")
    content = get(client, f"/api/firmware/files/{node['sha256']}", token).data
    assert hashlib.sha256(content).hexdigest() == node["sha256"] and len(content) == node["size"]


def test_a_release_for_named_devices_reaches_only_them(client, token_for, redis_client, release):
    store_release(redis_client, "0.3.0-beta", {"node.py": b"beta"}, devices=["attic"])

    assert get(client, "/api/firmware?fw=0.1.0", token_for("attic")).json == {"version": "0.3.0-beta"}
    assert get(client, "/api/firmware?fw=0.1.0", token_for("kitchen")).json == {"version": "0.2.0"}


def test_a_release_for_every_device_reaches_one_that_had_a_release_of_its_own(client, token_for, redis_client,
                                                                              release):
    """A beta for one board, then the fix for all: that board too gets the fix."""
    store_release(redis_client, "0.3.0-beta", {"node.py": b"beta"}, devices=["attic"])
    store_release(redis_client, "0.3.1", {"node.py": b"fixed"})

    assert get(client, "/api/firmware?fw=0.3.0-beta", token_for("attic")).json == {"version": "0.3.1"}
    assert get(client, "/api/firmware?fw=0.2.0", token_for("kitchen")).json == {"version": "0.3.1"}


def test_a_board_that_runs_the_release_it_was_updating_to_has_it_though_its_report_went_astray(
        client, token_for, release):
    token = token_for("kitchen")
    client.post("/api/readings", json={"temperature": 20}, headers={"Authorization": f"Bearer {token}"})
    assert report(client, token, version="0.2.0", status="updating").status_code == 204

    get(client, "/api/firmware?fw=0.1.0", token)  # still the old one: installing
    assert client.get("/api/devices").json["devices"][0]["fw_status"] == "updating"
    get(client, "/api/firmware?fw=0.2.0", token)  # its "updated" never came, but it asks as 0.2.0

    [device] = client.get("/api/devices").json["devices"]
    assert (device["fw_update"], device["fw_status"], device["fw_error"]) == ("0.2.0", "updated", "")


def test_only_device_tokens_read_releases(client, release):
    assert client.get("/api/firmware?fw=0.1.0").status_code == 401
    assert client.get("/api/firmware/0.2.0").status_code == 401
    digest = release["files"][0]["sha256"]
    assert client.get(f"/api/firmware/files/{digest}").status_code == 401


def test_a_report_is_kept_on_the_device_and_shown_in_the_device_list(client, token_for, release):
    token = token_for("kitchen")
    client.post("/api/readings", json={"temperature": 20, "fw": "0.1.0"}, headers={"Authorization": f"Bearer {token}"})

    answer = client.post("/api/firmware/report", json={"version": "0.2.0", "status": "failed", "reason": "boom"},
                         headers={"Authorization": f"Bearer {token}"})

    assert answer.status_code == 204
    [device] = client.get("/api/devices").json["devices"]
    assert (device["fw"], device["fw_target"], device["fw_update"], device["fw_status"], device["fw_error"]) == (
        "0.1.0", "0.2.0", "0.2.0", "failed", "boom")


@pytest.mark.parametrize("body", [{}, {"version": "0.2.0", "status": "exploded"}, {"status": "updated"}])
def test_a_bad_report_is_refused(client, token_for, body):
    answer = client.post("/api/firmware/report", json=body, headers={"Authorization": f"Bearer {token_for('kitchen')}"})

    assert answer.status_code == 400


def test_unknown_releases_and_files_are_404(client, token_for):
    token = token_for("kitchen")

    assert get(client, "/api/firmware/9.9.9", token).status_code == 404
    assert get(client, "/api/firmware/files/" + "0" * 64, token).status_code == 404
    assert get(client, "/api/firmware/files/not-a-hash", token).status_code == 404


def test_with_auth_off_a_board_names_itself_to_get_its_release_and_report(app, client, redis_client, release):
    app.config["AUTH"] = False
    store_release(redis_client, "0.3.0-beta", {"node.py": b"beta"}, devices=["attic"])
    client.post("/api/readings", json={"device": "attic", "temperature": 20, "fw": "0.1.0"})

    assert client.get("/api/firmware?fw=0.1.0&device=attic").json == {"version": "0.3.0-beta"}
    assert client.get("/api/firmware?fw=0.1.0").status_code == 400
    assert client.post("/api/firmware/report?device=attic", json={"version": "0.3.0-beta", "status": "updating"}
                       ).status_code == 204
    [device] = client.get("/api/devices").json["devices"]
    assert (device["device"], device["fw_status"]) == ("attic", "updating")


def test_a_device_fetches_only_the_releases_targeted_at_it_or_at_every_device(client, token_for, redis_client,
                                                                              release):
    beta = store_release(redis_client, "0.3.0-beta", {"node.py": b"beta"}, devices=["attic"])
    beta_file = f"/api/firmware/files/{beta['files'][0]['sha256']}"
    kitchen, attic = token_for("kitchen"), token_for("attic")

    assert get(client, "/api/firmware/0.3.0-beta", kitchen).status_code == 404
    assert get(client, beta_file, kitchen).status_code == 404
    assert get(client, "/api/firmware/0.3.0-beta", attic).json["version"] == "0.3.0-beta"
    assert get(client, beta_file, attic).data == b"beta"
    assert get(client, "/api/firmware/0.2.0", attic).status_code == 200  # every device's release


def test_a_release_no_longer_targeted_is_no_longer_served(client, token_for, redis_client, release):
    old_file = f"/api/firmware/files/{release['files'][0]['sha256']}"

    store_release(redis_client, "0.2.1", {"node.py": b"print('newer')\n"})

    assert get(client, "/api/firmware/0.2.0", token_for("kitchen")).status_code == 404
    assert get(client, old_file, token_for("kitchen")).status_code == 404


def test_with_auth_off_a_board_that_names_itself_fetches_its_release_and_one_that_does_not_only_everyones(
        app, client, redis_client, release):
    app.config["AUTH"] = False
    beta = store_release(redis_client, "0.3.0-beta", {"node.py": b"beta"}, devices=["attic"])
    beta_file = f"/api/firmware/files/{beta['files'][0]['sha256']}"

    assert client.get("/api/firmware/0.3.0-beta?device=attic").status_code == 200
    assert client.get(beta_file + "?device=attic").data == b"beta"
    assert client.get("/api/firmware/0.3.0-beta").status_code == 404
    assert client.get(beta_file + "?device=kitchen").status_code == 404
    assert client.get("/api/firmware/0.2.0").status_code == 200


def report(client, token, **body):
    return client.post("/api/firmware/report", json=body, headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize("version", ["0.2.0" * 50_000, "0.2.0\nviewer admin logged in", "0.2.0\n", "", 2])
def test_a_report_must_name_a_version_as_releases_do(client, token_for, version):
    answer = report(client, token_for("kitchen"), version=version, status="failed", reason="boom")

    assert answer.status_code == 400
    assert "version" in answer.json["error"]


def test_a_reports_reason_is_kept_to_200_characters(client, token_for):
    token = token_for("kitchen")
    client.post("/api/readings", json={"temperature": 20}, headers={"Authorization": f"Bearer {token}"})

    assert report(client, token, version="0.2.0", status="failed", reason="x" * 250_000).status_code == 204

    [device] = client.get("/api/devices").json["devices"]
    assert device["fw_error"] == "x" * 200


def test_a_reports_reason_with_half_a_character_is_kept_with_a_question_mark_for_it(client, token_for):
    token = token_for("kitchen")
    client.post("/api/readings", json={"temperature": 20}, headers={"Authorization": f"Bearer {token}"})

    answer = client.post("/api/firmware/report", data='{"version": "0.2.0", "status": "failed", "reason": "OSError \\ud800"}',
                         content_type="application/json", headers={"Authorization": f"Bearer {token}"})

    assert answer.status_code == 204
    [device] = client.get("/api/devices").json["devices"]
    assert device["fw_error"] == "OSError ?"


def test_a_report_cannot_write_lines_of_its_own_into_the_log_nor_the_pages(client, token_for, caplog):
    kitchen = token_for("kitchen")
    client.post("/api/readings", json={"temperature": 20}, headers={"Authorization": f"Bearer {kitchen}"})
    forged = "boom\nINFO server.viewers: viewer admin logged in\x1b[31m"

    answer = report(client, kitchen, version="0.2.0", status="failed", reason=forged)

    assert answer.status_code == 204
    [record] = [r for r in caplog.records if r.name == "server.firmware"]
    assert "\n" not in record.getMessage() and "\x1b" not in record.getMessage()
    [device] = client.get("/api/devices").json["devices"]
    assert device["fw_error"] == "boom INFO server.viewers: viewer admin logged in [31m"


def test_a_report_of_a_device_that_never_posted_makes_no_device(client, token_for):
    assert report(client, token_for("kitchen"), version="0.2.0", status="failed", reason="boom").status_code == 204

    assert client.get("/api/devices").json["devices"] == []
    assert client.put("/api/devices/kitchen/thresholds/temperature", json={"high": 30}).status_code == 404
    assert client.get("/api/devices/kitchen/readings.csv").status_code == 404


def test_a_board_reporting_in_a_loop_writes_ten_lines_a_minute(app, client, token_for, caplog):
    app.config.update(RATE_LIMIT=0)
    kitchen = token_for("kitchen")

    for _ in range(50):
        assert report(client, kitchen, version="0.2.0", status="failed", reason="again").status_code == 204

    lines = [r.getMessage() for r in caplog.records if r.name == "server.firmware"]
    assert len(lines) == 11 and "unlogged" in lines[-1]
    assert report(client, token_for("attic"), version="0.2.0", status="failed").status_code == 204
    assert "attic" in [r.getMessage() for r in caplog.records if r.name == "server.firmware"][-1]


def test_reports_count_against_the_devices_rate_limit_as_uploads_do(app, client, token_for):
    app.config.update(RATE_LIMIT=1, RATE_BURST=3)
    kitchen = token_for("kitchen")
    answers = [report(client, kitchen, version="0.2.0", status="updating") for _ in range(10)]

    refused = [answer for answer in answers if answer.status_code == 429]
    assert refused and len(refused) < 10 and all(answer.status_code in (204, 429) for answer in answers)
    assert int(refused[0].headers["Retry-After"]) >= 1
    assert "too many requests" in refused[0].json["error"]
    upload = client.post("/api/readings", json={"temperature": 20}, headers={"Authorization": f"Bearer {kitchen}"})
    assert upload.status_code == 429
    assert report(client, token_for("attic"), version="0.2.0", status="updating").status_code == 204
