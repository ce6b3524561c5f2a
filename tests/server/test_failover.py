"""The Redis primary's machine dies (``kill -9``) while a device uploads and a browser
watches: its Sentinels promote the replica, the server follows them, and with
``WAIT_REPLICAS`` no reading answered 201 is lost; the browser gets each reading exactly
once. Uploads are answered 201 again once a replica has them: when the former primary is
back, as a replica."""
import os
import subprocess
import sys
import time

import pytest

from server import ROOT
from server.auth import issue_token
from tests.conftest import (Device, FollowingBrowser, LiveServer, assert_each_reading_stored_once_and_seen_once,
                            eventually)
from tests.redis_group import RedisGroup


@pytest.fixture
def redis_group(tmp_path):
    group = RedisGroup(tmp_path)
    yield group
    group.stop()


def test_a_failover_loses_no_reading_answered_201_and_the_browser_sees_each_once(redis_group):
    with redis_group.client(redis_group.primary) as primary:
        token = issue_token(primary, "kitchen")
    server = LiveServer(f"redis://127.0.0.1:{redis_group.primary}/0", REDIS_SENTINELS=redis_group.sentinel_addresses,
                        WAIT_REPLICAS=1)
    try:
        browser = FollowingBrowser(server.url)
        eventually(browser.watching.is_set)
        device = Device(server.url, token)
        eventually(lambda: device.accepted >= 20)

        redis_group.kill_primary()
        killed_at, accepted = time.monotonic(), device.accepted
        eventually(lambda: redis_group.current_primary() == redis_group.replica, timeout=60)
        failed_over_after = time.monotonic() - killed_at
        redis_group.start_former_primary()
        eventually(lambda: device.accepted > accepted, timeout=60)
        answered_again_after = time.monotonic() - killed_at
        eventually(lambda: device.accepted >= accepted + 20, timeout=60)
        device.stop()

        with redis_group.client(redis_group.replica) as new_primary:
            assert_each_reading_stored_once_and_seen_once(new_primary, "kitchen", [browser])
        cli = subprocess.run([sys.executable, "-m", "flask", "--app", "server", "devices", "list"], cwd=ROOT,
                             env=dict(os.environ, REDIS_URL="redis://127.0.0.1/0",
                                      SENSORCAST_REDIS_SENTINELS=redis_group.sentinel_addresses),
                             capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0 and "kitchen" in cli.stdout, cli.stderr  # the CLI finds the new primary too
        print(f"the replica was promoted {failed_over_after:.1f} s after the primary died; "
              f"uploads were answered 201 again after {answered_again_after:.1f} s")
    finally:
        server.stop()
