"""Local cloud: users and RainMaker user-node mapping, the state machine on a fake clock and the whole
flow over real HTTP and MQTT (TLS)."""
import json
import time

import pytest

from cloud_helpers import Thing, call, start_cloud
from tools.cloud.db import Database
from tools.cloud.mapping import MappingService
from tools.cloud.users import Users


# --- the state machine on a fake clock --------------------------------------------------------

class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def svc():
    db = Database(":memory:")
    clock = Clock()
    users = Users(db, clock)
    m = MappingService(db, users, timeout=60, clock=clock)
    m.clock_ = clock
    yield m
    db.close()


def report(node, user, secret, **extra):
    return json.dumps(dict(node_id=node, user_id=user, secret_key=secret, **extra), separators=(",", ":")).encode()


def test_client_first_then_node(svc):
    rid = svc.request("u1", "n1", "s1")
    assert svc.status(rid)["request_status"] == "requested"
    svc.clock_.t += 59
    assert svc.node_report("n1", report("n1", "u1", "s1")) == "confirmed"
    assert svc.status(rid)["request_status"] == "confirmed"
    assert svc.nodes_of("u1") == ["n1"] and svc.node_owner("n1") == "u1"
    svc.clock_.t += 1000
    assert svc.status(rid)["request_status"] == "confirmed"      # confirmed stays confirmed


def test_node_first_then_client_within_the_timeout_only(svc):
    assert svc.node_report("n1", report("n1", "u1", "s1")) == "stored"
    svc.clock_.t += 30
    assert svc.status(svc.request("u1", "n1", "s1"))["request_status"] == "confirmed"
    assert svc.node_report("n2", report("n2", "u1", "s2")) == "stored"
    svc.clock_.t += 61                                             # the node's report has expired
    rid = svc.request("u1", "n2", "s2")
    assert svc.status(rid)["request_status"] == "requested"
    svc.clock_.t += 60
    assert svc.status(rid)["request_status"] == "timedout"
    assert svc.node_report("n2", report("n2", "u1", "s2")) == "stored"   # too late for rid
    assert svc.status(rid)["request_status"] == "timedout" and svc.nodes_of("u1") == ["n1"]


def test_mismatch_never_confirms(svc):
    rid = svc.request("u1", "n1", "s1")
    for bad in (report("n1", "u1", "other"), report("n1", "u2", "s1")):
        assert svc.node_report("n1", bad) == "stored"
    assert svc.status(rid)["request_status"] == "requested"
    svc.clock_.t += 60
    assert svc.status(rid)["request_status"] == "timedout" and svc.node_owner("n1") is None


def test_reset_removes_associations(svc):
    svc.node_report("n1", report("n1", "u1", "s1"))
    svc.request("u1", "n1", "s1")
    assert svc.users_of("n1") == ["u1"]
    assert svc.node_report("n1", report("n1", "esp-rmaker", "failed", reset=True)) == "reset"
    assert svc.users_of("n1") == []
    svc.node_report("n1", report("n1", "u1", "s1"))
    svc.request("u1", "n1", "s1")
    rid = svc.request("u2", "n1", "s2")                     # a new owner after a factory reset
    assert svc.node_report("n1", report("n1", "u2", "s2", reset=True)) == "confirmed"
    assert svc.users_of("n1") == ["u2"] and svc.status(rid)["request_status"] == "confirmed"


@pytest.mark.parametrize("payload", [b"", b"\xff\xfe", b"not json", b"[1,2]", b'"x"', b"null",
                                     report("n2", "u1", "s1"), report("n1", "u1", None),
                                     b'{"node_id":"n1","user_id":5,"secret_key":"s1"}'])
def test_garbage_is_ignored(svc, payload):
    rid = svc.request("u1", "n1", "s1")
    assert svc.node_report("n1", payload) == "ignored"
    assert svc.status(rid)["request_status"] == "requested"
    assert svc.node_report("n1", report("n1", "u1", "s1")) == "confirmed"


# --- over HTTP and MQTT -----------------------------------------------------------------------

@pytest.fixture
def cloud(tmp_path):
    c = start_cloud(tmp_path, mapping_timeout=1.5)
    yield c
    c.stop()


def login(cloud, name="ann", password="pw"):
    st, body = call(cloud, "POST", "/v1/login", {"user_name": name, "password": password})
    assert st == 200 and body["status"] == "success", body
    return body["user_id"], body["accesstoken"]


def poll(cloud, token, rid, until=("confirmed", "timedout"), timeout=5.0):
    end = time.monotonic() + timeout
    while True:
        st, body = call(cloud, "GET", "/v1/user/nodes/mapping?request_id=" + rid, token=token)
        assert st == 200, body
        if body["request_status"] in until or time.monotonic() > end:
            return body
        time.sleep(0.05)


@pytest.fixture
def node(cloud):
    cfg = cloud.add_device("a1b2c3")
    t = Thing(cloud, cfg)
    assert t.connected() == 0
    yield t
    t.close()


def node_says(cloud, thing, payload):
    thing.publish("node/a1b2c3/user/mapping", payload)
    cloud.wait_message("node/a1b2c3/user/mapping", match=lambda p: p == payload)   # and handled


def test_login(cloud):
    uid = cloud.add_user("ann", "pw")
    assert login(cloud)[0] == uid
    assert call(cloud, "POST", "/v1/login", {"user_name": "ann", "password": "nope"})[0] == 401
    assert call(cloud, "POST", "/v1/login", {"user_name": "bob", "password": "pw"})[0] == 401
    st, body = call(cloud, "POST", "/v1/login", raw=b"{nope")
    assert st == 400 and body["status"] == "failure" and body["description"]


