"""AES modes the provisioning and bootstrap code needs, built on MicroPython's `cryptolib`.

The ESP32 build of `cryptolib.aes` offers only ECB (mode 1) and CBC (mode 2), on whole 16-byte blocks:
- CTR: Espressif Security 1 (AES-256-CTR, 128-bit big-endian counter, one continuous keystream).
- CFB128: Mainflux/Magistrala secure bootstrap (full-block CFB, as Go's cipher.NewCFBEncrypter).
- GCM: Espressif Security 2 (AES-256-GCM, 12-byte nonce, 16-byte tag appended).

Speed: C does the bulk work. Keystream comes from one cryptolib call over a chunk of 16 blocks, and
XOR runs on a whole chunk as one big-integer operation; only GHASH loops in Python (per byte).
Memory: data is processed in 256-byte chunks written into one output buffer allocated up front, so a
call needs about twice the message size (output buffer + returned bytes) plus ~1 KB, not a multiple
of it; one contiguous buffer also fragments the heap less than a list of pieces joined at the end.
All functions return bytes.
"""
import cryptolib

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

_ECB = const(1)
_CBC = const(2)
_NB = const(16)  # blocks per cryptolib call
_CHUNK = const(256)  # _NB * 16 bytes: the unit of keystream generation and of XOR
_M128 = const(2**128 - 1)
_GCM_MAX = const((2**32 - 2) * 16)  # NIST SP 800-38D plaintext limit: the 32-bit counter never wraps

# c * _ONES + _RAMP is the _NB big-endian counter blocks c, c+1, ..., c+_NB-1 concatenated, so one
# multiplication and one to_bytes() build a chunk of counter blocks (valid while no carry leaves them).
_ONES = 0
_RAMP = 0
for _j in range(_NB):
    _ONES = (_ONES << 128) | 1
    _RAMP = (_RAMP << 128) | _j
del _j


def _xor(a, b, n):
    """a XOR b for two n-byte buffers, as one big-integer operation instead of a byte loop."""
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(n, "big")


class CTR:
    """AES-CTR keystream as Espressif Security 1 uses it.

    The counter block is incremented as one 128-bit big-endian integer. The object keeps one continuous
    keystream: each crypt() starts where the previous one stopped, even in the middle of a block.
    Encryption and decryption are the same operation; both directions of a session share one object
    and must process messages in order.
    """

    def __init__(self, key, counter_block):
        if len(counter_block) != 16:
            raise ValueError("counter block must be 16 bytes")
        self._aes = cryptolib.aes(key, _ECB)
        self._ctr = int.from_bytes(counter_block, "big")  # counter block of the next chunk
        self._ks = bytearray(_CHUNK)  # current chunk of keystream, reused
        self._ksv = memoryview(self._ks)
        self._pos = _CHUNK  # keystream bytes of the chunk already used: none generated yet

    def _refill(self):
        c = self._ctr
        if c <= _M128 - _NB + 1:
            blocks = (c * _ONES + _RAMP).to_bytes(_CHUNK, "big")
        else:  # the counter wraps to zero inside this chunk
            blocks = b"".join([((c + j) & _M128).to_bytes(16, "big") for j in range(_NB)])
        self._aes.encrypt(blocks, self._ks)
        self._ctr = (c + _NB) & _M128
        self._pos = 0

    def crypt(self, data):
        """Encrypt or decrypt `data` with the next len(data) keystream bytes."""
        n = len(data)
        src = memoryview(data)
        out = None
        i = 0
        while i < n:
            if self._pos == _CHUNK:
                self._refill()
            pos = self._pos
            take = min(n - i, _CHUNK - pos)
            piece = _xor(src[i:i + take], self._ksv[pos:pos + take], take)
            self._pos = pos + take
            if take == n:  # the usual provisioning message: one piece, no copy
                return piece
            if out is None:
                out = bytearray(n)
            out[i:i + take] = piece
            i += take
        return b"" if out is None else bytes(out)


def _cfb(key, iv, data, mode):
    """CFB128: the keystream for `data` is AES over the stream IV || data, one block behind.

    Decryption knows that stream in advance: ECB. Encryption does not (it is the ciphertext being
    produced), but C[k] = P[k] ^ E(C[k-1]) makes the next keystream block E(C[k]) = E(P[k] ^ E(C[k-1])),
    which is what CBC with a zero IV computes over IV || P[1] || P[2] ...: one cryptolib call per chunk
    instead of a Python round trip per block. The CBC object chains across the calls.
    """
    n = len(data)
    if len(iv) != 16:
        raise ValueError("IV must be 16 bytes")
    if mode == _CBC:
        cipher = cryptolib.aes(key, _CBC, bytes(16))
    else:
        cipher = cryptolib.aes(key, _ECB)
    src = memoryview(data)
    ks = bytearray(_CHUNK)
    ksv = memoryview(ks)
    out = None
    for i in range(0, n, _CHUNK):
        take = min(_CHUNK, n - i)
        m = (take + 15) & ~15  # whole blocks of keystream for this chunk
        if i:
            inp = src[i - 16:i - 16 + m]  # stream bytes [i, i + m) are data[i - 16:i - 16 + m]
        else:
            inp = bytearray(m)
            inp[:16] = iv
            inp[16:] = src[:m - 16]
        cipher.encrypt(inp, ks)
        piece = _xor(src[i:i + take], ksv[:take], take)
        if take == n:
            return piece
        if out is None:
            out = bytearray(n)
        out[i:i + take] = piece
    return b"" if out is None else bytes(out)


