"""SHA-512 (FIPS 180-4) in plain Python for MicroPython.

Why this exists: MicroPython's hashlib has sha256/sha1/md5 but no sha512, and Security 2
provisioning (SRP6a) hashes everything with SHA-512 (spec esp-provisioning.md 5.2).

API like hashlib: sha512(data=b"") with update()/digest()/hexdigest()/copy(), plus a
module-level digest(data) fast path that skips the object.

Representation: each 64-bit word is a pair of 32-bit ints (hi, lo). A 64-bit int is a
heap-allocated mpz in MicroPython (small ints are 63-bit on the 64-bit unix port and 31-bit
on ESP32), so every 64-bit operation would allocate. Measured on the unix port, 1 KB:
plain 64-bit ints 3.3 ms and 1.8 MB allocated; halves 0.92 ms and 11 KB (no allocation in
the rounds). On ESP32 halves >= 2**30 are still mpz: fewer and smaller allocations, not none.
Unrolling the rounds 8x was within noise (and 1.9 KB more bytecode), so the loop stays rolled.
"""
import struct

# Round constants and initial state, as (hi, lo) 32-bit halves: K[2t] = hi, K[2t+1] = lo.
_K = (
    0x428a2f98, 0xd728ae22, 0x71374491, 0x23ef65cd, 0xb5c0fbcf, 0xec4d3b2f, 0xe9b5dba5, 0x8189dbbc,
    0x3956c25b, 0xf348b538, 0x59f111f1, 0xb605d019, 0x923f82a4, 0xaf194f9b, 0xab1c5ed5, 0xda6d8118,
    0xd807aa98, 0xa3030242, 0x12835b01, 0x45706fbe, 0x243185be, 0x4ee4b28c, 0x550c7dc3, 0xd5ffb4e2,
    0x72be5d74, 0xf27b896f, 0x80deb1fe, 0x3b1696b1, 0x9bdc06a7, 0x25c71235, 0xc19bf174, 0xcf692694,
    0xe49b69c1, 0x9ef14ad2, 0xefbe4786, 0x384f25e3, 0x0fc19dc6, 0x8b8cd5b5, 0x240ca1cc, 0x77ac9c65,
    0x2de92c6f, 0x592b0275, 0x4a7484aa, 0x6ea6e483, 0x5cb0a9dc, 0xbd41fbd4, 0x76f988da, 0x831153b5,
    0x983e5152, 0xee66dfab, 0xa831c66d, 0x2db43210, 0xb00327c8, 0x98fb213f, 0xbf597fc7, 0xbeef0ee4,
    0xc6e00bf3, 0x3da88fc2, 0xd5a79147, 0x930aa725, 0x06ca6351, 0xe003826f, 0x14292967, 0x0a0e6e70,
    0x27b70a85, 0x46d22ffc, 0x2e1b2138, 0x5c26c926, 0x4d2c6dfc, 0x5ac42aed, 0x53380d13, 0x9d95b3df,
    0x650a7354, 0x8baf63de, 0x766a0abb, 0x3c77b2a8, 0x81c2c92e, 0x47edaee6, 0x92722c85, 0x1482353b,
    0xa2bfe8a1, 0x4cf10364, 0xa81a664b, 0xbc423001, 0xc24b8b70, 0xd0f89791, 0xc76c51a3, 0x0654be30,
    0xd192e819, 0xd6ef5218, 0xd6990624, 0x5565a910, 0xf40e3585, 0x5771202a, 0x106aa070, 0x32bbd1b8,
    0x19a4c116, 0xb8d2d0c8, 0x1e376c08, 0x5141ab53, 0x2748774c, 0xdf8eeb99, 0x34b0bcb5, 0xe19b48a8,
    0x391c0cb3, 0xc5c95a63, 0x4ed8aa4a, 0xe3418acb, 0x5b9cca4f, 0x7763e373, 0x682e6ff3, 0xd6b2b8a3,
    0x748f82ee, 0x5defb2fc, 0x78a5636f, 0x43172f60, 0x84c87814, 0xa1f0ab72, 0x8cc70208, 0x1a6439ec,
    0x90befffa, 0x23631e28, 0xa4506ceb, 0xde82bde9, 0xbef9a3f7, 0xb2c67915, 0xc67178f2, 0xe372532b,
    0xca273ece, 0xea26619c, 0xd186b8c7, 0x21c0c207, 0xeada7dd6, 0xcde0eb1e, 0xf57d4f7f, 0xee6ed178,
    0x06f067aa, 0x72176fba, 0x0a637dc5, 0xa2c898a6, 0x113f9804, 0xbef90dae, 0x1b710b35, 0x131c471b,
    0x28db77f5, 0x23047d84, 0x32caab7b, 0x40c72493, 0x3c9ebe0a, 0x15c9bebc, 0x431d67c4, 0x9c100d4c,
    0x4cc5d4be, 0xcb3e42b6, 0x597f299c, 0xfc657e2a, 0x5fcb6fab, 0x3ad6faec, 0x6c44198c, 0x4a475817,
)
_IV = (
    0x6a09e667, 0xf3bcc908, 0xbb67ae85, 0x84caa73b, 0x3c6ef372, 0xfe94f82b, 0xa54ff53a, 0x5f1d36f1,
    0x510e527f, 0xade682d1, 0x9b05688c, 0x2b3e6c1f, 0x1f83d9ab, 0xfb41bd6b, 0x5be0cd19, 0x137e2179,
)

# Message schedule scratch, reused so a block allocates no list. compress() never yields
# (no await, no callback), so sharing it between hash objects is safe under asyncio.
_W = [0] * 160


