"""SRP6a, device (server) side, as Espressif Security 2 uses it (spec esp-provisioning.md 5.2).

RFC 5054 3072-bit group, g = 5, H = SHA-512. Byte layouts (they decide interoperability):
PAD(x) = x big-endian, left-padded to 384 bytes; every other integer is minimal big-endian.

    k    = H(N || PAD(g))                               (constant, computed once at import)
    x    = H(salt || H(username || ":" || password)),  v = g^x mod N
    B    = (k*v + g^b) mod N                            (sent minimal, not padded)
    u    = H(PAD(A) || PAD(B));  S = (A * v^u)^b mod N;  K = H(minimal(S))
    M    = H((H(N) XOR H(PAD(g))) || H(username) || salt || A || B || K)
    HAMK = H(A || M || K)

A is required to be exactly 384 bytes (so A == PAD(A), and "A as received" is unambiguous).

Cost: three 3072-bit modexps per handshake (g^b, v^u, (A*v^u)^b) and about 2.7 KB of SHA-512:
25 s of an ESP32's CPU in Python, 3.5 s with the custom build's srpmath (docs/budgets.md).
"""
import os

try:
    from micropython import const
except ImportError:  # CPython (host tools, tests)
    def const(x):
        return x

# The costly parts, 3072-bit modexp and SHA-512, by mbedTLS on the ESP32's accelerators when
# the MicroPython build has roost's C module (cmodules/srpmath: a custom build, manifest.py);
# else in Python: MicroPython has no hashlib.sha512 (on ESP32 or unix), CPython does. Every path
# gives identical bytes; tests run each.
try:
    import srpmath  # type: ignore[import-not-found]  # a custom build only
except ImportError:
    srpmath = None
try:
    from hashlib import sha512 as _sha512  # type: ignore[attr-defined]  # CPython only: the ESP32 takes the except
except ImportError:
    from sha512 import sha512 as _sha512


def _H(*parts):
    """H(part1 || part2 || ...), hashed part by part: joining M's six fields first would need
    a 977-byte block, which a fragmented ESP32 heap mid-handshake may not have."""
    if srpmath:
        return srpmath.sha512(*parts)
    h = _sha512()
    for p in parts:
        h.update(p)
    return h.digest()

_LEN = const(384)  # bytes in N, and the PAD width
G = 5
# RFC 5054 appendix A, 3072-bit group (= RFC 3526 group 15 prime).
N = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
    16,
)


def pad(x):
    """PAD(x): big-endian, left-padded with zeros to 384 bytes."""
    return x.to_bytes(_LEN, "big")


def minimal(x):
    """Minimal big-endian bytes of 0 <= x < 2**3072 (MicroPython ints have no bit_length)."""
    return x.to_bytes(_LEN, "big").lstrip(b"\x00")


def _utf8(s):
    return s.encode() if isinstance(s, str) else bytes(s)


_N_BYTES = pad(N)
_G_PAD = pad(G)
K_MUL = int.from_bytes(_H(_N_BYTES, _G_PAD), "big")  # k
# H(N) XOR H(PAD(g)): the constant first field of M.
_HN_XOR_HG = bytes(x ^ y for x, y in zip(_H(_N_BYTES), _H(_G_PAD)))


def verifier(username, password, salt):
    """v = g^x mod N as minimal bytes; for host tooling, tests and first-boot derivation."""
    inner = _H(_utf8(username), b":", _utf8(password))
    x = _H(bytes(salt), inner)  # as big-endian exponent bytes
    return minimal(_pow_g(x))


def make_salt(n=16):
    """Random salt whose first byte is non-zero: the esp-rainmaker-cli client passes the salt
    through an integer, which drops a leading 0x00 and breaks the proof (spec 5.2 quirks)."""
    while True:
        s = os.urandom(n)
        if s[0]:
            return s


# 5^0 .. 5^15, all < 2**35: multiplying by one is cheap next to squaring a 3072-bit number.
_G_POWERS = tuple(G ** c for c in range(16))


def _pow(x, e):
    """x^e mod N for an int x and e as big-endian bytes."""
    if srpmath:
        return int.from_bytes(srpmath.pow_mod(pad(x), e, _N_BYTES), "big")
    return pow(x, int.from_bytes(e, "big"), N)


def _pow_g(e):
    """g^e mod N for e given as big-endian bytes.

    Why not pow(G, e, N): MicroPython's pow is right-to-left binary, so its base is squared to
    full size at once and it does a full 3072-bit multiply per set bit of e. Left to right,
    4 bits at a time, the multiplies are by 5^c < 2**35. Unix port: 40 -> 26 ms for b (256 bits).
    The same window with a table for v^u and (A*v^u)^b saved another ~17 ms per handshake but
    needs 16 x 384-byte ints live (least heap for a handshake, .mpy on the unix port: 30 KB ->
    43 KB), so those stay with pow(), which works in place in C. Every nibble multiplies, 0
    included, so the operation sequence does not depend on e (mpz itself is not constant-time).
    """
    if srpmath:
        return _pow(G, e)
    r = 1
    for byte in e:
        r = r * r % N
        r = r * r % N
        r = r * r % N
        r = r * r % N
        r = r * _G_POWERS[byte >> 4] % N
        r = r * r % N
        r = r * r % N
        r = r * r % N
        r = r * r % N
        r = r * _G_POWERS[byte & 15] % N
    return r


def _ct_equal(a, b):
    """Compare without an early exit, so timing does not reveal the matching prefix."""
    if len(a) != len(b):
        return False
    r = 0
    for x, y in zip(a, b):
        r |= x ^ y
    return r == 0


class Server:
    """One Security 2 handshake: challenge() once, then verify() once.

    key (K, 64 bytes) is None until verify() accepts the client's proof, so the data phase
    cannot start on an unauthenticated key. Any failure leaves the object unusable: the
    caller starts a new Server for a new handshake (a fresh b each time).
    """

    def __init__(self, salt, verifier, b=None):
        self.salt = bytes(salt)
        self._v = int.from_bytes(verifier, "big")
        self._b = os.urandom(32) if b is None else bytes(b)  # exponent, big-endian bytes
        self.key = None
        self._state = 0  # 0 new, 1 challenged, 2 done or failed
        self._A = self._M = self._K = None

    def challenge(self, username, A):
        """Client's username and A (384 bytes) -> B (minimal bytes). ValueError if unsafe."""
        if self._state != 0:
            raise ValueError("challenge already made")
        self._state = 2  # stays failed unless we finish
        A = bytes(A)
        if len(A) != _LEN:
            raise ValueError("A must be 384 bytes")
        a = int.from_bytes(A, "big") % N
        if a == 0:
            raise ValueError("A mod N == 0")
        v = self._v
        b = self._b
        self._b = None  # the secret exponent is needed for this one challenge only
        Bi = (K_MUL * v + _pow_g(b)) % N
        B = minimal(Bi)
        u = _H(A, pad(Bi))
        if not any(u):
            raise ValueError("u == 0")
        S = _pow(a * _pow(v, u) % N, b)
        K = _H(minimal(S))
        self._M = _H(_HN_XOR_HG, _H(_utf8(username)), self.salt, A, B, K)
        self._A = A
        self._K = K
        self._state = 1
        return B

    def verify(self, M):
        """Client proof M (64 bytes) -> HAMK = H(A || M || K). ValueError on a wrong proof."""
        if self._state != 1:
            raise ValueError("no pending challenge")
        self._state = 2
        if len(M) != 64 or not _ct_equal(M, self._M):
            self._K = None
            raise ValueError("client proof mismatch")
        self.key = self._K
        return _H(self._A, bytes(M), self._K)
