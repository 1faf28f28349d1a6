"""The device's bootstrap client (firmware/cloud/bootstrap.py, lib/httpc.py) under the MicroPython
unix port, against the local cloud's real bootstrap service and against broken servers."""
import json
from pathlib import Path

import pytest

from mpy import run_mpy
from raw_server import RawServer, closed_port, reply
from tools.cloud.bootstrap import DEFAULT_ENCRYPT_KEY, BootstrapService
from tools.cloud.db import Database

VECTORS = json.loads((Path(__file__).resolve().parent.parent / "vectors" / "mainflux_cfb.json").read_text())
CASES = {v["name"]: v for v in VECTORS["vectors"]}
TOKEN = "t0ken"


def device(code):
    """Run firmware code under MicroPython; the last printed line is JSON."""
    out = run_mpy("import asyncio, json\nfrom firmware.cloud import bootstrap\n" + code,
                  path=("lib", "."))
    return json.loads(out.strip().splitlines()[-1])


FETCH = """
f = json.loads(%r)
async def go():
    try:
        r = await bootstrap.fetch(f, %r)
        print(json.dumps({"ok": r}))
    except bootstrap.BootstrapError as e:
        print(json.dumps({"error": str(e), "status": e.status}))
asyncio.run(go())
"""


def fetch(factory, ext_id):
    return device(FETCH % (json.dumps(factory), ext_id))


def factory(url, key="ext-key-123", secure=False, prefix="Thing ", enc=DEFAULT_ENCRYPT_KEY):
    return {"endpoints": {"bootstrap": url + "/things/bootstrap", "mqtt": ""}, "external_key": key,
            "bootstrap_secure": secure, "auth_prefix": prefix, "bootstrap_enc_key": enc}


@pytest.fixture
def cloud():
    svc = BootstrapService(Database(":memory:"), port=0, token=TOKEN).start()
    svc.db.add_config({"thing_id": "thing-1", "external_id": "node-1", "external_key": "ext-key-123",
                       "thing_key": "tk-1", "content": '{"agent":{"mqtt":{"url":"mqtts://mqtt.lan:8883"}}}',
                       "channels": [{"id": "c1", "metadata": {"type": "control"}}, {"id": "d1"}]})
    yield svc
    svc.stop()


# --- known answers -------------------------------------------------------------------------------

def test_secure_header_matches_the_mainflux_vector():
    v = CASES["mainflux_request_external_key"]
    got = device("""
print(json.dumps(bootstrap._auth({"external_key": %r, "bootstrap_secure": True,
      "auth_prefix": "Thing ", "bootstrap_enc_key": %r}, bytes.fromhex(%r))))
""" % (v["plaintext_ascii"], v["key_ascii"], v["iv"]))
    assert got == v["authorization_header"]


def test_secure_body_vector_decrypts_and_parses():
    v = CASES["mainflux_response_body"]
    got = device("""
f = {"bootstrap_enc_key": %r}
body = bytes.fromhex(%r) + bytes.fromhex(%r)
print(json.dumps(bootstrap.parse(bootstrap._cfb(f, body[:16], body[16:], False))))
""" % (v["key_ascii"], v["iv"], v["ciphertext"]))
    assert got["thing_id"] == "t1" and got["thing_key"] == "k1" and got["channels"] == []


@pytest.mark.parametrize("doc", [
    {"thing_id": "a", "thing_key": "b", "channels": [{"id": "c", "metadata": {"type": "control"}}]},
    {"mainflux_id": "a", "mainflux_key": "b", "mainflux_channels": [{"id": "c", "metadata": {"type": "control"}}]},
    {"client_id": "a", "client_secret": "b", "channels": [{"id": "c", "metadata": {"type": "control"}}]},
], ids=["thing", "mainflux", "client"])
def test_every_field_generation_is_understood(doc):
    got = device("print(json.dumps(bootstrap.parse(%r)))" % json.dumps(doc))
    assert (got["thing_id"], got["thing_key"], got["channels"]) == ("a", "b", [{"id": "c", "type": "control"}])


@pytest.mark.parametrize("body", ['[]', '{"thing_id":"a"}', '{"thing_id":"a","thing_key":7}',
                                  '{"thing_id":"a","thing_key":"b","channels":[5]}', 'nope', '\xff'])
def test_unusable_documents_are_refused(body):
    got = device("""
try:
    bootstrap.parse(%r)
    print(json.dumps("accepted"))
except bootstrap.BootstrapError as e:
    print(json.dumps(str(e)))
""" % body)
    assert got != "accepted"


