"""The operator's release key: ``make provision`` makes it on first use and puts its
public half on the board, ``make release`` signs with it, and it never leaves the
operator's machine (mode 0600, ignored by git)."""
import json
import os
import stat
import subprocess

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from server import ROOT
from server.firmware import RELEASES, SIGNATURES, TARGETS
from tests.tools.test_deploy import make
from tools.release import MANIFEST_LIMIT, RELEASE_KEY, main as release, release_key as make_release_key


def test_provision_gives_the_board_the_key_that_release_signs_with(emulated_board, live_server, redis_server,
                                                                   redis_client, tmp_path):
    key_file = tmp_path / "keys" / "release-key.pem"
    env = dict(os.environ, REDIS_URL=redis_server.url, WIFI_SSID="lab", WIFI_PASSWORD="secret-password")

    provisioned = make("provision", f"PORT={emulated_board.port}", "DEVICE=attic", f"SERVER={live_server.url}",
                       f"RELEASE_KEY={key_file}", env=env)
    released = make("release", "VERSION=0.2.0", f"RELEASE_KEY={key_file}", env=env)

    assert provisioned.returncode == 0, provisioned.stdout + provisioned.stderr
    assert released.returncode == 0, released.stdout + released.stderr
    assert "back it up" in provisioned.stderr and "back it up" not in released.stderr  # made once, then kept
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    board_key = json.loads((emulated_board.flash / "settings.json").read_text())["release_key"]
    manifest, signature = redis_client.hget(RELEASES, "0.2.0"), redis_client.hget(SIGNATURES, "0.2.0")
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(board_key)).verify(bytes.fromhex(signature), manifest.encode())


def test_the_default_release_key_is_kept_out_of_git():
    ignored = subprocess.run(["git", "check-ignore", "-q", str(RELEASE_KEY)], cwd=ROOT)

    assert ignored.returncode == 0 and RELEASE_KEY.is_relative_to(ROOT / "var")


def test_release_publishes_no_manifest_longer_than_a_board_reads(redis_server, redis_client, monkeypatch, tmp_path,
                                                                  capsys):
    """A board reads at most MANIFEST_LIMIT bytes of a manifest (about 100 a file): a release
    of 60 modules would be refused by every board, so make release refuses it first."""
    source = tmp_path / "firmware"
    source.mkdir()
    (source / "version.py").write_text('VERSION = "0.1.0"\n')
    for n in range(60):
        (source / f"module_{n}.py").write_text(f"N = {n}\n")
    monkeypatch.setenv("REDIS_URL", redis_server.url)

    make_release_key(tmp_path / "release-key.pem")
    code = release(["--version", "0.2.0", "--key", str(tmp_path / "release-key.pem"), "--source", str(source)])

    assert code == 2
    assert f"and boards refuse one over {MANIFEST_LIMIT}: release fewer files" in capsys.readouterr().err
    assert not redis_client.exists(RELEASES) and not redis_client.keys("firmware:file:*")


def posted(client, token_for, *devices):
    for device in devices:
        client.post("/api/readings", json={"temperature": 20}, headers={"Authorization": f"Bearer {token_for(device)}"})


@pytest.mark.parametrize("mistake, said", [
    ("a key that is not there", "no release key at"),  # a typo, a lost var/: boards would refuse what it signs
    ("a version published already", "is published already"),  # boards may hold its manifest
    ("devices with a space", "'kitchen attic' is no device's name"),
    ("a device that never posted", "no device 'kitchn' has posted a reading: check DEVICES"),  # a typo
    ("a target never published", "no release '0.9.0' is published")])
def test_release_refuses_what_boards_would_refuse_or_never_get(redis_server, redis_client, client, token_for,
                                                              monkeypatch, tmp_path, capsys, mistake, said):
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    posted(client, token_for, "kitchen")
    key = tmp_path / "release-key.pem"
    make_release_key(key)
    assert release(["--version", "0.2.0", "--key", str(key)]) == 0
    arguments = {"a key that is not there": ["--version", "0.3.0", "--key", str(tmp_path / "relase-key.pem")],
                 "a version published already": ["--version", "0.2.0", "--key", str(key), "--devices", "kitchen"],
                 "devices with a space": ["--version", "0.3.0", "--key", str(key), "--devices", "kitchen attic"],
                 "a device that never posted": ["--version", "0.3.0", "--key", str(key), "--devices", "kitchn"],
                 "a target never published": ["--target", "0.9.0", "--key", str(key)]}

    code = release(arguments[mistake])

    assert code == 2 and said in capsys.readouterr().err
    assert redis_client.hkeys(RELEASES) == ["0.2.0"] and redis_client.hgetall(TARGETS) == {"*": "0.2.0"}
    assert not (tmp_path / "relase-key.pem").exists()


def test_a_published_release_is_targeted_again_to_roll_a_newer_one_back_by_hand(
        redis_server, redis_client, client, token_for, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    posted(client, token_for, "kitchen", "attic")
    key = tmp_path / "release-key.pem"
    make_release_key(key)
    for version, devices in (("0.2.0", ""), ("0.3.0", ""), ("0.4.0-beta", "attic")):
        assert release(["--version", version, "--key", str(key), "--devices", devices]) == 0
    manifest = redis_client.hget(RELEASES, "0.2.0")

    assert release(["--target", "0.2.0", "--key", str(key)]) == 0  # 0.3.0 turned out bad

    assert redis_client.hgetall(TARGETS) == {"*": "0.2.0"}  # attic's beta too
    assert redis_client.hget(RELEASES, "0.2.0") == manifest  # as the boards may hold it
    assert "firmware 0.2.0: targeted again at every device; each board installs it at its next heartbeat" in (
        capsys.readouterr().out)
    assert release(["--target", "0.4.0-beta", "--key", str(key), "--devices", "kitchen"]) == 2
    assert "0.4.0-beta is signed for attic only" in capsys.readouterr().err
