"""X25519 (RFC 7748) on Python integers, for Security 1 of Espressif provisioning.

MicroPython exposes no elliptic-curve code (mbedTLS is reachable only through `ssl`), so the
Montgomery ladder runs on big integers. Python integers are not constant time; what we can do is keep
the *structure* independent of the secret: every one of the 255 ladder steps does the same operations,
and the conditional swap is arithmetic (mask and XOR), never a branch on a key bit.
"""
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

_P = const(2**255 - 19)
_A24 = const(121665)  # (486662 - 2) / 4, RFC 7748 section 5
_U_MASK = const(2**255 - 1)  # the top bit of u is ignored (RFC 7748 section 5)
_BASE_U = b"\x09" + bytes(31)


def x25519(scalar, u):
    """X25519(scalar, u): both 32-byte strings in RFC 7748 encoding; returns the 32-byte u-coordinate.

    Raises ValueError for wrong lengths and for an all-zero result (a low-order peer point).
    """
    if len(scalar) != 32 or len(u) != 32:
        raise ValueError("x25519 input must be 32 bytes")
    p = _P
    # Clamp on a byte copy: bits are then read as small ints, cheaper than shifting a 255-bit int.
    k = bytearray(scalar)
    k[0] &= 248
    k[31] = (k[31] & 127) | 64
    # Non-canonical u (>= p) is accepted and simply works modulo p, as the RFC requires.
    x1 = int.from_bytes(u, "little") & _U_MASK
    x2, z2, x3, z3 = 1, 0, x1, 1
    swap = 0
    # Bit 254 is always 1 and bits 0..2 always 0 after clamping, but the loop still runs over all
    # 255 bits so that its length never depends on the scalar.
    for t in range(254, -1, -1):
        bit = (k[t >> 3] >> (t & 7)) & 1
        # Arithmetic conditional swap: mask is 0 or -1 (all ones), no branch on the secret bit.
        mask = -(swap ^ bit)
        swap = bit
        d = mask & (x2 ^ x3)
        x2 ^= d
        x3 ^= d
        d = mask & (z2 ^ z3)
        z2 ^= d
        z3 ^= d
        # RFC 7748 ladder step. Sums and differences are not reduced, and DA, CB only once combined:
        # every value stays small enough, and each `%` saved is a big-integer division per step.
        a = x2 + z2
        b = x2 - z2
        c = x3 + z3
        d = x3 - z3
        aa = a * a % p
        bb = b * b % p
        da = d * a
        cb = c * b
        e = aa - bb
        x3 = (da + cb) % p
        x3 = x3 * x3 % p
        z3 = (da - cb) % p
        z3 = z3 * z3 * x1 % p
        x2 = aa * bb % p
        z2 = e * (aa + _A24 * e) % p
    mask = -swap
    d = mask & (x2 ^ x3)
    x2 ^= d
    d = mask & (z2 ^ z3)
    z2 ^= d
    # Fermat inversion; pow(0, p - 2, p) is 0, so a zero z2 gives the all-zero output rejected below.
    r = x2 * pow(z2, p - 2, p) % p
    if r == 0:
        raise ValueError("x25519 shared secret is zero")
    return r.to_bytes(32, "little")


def public_key(private):
    """The public key (32 bytes) for a 32-byte private scalar: X25519(private, 9)."""
    return x25519(private, _BASE_U)