def test_mapping_client_first_over_mqtt(cloud, node):
    uid = cloud.add_user("ann", "pw")
    _, token = login(cloud)
    st, body = call(cloud, "PUT", "/v1/user/nodes/mapping",
                    {"node_id": "a1b2c3", "secret_key": "s3cr3t", "operation": "add", "user_id": uid}, token=token)
    assert st == 200 and body["status"] == "success"
    rid = body["request_id"]
    assert poll(cloud, token, rid, timeout=0)["request_status"] == "requested"
    node_says(cloud, node, report("a1b2c3", uid, "s3cr3t"))
    assert poll(cloud, token, rid) == {"request_id": rid, "request_status": "confirmed", "node_id": "a1b2c3"}
    assert call(cloud, "GET", "/v1/user/nodes", token=token) == (200, {"nodes": ["a1b2c3"]})
    assert cloud.node_owner("a1b2c3") == uid
    # RainMaker also takes the raw token, without "Bearer "
    assert call(cloud, "GET", "/v1/user/nodes", headers={"Authorization": token})[1] == {"nodes": ["a1b2c3"]}
    st, _ = call(cloud, "PUT", "/v1/user/nodes/mapping", {"node_id": "a1b2c3", "operation": "remove"}, token=token)
    assert st == 200 and cloud.node_owner("a1b2c3") is None


def test_mapping_node_first_over_mqtt(cloud, node):
    uid = cloud.add_user("ann", "pw")
    _, token = login(cloud)
    node_says(cloud, node, report("a1b2c3", uid, "k"))
    st, body = call(cloud, "PUT", "/v1/user/nodes/mapping",
                    {"node_id": "a1b2c3", "secret_key": "k", "operation": "add"}, token=token)
    assert st == 200
    assert poll(cloud, token, body["request_id"], timeout=0)["request_status"] == "confirmed"


def test_mismatch_times_out_and_garbage_does_not_hurt(cloud, node):
    uid = cloud.add_user("ann", "pw")
    _, token = login(cloud)
    t0 = time.monotonic()
    rid = call(cloud, "PUT", "/v1/user/nodes/mapping",
               {"node_id": "a1b2c3", "secret_key": "right", "operation": "add"}, token=token)[1]["request_id"]
    for junk in (b"\x00\xff", b"[]", b"{", report("zzz", uid, "right"), report("a1b2c3", uid, "wrong")):
        node_says(cloud, node, junk)
    assert poll(cloud, token, rid, timeout=0)["request_status"] == "requested"
    assert poll(cloud, token, rid, timeout=4)["request_status"] == "timedout"
    assert time.monotonic() - t0 >= 1.4
    assert cloud.node_owner("a1b2c3") is None
    # and the service still works
    rid = call(cloud, "PUT", "/v1/user/nodes/mapping",
               {"node_id": "a1b2c3", "secret_key": "again", "operation": "add"}, token=token)[1]["request_id"]
    node_says(cloud, node, report("a1b2c3", uid, "again"))
    assert poll(cloud, token, rid)["request_status"] == "confirmed"


def test_reset_over_mqtt(cloud, node):
    uid = cloud.add_user("ann", "pw")
    _, token = login(cloud)
    node_says(cloud, node, report("a1b2c3", uid, "k"))
    call(cloud, "PUT", "/v1/user/nodes/mapping", {"node_id": "a1b2c3", "secret_key": "k", "operation": "add"},
         token=token)
    assert cloud.node_owner("a1b2c3") == uid
    node_says(cloud, node, report("a1b2c3", "esp-rmaker", "failed", reset=True))
    assert cloud.node_owner("a1b2c3") is None
    assert call(cloud, "GET", "/v1/user/nodes", token=token)[1] == {"nodes": []}


def test_mapping_http_errors(cloud):
    uid = cloud.add_user("ann", "pw")
    cloud.add_user("bob", "pw")
    _, token = login(cloud)
    _, bob = login(cloud, "bob")
    put = lambda body, tok=token: call(cloud, "PUT", "/v1/user/nodes/mapping", body, token=tok)  # noqa: E731
    assert put({"node_id": "n", "secret_key": "s", "operation": "add"}, tok="bad")[0] == 401
    for body in ({"secret_key": "s", "operation": "add"}, {"node_id": "n", "operation": "add"},
                 {"node_id": "n", "secret_key": "s"}, {"node_id": "", "secret_key": "s", "operation": "add"},
                 {"node_id": "n", "secret_key": 7, "operation": "add"},
                 {"node_id": "n", "secret_key": "s", "operation": "steal"}):
        st, answer = put(body)
        assert st == 400 and answer["status"] == "failure" and answer["description"], body
    assert call(cloud, "PUT", "/v1/user/nodes/mapping", raw=b"[]", token=token)[0] == 400
    st, _ = put({"node_id": "n", "secret_key": "s", "operation": "add", "user_id": "someone-else"})
    assert st == 403
    rid = put({"node_id": "n", "secret_key": "s", "operation": "add", "user_id": uid})[1]["request_id"]
    assert call(cloud, "GET", "/v1/user/nodes/mapping?request_id=" + rid, token=bob)[0] == 404
    assert call(cloud, "GET", "/v1/user/nodes/mapping?request_id=nope", token=token)[0] == 404
    assert call(cloud, "GET", "/v1/user/nodes/mapping", token=token)[0] == 400
    assert put({"node_id": "n", "operation": "remove"})[0] == 404          # not mapped
