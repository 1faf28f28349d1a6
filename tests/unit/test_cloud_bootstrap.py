"""Local cloud: the Mainflux bootstrap contract (cloud-contracts.md section 1) over real HTTP."""
import http.client
import json
import threading

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

try:
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:
    from cryptography.hazmat.primitives.ciphers.modes import CFB

from tools.cloud.bootstrap import DEFAULT_ENCRYPT_KEY, BootstrapService, cfb_decrypt, cfb_encrypt
from tools.cloud.db import Database

TOKEN = "test-token"
KEY = DEFAULT_ENCRYPT_KEY.encode()      # raw ASCII bytes, AES-256


def call(svc, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=5)
    try:
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=hdrs)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def admin(svc, method, path, body=None):
    return call(svc, method, path, body, {"Authorization": f"Bearer {TOKEN}"})


def boot(svc, ext_id, auth=None, secure=False):
    path = ("/things/bootstrap/secure/" if secure else "/things/bootstrap/") + ext_id
    return call(svc, "GET", path, headers={} if auth is None else {"Authorization": auth})


def go_cfb(key, iv, data, encrypt=True):
    c = Cipher(algorithms.AES(key), CFB(iv))
    x = c.encryptor() if encrypt else c.decryptor()
    return x.update(data) + x.finalize()


@pytest.fixture
def make_service():
    services = []

    def make(**kw):
        kw.setdefault("token", TOKEN)
        svc = BootstrapService(Database(":memory:"), port=0, **kw).start()
        services.append(svc)
        return svc
    yield make
    for s in services:
        s.stop()
        s.db.close()


@pytest.fixture
def svc(make_service):
    return make_service()


FULL = {
    "external_id": "aa:bb:cc:dd:ee:ff", "external_key": "ext-key-123",
    "thing_id": "7c9df5eb-d06b-4402-8c1a-df476e4394c8", "thing_key": "86a4f870",
    "name": "node-1", "content": '{"agent":{"mqtt":{"url":"localhost:1883"}}}',
    "channels": [{"id": "ctl", "name": "control", "metadata": {"type": "control", "a": 1}}, "data"],
    "client_cert": "CERT", "client_key": "KEY", "ca_cert": "CA",
}


def test_create_requires_bearer(svc):
    assert call(svc, "POST", "/things/configs", FULL)[0] == 401
    assert call(svc, "POST", "/things/configs", FULL, {"Authorization": "Bearer nope"})[0] == 401
    assert call(svc, "POST", "/things/configs", FULL, {"Authorization": TOKEN})[0] == 401
    st, hdrs, body = admin(svc, "POST", "/things/configs", FULL)
    assert st == 201 and hdrs["Location"] == f"/things/configs/{FULL['thing_id']}" and body == b""
    assert admin(svc, "POST", "/things/configs", FULL)[0] == 409            # external_id unique
    assert admin(svc, "POST", "/things/configs", {"external_id": "x"})[0] == 400
    st, _, _ = call(svc, "POST", "/things/configs", FULL,
                    {"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"})
    assert st == 415


def test_create_generates_thing_credentials_and_view(svc):
    st, hdrs, _ = admin(svc, "POST", "/things/configs", {"external_id": "e1", "external_key": "k"})
    assert st == 201
    thing_id = hdrs["Location"].rsplit("/", 1)[1]
    assert len(thing_id) == 36 and thing_id.count("-") == 4              # uuid4
    st, _, body = admin(svc, "GET", hdrs["Location"])
    view = json.loads(body)
    assert st == 200 and view["thing_id"] == thing_id and view["state"] == 0
    assert len(view["thing_key"]) == 32 and int(view["thing_key"], 16) >= 0
    assert call(svc, "GET", hdrs["Location"])[0] == 401
    assert admin(svc, "GET", "/things/configs/nope")[0] == 404
    assert admin(svc, "DELETE", hdrs["Location"])[0] == 204
    assert admin(svc, "GET", hdrs["Location"])[0] == 404
    assert boot(svc, "e1", "Thing k")[0] == 404


def test_plain_bootstrap_thing_fields(svc):
    admin(svc, "POST", "/things/configs", FULL)
    st, hdrs, body = boot(svc, FULL["external_id"], "Thing ext-key-123")
    assert st == 200 and hdrs["Content-Type"] == "application/json"
    assert body.endswith(b"}\n") and not body.endswith(b"\n\n")
    assert body == (
        b'{"thing_id":"7c9df5eb-d06b-4402-8c1a-df476e4394c8","thing_key":"86a4f870",'
        b'"channels":[{"id":"ctl","name":"control","metadata":{"a":1,"type":"control"}},{"id":"data"}],'
        b'"content":"{\\"agent\\":{\\"mqtt\\":{\\"url\\":\\"localhost:1883\\"}}}",'
        b'"client_cert":"CERT","client_key":"KEY","ca_cert":"CA"}\n')


