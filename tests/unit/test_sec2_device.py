"""firmware/prov/sec2.py, the device side of Security 2, under the MicroPython unix port.

Known answers: vectors/esp_prov_sec2.json (fixed b and nonce), the response bytes spelled out as
spec 6.5 lays them out and cross-checked with the host client's protobuf classes (google.protobuf,
no code shared with lib/protobuf.py). Also the failure paths protocomm relies on (AuthFailed for
a wrong proof only, ProvError without any state change for a bad GCM tag) and, on CPython, the
manufacture-time helper tools/prov/factory.py."""
import hashlib
import json

import pytest

from tests.mpy import ROOT, run_mpy
from tools.prov import ProvError, proto

VECTOR = ROOT / "tests" / "vectors" / "esp_prov_sec2.json"
H = bytes.fromhex

# Runs before each snippet: the vector, a Sec2 with its b and nonce, message builders, and
# show(name, fn) printing "name=<hex>" or "name=!<exception class>" for the Python side.
PRELUDE = """
import json
import protobuf as pb
from firmware.prov.sec2 import Sec2
from firmware.prov.errors import AuthFailed, ProvError
v = json.load(open(%r))
h = bytes.fromhex
I, D, DP = v["inputs"], v["derived"], v["data_phase"]
SALT, VER, A, M = h(I["salt"]), h(D["verifier"]), h(D["A"]), h(D["M"])

def sec2(b=True, nonce=True):
    # The vector's b and nonce bytes, or (False) fresh random ones as on a device.
    return Sec2(SALT, VER, b=h(I["device_b"]) if b else None, nonce=h(DP["device_nonce"])[:8] if nonce else None)

def cmd0(user=b"wifiprov", a=A, ver=2):
    sc0 = pb.field_bytes(1, user) + pb.field_bytes(2, a)
    return pb.field_varint(2, ver) + pb.field_msg(12, pb.field_msg(20, sc0))

def cmd1(proof=M):
    return pb.field_varint(2, 2) + pb.field_msg(12, pb.field_varint(1, 2) + pb.field_msg(22, pb.field_bytes(1, proof)))

def show(name, fn, *args):
    try:
        r = fn(*args)
        print("%%s=%%s" %% (name, r.hex() if isinstance(r, (bytes, bytearray)) else r))
    except Exception as e:
        print("%%s=!%%s" %% (name, type(e).__name__))
""" % str(VECTOR)


def mpy(body, heap="100K", micropython=None):
    """Run PRELUDE + body; {name: value} of its show() lines, in order."""
    out = run_mpy(PRELUDE + body, heap=heap, path=("lib", "."), timeout=120, micropython=micropython)
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def v():
    return json.loads(VECTOR.read_text())


def expected_responses(v):
    d, i, dp = v["derived"], v["inputs"], v["data_phase"]
    B, salt, hamk, nonce = H(d["B"]), H(i["salt"]), H(d["HAMK"]), H(dp["device_nonce"])
    # Spec 4 and 6.5 by hand: SessionData{sec_ver=2 (10 02), sec2 (62)} > Sec2Payload{msg (08),
    # sr0 = 21 (aa 01) / sr1 = 23 (ba 01)}; status Success is 0 and so absent.
    r0 = (H("10 02 62 9b 03 08 01 aa 01 95 03 12 80 03".replace(" ", "")) + B
          + H("1a10") + salt)
    r1 = H("10 02 62 55 08 03 ba 01 50 12 40".replace(" ", "")) + hamk + H("1a0c") + nonce
    T = proto.Sec2MsgType
    assert r0 == proto.SessionData(sec_ver=2, sec2=proto.Sec2Payload(
        msg=T.S2Session_Response0, sr0=proto.S2SessionResp0(device_pubkey=B, device_salt=salt))).SerializeToString()
    assert r1 == proto.SessionData(sec_ver=2, sec2=proto.Sec2Payload(
        msg=T.S2Session_Response1, sr1=proto.S2SessionResp1(device_proof=hamk, device_nonce=nonce))).SerializeToString()
    return r0, r1


