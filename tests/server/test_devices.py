"""A viewer names devices, groups them by room, hides one and deletes another with its
history: from the dashboard's API and from the command line, and every open page hears.
A command run while Redis is away says so in one line."""
import re
import threading

import pytest
import requests

from server import create_app


@pytest.fixture
def post_as(client, token_for):
    tokens = {}

    def post(device, **reading):
        tokens.setdefault(device, token_for(device))
        answer = client.post("/api/readings", json=reading, headers={"Authorization": f"Bearer {tokens[device]}"})
        assert answer.status_code == 201
        return tokens[device]
    return post


def listed(client):
    return {device["device"]: device for device in client.get("/api/devices").json["devices"]}


def test_a_device_gets_a_friendly_name_and_a_room_and_every_page_hears(live_server, token_for):
    live_server.post("/api/readings", token_for("esp-3f2a"), json={"temperature": 4})
    browser = live_server.stream()

    answer = requests.patch(live_server.url + "/api/devices/esp-3f2a", json={"name": "Fridge", "group": "Kitchen"},
                            timeout=10)

    assert answer.json() == {"device": "esp-3f2a", "name": "Fridge", "group": "Kitchen", "hidden": False}
    assert browser.next_of("device")["data"] == answer.json()
    device = requests.get(live_server.url + "/api/devices", timeout=10).json()["devices"][0]
    assert (device["name"], device["group"], device["hidden"]) == ("Fridge", "Kitchen", False)


def test_a_hidden_device_keeps_storing_until_shown_again(client, post_as):
    post_as("garage", temperature=12)

    assert client.patch("/api/devices/garage", json={"hidden": True}).json["hidden"] is True
    post_as("garage", temperature=13)

    assert listed(client)["garage"]["hidden"] and listed(client)["garage"]["temperature"] == 13
    assert client.patch("/api/devices/garage", json={"hidden": False, "name": ""}).json == {
        "device": "garage", "name": "", "group": "", "hidden": False}


@pytest.mark.parametrize("change, error", [({"name": "x" * 65}, "name: must be text of at most 64"),
                                           ({"group": "a\nb"}, "group: must be text"),
                                           ({"hidden": "yes"}, "hidden: must be true or false"),
                                           ({"status": "offline"}, "status: not a device setting"),
                                           ([], 'send {"name"?')])
def test_a_bad_change_is_refused_and_changes_nothing(client, post_as, change, error):
    post_as("garage", temperature=12)
    client.patch("/api/devices/garage", json={"name": "Garage"})

    answer = client.patch("/api/devices/garage", json=change)

    assert answer.status_code == 400 and answer.json["error"].startswith(error)
    assert listed(client)["garage"]["name"] == "Garage"


def test_only_a_device_that_exists_can_be_named_or_deleted(client):
    assert client.patch("/api/devices/nobody", json={"name": "Ghost"}).status_code == 404
    assert client.delete("/api/devices/nobody").status_code == 404


def test_deleting_a_device_removes_it_and_its_history_and_leaves_the_others(client, post_as, redis_client):
    for temperature in range(20, 30):
        post_as("old-shed", temperature=temperature)
    post_as("kitchen", temperature=21)
    client.put("/api/devices/old-shed/thresholds/temperature", json={"high": 25})
    post_as("old-shed", temperature=31, boot="b1", seq=1)  # an alert, and a seq to tell retries by
    client.patch("/api/devices/old-shed", json={"name": "Shed"})

    assert client.delete("/api/devices/old-shed").status_code == 204

    assert list(listed(client)) == ["kitchen"]
    assert client.get("/api/devices/old-shed/readings").status_code == 404
    assert [key for key in redis_client.scan_iter() if "old-shed" in key] == []
    assert "old-shed" not in redis_client.hgetall("stream-weights")  # what its readings weighed
    assert redis_client.xlen("readings:kitchen") == 1


def test_a_device_name_that_is_a_pattern_deletes_nothing(client, post_as, redis_client):
    post_as("kitchen", temperature=21)
    rollups = list(redis_client.scan_iter(match="rollup:*"))

    assert client.delete("/api/devices/*").status_code == 404
    assert client.delete("/api/devices/k*").status_code == 404

    assert sorted(redis_client.scan_iter(match="rollup:*")) == sorted(rollups) and rollups


def test_a_deleted_device_that_posts_again_comes_back_new(client, post_as):
    token = post_as("shed", temperature=20)
    client.delete("/api/devices/shed")

    answer = client.post("/api/readings", json={"temperature": 21}, headers={"Authorization": f"Bearer {token}"})

    assert answer.status_code == 201 and listed(client)["shed"]["temperature"] == 21
    assert len(client.get("/api/devices/shed/readings").json["readings"]) == 1


