"""Crypto and SenML: device CPU time against CPython, in the same run.

The chip half is crypto_chip.py on the unix port at the firmware's heap (128K, as the telemetry
benchmark's board); the unix port is 10-25x faster than an ESP32 (docs/simulator.md), so the ratios
are what the interpreter costs over native code, not the board's speed. The CPython half times the
same operations with the `cryptography` package (X25519, AES-CTR, GCM and CFB, PBKDF2, SHA-512).
It has no SRP6a and no SenML: for those, the same big-integer math with pow() and hashlib, and
the same records through json.dumps. Per operation, rows for the chip, CPython and chip/CPython
(chip only where CPython has no counterpart); best of several rounds on both sides.
tests/unit/test_bench_crypto.py runs it all once and checks what the chip timed against CPython.
"""
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

from cryptography.hazmat.decrepit.ciphers.modes import CFB     # modes.CFB is deprecated
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from tools.sim.board import micropython_binary

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
HEAP = "128K"
# What each figure of crypto_chip.py times; a figure missing here fails the run (KeyError).
LABELS = {
    "x25519_scalar_mult": "X25519 scalar mult",
    "aes_ctr_per_kib": "AES-256-CTR per KiB",
    "aes_ctr_per_kib_in_64b_calls": "AES-256-CTR per KiB in 64-byte calls",
    "aes_gcm_encrypt_per_kib": "AES-256-GCM encrypt per KiB",
    "aes_gcm_decrypt_per_kib": "AES-256-GCM decrypt per KiB",
    "aes_gcm_new_key": "AES-256-GCM key setup",
    "aes_cfb_encrypt_per_kib": "AES-256-CFB128 encrypt per KiB",
    "aes_cfb_decrypt_per_kib": "AES-256-CFB128 decrypt per KiB",
    "pbkdf2_sha256_20000_iter": "PBKDF2-HMAC-SHA256, 20000 iterations",
    "sha512_per_kib": "SHA-512 per KiB",
    "srp6a_session": "SRP6a device work per sec2 session (B, S, K, M, HAMK)",
    "srp6a_session_sha512_part": "SRP6a session, of which SHA-512",
    "senml_per_reading": "SenML per reading (batch of 32)",
}
# The SenML batch crypto_chip.py encodes: (seq, t, synced, sensor, value) as the outbox yields them.
READINGS = [(1000 + n, 1764540000 + 60 * n, True, 0, 20 + n * 0.37) for n in range(32)]
NODE = "24A160000001"
SHA512_INPUT = bytes(range(256)) * 4    # the KiB crypto_chip.py hashes


def chip(quick=False, pace=None):
    """Run crypto_chip.py: ({figure: (value, unit)} in its order, {check name: text}).
    pace: the chip's slow-down factor (tools/sim/pace.py), None for the host's speed."""
    cmd = [micropython_binary(), "-X", "heapsize=" + HEAP, str(HERE / "crypto_chip.py")]
    env = dict(os.environ, ROOST_PACE=str(pace or ""))
    r = subprocess.run(cmd + (["quick"] if quick else []), capture_output=True, text=True,
                       cwd=ROOT, timeout=600 if pace else 120, env=env)
    if r.returncode:
        raise RuntimeError("crypto_chip.py failed:\n" + r.stdout + r.stderr)
    figures, checks = {}, {}
    for line in r.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "check":
            name, _, text = rest.partition(" ")
            checks[name] = text
        else:
            value, unit = rest.split()
            figures[kind] = (float(value), unit)
    return figures, checks


def senml_batch():
    """READINGS as CPython writes SenML: dicts from the tuples, json.dumps. Built inside the timed
    call because the device's encode_into starts from the tuples too."""
    recs = [{"n": "temperature", "u": "Cel", "v": round(v, 3), "t": t, "seq": seq}
            for seq, t, _, _, v in READINGS]
    recs[0] = {"bn": NODE + ":", **recs[0]}
    return json.dumps(recs, separators=(",", ":")).encode()