def test_plain_bootstrap_minimal_mainflux_fields(make_service):
    svc = make_service(fields="mainflux")
    admin(svc, "POST", "/things/configs",
          {"external_id": "e", "external_key": "k", "thing_id": "t1", "thing_key": "k1", "content": ""})
    st, _, body = boot(svc, "e", "Thing k")
    assert st == 200
    assert body == b'{"mainflux_id":"t1","mainflux_key":"k1","mainflux_channels":null}\n'


def test_status_codes(svc):
    admin(svc, "POST", "/things/configs", {"external_id": "e", "external_key": "k"})
    assert boot(svc, "unknown", "Thing k")[0] == 404
    assert boot(svc, "", "Thing k")[0] == 400
    assert boot(svc, "", None)[0] == 401                   # key is validated before the ID
    assert boot(svc, "e", None)[0] == 401
    assert boot(svc, "e", "k")[0] == 401                    # raw key without prefix (2019 style)
    assert boot(svc, "e", "thing k")[0] == 401              # prefix is exact
    assert boot(svc, "e", "Thing  k")[0] == 403             # second space is part of the key
    assert boot(svc, "e", "Thing ")[0] == 401
    assert boot(svc, "e", "Thing wrong")[0] == 403
    st, _, body = boot(svc, "e", "Thing wrong")
    assert "error" in json.loads(body)


def test_raw_key_generation_flag(make_service):
    svc = make_service(accept_raw_key=True, fields="mainflux")
    admin(svc, "POST", "/things/configs", {"external_id": "e", "external_key": "k", "thing_id": "t"})
    assert boot(svc, "e", "k")[0] == 200
    assert boot(svc, "e", "Thing k")[0] == 200
    assert boot(svc, "e", "wrong")[0] == 403
    assert boot(svc, "e", None)[0] == 401


def test_inactive_and_active_state_both_bootstrap(svc):
    admin(svc, "POST", "/things/configs", {"external_id": "e", "external_key": "k", "thing_id": "t"})
    assert json.loads(admin(svc, "GET", "/things/configs/t")[2])["state"] == 0
    assert boot(svc, "e", "Thing k")[0] == 200                          # inactive still 200
    assert admin(svc, "PUT", "/things/state/t", {"state": 1})[0] == 200
    assert json.loads(admin(svc, "GET", "/things/configs/t")[2])["state"] == 1
    assert boot(svc, "e", "Thing k")[0] == 200
    assert admin(svc, "PUT", "/things/state/t", {"state": 0})[0] == 200
    assert boot(svc, "e", "Thing k")[0] == 200
    assert admin(svc, "PUT", "/things/state/t", {"state": 2})[0] == 400
    assert admin(svc, "PUT", "/things/state/nope", {"state": 1})[0] == 404
    assert call(svc, "PUT", "/things/state/t", {"state": 1})[0] == 401


def test_secure_vectors_byte_for_byte(vector, make_service):
    vecs = {v["name"]: v for v in vector("mainflux_cfb.json")["vectors"]}
    for name in ("nist_sp800_38a_f3_13_cfb128_aes256_encrypt", "rustcrypto_cfb_mode_aes128"):
        v = vecs[name]
        k, iv, pt, ct = (bytes.fromhex(v[f]) for f in ("key", "iv", "plaintext", "ciphertext"))
        assert cfb_encrypt(k, pt, iv=iv) == iv + ct
        assert cfb_decrypt(k, iv + ct) == pt
    req, resp = vecs["mainflux_request_external_key"], vecs["mainflux_response_body"]
    assert req["key_ascii"].encode() == KEY
    iv = bytes.fromhex(resp["iv"])
    svc = make_service(iv_source=lambda: iv)
    admin(svc, "POST", "/things/configs", {"external_id": "dev", "external_key": req["plaintext_ascii"],
                                           "thing_id": "t1", "thing_key": "k1"})
    st, hdrs, body = boot(svc, "dev", req["authorization_header"], secure=True)
    assert st == 200
    assert body == bytes.fromhex(resp["wire_body"])                  # raw IV || CFB128(JSON)
    # a device using CFB8 by mistake agrees on the first byte only and must be refused
    cfb8_header = "Thing " + req["iv"] + req["cfb8_ciphertext_must_not_match"]
    assert boot(svc, "dev", cfb8_header, secure=True)[0] == 403
    st, _, _ = boot(svc, "dev", "Thing " + req["header_hex"].upper(), secure=True)
    assert st == 200                                                   # upper-case hex accepted