# The stock build computes in Python; the custom one (manifest.py with cmodules/srpmath) in mbedTLS.
@pytest.mark.parametrize("build", ["stock", "custom"])
def test_vector_handshake_and_data_phase(v, build):
    from tools.sim.chip.build import chip_binary
    r0, r1 = expected_responses(v)
    dp = v["data_phase"]
    out = mpy(micropython=chip_binary(roost=build == "custom"), body="""
s = sec2()
print("ready0=%s" % s.ready)
show("r0", s.handshake, cmd0())
print("ready1=%s" % s.ready)
show("r1", s.handshake, cmd1())
print("ready2=%s" % s.ready)
show("req", s.decrypt, h(DP["request_encrypted"]))
show("resp", s.encrypt, h(DP["response_plain"]))
show("ctr", lambda: s._ctr)
""")
    assert out["ready0"] == out["ready1"] == "False" and out["ready2"] == "True"
    assert H(out["r0"]) == r0
    assert H(out["r1"]) == r1
    assert out["req"] == dp["request_plain"]          # counter 1
    assert out["resp"] == dp["response_encrypted"]    # counter 2
    assert out["ctr"] == "3"


def test_client_messages_of_the_host_tool_are_understood(v):
    """The bytes the host client (tools/prov/security.Sec2) sends, fed to the device as they are."""
    from tools.prov.security import Sec2 as Client
    c = Client("wifiprov", "abcd1234", patch_ver=1, client_a=H(v["inputs"]["client_a"]))
    r0, r1 = expected_responses(v)
    c0, c1 = c.command0(), c.command1(r0)
    c.finish(r1)
    request = c.encrypt(H(v["data_phase"]["request_plain"]))
    assert request.hex() == v["data_phase"]["request_encrypted"]
    out = mpy("""
s = sec2()
show("r0", s.handshake, h(%r))
show("r1", s.handshake, h(%r))
show("req", s.decrypt, h(%r))
""" % (c0.hex(), c1.hex(), request.hex()))
    assert H(out["r0"]) == r0 and H(out["r1"]) == r1
    assert out["req"] == v["data_phase"]["request_plain"]


def test_bad_tag_is_refused_without_touching_the_counter(v):
    dp = v["data_phase"]
    out = mpy("""
s = sec2()
s.handshake(cmd0()); s.handshake(cmd1())
good = h(DP["request_encrypted"])
show("tag", s.decrypt, good[:-1] + bytes([good[-1] ^ 1]))       # tag byte flipped
show("ct", s.decrypt, bytes([good[0] ^ 0x80]) + good[1:])        # ciphertext byte flipped
show("short", s.decrypt, good[:15])                              # shorter than a tag
show("empty", s.decrypt, b"")
show("ctr", lambda: s._ctr)
show("ready", lambda: s.ready)
show("req", s.decrypt, good)                                     # still counter 1
show("replay", s.decrypt, good)                                  # counter 2 now: refused
show("resp", s.encrypt, h(DP["response_plain"]))
""")
    assert [out[k] for k in ("tag", "ct", "short", "empty", "replay")] == ["!ProvError"] * 5
    assert out["ctr"] == "1" and out["ready"] == "True"
    assert out["req"] == dp["request_plain"]
    assert out["resp"] == dp["response_encrypted"]