@pytest.mark.parametrize("url,want", [
    ("mqtts://mqtt.lan:8883", [True, "mqtt.lan", 8883]),
    ("ssl://10.0.0.2", [True, "10.0.0.2", 8883]),
    ("tcp://localhost:1883", [False, "localhost", 1883]),
    ("localhost:1884", [False, "localhost", 1884]),
])
def test_broker_url_from_content(url, want):
    rec = {"content": json.dumps({"agent": {"mqtt": {"url": url}}})}
    got = device("from firmware.cloud import manager\n"
                 "print(json.dumps(manager.broker(%r, {'endpoints': {'mqtt': ''}})))" % rec)
    assert got == want


def test_broker_url_falls_back_to_the_factory_then_fails_clearly():
    got = device("""
from firmware.cloud import manager
print(json.dumps(manager.broker({"content": ""}, {"endpoints": {"mqtt": "mqtts://b:1"}})))
""")
    assert got == [True, "b", 1]
    got = device("""
from firmware.cloud import manager
try:
    manager.broker({"content": "{}"}, {"endpoints": {"mqtt": ""}})
except manager.CloudError as e:
    print(json.dumps(str(e)))
""")
    assert "no MQTT broker URL" in got


# --- against the local cloud ---------------------------------------------------------------------

def test_plain_bootstrap(cloud):
    got = fetch(factory(cloud.url), "node-1")["ok"]
    assert got["thing_id"] == "thing-1" and got["thing_key"] == "tk-1"
    assert got["channels"] == [{"id": "c1", "type": "control"}, {"id": "d1", "type": ""}]


def test_secure_bootstrap(cloud):
    got = fetch(factory(cloud.url, secure=True), "node-1")["ok"]
    assert got["thing_key"] == "tk-1"


@pytest.mark.parametrize("kw,ext,status,words", [
    ({"key": "wrong"}, "node-1", 403, "external key rejected"),
    ({}, "nobody", 404, "no bootstrap config"),
    ({"prefix": ""}, "node-1", 401, "auth prefix"),
    ({"key": "wrong", "secure": True}, "node-1", 403, "external key rejected"),
])
def test_server_refusals_are_clear(cloud, kw, ext, status, words):
    got = fetch(factory(cloud.url, **kw), ext)
    assert got["status"] == status and words in got["error"]


def test_wrong_encrypt_key_is_refused_before_use(cloud):
    got = fetch(factory(cloud.url, secure=True, enc="short"), "node-1")
    assert "16, 24 or 32" in got["error"]


# --- broken servers ------------------------------------------------------------------------------

@pytest.mark.parametrize("response,words", [
    (reply(b"{not json"), "not JSON"),
    (reply(b'{"thing_id":"x"}'), "no thing ID/key"),
    (b"garbage\r\n\r\n", "bad answer"),
    (reply(b"x" * 9000), "too large"),
    (b"", "no answer"),
    (reply(b"", "503 Service Unavailable"), "HTTP 503"),
])
def test_broken_servers_give_clear_errors(response, words):
    srv = RawServer(lambda req: response)
    try:
        got = fetch(factory(srv.url), "node-1")
    finally:
        srv.close()
    assert "error" in got and words in got["error"], got


def test_chunked_responses_are_read():
    doc = b'{"thing_id":"a","thing_key":"b","channels":null}'
    chunks = b"10\r\n" + doc[:16] + b"\r\n" + (b"%x\r\n" % (len(doc) - 16)) + doc[16:] + b"\r\n0\r\n\r\n"
    srv = RawServer(lambda req: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
    try:
        got = fetch(factory(srv.url), "node-1")
    finally:
        srv.close()
    assert got["ok"]["thing_key"] == "b"


def test_tampered_secure_response_is_refused(cloud):
    import http.client

    def tamper(req):
        path = req.split(b" ")[1].decode()
        auth = [l for l in req.split(b"\r\n") if l.lower().startswith(b"authorization:")][0]
        conn = http.client.HTTPConnection("127.0.0.1", cloud.port, timeout=5)
        conn.request("GET", path, headers={"Authorization": auth.split(b":", 1)[1].strip().decode()})
        body = bytearray(conn.getresponse().read())
        body[20] ^= 0x40          # one bit in the first ciphertext block: the next block is garbled
        return reply(bytes(body))
    srv = RawServer(tamper)
    try:
        got = fetch(factory(srv.url, secure=True), "node-1")
    finally:
        srv.close()
    assert "tampered" in got["error"]


def test_server_down_is_a_clear_error():
    got = fetch(factory("http://127.0.0.1:%d" % closed_port()), "node-1")
    assert "no answer" in got["error"] and got["status"] == 0