def test_a_device_deleted_with_its_tokens_revoked_cannot_post_again(client, post_as):
    token = post_as("shed", temperature=20)
    post_as("kitchen", temperature=21)

    assert client.delete("/api/devices/shed?revoke=1").status_code == 204

    answer = client.post("/api/readings", json={"temperature": 21}, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401 and list(listed(client)) == ["kitchen"]
    assert client.delete("/api/devices/shed?revoke=1").status_code == 404
    assert client.delete("/api/devices/shed?revoke=maybe").status_code == 400  # not a quiet "no"
    post_as("kitchen", temperature=22)  # another device's token is kept


def test_open_pages_drop_a_deleted_device(live_server, token_for):
    live_server.post("/api/readings", token_for("shed"), json={"temperature": 20})
    browser = live_server.stream()

    requests.delete(live_server.url + "/api/devices/shed", timeout=10)

    assert browser.next_of("device")["data"] == {"device": "shed", "status": "deleted"}


def test_the_command_line_names_groups_hides_and_deletes(app, client, post_as):
    token = post_as("shed", temperature=20)
    runner = app.test_cli_runner()

    assert runner.invoke(args=["devices", "name", "shed", "Garden shed"]).exit_code == 0
    assert runner.invoke(args=["devices", "group", "shed", "Garden"]).exit_code == 0
    assert runner.invoke(args=["devices", "hide", "shed"]).exit_code == 0
    assert (listed(client)["shed"]["name"], listed(client)["shed"]["group"], listed(client)["shed"]["hidden"]) == (
        "Garden shed", "Garden", True)
    assert "no device 'nobody'" in runner.invoke(args=["devices", "name", "nobody", "X"]).output

    deleted = runner.invoke(args=["devices", "delete", "shed", "--revoke", "--yes"])

    assert deleted.output.startswith("deleted shed; revoked 1 token(s): the server refuses its readings, over MQTT "
                                     "too, until `devices add` gives it a token again")
    assert client.post("/api/readings", json={"temperature": 21},
                       headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_the_simulators_devices_are_deleted_in_one_command_and_a_typo_among_them_is_said(app, client, post_as):
    for device in ("sim-1", "sim-2", "sim-3", "kitchen"):
        post_as(device, temperature=20)

    deleted = app.test_cli_runner().invoke(args=["devices", "delete", "sim-1", "sim-2", "sim-4", "sim-3", "sim-1",
                                                 "--yes"])

    assert deleted.output.splitlines() == ["deleted sim-1", "deleted sim-2", "deleted sim-3",
                                           "Error: no device 'sim-4' has sent a reading"]
    assert deleted.exit_code == 1
    assert list(listed(client)) == ["kitchen"]


def test_the_command_line_lists_every_device_with_its_labels_last_post_and_tokens(app, post_as, token_for):
    post_as("shed", temperature=20)
    token_for("attic")  # provisioned, never posted
    runner = app.test_cli_runner()
    runner.invoke(args=["devices", "name", "shed", "Garden shed"])
    runner.invoke(args=["devices", "hide", "shed"])

    lines = runner.invoke(args=["devices", "list"]).output.splitlines()

    assert lines[:2] == ["device\tname\tgroup\thidden\tlast seen\ttokens", "attic\t-\t-\tno\tnever\t1"]
    assert re.fullmatch(r"shed\tGarden shed\t-\tyes\t\d+ s ago\t1", lines[2])


def test_a_command_run_while_redis_is_away_says_so_in_one_line(tmp_path):
    app = create_app({"REDIS_URL": f"unix://{tmp_path / 'redis.sock'}", "TESTING": True})  # no Redis there

    listed_tokens = app.test_cli_runner().invoke(args=["devices", "list"])

    assert listed_tokens.exit_code == 1
    assert listed_tokens.output.startswith("Error: cannot reach Redis (") and "`make run`" in listed_tokens.output
    assert len(listed_tokens.output.splitlines()) == 1


def test_a_label_or_threshold_set_as_the_device_is_deleted_goes_with_it(client, post_as, redis_client, app):
    """Two viewers at once: one names the shed and watches its temperature, the other
    deletes it. Whichever comes first, nothing of the shed is left behind."""
    def at_once(*requests_):
        start = threading.Barrier(len(requests_))

        def send(method, path, body):
            with app.test_client() as viewer:
                start.wait()
                viewer.open(path, method=method, json=body)
        threads = [threading.Thread(target=send, args=request) for request in requests_]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    for _ in range(100):
        post_as("shed", temperature=20)
        at_once(("PATCH", "/api/devices/shed", {"name": "Shed"}),
                ("PUT", "/api/devices/shed/thresholds/temperature", {"high": 25}),
                ("DELETE", "/api/devices/shed", None))
        assert [key for key in redis_client.scan_iter() if "shed" in key] == []