def test_wrong_proof_is_auth_failed_and_needs_a_new_command0():
    out = mpy("""
s = sec2()
s.handshake(cmd0())
show("wrong", s.handshake, cmd1(bytes(64)))
show("again", s.handshake, cmd1())           # one try per challenge, even the right proof
show("ready", lambda: s.ready)
show("dec", s.decrypt, h(DP["request_encrypted"]))
s.handshake(cmd0())                          # a fresh handshake on the same session works
show("r1", s.handshake, cmd1())
show("req", s.decrypt, h(DP["request_encrypted"]))
s = sec2()
s.handshake(cmd0(user=b"someone"))           # the username enters M: a different user fails
show("user", s.handshake, cmd1())
s = sec2()
s.handshake(cmd0())
show("len", s.handshake, cmd1(M + b"x"))     # malformed, not a guess: no AuthFailed
""")
    assert out["wrong"] == "!AuthFailed" and out["user"] == "!AuthFailed"
    assert out["again"] == "!ProvError" and out["len"] == "!ProvError"
    assert out["ready"] == "False" and out["dec"] == "!ProvError"
    assert not out["r1"].startswith("!") and out["req"] != "!ProvError"


def test_bad_client_keys_and_messages_are_refused(v):
    N = int(v["group"]["N"], 16)
    out = mpy("""
s = sec2(b=False, nonce=False)
show("short", s.handshake, cmd0(a=A[1:]))
show("long", s.handshake, cmd0(a=b"\\x00" + A))
show("zero", s.handshake, cmd0(a=bytes(384)))
show("N", s.handshake, cmd0(a=h(%r)))
show("nouser", s.handshake, cmd0(user=b""))
show("sec1", s.handshake, cmd0(ver=1))
show("early1", s.handshake, cmd1())
show("enc", s.encrypt, b"x")
show("dec", s.decrypt, bytes(32))
show("ready", lambda: s.ready)
""" % ("%0768x" % N))
    for k in ("short", "long", "zero", "N", "nouser", "sec1", "early1", "enc", "dec"):
        assert out[k] == "!ProvError", k
    assert out["ready"] == "False"


def test_unset_or_degenerate_verifier_lets_nobody_in(v):
    """An empty verifier (factory config without srp_verifier) would be v = 0, so S = 0 and
    K = H(""): a client knowing no password could prove it. v = 1 (x = 0) likewise."""
    N = "%0768x" % int(v["group"]["N"], 16)
    out = mpy("""
for name, salt, ver in (("empty", SALT, b""), ("zero", SALT, bytes(384)), ("one", SALT, b"\\x01"),
                        ("N", SALT, h(%r)), ("nosalt", b"", VER)):
    show(name, Sec2(salt, ver).handshake, cmd0())
""" % N)
    assert out == dict.fromkeys(("empty", "zero", "one", "N", "nosalt"), "!ProvError")


def test_command0_mid_session_restarts_the_handshake():
    out = mpy("""
s = sec2(nonce=False)
s.handshake(cmd0()); s.handshake(cmd1())
show("ready", lambda: s.ready)
nonce1 = s._prefix
s.handshake(cmd0())
show("restarted", lambda: s.ready)
show("dec", s.decrypt, bytes(32))
s.handshake(cmd1())
show("again", lambda: s.ready)
show("fresh_nonce", lambda: s._prefix != nonce1)
""")
    assert out["ready"] == "True" and out["restarted"] == "False" and out["dec"] == "!ProvError"
    assert out["again"] == "True" and out["fresh_nonce"] == "True"


def test_nonce_counter_never_reaches_zero():
    out = mpy("""
from aes import GCM
s = sec2()
s.handshake(cmd0()); s.handshake(cmd1())
g = GCM(h(D["K"])[:32])
pre = h(DP["device_nonce"])[:8]
s._ctr = 0xFFFFFFFE                      # as if 4 billion messages had gone by
show("dec", s.decrypt, g.encrypt(pre + b"\\xff\\xff\\xff\\xfe", b"last request"))
show("enc", s.encrypt, b"last response")
show("want", g.encrypt, pre + b"\\xff\\xff\\xff\\xff", b"last response")
show("ready", lambda: s.ready)
show("next", s.decrypt, g.encrypt(pre + bytes(4), b"x"))
s = sec2()
s.handshake(cmd0()); s.handshake(cmd1())
s._ctr = 0xFFFFFFFF                      # a request whose response would need counter 0
show("refused", s.decrypt, g.encrypt(pre + b"\\xff\\xff\\xff\\xff", b"x"))
""")
    assert out["dec"] == b"last request".hex()
    assert out["enc"] == out["want"]
    assert out["ready"] == "False" and out["next"] == "!ProvError" and out["refused"] == "!ProvError"