def _srp_session():
    """The device's SRP6a work in one session (lib/srp6a.py: B, u, S, K, the expected M, HAMK)
    written the CPython way, pow() and hashlib, from the vector's group, sharing no code with
    lib/srp6a.py; checked against the vector's HAMK before it is timed."""
    vec = json.loads((ROOT / "tests/vectors/esp_prov_sec2.json").read_text())
    g, i, d, h = vec["group"], vec["inputs"], vec["derived"], bytes.fromhex
    N, G = int(g["N"], 16), int(g["g"])

    def H(data):
        return hashlib.sha512(data).digest()

    def pad(x):
        return x.to_bytes(384, "big")

    k = int.from_bytes(H(pad(N) + pad(G)), "big")
    hn_xor_hg = bytes(x ^ y for x, y in zip(H(pad(N)), H(pad(G))))
    user, salt = i["username"].encode(), h(i["salt"])
    v, b = int(d["verifier"], 16), int(i["device_b"], 16)
    A, M = h(d["A"]), h(d["M"])

    def session():
        Bi = (k * v + pow(G, b, N)) % N
        B = pad(Bi).lstrip(b"\0")
        u = int.from_bytes(H(A + pad(Bi)), "big")
        S = pow(int.from_bytes(A, "big") % N * pow(v, u, N) % N, b, N)
        K = H(pad(S).lstrip(b"\0"))
        if H(hn_xor_hg + H(user) + salt + A + B + K) != M:
            raise ValueError("client proof mismatch")
        return H(A + M + K)

    assert session() == h(d["HAMK"])
    return session


def _best(fn, reps, rounds=5):
    """Mean ms per call over `reps` calls, best of `rounds`, as crypto_chip.py times."""
    fn()
    best = None
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        dt = time.perf_counter() - t0
        best = dt if best is None or dt < best else best
    return best / reps * 1000


def cpython(quick=False):
    """{figure: (what CPython runs, value in the chip figure's unit)} for the same operations;
    quick: each once (the test)."""
    def best(fn, reps, rounds=5):
        return _best(fn, 1, 1) if quick else _best(fn, reps, rounds)

    key, iv, kib = bytes(range(32)), bytes(range(16)), bytes(1024)
    x = X25519PrivateKey.from_private_bytes(key)
    base = X25519PublicKey.from_public_bytes(b"\x09" + bytes(31))
    ctr = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()   # one keystream, as aes.CTR
    gcm, nonce = AESGCM(key), bytes(12)
    sealed = gcm.encrypt(nonce, kib, None)

    def cfb(op):        # a cipher per call, as aes.cfb128_encrypt(key, iv, data)
        c = getattr(Cipher(algorithms.AES(key), CFB(iv)), op)()
        return c.update(kib) + c.finalize()

    def sha512():
        h = hashes.Hash(hashes.SHA512())
        h.update(SHA512_INPUT)
        return h.finalize()

    def pbkdf2():
        return PBKDF2HMAC(hashes.SHA256(), 32, b"roost-midpoint-v1|74743827342|HQ481047",
                          20000).derive(b"1JWORF43")

    lib = "CPython cryptography"
    return {
        "x25519_scalar_mult": (lib + " X25519 exchange", best(lambda: x.exchange(base), 200)),
        "aes_ctr_per_kib": (lib, best(lambda: ctr.update(kib), 2000)),
        "aes_gcm_encrypt_per_kib": (lib + " AESGCM",
                                    best(lambda: gcm.encrypt(nonce, kib, None), 2000)),
        "aes_gcm_decrypt_per_kib": (lib + " AESGCM",
                                    best(lambda: gcm.decrypt(nonce, sealed, None), 2000)),
        "aes_cfb_encrypt_per_kib": (lib + ", a cipher per call", best(lambda: cfb("encryptor"), 2000)),
        "aes_cfb_decrypt_per_kib": (lib + ", a cipher per call", best(lambda: cfb("decryptor"), 2000)),
        "pbkdf2_sha256_20000_iter": (lib, best(pbkdf2, 1, 3)),
        "sha512_per_kib": (lib + " hashes.SHA512", best(sha512, 2000)),
        "srp6a_session": ("CPython, same math with pow() and hashlib", best(_srp_session(), 20)),
        "senml_per_reading": ("CPython json.dumps of the same records",
                              best(senml_batch, 200) * 1000 / len(READINGS)),
    }


def _num(x):
    return "%.0f" % x if x >= 100 else "%.3g" % x     # 1461, not 1.46e+03


def run(rows, quick=False):
    figures, _ = chip(quick)
    base = cpython(quick)
    assert set(base) <= set(figures), "no chip figure for %s" % (set(base) - set(figures))
    for fig, (value, unit) in figures.items():
        op = "crypto: " + LABELS[fig]
        rows.append((op + ": chip (unix port)", _num(value), unit))
        if fig in base:
            what, ref = base[fig]
            rows.append(("%s: %s" % (op, what), _num(ref), unit))
            rows.append((op + ": chip/CPython", _num(value / ref), "x"))
