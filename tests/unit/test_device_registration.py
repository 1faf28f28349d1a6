"""The device's registration exchange (firmware/cloud/midpoint.py, lib/pbkdf2.py) under the
MicroPython unix port: the sealed-answer vectors, and registering against servers that answer
well, wrongly, maliciously or not at all. A bad answer never changes what the device stored."""
import hashlib
import json
from pathlib import Path

import pytest

from mpy import run_mpy
from pbkdf2 import pbkdf2_sha256
from raw_server import RawServer, closed_port, reply
from tools.cloud import seal

VECTORS = json.loads((Path(__file__).resolve().parent.parent / "vectors" / "midpoint_seal.json").read_text())
KEY = "HQ481047-1JWORF43"
SERIAL = "74743827342"


def device(code):
    """Run firmware code under MicroPython; the last printed line is JSON."""
    out = run_mpy("import asyncio, json\nfrom firmware.cloud import midpoint\n" + code, path=("lib", "."),
                  heap="256K")     # source, not .mpy: the compiler needs room
    return json.loads(out.strip().splitlines()[-1])


# --- PBKDF2 ----------------------------------------------------------------------------------------

PBKDF2_CASES = [(b"passwd", b"salt", 1, 64), (b"Password", b"NaCl", 1000, 64),
                (b"p" * 65, b"long password is hashed first", 3, 32), (b"1JWORF43", b"", 2, 16),
                (b"1JWORF43", b"roost-midpoint-v1|74743827342|HQ481047", 20000, 32)]


@pytest.mark.parametrize("password,salt,n,dklen", PBKDF2_CASES)
def test_pbkdf2_matches_hashlib_under_cpython(password, salt, n, dklen):
    assert pbkdf2_sha256(password, salt, n, dklen) == hashlib.pbkdf2_hmac("sha256", password, salt, n, dklen)


def test_pbkdf2_matches_hashlib_under_micropython():
    code = "from pbkdf2 import pbkdf2_sha256\nfor p, s, n, k in %r:\n    print(pbkdf2_sha256(p, s, n, k).hex())\n"
    out = run_mpy(code % (PBKDF2_CASES,), path=("lib",)).split()
    assert out == [hashlib.pbkdf2_hmac("sha256", *c).hex() for c in PBKDF2_CASES]


# --- the sealed answer: known answers and refusals --------------------------------------------------

OPEN = """
out = []
for body, key, serial, nonce, plain_ok in json.loads(%r):
    try:
        out.append({"ok": list(midpoint.open_answer(body.encode(), key, serial, nonce, plain_ok))})
    except midpoint.RegistrationError as e:
        out.append({"error": str(e)})
print(json.dumps(out))
"""


def open_answers(cases):
    return device(OPEN % json.dumps(cases))


def test_vectors_open_to_channel_and_write_key():
    cases = [(v["body"], v["registration_key"], v["serial"], v["nonce_hex"], False) for v in VECTORS["vectors"]]
    got = open_answers(cases)
    for v, g in zip(VECTORS["vectors"], got):
        plain = seal.parse_answer(v["plaintext"])
        assert g == {"ok": [str(plain["channel"]), plain["write_key"]]}, v["name"]


def test_tampered_replayed_or_misdirected_answers_fail_authentication():
    cases = [(f["body"], f["registration_key"], f["serial"], f["nonce_hex"], False) for f in VECTORS["must_fail"]]
    got = open_answers(cases)
    assert len(got) >= 7
    for f, g in zip(VECTORS["must_fail"], got):
        assert "failed authentication" in g.get("error", ""), (f["why"], g)


def sealed(iterations=20000, plaintext=b"channel=7\nwriteKey=ABCDEFGHIJKLMNOP\n", nonce="00" * 16):
    return seal.seal(plaintext, KEY, SERIAL, nonce, iterations=iterations)


@pytest.mark.parametrize("body,plain_ok,words", [
    ("channel=7\nwriteKey=ABCDEFGHIJKLMNOP\n", False, "plain-text answer refused"),
    ("v=2\nkdf=pbkdf2-sha256\niter=20000\niv=00\nsealed=00\n", False, "unknown version"),
    ("v=1\nkdf=scrypt\niter=20000\niv=00\nsealed=00\n", False, "unknown version"),
    ("v=1\nkdf=pbkdf2-sha256\niter=lots\niv=00\nsealed=00\n", False, "bad sealed answer"),
    ("v=1\nkdf=pbkdf2-sha256\niter=20000\niv=zz\nsealed=00\n", False, "bad sealed answer"),
    ("v=1\nkdf=pbkdf2-sha256\niter=20000\niv=000102030405060708090a0b\nsealed=00\n", False, "bad sealed answer"),
    ("channel=x7\nwriteKey=ABC\n", True, "bad channel"),
    ("channel=7\nwriteKey=AB CD\n", True, "bad write key"),
    ("channel=7\n", True, "bad write key"),
    ("<html>oops</html>", True, "bad channel"),
])
def test_malformed_answers_get_clear_errors(body, plain_ok, words):
    [got] = open_answers([(body, KEY, SERIAL, "00" * 16, plain_ok)])
    assert words in got.get("error", ""), got


