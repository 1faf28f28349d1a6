"""Bad input at the provisioning boundary, on the MicroPython unix port: random and mutated frames
on every endpoint, before and after a handshake, are refused with ProvError (never another
exception), change no stored state, and leave the device able to finish a real session."""
from tests.mpy import run_mpy

FUZZ = r"""
import sys
class _NoHardware:                    # endpoints -> wifi -> board imports the radio modules
    def __getattr__(self, name):
        return None
for _m in ("bluetooth", "machine", "network"):
    sys.modules[_m] = _NoHardware()
import os, random
import x25519, hashlib
import protobuf as pb
from aes import CTR
from firmware.prov.errors import ProvError
from firmware.prov.protocomm import Protocomm
from firmware.prov.security import Sec1
from firmware.prov.endpoints import Endpoints

class Store:                          # records what the handlers would persist
    def __init__(self):
        self.writes = []
    def set(self, name, value):
        self.writes.append(name)
    def get(self, name):
        return {"user_id": ""}
    def forget_wifi(self, ssid):
        self.writes.append("forget")

class Station:
    def state(self):
        return ("failed", "auth")
    def scan(self):
        return [(b"home", b"\x01" * 6, 6, -40, 3)]
    def connected_info(self):
        return ("192.168.1.2", 3, b"home", b"\x01" * 6, 6)
    def connect(self, ssid, pw):
        pass
    def disconnect(self):
        pass

store = Store()
applied = []
ep = Endpoints(store, Station(), "NODE", lambda s, p: applied.append(s))
pc = Protocomm(lambda: Sec1(b"abcd1234"), b"{}", ep.table())
names = [n for n, _ in pc.endpoints()]
random.seed(%(seed)d)
seeds = [bytes.fromhex(h) for h in (
    "10015a25a201220a20" + "11" * 32, "080262130a07486f6d654e6574120870613535776f7264",
    "52160a08757365722d616263120a7365637265742d313233", "08045a00", "0801", "5200")]

def frame():
    k = random.randrange(4)
    if k == 0:
        return os.urandom(random.randrange(0, 80))
    b = bytearray(random.choice(seeds))
    if k == 1 and b:
        b[random.randrange(len(b))] ^= 1 << random.randrange(8)
    elif k == 2:
        b = b[:random.randrange(len(b) + 1)]
    else:
        b += os.urandom(random.randrange(1, 20))
    return bytes(b)

bad = []
refused = answered = 0
s = pc.open_session()
for i in range(%(n)d):
    name = random.choice(names)
    try:
        s.handle(name, frame())
        answered += 1
    except ProvError:
        refused += 1
    except Exception as e:
        bad.append((name, repr(e)))
# Refused or garbage-decrypted frames before a handshake must not have stored anything.
print("BAD", bad[:5])
print("WRITES", store.writes, "APPLIED", applied)
print("COUNTS", refused, answered)

# ... and a real client still gets through on a fresh session (once the flood's lockout and
# rate limit have passed).
pc.failures = 0
pc._tokens = 10
s = pc.open_session()
cpriv = os.urandom(32)
cpub = x25519.public_key(cpriv)
r0 = s.handle("prov-session", pb.field_varint(2, 1) + pb.field_msg(11, pb.field_msg(20, pb.field_bytes(1, cpub))))
sr0 = pb.decode(pb.decode(pb.decode(r0)[11])[21])
key = bytearray(x25519.x25519(cpriv, sr0[2]))
h = hashlib.sha256(b"abcd1234").digest()
for i in range(32):
    key[i] ^= h[i]
ctr = CTR(bytes(key), sr0[3])
s.handle("prov-session", pb.field_varint(2, 1) + pb.field_msg(11, pb.field_varint(1, 2) + pb.field_msg(22, pb.field_bytes(2, ctr.crypt(sr0[2])))))
ctr.crypt(bytes(32))
resp = ctr.crypt(s.handle("cloud_user_assoc", ctr.crypt(bytes.fromhex(seeds[2].hex()))))
print("NODE", b"NODE" in resp)

# Inside a good session: mangled plaintexts reach the handlers, which answer or refuse
# (ProvError) and never raise anything else. The client keeps its keystream in step.
bad2 = []
handled = 0
for i in range(%(n)d):
    name = random.choice(["prov-config", "prov-scan", "prov-ctrl", "cloud_user_assoc", "roost-claim"])
    try:
        ctr.crypt(s.handle(name, ctr.crypt(frame())))
        handled += 1
    except ProvError:
        pass
    except Exception as e:
        bad2.append((name, repr(e)))
print("BAD2", bad2[:5])
print("HANDLED", handled)
"""


def test_random_frames_are_refused_cleanly_and_the_device_keeps_serving():
    out = run_mpy(FUZZ % {"seed": 7, "n": 3000}, heap="2M", path=("lib", "."), timeout=120)
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert lines["BAD"] == "[]", out
    refused, answered = map(int, lines["COUNTS"].split())
    assert refused > 1000
    # Without a completed handshake nothing encrypted is ever processed: no store write,
    # no Wi-Fi apply, however the frames are mangled.
    assert lines["WRITES"] == "[] APPLIED []", out
    assert lines["NODE"] == "True"
    assert lines["BAD2"] == "[]", out
    assert int(lines["HANDLED"]) > 500           # the handlers really saw the mangled requests


RATE = r"""
import sys, time
from firmware.prov.errors import ProvError
from firmware.prov.protocomm import Protocomm
from firmware.prov.security import Sec0
pc = Protocomm(Sec0, b"{}", {})
HELLO = bytes.fromhex("5203a20100")
ok = refused = 0
for i in range(14):
    try:
        pc.open_session().handle("prov-session", HELLO)
        ok += 1
    except ProvError as e:
        refused += 1
print("BURST", ok, refused)
pc._refilled = time.ticks_add(pc._refilled, -6000)     # six seconds later: one more token
try:
    pc.open_session().handle("prov-session", HELLO)
    print("AFTER", "ok")
except ProvError:
    print("AFTER", "refused")
"""


def test_handshake_messages_are_rate_limited():
    """A flood of handshakes (each costs seconds of CPU with security 2 on a chip) is cut off."""
    out = run_mpy(RATE, path=("lib", "."))
    assert "BURST 10 4" in out and "AFTER ok" in out, out
