"""Local cloud: Particle-style claim codes over real HTTP and MQTT (TLS), and the `roost cloud` CLI."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cloud_helpers import Thing, call, need_mosquitto, start_cloud

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cloud(tmp_path):
    c = start_cloud(tmp_path)
    yield c
    c.stop()


def token_of(cloud, name):
    cloud.add_user(name, "pw")
    return cloud.login(name, "pw")


def send(thing, payload):
    """The device's claim message; returns the cloud's answer to it."""
    topic = "node/%s/claim/result" % thing.node_id
    with thing.cond:
        thing.received.clear()
    thing.publish("node/%s/claim" % thing.node_id, payload)
    return json.loads(thing.wait_message(topic))


def claim(thing, code):
    return send(thing, json.dumps({"claim_code": code}))


@pytest.fixture
def device(cloud):
    made = []

    def make(node_id):
        t = Thing(cloud, cloud.add_device(node_id))
        made.append(t)
        assert t.connected() == 0
        assert t.subscribe("node/%s/claim/result" % node_id) == 1
        return t
    yield make
    for t in made:
        t.close()


def test_claim_code_happy_path_then_reuse_is_invalid(cloud, device):
    ann = token_of(cloud, "ann")
    st, body = call(cloud, "POST", "/v1/device_claims", {}, token=ann)
    assert st == 200 and body["device_ids"] == []
    code = body["claim_code"]
    assert re.fullmatch(r"[A-Za-z0-9]{63}", code)
    n1, n2 = device("n1"), device("n2")
    result = claim(n1, code)
    assert result == {"status": "claimed", "user_id": cloud.users.user_for_token(ann)}
    assert cloud.claimant("n1") == result["user_id"]
    assert claim(n2, code) == {"status": "invalid"}                 # used up
    assert claim(n1, code)["status"] == "claimed"                    # the same device repeating
    assert claim(n2, "x" * 63) == {"status": "invalid"}
    for junk in (b"garbage", b"[]", b'{"claim_code": 5}'):
        assert send(n2, junk) == {"status": "invalid"}
    st, body = call(cloud, "GET", "/v1/devices", token=ann)
    assert st == 200 and [d["id"] for d in body["devices"]] == ["n1"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["devices"][0]["claimed_at"])
    assert call(cloud, "POST", "/v1/device_claims", {}, token=ann)[1]["device_ids"] == ["n1"]
    assert cloud.claimant("n2") is None


def test_claim_endpoints_need_a_user(cloud):
    assert call(cloud, "POST", "/v1/device_claims", {})[0] == 401
    assert call(cloud, "GET", "/v1/devices", token="nope")[0] == 401
    assert call(cloud, "POST", "/v1/device_claims", {}, token=cloud.admin_token)[0] == 401


# --- the CLI ----------------------------------------------------------------------------------

def roost(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "tools", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=30)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def test_cli_serve_user_device_claim_code(tmp_path):
    need_mosquitto()
    d = str(tmp_path / "cloud")
    proc = subprocess.Popen([sys.executable, "-m", "tools", "cloud", "serve", "--dir", d], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        info = json.loads(proc.stdout.readline())
        assert info["http_url"].startswith("http://127.0.0.1:") and info["admin_token"]
        assert Path(info["ca"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
        user = json.loads(roost("cloud", "user", "add", "ann", "--password", "pw", "--dir", d).stdout)
        assert user["name"] == "ann" and user["user_id"]
        factory = json.loads(roost("cloud", "device", "add", "a1b2c3", "--secure", "--dir", d).stdout)
        assert factory["node_id"] == "a1b2c3" and factory["bootstrap_secure"] is True
        assert factory["ca_cert"] == Path(info["ca"]).read_text()
        code = json.loads(roost("cloud", "claim-code", "--user", "ann", "--password", "pw", "--dir", d).stdout)
        assert len(code["claim_code"]) == 63
        r = roost("cloud", "user", "add", "ann", "--password", "pw", "--dir", d, check=False)
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and "exists" in r.stderr
        r = roost("cloud", "claim-code", "--user", "ann", "--password", "bad", "--dir", d, check=False)
        assert r.returncode == 1 and "401" in r.stderr
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "thing" in out and "a1b2c3" in out                               # log lines after the JSON
    r = roost("cloud", "user", "add", "bob", "--password", "pw", "--dir", d, check=False)
    assert r.returncode == 1 and "not reachable" in r.stderr
    r = roost("cloud", "device", "add", "x", "--dir", str(tmp_path / "none"), check=False)
    assert r.returncode == 1 and "no cloud in" in r.stderr
