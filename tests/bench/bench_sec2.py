"""Device side of a whole Security 2 session setup: firmware/prov/sec2.py under MicroPython.

    .venv/bin/micropython tests/bench/bench_sec2.py     # from the repository root
    make bench                                          # tests/bench/__main__.py runs it too

Times (time.ticks_us, best of several runs) the device's work only: Sec2.handshake() for
S2Session_Command0 (three 3072-bit modexps) and for Command1 (proof check, GCM key setup),
with a fresh random b each run as on a device; the client side (fixed a, its proof M) is
computed here between the two, untimed. Then one GCM round trip of the data phase, a 100-byte
request decrypted and a 100-byte response encrypted.

Heap: gc.mem_alloc() after a gc.collect() before each step and right after it. "allocated"
is everything a step allocated (no collection runs inside it with the runner's 4 MB heap), an
upper bound of its peak; "kept" is what survives a collection afterwards. The real peak of live
data is lower: the least heap a handshake needs, found by bisection on -X heapsize, is the
figure to compare (about 20 KB above the baseline for .mpy on the 64-bit unix port).
"""
import sys

# Run by path (make bench does: micropython tests/bench/bench_x.py), so __file__ locates the
# repository whatever the working directory.
_root = ("/".join(__file__.split("/")[:-1]) or ".") + "/../.."
sys.path[:0] = [_root + "/lib", _root]

import gc
import json
import os
import time

import protobuf as pb
import srp6a
from aes import GCM
from firmware.prov.sec2 import Sec2

with open(_root + "/tests/vectors/esp_prov_sec2.json") as f:
    _v = json.load(f)
_i = _v["inputs"]
USER = _i["username"].encode()
PASSWORD = _i["password"].encode()
SALT = bytes.fromhex(_i["salt"])
VERIFIER = bytes.fromhex(_v["derived"]["verifier"])
a = int.from_bytes(bytes.fromhex(_i["client_a"]), "big")
del _v, _i

# Client side, fixed a: A now, M once B is known (what esp_prov computes).
N, H, pad, minimal = srp6a.N, srp6a._H, srp6a.pad, srp6a.minimal
A = pad(pow(srp6a.G, a, N))
x = int.from_bytes(H(SALT + H(USER + b":" + PASSWORD)), "big")
gx = pow(srp6a.G, x, N)


def client_proof(B):
    Bi = int.from_bytes(B, "big")
    u = int.from_bytes(H(A + pad(Bi)), "big")
    S = pow((Bi - srp6a.K_MUL * gx) % N, a + u * x, N)
    K = H(minimal(S))
    return H(srp6a._HN_XOR_HG + H(USER) + SALT + A + B + K), K


def command0():
    sc0 = pb.field_bytes(1, USER) + pb.field_bytes(2, A)
    return pb.field_varint(2, 2) + pb.field_msg(12, pb.field_msg(20, sc0))


def command1(M):
    return pb.field_varint(2, 2) + pb.field_msg(12, pb.field_varint(1, 2) + pb.field_msg(22, pb.field_bytes(1, M)))


def response_field(resp, sub, f):
    return pb.decode(pb.decode(pb.decode(resp)[12])[sub])[f]


heap = {"c0 allocated": 0, "c0 kept": 0, "c1 allocated": 0, "c1 kept": 0}


def step(name, fn, *args):
    """Run fn(*args) timed; record heap figures; return (result, us)."""
    gc.collect()
    base = gc.mem_alloc()
    t0 = time.ticks_us()
    r = fn(*args)
    us = time.ticks_diff(time.ticks_us(), t0)
    heap[name + " allocated"] = max(heap[name + " allocated"], gc.mem_alloc() - base)
    gc.collect()
    heap[name + " kept"] = max(heap[name + " kept"], gc.mem_alloc() - base)
    return r, us


def handshake():
    s = Sec2(SALT, VERIFIER)
    c0, c1 = command0(), None
    r0, t0 = step("c0", s.handshake, c0)
    M, K = client_proof(response_field(r0, 21, 2))
    c1 = command1(M)
    r1, t1 = step("c1", s.handshake, c1)
    assert s.ready and response_field(r1, 23, 2) == H(A + M + K)
    return s, K, response_field(r1, 23, 3), t0, t1


RUNS = int(os.getenv("ROOST_BENCH_RUNS") or 5)    # tests/bench/pace.py asks for fewer at ESP32 pace
runs = []
for _ in range(RUNS):
    s, K, nonce, t0, t1 = handshake()
    runs.append((t0 + t1, t0, t1))
runs.sort()
total, t0, t1 = runs[0]

# Data phase: the client's request at counter n, the device's response at n + 1.
client = GCM(K[:32])
prefix, n = nonce[:8], int.from_bytes(nonce[8:], "big")
msg = os.urandom(100)
best = None
for _ in range(20):
    req = client.encrypt(prefix + n.to_bytes(4, "big"), msg)
    gc.collect()
    t = time.ticks_us()
    plain = s.decrypt(req)
    resp = s.encrypt(plain)
    us = time.ticks_diff(time.ticks_us(), t)
    assert client.decrypt(prefix + (n + 1).to_bytes(4, "big"), resp) == msg
    n += 2
    best = us if best is None or us < best else best

print("implementation:", sys.implementation.name, ".".join(str(v) for v in sys.implementation.version[:3]))
print("handshake device CPU, best of %d: %.1f ms" % (RUNS, total / 1000))
print("  Command0 (B, S, K, expected M): %.1f ms" % (t0 / 1000))
print("  Command1 (proof check, HAMK, GCM key): %.1f ms" % (t1 / 1000))
print("  median handshake of %d: %.1f ms" % (RUNS, runs[RUNS // 2][0] / 1000))
print("GCM decrypt 100 B + encrypt 100 B, best of 20: %.2f ms" % (best / 1000))
print("heap allocated during Command0: %d B" % heap["c0 allocated"])
print("heap allocated during Command1: %d B" % heap["c1 allocated"])
print("heap kept by Command0 (SRP state, response): %d B" % heap["c0 kept"])
print("heap added by Command1 (GCM state, response): %d B" % heap["c1 kept"])
