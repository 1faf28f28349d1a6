"""Device CPU time of the crypto and encoding the firmware runs; MicroPython only.

    .venv/bin/micropython -X heapsize=128K tests/bench/crypto_chip.py         # from the repository
    .venv/bin/micropython -X heapsize=128K tests/bench/crypto_chip.py quick   # each once (the test)
    make bench      # tests/bench/crypto.py runs this and times the same work in CPython beside it

128K is the heap the simulated board streams with (tests/bench/telemetry.py); it fits, and
garbage collection then runs inside the timings as it would on a board.

On a board deployed with `roost deploy` (its /lib and /firmware hold every module used here): copy
tests/vectors/esp_prov_sec2.json to /tests/vectors/ and this file to /, then
`mpremote exec "import crypto_chip"`.

Prints "name value unit" lines, each the mean time per operation, best of several runs (shared
hosts are noisy): one X25519 scalar multiplication; AES-CTR, GCM and CFB per KiB (lib/aes.py on
cryptolib); the registration KDF (PBKDF2-HMAC-SHA256, 20 000 iterations: docs/registration.md);
SHA-512 per KiB (lib/sha512.py); the device's SRP6a work in one Security 2 session (Server(),
challenge(): B, S, K and the expected M; verify(): HAMK) with the inputs of
vectors/esp_prov_sec2.json (fixed b), and how much of it is SHA-512; SenML per reading, a batch
of 32 as firmware/telemetry/mqtt_sink.py sends it. Then "check" lines (SHA-512 digest, SenML text)
so a test can compare what was timed with CPython's hashlib and json.
"""
import sys

# Run by path from the repository (__file__ is ".../tests/bench/crypto_chip.py"), the repository
# root holds lib/ and firmware/; imported on a board (__file__ is "crypto_chip.py"), "." is /,
# where /lib is on sys.path already.
_dir = __file__.rpartition("/")[0]
_root = _dir + "/../.." if _dir else "."
sys.path[:0] = [_root + "/lib", _root]

import json
import time

import aes
import pbkdf2
import sha512
import srp6a
import x25519
from firmware.telemetry import senml
from firmware.telemetry.mqtt_sink import BUFFER as _BUFFER     # the payload buffer it sends from

_QUICK = "quick" in getattr(sys, "argv", ())   # the test: every figure once, fast
_ROUNDS = 1 if _QUICK else 5
_BATCH = 32         # readings per MQTT message, as mqtt_sink._BATCH (a const: not importable)
# The firmware allocates its payload buffer once, while the heap is young (telemetry start-up);
# allocated here after the SRP bignum churn, 3 KiB of contiguous heap may no longer exist at 128K.
_SENML_BUF = bytearray(_BUFFER)
_NODE = "24A160000001"


def _bench(fn, reps, rounds=_ROUNDS):
    """Mean ms per call over `reps` calls, best of `rounds`."""
    fn()  # warm up (table building, first allocation)
    if _QUICK:
        reps = 1
    best = None
    for _ in range(rounds):
        t0 = time.ticks_us()
        for _ in range(reps):
            fn()
        us = time.ticks_diff(time.ticks_us(), t0)
        if best is None or us < best:
            best = us
    return best / reps / 1000


def _show(name, value, unit="ms"):
    print("%s %.4g %s" % (name, value, unit))


def _ciphers():
    key = bytes(range(32))
    iv = bytes(range(16))
    kib = bytes(1024)
    base = b"\x09" + bytes(31)
    _show("x25519_scalar_mult", _bench(lambda: x25519.x25519(key, base), 20))

    ctr = aes.CTR(key, iv)
    _show("aes_ctr_per_kib", _bench(lambda: ctr.crypt(kib), 20))

    # small messages as in provisioning: the per-call overhead matters more than throughput
    def ctr_small():
        for _ in range(16):
            ctr.crypt(kib[:64])
    _show("aes_ctr_per_kib_in_64b_calls", _bench(ctr_small, 20))

    gcm = aes.GCM(key)
    nonce = bytes(12)
    _show("aes_gcm_encrypt_per_kib", _bench(lambda: gcm.encrypt(nonce, kib), 20))
    sealed = gcm.encrypt(nonce, kib)
    _show("aes_gcm_decrypt_per_kib", _bench(lambda: gcm.decrypt(nonce, sealed), 20))
    _show("aes_gcm_new_key", _bench(lambda: aes.GCM(key), 20))
    _show("aes_cfb_encrypt_per_kib", _bench(lambda: aes.cfb128_encrypt(key, iv, kib), 20))
    _show("aes_cfb_decrypt_per_kib", _bench(lambda: aes.cfb128_decrypt(key, iv, kib), 20))

    salt = b"roost-midpoint-v1|74743827342|HQ481047"
    _show("pbkdf2_sha256_20000_iter",
          _bench(lambda: pbkdf2.pbkdf2_sha256(b"1JWORF43", salt, 20000), 1, min(_ROUNDS, 3)))


def _sha512():
    kib = bytes(range(256)) * 4
    _show("sha512_per_kib", _bench(lambda: sha512.digest(kib), 20))
    print("check sha512", sha512.digest(kib).hex())


def _srp():
    with open(_root + "/tests/vectors/esp_prov_sec2.json") as f:
        v = json.load(f)
    i, d, h = v["inputs"], v["derived"], bytes.fromhex
    user = i["username"].encode()
    salt, ver, b, A, M, hamk = (h(i["salt"]), h(d["verifier"]), h(i["device_b"]), h(d["A"]),
                                h(d["M"]), h(d["HAMK"]))
    del v, i, d         # the parsed vector file is not needed while timing

    def session():
        s = srp6a.Server(salt, ver, b)
        s.challenge(user, A)
        assert s.verify(M) == hamk

    _show("srp6a_session", _bench(session, 1))   # a session is long enough to time alone

    # The SHA-512 part: srp6a's hash calls timed inside one session; the rest is bignum work.
    inner = srp6a._H
    spent = [0]

    def timed(*parts):
        t0 = time.ticks_us()
        r = inner(*parts)
        spent[0] += time.ticks_diff(time.ticks_us(), t0)
        return r

    def sha_part():
        spent[0] = 0
        srp6a._H = timed
        try:
            session()
        finally:
            srp6a._H = inner
        return spent[0]
    _show("srp6a_session_sha512_part", min(sha_part() for _ in range(_ROUNDS)) / 1000)


def _senml():
    # Readings as the outbox yields them, (seq, t, synced, sensor, value), taken with network
    # time; tests/bench/crypto.py READINGS builds the same ones for CPython's json.dumps.
    # The outbox holds the device's own epoch (2000 on an ESP32); SenML carries Unix time.
    from epoch import UNIX_OFFSET
    readings = [(1000 + n, 1764540000 - UNIX_OFFSET + 60 * n, True, 0, 20 + n * 0.37) for n in range(_BATCH)]
    buf = _SENML_BUF
    size, last = senml.encode_into(buf, _NODE, readings, 0, 0)
    assert last == readings[-1][0], "the batch must fit the buffer"
    ms = _bench(lambda: senml.encode_into(buf, _NODE, readings, 0, 0), 20)
    _show("senml_per_reading", ms * 1000 / _BATCH, "us")
    # Written from the buffer itself: a 2 KB copy failed once on the heap the SRP runs left
    # fragmented (CI, MemoryError allocating 2131 bytes).
    sys.stdout.write("check senml ")
    sys.stdout.buffer.write(memoryview(buf)[:size])
    print()


_ciphers()
_sha512()
_srp()
_senml()
