"""Anyone on the internet sends anything: random and hostile bodies, content types, headers
and query strings on every route get a clear 4xx, never a 5xx or a traceback, and a
good reading is still accepted afterwards."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server import create_app
from server.auth import issue_token
from server.connections import connect
from server.store import TOKENS, device_key, device_readings
from tests.conftest import TEST_SETTINGS, stop_hub

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=20)
nested = st.integers(1, 100_000).map(lambda depth: "[" * depth)
readings_like = st.fixed_dictionaries(
    {"temperature": json_values, "device": json_values},
    optional={"ts": json_values, "seq": json_values, "boot": json_values, "humidity": json_values})
bodies = st.one_of(st.binary(max_size=300), nested, json_values.map(json.dumps), readings_like.map(json.dumps),
                   st.lists(readings_like, max_size=3).map(json.dumps))
content_types = st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                                 "multipart/form-data; boundary=x", "application/json; charset=latin-1", ""])
hostile = st.sampled_from(["inf", "-1", "1e400", "nan", "1e300", "-1e300", "1-2-3", "99999999999999999999999-0", "١٢٣-٠", "0-0",
                           "18446744073709551615-0"])
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60) | hostile
queries = st.dictionaries(st.sampled_from(["since", "until", "limit", "buckets", "spread", "unit", "channel",
                                           "lastEventID"]),
                          st.text(max_size=30) | hostile, max_size=4)


@pytest.fixture(scope="module")
def fuzzed(redis_server):
    """The app, a device token, and a check that a good reading still gets in."""
    app = create_app(dict(TEST_SETTINGS, REDIS_URL=redis_server.url, TESTING=True))
    redis_client = connect(redis_server.url)
    redis_client.flushall()
    token = issue_token(redis_client, "kitchen")
    client = app.test_client()
    yield client, token
    good = client.post("/api/readings", json={"temperature": 21.5},
                       headers={"Authorization": f"Bearer {token}"})
    assert good.status_code == 201
    stop_hub(app)


def assert_clear_refusal(answer):
    assert answer.status_code < 500, answer.get_data(as_text=True)
    assert b"Traceback" not in answer.get_data()


@FUZZ
@given(path=st.sampled_from(["/api/readings", "/therm/push", "/login", "/logout", "/api/firmware/report",
                             "/api/alerts/acknowledge"]),
       body=bodies, content_type=content_types, query=queries,
       authorization=st.sampled_from(["the token", "Bearer x", "Basic \xff", "Basic \xff\xfe"]))
def test_any_upload_gets_an_answer_that_is_not_a_server_error(fuzzed, path, body, content_type, authorization,
                                                              query):
    client, token = fuzzed
    if authorization == "the token":
        authorization = f"Bearer {token}"
    headers = {"Content-Type": content_type, "Authorization": authorization}

    assert_clear_refusal(client.post(path, data=body, headers=headers, query_string=query))


@FUZZ
@given(path=st.sampled_from(["/", "/healthz", "/login", "/api/devices", "/api/devices/kitchen/readings",
                             "/api/alerts", "/api/devices/kitchen/thresholds", "/api/devices/kitchen/readings.csv",
                             "/api/firmware", "/api/firmware/0.2.0", "/api/firmware/files/abc",
                             "/api/devices/%E2%98%83/readings"]),
       query=queries, last_event_id=header_text, authorization=header_text)
def test_any_read_gets_an_answer_that_is_not_a_server_error(fuzzed, path, query, last_event_id, authorization):
    client, _ = fuzzed
    headers = {"Last-Event-ID": last_event_id, "Authorization": authorization}

    assert_clear_refusal(client.get(path, query_string=query, headers=headers))


@FUZZ
@given(body=bodies, content_type=content_types, metric=st.sampled_from(["temperature", "x" * 40, "Bad!"]))
def test_any_threshold_gets_an_answer_that_is_not_a_server_error(fuzzed, body, content_type, metric):
    client, _ = fuzzed

    assert_clear_refusal(client.put(f"/api/devices/kitchen/thresholds/{metric}", data=body,
                                    headers={"Content-Type": content_type}))


@FUZZ
@given(query=queries, last_event_id=header_text)
def test_any_stream_request_opens_a_stream_or_is_refused_clearly(fuzzed, query, last_event_id):
    client, _ = fuzzed

    answer = client.get("/stream", query_string=query, headers={"Last-Event-ID": last_event_id}, buffered=False)
    first = next(answer.response)
    answer.close()

    assert answer.status_code == 200 and first.startswith(b"retry:")


def test_a_hundred_thousand_brackets_are_refused_not_a_crash(fuzzed):
    client, token = fuzzed

    answer = client.post("/api/readings", data="[" * 100_000, content_type="application/json",
                         headers={"Authorization": f"Bearer {token}"})

    assert answer.status_code == 400 and "nested too deeply" in answer.json["error"]


def test_a_number_of_five_thousand_digits_is_refused_in_our_words(fuzzed):
    client, token = fuzzed

    answer = client.post("/api/readings", data='{"temperature": %s}' % ("9" * 5000), content_type="application/json",
                         headers={"Authorization": f"Bearer {token}"})

    assert answer.status_code == 400 and answer.json["error"] == "body: a number has too many digits"


@pytest.mark.parametrize("reading, field", [({"temperature": 20, "y\n": 1}, "y\n"),
                                            ({"device": "kitchen\n", "temperature": 20}, "device"),
                                            ({"temperature": 20, "boot": "ab\n"}, "boot"),
                                            ({"temperature": 20, "fw": "1.0\n"}, "fw")])
def test_a_name_with_a_trailing_newline_is_refused_naming_the_field(fuzzed, reading, field):
    client, token = fuzzed

    answer = client.post("/api/readings", json=reading, headers={"Authorization": f"Bearer {token}"})

    assert answer.status_code == 400 and answer.json["field"] == field


def test_the_cli_gives_no_token_to_a_device_name_with_a_trailing_newline(fuzzed, redis_server):
    client, _ = fuzzed

    result = client.application.test_cli_runner().invoke(args=["devices", "add", "nl-dev\n"])

    assert result.exit_code != 0 and "a-z 0-9" in result.output
    assert "nl-dev\n" not in connect(redis_server.url).hvals(TOKENS)


def test_a_device_an_older_server_took_with_a_newline_has_no_export_and_no_crash(fuzzed, redis_server):
    client, _ = fuzzed
    older = connect(redis_server.url)  # it took "evil\n" before names were matched whole
    older.hset(device_key(older, "evil\n"), mapping={"device": "evil\n", "temperature": "20", "ts": "1764000000"})
    older.xadd(device_readings(older, "evil\n"), {"device": "evil\n", "temperature": "20", "ts": "1764000000"})

    answer = client.get("/api/devices/evil%0A/readings.csv")

    older.delete(device_key(older, "evil\n"), device_readings(older, "evil\n"))
    assert answer.status_code == 404
