"""Only a device's own token writes as that device; tokens come from the CLI."""
from server.auth import issue_token
from server.store import TOKENS


def post(client, token, device="kitchen"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post("/api/readings", json={"device": device, "temperature": 20}, headers=headers)


def test_a_missing_token_is_401(client):
    answer = post(client, None)
    assert answer.status_code == 401 and "Bearer" in answer.json["error"]


def test_a_basic_authorization_with_bytes_past_ascii_is_no_token_not_a_server_error(client):
    answer = client.post("/api/readings", json={"temperature": 20}, headers={"Authorization": "Basic \xff\xfe"})

    assert answer.status_code == 401 and "Bearer" in answer.json["error"]


def test_a_wrong_token_is_401(client, token_for):
    token_for("kitchen")
    assert post(client, "not-a-token").status_code == 401


def test_another_devices_token_is_403(client, token_for):
    answer = post(client, token_for("garage"), device="kitchen")
    assert answer.status_code == 403 and "garage" in answer.json["error"]


def test_the_cli_makes_a_token_shown_once_and_stored_hashed(app, client, redis_client):
    token = app.test_cli_runner().invoke(args=["devices", "add", "kitchen"]).output.strip()

    assert post(client, token).status_code == 201
    assert token not in str(redis_client.hgetall(TOKENS))


def test_a_revoked_token_is_401(app, client):
    runner = app.test_cli_runner()
    token = runner.invoke(args=["devices", "add", "kitchen"]).output.strip()

    assert "revoked 1" in runner.invoke(args=["devices", "revoke", "kitchen"]).output
    assert post(client, token).status_code == 401


def test_a_leaked_token_that_filled_a_devices_names_leaves_none_once_revoked(app, client, redis_client):
    """A device has at most MAX_DEVICE_FIELDS names: a stranger's junk names would refuse the
    board's own new metric (400, which the firmware drops) until the device is deleted."""
    app.config.update(RATE_LIMIT=0)
    runner = app.test_cli_runner()
    leaked = runner.invoke(args=["devices", "add", "victim"]).output.strip()
    for n in range(app.config["MAX_DEVICE_FIELDS"]):  # one new name at a time, until no more are taken
        client.post("/api/readings", json={f"junk{n}": 1}, headers={"Authorization": f"Bearer {leaked}"})
    assert runner.invoke(args=["devices", "revoke", "victim"]).exit_code == 0
    token = runner.invoke(args=["devices", "add", "victim"]).output.strip()

    answer = client.post("/api/readings", json={"temperature": 21.5, "heap": 40000},
                         headers={"Authorization": f"Bearer {token}"})

    assert answer.status_code == 201
    assert set(client.get("/api/devices").json["devices"][0]) >= {"temperature", "heap"}
    assert not any(name.startswith("junk") for name in client.get("/api/devices").json["devices"][0])


def test_revoking_a_device_nobody_added_is_refused_and_remembers_nothing(app, client, redis_client):
    result = app.test_cli_runner().invoke(args=["devices", "revoke", "kitchn"])
    answer = client.delete("/api/devices/kitchn?revoke=1")

    assert result.exit_code == 2 and "no device 'kitchn'" in result.output
    assert answer.status_code == 404
    assert not redis_client.exists("revoked-devices")


def test_the_cli_refuses_a_bad_device_id(app):
    result = app.test_cli_runner().invoke(args=["devices", "add", "Bad Name"])
    assert result.exit_code != 0 and "a-z 0-9" in result.output


def test_auth_can_be_turned_off_for_a_trusted_lan(app, client):
    app.config["AUTH"] = False
    assert post(client, None).status_code == 201


def test_a_token_never_looks_like_a_command_line_option(redis_client):
    assert not any(issue_token(redis_client, "kitchen").startswith("-") for _ in range(500))