def test_kdf_cost_is_bounded_both_ways():
    got = open_answers([(sealed(iterations=1000), KEY, SERIAL, "00" * 16, False),
                        (sealed(iterations=10 ** 6), KEY, SERIAL, "00" * 16, False),
                        (sealed(iterations=10000), KEY, SERIAL, "00" * 16, False)])
    assert "1000 KDF iterations" in got[0]["error"]
    assert "1000000 KDF iterations" in got[1]["error"]
    assert got[2] == {"ok": ["7", "ABCDEFGHIJKLMNOP"]}


def test_plaintext_is_accepted_when_the_factory_allows_it():
    [got] = open_answers([("channel=142770\nwriteKey=C0FPQ9W3ET7A4S2S\n", KEY, SERIAL, "00" * 16, True)])
    assert got == {"ok": ["142770", "C0FPQ9W3ET7A4S2S"]}


# --- register(): one exchange, against servers ------------------------------------------------------

REGISTER = """
from firmware.store import Store
s = Store(%(root)r)
s.set_factory(json.loads(%(factory)r))
s.set("regkey", {"key": %(key)r})
async def go():
    try:
        out = {"ok": list(await midpoint.register(s, %(serial)r))}
    except midpoint.RegistrationError as e:
        out = {"error": str(e), "status": e.status}
    out["stored"] = s.get("registration")
    out["key"] = s.get("regkey")["key"]
    print(json.dumps(out))
asyncio.run(go())
"""


def register(tmp_path, url, key=KEY, serial=SERIAL, plaintext=False):
    factory = {"endpoints": {"registration": url + "/midpoint/ws/iot/devices"},
               "registration_plaintext": plaintext}
    return device(REGISTER % {"root": str(tmp_path), "factory": json.dumps(factory), "key": key,
                              "serial": serial})


def query(req):
    from urllib.parse import parse_qs, urlsplit
    line = req.split(b"\r\n", 1)[0].decode()
    u = urlsplit(line.split(" ")[1])
    return u.path, {k: v[0] for k, v in parse_qs(u.query).items()}


def honest(req, plaintext=b"channel=1000001\nwriteKey=W1W2W3W4W5W6W7W8\n", tamper=None):
    path, q = query(req)
    body = seal.seal(plaintext, KEY, path.rsplit("/", 1)[1], q["nonce"]).encode()
    return reply(tamper(body) if tamper else body)


NOTHING = {"done": False, "channel": "", "write_key": ""}


def test_registers_and_stores_the_channel(tmp_path):
    with RawServer(honest) as srv:
        got = register(tmp_path, srv.url)
        path, q = query(srv.requests[0])
    assert got["ok"] == ["1000001", "W1W2W3W4W5W6W7W8"]
    assert got["stored"] == {"done": True, "channel": "1000001", "write_key": "W1W2W3W4W5W6W7W8"}
    # Only the lookup half travels; the nonce is fresh 16 bytes.
    assert path == "/midpoint/ws/iot/devices/" + SERIAL and q["key"] == "HQ481047"
    assert len(q["nonce"]) == 32 and b"1JWORF43" not in srv.requests[0]


def test_every_request_has_a_fresh_nonce(tmp_path):
    with RawServer(honest) as srv:
        register(tmp_path, srv.url)
        register(tmp_path, srv.url)
        nonces = {query(r)[1]["nonce"] for r in srv.requests}
    assert len(nonces) == 2


def flip(body):
    b = bytearray(body)
    b[-3] = ord("0") if b[-3] != ord("0") else ord("1")    # a hex digit of the tag
    return bytes(b)


@pytest.mark.parametrize("respond,words,status", [
    (lambda req: honest(req, tamper=flip), "failed authentication", 0),
    (lambda req: reply(VECTORS["vectors"][0]["body"].encode()), "failed authentication", 0),    # replay
    (lambda req: reply(b"channel=66\nwriteKey=EVILEVILEVILEVIL\n"), "plain-text answer refused", 0),
    (lambda req: reply(b"no organisation has this registration key\n", "404 Not Found"),
     "HTTP 404: server does not know this registration key", 404),
    (lambda req: reply(b"ambiguous\n", "500 Internal Server Error"), "HTTP 500", 500),
    (lambda req: reply(b"taken\n", "409 Conflict"), "another organisation", 409),
    (lambda req: reply(b"", "503 Service Unavailable"), "HTTP 503", 503),
    (lambda req: b"garbage\r\n\r\n", "no answer from the registration server", 0),
    (lambda req: reply(b"x" * 5000), "too large", 0),
    (lambda req: b"", "no answer", 0),
])
def test_bad_answers_store_nothing(tmp_path, respond, words, status):
    with RawServer(respond) as srv:
        got = register(tmp_path, srv.url)
    assert words in got.get("error", ""), got
    assert got["status"] == status
    assert got["stored"] == NOTHING and got["key"] == KEY


def test_server_down_is_a_clear_error(tmp_path):
    got = register(tmp_path, "http://127.0.0.1:%d" % closed_port())
    assert "no answer from the registration server" in got["error"] and got["stored"] == NOTHING


def test_original_plaintext_server_works_when_allowed(tmp_path):
    with RawServer(lambda req: reply(b"channel=142770\nwriteKey=C0FPQ9W3ET7A4S2S\n")) as srv:
        got = register(tmp_path, srv.url, plaintext=True)
    assert got["stored"] == {"done": True, "channel": "142770", "write_key": "C0FPQ9W3ET7A4S2S"}
