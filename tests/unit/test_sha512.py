"""lib/sha512.py: pure-Python SHA-512, checked against hashlib under CPython and MicroPython."""
import hashlib

from hypothesis import given, settings, strategies as st

import sha512
from tests.mpy import run_mpy

# Lengths where padding changes shape: the 0x80 byte plus the 16-byte length fit in one block
# only up to 111 bytes of tail; 112..127 spill into a second block; multiples of 128 add a block.
BOUNDARY_LENGTHS = (0, 1, 110, 111, 112, 113, 127, 128, 129, 239, 240, 255, 256, 257, 367, 368, 384)


def pattern(n, seed=0):
    return bytes((i * 31 + seed) & 0xFF for i in range(n))


def test_known_answers():
    # FIPS 180-2 appendix C examples.
    assert sha512.digest(b"abc").hex().startswith("ddaf35a193617aba")
    assert sha512.digest(b"").hex().endswith("a538327af927da3e")
    two_block = (b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                 b"ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")
    assert sha512.digest(two_block).hex() == hashlib.sha512(two_block).hexdigest()


def test_every_length_up_to_three_blocks():
    for n in range(0, 3 * 128 + 2):
        data = pattern(n)
        assert sha512.digest(data) == hashlib.sha512(data).digest(), n


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(max_size=700),
    st.builds(pattern, st.sampled_from(BOUNDARY_LENGTHS), st.integers(0, 255)),
))
def test_matches_hashlib(data):
    assert sha512.digest(data) == hashlib.sha512(data).digest()
    assert sha512.sha512(data).digest() == hashlib.sha512(data).digest()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=6))
def test_streaming_any_split(data, cuts):
    h = sha512.sha512()
    prev = 0
    for c in sorted(c for c in cuts if c <= len(data)) + [len(data)]:
        h.update(data[prev:c])
        prev = c
    assert h.digest() == hashlib.sha512(data).digest()
    assert h.hexdigest() == hashlib.sha512(data).hexdigest()


def test_object_semantics():
    h = sha512.sha512(b"x" * 100)
    c = h.copy()
    first = h.digest()
    assert h.digest() == first            # digest() does not consume the state
    h.update(b"y" * 50)
    assert c.digest() == first            # copy is independent
    assert h.digest() == hashlib.sha512(b"x" * 100 + b"y" * 50).digest()
    assert (h.digest_size, h.block_size, h.name) == (64, 128, "sha512")
    data = pattern(300)
    assert sha512.digest(bytearray(data)) == sha512.digest(memoryview(data)) == hashlib.sha512(data).digest()
    assert sha512.sha512(memoryview(data)).digest() == hashlib.sha512(data).digest()


def test_million_a():
    h = sha512.sha512()
    chunk = b"a" * 10000
    for _ in range(100):
        h.update(chunk)
    assert h.hexdigest() == hashlib.sha512(b"a" * 1000000).hexdigest()


def test_under_micropython():
    lengths = BOUNDARY_LENGTHS + (1000, 1024)
    code = (
        "import sha512\n"
        "def pattern(n, seed=0):\n"
        "    return bytes((i * 31 + seed) & 0xFF for i in range(n))\n"
        "for n in %r:\n"
        "    d = pattern(n)\n"
        "    h = sha512.sha512(d[:n // 3])\n"
        "    h.update(memoryview(d)[n // 3:])\n"
        "    assert h.digest() == sha512.digest(d), n\n"
        "    print(n, sha512.digest(d).hex())\n" % (lengths,)
    )
    out = run_mpy(code).split()
    expected = []
    for n in lengths:
        expected += [str(n), hashlib.sha512(pattern(n)).hexdigest()]
    assert out == expected