def cfb128_encrypt(key, iv, data):
    """AES-CFB with 128-bit segments (Go cipher.NewCFBEncrypter); returns the ciphertext only."""
    return _cfb(key, iv, data, _CBC)


def cfb128_decrypt(key, iv, data):
    """Inverse of cfb128_encrypt."""
    return _cfb(key, iv, data, _ECB)


def _mulx(v):
    """v * x in GF(2^128), GCM bit order (the most significant bit of the int is the x^0 coefficient)."""
    return (v >> 1) ^ (0xE1 << 120) if v & 1 else v >> 1


class GCM:
    """AES-GCM with 12-byte nonces and 16-byte tags (NIST SP 800-38D), as Espressif Security 2 uses it.

    GHASH keeps two per-key tables of the 16 nibble multiples of H, shifted left by 128 and 124 bits:
    a product is accumulated byte by byte with one shift and two XORs, and the bits that move past
    x^127 are reduced once per block (see _mul). 32 integers of 256 bits per key (~3 KB on unix x64).
    """

    def __init__(self, key):
        self._aes = cryptolib.aes(key, _ECB)
        self._ks = bytearray(_CHUNK)
        self._ksv = memoryview(self._ks)
        h = int.from_bytes(self._aes.encrypt(bytes(16)), "big")
        # m[n] = (nibble n as a field element) * H; n = 8 is the element 1, n = 4 is x, ...
        m = [0] * 16
        m[8] = h
        m[4] = _mulx(h)
        m[2] = _mulx(m[4])
        m[1] = _mulx(m[2])
        for i in (2, 4, 8):
            for j in range(1, i):
                m[i + j] = m[i] ^ m[j]
        self._hi = tuple([v << 128 for v in m])  # high nibble of a byte
        self._lo = tuple([v << 124 for v in m])  # low nibble: four degrees higher (times x^4)

    def _mul(self, y):
        """y * H in GF(2^128)."""
        hi = self._hi
        lo = self._lo
        z = 0
        # Bytes from the highest-degree end; each step multiplies the sum so far by x^8 (a right shift
        # by 8; nothing is lost thanks to the 128 spare low bits) and adds the byte's two products.
        for v in y.to_bytes(16, "little"):
            z = (z >> 8) ^ lo[v & 15] ^ hi[v >> 4]
        # The low 128 bits hold the coefficients of x^128..x^255. Reduce with x^128 = 1 + x + x^2 + x^7;
        # the bits that the shifts by 1, 2, 7 push past x^127 again (d's low 7 bits) are folded in first.
        d = z & _M128
        d ^= ((d & 1) << 127) ^ ((d & 3) << 126) ^ ((d & 0x7F) << 121)
        return (z >> 128) ^ d ^ (d >> 1) ^ (d >> 2) ^ (d >> 7)

    def _absorb(self, y, buf):
        """GHASH state y after absorbing buf, zero-padded to whole blocks."""
        n = len(buf)
        mv = memoryview(buf)
        full = n & ~15
        for i in range(0, full, 16):
            y = self._mul(y ^ int.from_bytes(mv[i:i + 16], "big"))
        if n != full:
            y = self._mul(y ^ (int.from_bytes(mv[full:], "big") << ((16 - n + full) << 3)))
        return y

    def _tag(self, nonce, aad, ct):
        y = self._absorb(self._absorb(0, aad), ct)
        y = self._mul(y ^ (len(aad) << 67) ^ (len(ct) << 3))  # bit lengths, 64 bits each
        ej0 = self._aes.encrypt(bytes(nonce) + b"\x00\x00\x00\x01")
        return (y ^ int.from_bytes(ej0, "big")).to_bytes(16, "big")

    def _gctr(self, nonce, data, out):
        """Write data XOR E(J0 + 1), E(J0 + 2), ... into out. Below _GCM_MAX the 32-bit counter
        never wraps, so plain integer increments of nonce || counter are right."""
        n = len(data)
        c = (int.from_bytes(nonce, "big") << 32) | 2
        src = memoryview(data)
        ks = self._ksv
        for i in range(0, n, _CHUNK):
            take = min(_CHUNK, n - i)
            blocks = memoryview((c * _ONES + _RAMP).to_bytes(_CHUNK, "big"))
            self._aes.encrypt(blocks[:(take + 15) & ~15], ks)  # only the blocks needed
            c += _NB
            out[i:i + take] = _xor(src[i:i + take], ks[:take], take)

    def _check(self, nonce, n):
        if len(nonce) != 12:
            raise ValueError("GCM nonce must be 12 bytes")
        if n > _GCM_MAX:
            raise ValueError("GCM message too long")

    def encrypt(self, nonce, plaintext, aad=b""):
        """Return ciphertext || 16-byte tag."""
        n = len(plaintext)
        self._check(nonce, n)
        out = bytearray(n + 16)
        ct = memoryview(out)[:n]
        self._gctr(nonce, plaintext, ct)
        out[n:] = self._tag(nonce, aad, ct)
        return bytes(out)

    def decrypt(self, nonce, data, aad=b""):
        """Check the tag of ciphertext || tag, then decrypt. Raises ValueError on a bad tag."""
        n = len(data) - 16
        if n < 0:
            raise ValueError("GCM data too short")
        self._check(nonce, n)
        mv = memoryview(data)
        ct = mv[:n]
        tag = self._tag(nonce, aad, ct)
        diff = 0
        for a, b in zip(tag, mv[n:]):  # constant time: no early exit on the first differing byte
            diff |= a ^ b
        if diff:
            raise ValueError("GCM tag mismatch")
        out = bytearray(n)
        self._gctr(nonce, ct, out)
        return bytes(out)
