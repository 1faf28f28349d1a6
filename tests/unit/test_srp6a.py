"""lib/srp6a.py: Security 2 SRP6a device side, byte-exact against vectors/esp_prov_sec2.json.

The reference client below is written from the spec (esp-provisioning.md 5.2) with hashlib and
the group taken from the vectors file, so it shares no code with lib/srp6a.py.
"""
import hashlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

import sha512
import srp6a
from tests.mpy import run_mpy

LIB = Path(__file__).resolve().parents[2] / "lib"

# With the vector's salt, verifier and A, these b give a B (first) and an S (second) whose top
# byte is zero, so PAD and minimal encodings differ there; the vector itself cannot tell them
# apart (its B and S are full length). Found by a search over b; likewise a salt whose verifier
# is shorter than 384 bytes.
SHORT_B_b = bytes.fromhex("61" * 30 + "03d2")
SHORT_S_b = bytes.fromhex("61" * 30 + "01b0")
SHORT_V_SALT = bytes.fromhex("1112131415161718191a1b1c1d1e0139")


def H(*parts):
    return hashlib.sha512(b"".join(parts)).digest()


def to_int(b):
    return int.from_bytes(b, "big")


def minimal(x):
    return x.to_bytes((x.bit_length() + 7) // 8, "big")


class Client:
    """SRP6a client (what esp_prov / esp-rainmaker-cli do), independent of lib/srp6a.py."""

    def __init__(self, N, g, username, password, a):
        self.N, self.g = N, g
        self.username, self.password = username.encode(), password.encode()
        self.a = to_int(a)
        self.A = self.pad(pow(g, self.a, N))

    def pad(self, x):
        return x.to_bytes(384, "big")

    def proof(self, salt, B):
        N, g = self.N, self.g
        k = to_int(H(self.pad(N), self.pad(g)))
        self.u = H(self.A, self.pad(to_int(B)))   # A is already PAD(A)
        u = to_int(self.u)
        x = to_int(H(salt, H(self.username, b":", self.password)))
        S = pow((to_int(B) - k * pow(g, x, N)) % N, self.a + u * x, N)
        self.S_len = len(minimal(S))
        self.K = H(minimal(S))
        hn_xor_hg = bytes(p ^ q for p, q in zip(H(self.pad(N)), H(self.pad(g))))
        self.M = H(hn_xor_hg, H(self.username), salt, self.A, B, self.K)
        return self.M

    def check(self, hamk):
        return hamk == H(self.A, self.M, self.K)


def load_pure_srp6a():
    """A second copy of lib/srp6a.py imported as if hashlib had no sha512 (as on MicroPython)."""
    fake = types.ModuleType("hashlib")
    spec = importlib.util.spec_from_file_location("srp6a_pure", LIB / "srp6a.py")
    mod = importlib.util.module_from_spec(spec)
    saved = sys.modules.get("hashlib")
    sys.modules["hashlib"] = fake
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules["hashlib"] = saved
    assert mod._sha512 is sha512.sha512
    return mod


@pytest.fixture(scope="module", params=["hashlib", "pure"])
def srp(request):
    return srp6a if request.param == "hashlib" else load_pure_srp6a()


@pytest.fixture(scope="module")
def sec2(vector):
    v = vector("esp_prov_sec2.json")
    out = {k: bytes.fromhex(x) for k, x in v["derived"].items() if not k.endswith("_len")}
    for k in ("salt", "client_a", "device_b"):
        out[k] = bytes.fromhex(v["inputs"][k])
    out["username"], out["password"] = v["inputs"]["username"], v["inputs"]["password"]
    out["N"], out["g"] = to_int(bytes.fromhex(v["group"]["N"])), v["group"]["g"]
    return out


def test_hash_path_in_use():
    assert srp6a._sha512 is hashlib.sha512   # CPython uses hashlib; the pure copy is tested via `srp`


def test_group_and_k(srp, sec2):
    assert srp.N == sec2["N"] and srp.G == sec2["g"] == 5
    assert len(srp.pad(srp.N)) == 384 and srp.pad(srp.N)[:8] == b"\xff" * 8
    assert srp.K_MUL.to_bytes(64, "big") == sec2["k"]


def test_verifier(srp, sec2):
    v = srp.verifier(sec2["username"], sec2["password"], sec2["salt"])
    assert v == sec2["verifier"]
    assert hashlib.sha256(v).digest() == sec2["verifier_sha256"]
    assert srp.verifier(b"wifiprov", b"abcd1234", sec2["salt"]) == v   # str and bytes alike


def test_vector_handshake(srp, sec2):
    client = Client(sec2["N"], sec2["g"], sec2["username"], sec2["password"], sec2["client_a"])
    assert client.A == sec2["A"]
    server = srp.Server(sec2["salt"], sec2["verifier"], b=sec2["device_b"])
    B = server.challenge(sec2["username"].encode(), sec2["A"])
    assert B == sec2["B"]
    assert client.proof(sec2["salt"], B) == sec2["M"]
    assert client.u == sec2["u"] and client.K == sec2["K"]
    assert server.key is None                     # not before the client has proved itself
    hamk = server.verify(sec2["M"])
    assert hamk == sec2["HAMK"] and client.check(hamk)
    assert server.key == sec2["K"] and server.key[:32] == sec2["aes_gcm_key"]


@pytest.mark.parametrize("b", [SHORT_B_b, SHORT_S_b], ids=["short_B", "short_S"])
def test_short_B_and_S_layouts(srp, sec2, b):
    """u uses PAD(B), M uses B as sent (minimal), K = H(minimal(S))."""
    client = Client(sec2["N"], sec2["g"], sec2["username"], sec2["password"], sec2["client_a"])
    server = srp.Server(sec2["salt"], sec2["verifier"], b=b)
    B = server.challenge(b"wifiprov", client.A)
    M = client.proof(sec2["salt"], B)
    assert (len(B), client.S_len) == ((383, 384) if b == SHORT_B_b else (384, 383))
    assert client.check(server.verify(M)) and server.key == client.K


def test_short_verifier_is_minimal(srp):
    v = srp.verifier("wifiprov", "abcd1234", SHORT_V_SALT)
    assert len(v) == 383 and v[0] != 0
    client = Client(srp.N, srp.G, "wifiprov", "abcd1234", bytes(range(32)))
    server = srp.Server(SHORT_V_SALT, v)
    B = server.challenge(b"wifiprov", client.A)
    assert client.check(server.verify(client.proof(SHORT_V_SALT, B)))


def test_round_trip_random(srp):
    salt = srp.make_salt()
    v = srp.verifier("wifiprov", "pop-ü-1234", salt)
    client = Client(srp.N, srp.G, "wifiprov", "pop-ü-1234", bytes(range(1, 33)))
    server = srp.Server(salt, v)                  # random b
    B = server.challenge(b"wifiprov", client.A)
    assert client.check(server.verify(client.proof(salt, B)))
    assert server.key == client.K


@settings(max_examples=8, deadline=None)
@given(st.text(min_size=1, max_size=20), st.text(max_size=20), st.binary(min_size=32, max_size=32))
def test_round_trip_any_credentials(username, password, a):
    salt = srp6a.make_salt()
    client = Client(srp6a.N, srp6a.G, username, password, a)
    server = srp6a.Server(salt, srp6a.verifier(username, password, salt))
    B = server.challenge(username, client.A)
    assert client.check(server.verify(client.proof(salt, B)))


def test_wrong_password_fails(srp, sec2):
    client = Client(sec2["N"], sec2["g"], sec2["username"], "wrong-pop", sec2["client_a"])
    server = srp.Server(sec2["salt"], sec2["verifier"])
    B = server.challenge(b"wifiprov", client.A)
    with pytest.raises(ValueError):
        server.verify(client.proof(sec2["salt"], B))
    assert server.key is None
    with pytest.raises(ValueError):               # one try per handshake
        server.verify(sec2["M"])


def test_wrong_username_fails(srp, sec2):
    server = srp.Server(sec2["salt"], sec2["verifier"], b=sec2["device_b"])
    server.challenge(b"someone", sec2["A"])       # username enters M only
    with pytest.raises(ValueError):
        server.verify(sec2["M"])


@pytest.mark.parametrize("bad", [b"", b"\x01" * 383, b"\x01" * 385, bytes(384), "N"])
def test_bad_A_rejected(srp, sec2, bad):
    A = srp.pad(srp.N) if bad == "N" else bad
    server = srp.Server(sec2["salt"], sec2["verifier"])
    with pytest.raises(ValueError):
        server.challenge(b"wifiprov", A)
    with pytest.raises(ValueError):               # a failed challenge ends the handshake
        server.verify(sec2["M"])


def test_u_zero_rejected(monkeypatch, sec2):
    real = srp6a._H
    monkeypatch.setattr(srp6a, "_H", lambda *p: bytes(64) if sum(map(len, p)) == 768 else real(*p))
    with pytest.raises(ValueError, match="u"):
        srp6a.Server(sec2["salt"], sec2["verifier"]).challenge(b"wifiprov", sec2["A"])


def test_protocol_misuse(srp, sec2):
    server = srp.Server(sec2["salt"], sec2["verifier"], b=sec2["device_b"])
    with pytest.raises(ValueError):
        server.verify(sec2["M"])                  # before challenge
    server = srp.Server(sec2["salt"], sec2["verifier"], b=sec2["device_b"])
    server.challenge(b"wifiprov", sec2["A"])
    with pytest.raises(ValueError):
        server.challenge(b"wifiprov", sec2["A"])  # b is never reused for a second A
    server = srp.Server(sec2["salt"], sec2["verifier"], b=sec2["device_b"])
    server.challenge(b"wifiprov", sec2["A"])
    with pytest.raises(ValueError):
        server.verify(sec2["M"] + b"\x00")        # M must be 64 bytes
    with pytest.raises(ValueError):
        server.verify(sec2["M"])                  # and that used up the one try


def test_make_salt_first_byte_nonzero(monkeypatch):
    draws = iter([b"\x00" + b"\x11" * 15, b"\x00" * 16, b"\x07" + b"\x00" * 15])
    monkeypatch.setattr(srp6a.os, "urandom", lambda n: next(draws))
    assert srp6a.make_salt() == b"\x07" + b"\x00" * 15
    monkeypatch.undo()
    salts = [srp6a.make_salt() for _ in range(50)]
    assert all(len(s) == 16 and s[0] != 0 for s in salts) and len(set(salts)) == 50
    assert len(srp6a.make_salt(32)) == 32


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=64))
def test_windowed_pow_g_matches_pow(e):
    assert srp6a._pow_g(e) == pow(5, to_int(e), srp6a.N)
    assert srp6a._pow_g(b"\x00" + e) == srp6a._pow_g(e)