def test_in_protocomm_wrong_proofs_count_and_bad_tags_do_not_reach_handlers():
    out = mpy("""
from firmware.prov.protocomm import Protocomm
seen = []
def handler(req):
    seen.append(req)
    return b"\\x08\\x03\\x6a\\x00"
pc = Protocomm(sec2, b"{}", {"prov-config": handler})
s = pc.open_session()
s.handle("prov-session", cmd0())
show("wrong", s.handle, "prov-session", cmd1(bytes(64)))
show("failures", lambda: pc.failures)
s.handle("prov-session", cmd0())
show("r1", s.handle, "prov-session", cmd1())
show("reset", lambda: pc.failures)
good = h(DP["request_encrypted"])
show("bad", s.handle, "prov-config", good[:-1] + b"\\x00")
show("seen", lambda: len(seen))
show("garbage", s.handle, "prov-session", b"\\xff\\xff")
show("good", s.handle, "prov-config", good)
show("seen2", lambda: seen[0].hex())
""", heap="144K")   # protocomm compiled from source on top of sec2's: a device loads .mpy
    assert out["wrong"] == "!AuthFailed" and out["failures"] == "1"
    assert out["reset"] == "0" and not out["r1"].startswith("!")
    assert out["bad"] == "!ProvError" and out["seen"] == "0" and out["garbage"] == "!ProvError"
    assert out["good"] == "cfa212d7ecc8222203486e3a3d5e3039864ff31a"   # the vector's response
    assert out["seen2"] == "080262130a07486f6d654e6574120870613535776f7264"


def test_session_state_stays_small():
    """What a session keeps between requests (peak heap: tests/bench/bench_sec2.py, and the
    simulated board's 100K heap in tests/sim/test_sec2.py)."""
    out = mpy("""
import gc
c0, c1 = cmd0(), cmd1()
gc.collect()
base = gc.mem_alloc()
s = sec2()
s.handshake(c0)
gc.collect()
show("challenged", lambda: gc.mem_alloc() - base)
s.handshake(c1)
s.decrypt(h(DP["request_encrypted"]))
gc.collect()
show("ready", lambda: gc.mem_alloc() - base)
""")
    # srp6a.Server keeps A, M, K (~0.6 KB + objects); then the GCM key tables (~3 KB on 64 bits).
    assert int(out["challenged"]) < 2500 and int(out["ready"]) < 5000


# -- tools/prov/factory.py (CPython) ----------------------------------------------------------------
def test_factory_values_match_the_vector(v):
    from tools.prov.factory import sec2_factory
    i = v["inputs"]
    f = sec2_factory(i["password"], salt=H(i["salt"]))
    assert f == {"srp_salt": i["salt"], "srp_verifier": v["derived"]["verifier"]}
    assert hashlib.sha256(H(f["srp_verifier"])).hexdigest() == v["derived"]["verifier_sha256"]


def test_factory_salts_are_fresh_and_never_start_with_zero():
    from tools.prov.factory import sec2_factory
    made = [sec2_factory("abcd1234") for _ in range(20)]
    salts = {f["srp_salt"] for f in made}
    assert len(salts) == 20 and all(len(s) == 32 and s[:2] != "00" for s in salts)
    assert all("abcd1234" not in json.dumps(f) for f in made)
    with pytest.raises(ProvError):
        sec2_factory("")
    with pytest.raises(ProvError):
        sec2_factory("abcd1234", salt=b"\x00" + bytes(15))
