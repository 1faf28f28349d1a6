"""PBKDF2-HMAC-SHA256 (RFC 8018) on MicroPython's hashlib, for the small heap of an ESP32.

    key = pbkdf2_sha256(b"password", b"salt", 20000, 32)

Speed: the SHA-256 work is in C (in hardware on an ESP32). MicroPython's hash objects have no
copy(), so the padded key blocks cannot be hashed once and reused: each iteration costs four
compressions instead of the two a C implementation needs. The XOR of the U values is done on
one big integer, not byte by byte. Memory: a few 32- and 64-byte objects per iteration, all
short-lived, so the cost is garbage-collector work rather than heap held.
Runs under CPython too (tests check it against hashlib.pbkdf2_hmac).
"""
import hashlib

_BLOCK = 64  # SHA-256 block size
_LEN = 32    # SHA-256 digest size


def pbkdf2_sha256(password, salt, iterations, dklen=_LEN):
    if iterations < 1 or dklen < 1:
        raise ValueError("iterations and dklen must be positive")
    if len(password) > _BLOCK:
        password = hashlib.sha256(password).digest()
    ipad = bytes(b ^ 0x36 for b in password) + b"\x36" * (_BLOCK - len(password))
    opad = bytes(b ^ 0x5C for b in password) + b"\x5c" * (_BLOCK - len(password))
    sha = hashlib.sha256
    out = b""
    block = 1
    while len(out) < dklen:
        h = sha(ipad)
        h.update(salt)
        h.update(block.to_bytes(4, "big"))
        u = h.digest()
        h = sha(opad)
        h.update(u)
        u = h.digest()
        acc = int.from_bytes(u, "big")
        for _ in range(iterations - 1):
            h = sha(ipad)
            h.update(u)
            u = h.digest()
            h = sha(opad)
            h.update(u)
            u = h.digest()
            acc ^= int.from_bytes(u, "big")
        out += acc.to_bytes(_LEN, "big")
        block += 1
    return out[:dklen]
