"""Timing for lib/sha512.py and the device side of a Security 2 (SRP6a) handshake.

    .venv/bin/micropython tests/bench/bench_srp.py     # what the firmware runs (unix port)
    .venv/bin/python tests/bench/bench_srp.py          # CPython, for the ratio

Prints the best of several runs in ms. The handshake is Server() + challenge() + verify() with
the inputs of vectors/esp_prov_sec2.json (fixed b), the device's whole share of the work.
Also run by `make bench`. Not a pytest test (pytest collects only test_*.py).
"""
import sys

# Run by path (make bench does: micropython tests/bench/bench_x.py), so __file__ locates the
# repository whatever the working directory.
_root = ("/".join(__file__.split("/")[:-1]) or ".") + "/../.."
sys.path.insert(0, _root + "/lib")

import json
import time

import sha512
import srp6a

if hasattr(time, "ticks_us"):
    def _now():
        return time.ticks_us()

    def _since(t0):
        return time.ticks_diff(time.ticks_us(), t0) / 1000
else:
    def _now():
        return time.perf_counter()

    def _since(t0):
        return (time.perf_counter() - t0) * 1000


def best(fn, runs):
    ms = None
    for _ in range(runs):
        t0 = _now()
        fn()
        dt = _since(t0)
        ms = dt if ms is None or dt < ms else ms
    return ms


with open(_root + "/tests/vectors/esp_prov_sec2.json") as f:
    vec = json.load(f)
d = vec["derived"]
i = vec["inputs"]
h = bytes.fromhex
SALT, VER, A, M, B_ = h(i["salt"]), h(d["verifier"]), h(d["A"]), h(d["M"]), h(i["device_b"])
HAMK = h(d["HAMK"])


def handshake():
    s = srp6a.Server(SALT, VER, B_)
    s.challenge(b"wifiprov", A)
    assert s.verify(M) == HAMK


def hashing_share():
    """ms spent inside srp6a's hash calls during one handshake (the rest is bignum work)."""
    inner = srp6a._H
    spent = [0.0]

    def timed(data):
        t0 = _now()
        r = inner(data)
        spent[0] += _since(t0)
        return r
    srp6a._H = timed
    try:
        handshake()
    finally:
        srp6a._H = inner
    return spent[0]


impl = sys.implementation.name
kb = bytes(range(256)) * 4
print("implementation:", impl, ".".join(str(x) for x in sys.implementation.version[:3]))
print("sha512 (lib/sha512.py) 1 KB: %.3f ms" % best(lambda: sha512.digest(kb), 20))
if srp6a._H is not sha512.digest:  # CPython: srp6a uses hashlib; time the pure path as well
    print("sec2 handshake, hashlib.sha512: %.1f ms" % best(handshake, 7))
    srp6a._H = sha512.digest
print("sec2 handshake, lib/sha512.py: %.1f ms" % best(handshake, 7))
print("  of which SHA-512: %.1f ms" % min(hashing_share() for _ in range(5)))