def _compress(H, blk, off):
    """Process the 128-byte block blk[off:off+128] into state H (list of 16 halves)."""
    M = 0xFFFFFFFF
    K = _K
    W = _W
    W[0:32] = struct.unpack_from(">32I", blk, off)
    # W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16]; halves at 2t (hi) and 2t+1 (lo).
    # ROTR n of (h, l) for n < 32 is (h >> n | l << 32-n, l >> n | h << 32-n); for n >= 32
    # swap the halves. The pieces of a rotation are disjoint, so | is written as ^ and the
    # bits above 32 are masked once at the end. (x & 1) << 31 keeps ROTR1 below 2**62
    # (a small int on the 64-bit unix port).
    for i in range(32, 160, 2):
        xh = W[i - 30]
        xl = W[i - 29]
        s0h = (xh >> 1) ^ ((xl & 1) << 31) ^ (xh >> 8) ^ (xl << 24) ^ (xh >> 7)
        s0l = (xl >> 1) ^ ((xh & 1) << 31) ^ (xl >> 8) ^ (xh << 24) ^ (xl >> 7) ^ (xh << 25)
        xh = W[i - 4]
        xl = W[i - 3]
        s1h = (xh >> 19) ^ (xl << 13) ^ (xl >> 29) ^ (xh << 3) ^ (xh >> 6)
        s1l = (xl >> 19) ^ (xh << 13) ^ (xh >> 29) ^ (xl << 3) ^ (xl >> 6) ^ (xh << 26)
        lo = W[i - 31] + (s0l & M) + W[i - 13] + (s1l & M)
        W[i] = (W[i - 32] + (s0h & M) + W[i - 14] + (s1h & M) + (lo >> 32)) & M
        W[i + 1] = lo & M
    ah, al, bh, bl, ch, cl, dh, dl = H[0:8]
    eh, el, fh, fl, gh, gl, hh, hl = H[8:16]
    # 80 rounds. Sums of 32-bit halves stay unmasked until the carry (lo >> 32) moves to hi.
    # T1 = h + S1(e) + Ch(e, f, g) + K + W, S1 = ROTR14 ^ ROTR18 ^ ROTR41, Ch = g ^ (e & (f ^ g));
    # T2 = S0(a) + Maj(a, b, c), S0 = ROTR28 ^ ROTR34 ^ ROTR39, Maj = (a & b) | (c & (a | b)).
    # Sequential local stores are cheap; a 16-name tuple swap would allocate a tuple per round.
    for i in range(0, 160, 2):
        t1l = (hl + (((el >> 14) ^ (eh << 18) ^ (el >> 18) ^ (eh << 14) ^ (eh >> 9) ^ (el << 23)) & M)
               + (gl ^ (el & (fl ^ gl))) + K[i + 1] + W[i + 1])
        t1h = (hh + (((eh >> 14) ^ (el << 18) ^ (eh >> 18) ^ (el << 14) ^ (el >> 9) ^ (eh << 23)) & M)
               + (gh ^ (eh & (fh ^ gh))) + K[i] + W[i])
        hh = gh
        hl = gl
        gh = fh
        gl = fl
        fh = eh
        fl = el
        el = dl + t1l
        eh = (dh + t1h + (el >> 32)) & M
        el &= M
        dh = ch
        dl = cl
        ch = bh
        cl = bl
        bh = ah
        bl = al
        # a is still the old a; the old b and c have moved to c and d.
        t1l += ((((al >> 28) ^ (ah << 4) ^ (ah >> 2) ^ (al << 30) ^ (ah >> 7) ^ (al << 25)) & M)
                + ((al & cl) | (dl & (al | cl))))
        ah = (t1h + (((ah >> 28) ^ (al << 4) ^ (al >> 2) ^ (ah << 30) ^ (al >> 7) ^ (ah << 25)) & M)
              + ((ah & ch) | (dh & (ah | ch))) + (t1l >> 32)) & M
        al = t1l & M
    # H += a..h, then move each lo carry into its hi.
    i = 0
    for x in (ah, al, bh, bl, ch, cl, dh, dl, eh, el, fh, fl, gh, gl, hh, hl):
        H[i] += x
        i += 1
    for i in range(0, 16, 2):
        lo = H[i + 1]
        H[i] = (H[i] + (lo >> 32)) & M
        H[i + 1] = lo & M


def _finish(H, tail, n):
    """Pad the last partial block (tail, n = total length in bytes) and compress it."""
    tail = bytes(tail) + b"\x80"
    tail += bytes((112 - len(tail)) % 128) + (n * 8).to_bytes(16, "big")  # length in bits
    for off in range(0, len(tail), 128):
        _compress(H, tail, off)
    return struct.pack(">16I", *H)


def digest(data):
    """SHA-512 of a bytes-like object, without building a hash object."""
    H = list(_IV)
    n = len(data)
    end = n - n % 128
    for off in range(0, end, 128):
        _compress(H, data, off)
    return _finish(H, data[end:], n)


class sha512:
    digest_size = 64
    block_size = 128
    name = "sha512"

    def __init__(self, data=b""):
        self._h = list(_IV)
        self._buf = b""   # < 128 bytes not yet compressed
        self._n = 0       # total bytes hashed
        if data:
            self.update(data)

    def update(self, data):
        n = len(data)
        self._n += n
        h = self._h
        off = 0
        if self._buf:
            off = 128 - len(self._buf)
            if n < off:
                self._buf += bytes(data)
                return
            _compress(h, self._buf + bytes(data[:off]), 0)
        end = n - (n - off) % 128
        while off < end:
            _compress(h, data, off)
            off += 128
        self._buf = bytes(data[off:])

    def digest(self):
        return _finish(list(self._h), self._buf, self._n)

    def hexdigest(self):
        return self.digest().hex()

    def copy(self):
        c = sha512()
        c._h = list(self._h)
        c._buf = self._buf
        c._n = self._n
        return c
