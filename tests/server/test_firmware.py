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
