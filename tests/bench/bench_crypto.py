"""Crypto micro-benchmark for lib/x25519.py and lib/aes.py; runs under MicroPython and CPython.

    .venv/bin/micropython tests/bench/bench_crypto.py     # the unix port, real cryptolib
    .venv/bin/python tests/bench/bench_crypto.py          # CPython, fake cryptolib (tests/unit)

Copy lib/x25519.py, lib/aes.py and this file to a board to get device figures.
Prints milliseconds: one X25519 scalar multiplication, per KiB for CTR, GCM and CFB, and the
registration KDF (PBKDF2-HMAC-SHA256, 20 000 iterations: docs/registration.md).
"""
import sys

# Run by path (make bench does: micropython tests/bench/bench_x.py), so __file__ locates the
# repository whatever the working directory.
_root = ("/".join(__file__.split("/")[:-1]) or ".") + "/../.."
sys.path.insert(0, _root + "/lib")

try:
    import cryptolib  # noqa: F401
except ImportError:  # CPython: the test fake, backed by the cryptography package
    sys.path.insert(0, _root + "/tests/unit")
    import fake_cryptolib
    fake_cryptolib.install()

import time

try:
    _ticks_us = time.ticks_us
    _ticks_diff = time.ticks_diff
except AttributeError:
    def _ticks_us():
        return int(time.perf_counter() * 1000000)

    def _ticks_diff(a, b):
        return a - b

import aes
import pbkdf2
import x25519


def _bench(fn, reps, rounds=5):
    """Mean ms per call over `reps` calls, best of `rounds` (shared hosts are noisy)."""
    fn()  # warm up (table building, first allocation)
    best = None
    for _ in range(rounds):
        t0 = _ticks_us()
        for _ in range(reps):
            fn()
        us = _ticks_diff(_ticks_us(), t0)
        if best is None or us < best:
            best = us
    return best / reps / 1000.0


def main(reps=20):
    key = bytes(range(32))
    iv = bytes(range(16))
    kib = bytes(1024)
    impl = sys.implementation.name
    print("impl", impl)

    base = b"\x09" + bytes(31)
    ms = _bench(lambda: x25519.x25519(key, base), reps)
    print("x25519_scalar_mult_ms %.3f" % ms)

    ctr = aes.CTR(key, iv)
    print("ctr_ms_per_kib %.3f" % _bench(lambda: ctr.crypt(kib), reps))

    # small messages as in provisioning: the per-call overhead matters more than throughput
    def ctr_small():
        for _ in range(16):
            ctr.crypt(kib[:64])
    print("ctr_ms_per_kib_in_64b_calls %.3f" % _bench(ctr_small, reps))

    gcm = aes.GCM(key)
    nonce = bytes(12)
    print("gcm_encrypt_ms_per_kib %.3f" % _bench(lambda: gcm.encrypt(nonce, kib), reps))
    sealed = gcm.encrypt(nonce, kib)
    print("gcm_decrypt_ms_per_kib %.3f" % _bench(lambda: gcm.decrypt(nonce, sealed), reps))
    print("gcm_new_key_ms %.3f" % _bench(lambda: aes.GCM(key), reps))

    print("cfb_encrypt_ms_per_kib %.3f" % _bench(lambda: aes.cfb128_encrypt(key, iv, kib), reps))
    print("cfb_decrypt_ms_per_kib %.3f" % _bench(lambda: aes.cfb128_decrypt(key, iv, kib), reps))

    salt = b"roost-midpoint-v1|74743827342|HQ481047"
    print("pbkdf2_sha256_20000_iter_ms %.1f" % _bench(lambda: pbkdf2.pbkdf2_sha256(b"1JWORF43", salt, 20000), 1, 3))


main()