def test_secure_round_trip_random_iv(svc):
    admin(svc, "POST", "/things/configs", FULL)
    iv = bytes(range(16, 32))
    header = "Thing " + (iv + go_cfb(KEY, iv, FULL["external_key"].encode())).hex()
    st, _, body1 = boot(svc, FULL["external_id"], header, secure=True)
    st2, _, body2 = boot(svc, FULL["external_id"], header, secure=True)
    assert st == st2 == 200 and body1[:16] != body2[:16]                # fresh IV each time
    plain = go_cfb(KEY, body1[:16], body1[16:], encrypt=False)
    assert not plain.endswith(b"\n")                                    # json.Marshal, no newline
    plain_resp = boot(svc, FULL["external_id"], "Thing " + FULL["external_key"])[2]
    assert plain + b"\n" == plain_resp
    doc = json.loads(plain)
    assert doc["thing_id"] == FULL["thing_id"] and doc["channels"][1] == {"id": "data"}


def test_secure_errors(svc):
    admin(svc, "POST", "/things/configs", FULL)
    e = FULL["external_id"]
    iv = bytes(16)
    good = (iv + go_cfb(KEY, iv, FULL["external_key"].encode())).hex()
    tampered = good[:-2] + format(int(good[-2:], 16) ^ 1, "02x")
    assert boot(svc, e, "Thing " + good, secure=True)[0] == 200
    assert boot(svc, e, "Thing " + tampered, secure=True)[0] == 403
    assert boot(svc, e, "Thing zz-not-hex", secure=True)[0] == 403
    assert boot(svc, e, "Thing abc", secure=True)[0] == 403            # odd length
    assert boot(svc, e, "Thing " + iv.hex()[:20], secure=True)[0] == 403   # shorter than an IV
    assert boot(svc, e, "Thing " + FULL["external_key"], secure=True)[0] == 403   # plain key
    wrong_key = (iv + go_cfb(b"0" * 32, iv, FULL["external_key"].encode())).hex()
    assert boot(svc, e, "Thing " + wrong_key, secure=True)[0] == 403
    assert boot(svc, e, None, secure=True)[0] == 401
    assert boot(svc, e, good, secure=True)[0] == 401                   # no prefix
    assert boot(svc, "unknown", "Thing " + good, secure=True)[0] == 404
    assert boot(svc, "", "Thing " + good, secure=True)[0] == 400


def test_secure_with_unusable_key_always_403(make_service):
    svc = make_service(encrypt_key="v7aT0HGxJxt2gULzr3RHwf4WIf6DusPphG5Ftm2bNCWD8mTpyr")  # 50 bytes
    admin(svc, "POST", "/things/configs", {"external_id": "e", "external_key": "k"})
    k = svc.encrypt_key[:32]
    assert boot(svc, "e", "Thing " + (bytes(16) + go_cfb(k, bytes(16), b"k")).hex(), secure=True)[0] == 403
    assert boot(svc, "e", "Thing k")[0] == 200                           # plain path unaffected


def test_concurrent_requests(svc):
    for i in range(8):
        admin(svc, "POST", "/things/configs", {"external_id": f"e{i}", "external_key": f"k{i}"})
    results, lock = [], threading.Lock()

    def worker(i):
        for j in range(10):
            n = (i + j) % 8
            auth = f"Thing k{n}" if j % 3 else "Thing bad"
            st, _, body = boot(svc, f"e{n}", auth)
            with lock:
                results.append((j % 3 != 0, st, body))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 160
    for ok, st, body in results:
        assert st == (200 if ok else 403)
        if ok:
            assert body.endswith(b"\n") and json.loads(body)["channels"] is None


def test_router_unknown_path_and_method(svc):
    assert call(svc, "GET", "/nope")[0] == 404
    assert call(svc, "POST", "/things/bootstrap/e")[0] == 405


def test_database_file_persists(tmp_path):
    path = tmp_path / "cloud.db"
    db = Database(path)
    db.add_config({"thing_id": "t", "thing_key": "k", "external_id": "e", "external_key": "x",
                   "channels": [{"id": "c"}]})
    db.close()
    db = Database(path)
    assert db.get_config_by_external_id("e")["channels"] == [{"id": "c"}]
    assert db.set_config_state("t", 1) and db.get_config("t")["state"] == 1
    assert not db.set_config_state("missing", 1)
    db.close()