def test_ct_equal():
    assert srp6a._ct_equal(b"abc", b"abc")
    assert not srp6a._ct_equal(b"abc", b"abd") and not srp6a._ct_equal(b"abc", b"ab")


def test_under_micropython(sec2):
    path = Path(__file__).resolve().parents[1] / "vectors" / "esp_prov_sec2.json"
    cases = []
    for b in (SHORT_B_b, SHORT_S_b):
        client = Client(sec2["N"], sec2["g"], sec2["username"], sec2["password"], sec2["client_a"])
        server = srp6a.Server(sec2["salt"], sec2["verifier"], b=b)
        M = client.proof(sec2["salt"], server.challenge(b"wifiprov", client.A))
        cases.append((b.hex(), M.hex(), H(client.A, M, client.K).hex()))
    code = """
import json, srp6a, sha512
assert srp6a._sha512 is sha512.sha512    # MicroPython has no hashlib.sha512
v = json.load(open(%r))
d = v["derived"]
i = v["inputs"]
h = bytes.fromhex
salt = h(i["salt"])
print("k", srp6a.K_MUL.to_bytes(64, "big") == h(d["k"]))
ver = srp6a.verifier(i["username"], i["password"], salt)
print("verifier", ver == h(d["verifier"]))
s = srp6a.Server(salt, ver, h(i["device_b"]))
print("B", s.challenge(i["username"].encode(), h(d["A"])) == h(d["B"]))
print("HAMK", s.verify(h(d["M"])) == h(d["HAMK"]))
print("K", s.key == h(d["K"]))
s = srp6a.Server(salt, ver)
s.challenge(b"wifiprov", h(d["A"]))
try:
    s.verify(h(d["M"]))
    print("wrongM accepted")
except ValueError:
    print("wrongM rejected")
try:
    srp6a.Server(salt, ver).challenge(b"wifiprov", bytes(384))
    print("A=0 accepted")
except ValueError:
    print("A=0 rejected")
for b, M, hamk in %r:
    s = srp6a.Server(salt, ver, h(b))
    s.challenge(b"wifiprov", h(d["A"]))
    print("short", s.verify(h(M)) == h(hamk))
salt = srp6a.make_salt()
print("salt", len(salt) == 16 and salt[0] != 0)
""" % (str(path), cases)
    out = run_mpy(code, timeout=120)
    assert out.split("\n")[:-1] == [
        "k True", "verifier True", "B True", "HAMK True", "K True",
        "wrongM rejected", "A=0 rejected", "short True", "short True", "salt True",
    ]
