"""cmodules/srpmath, the custom build's C module for Security 2 (mbedTLS's bignum and SHA-512,
on the ESP32's accelerators): the same answers as Python's pow() and hashlib, clear errors for
bad input, and lib/srp6a.py using it when it is there."""
import hashlib
import os

import pytest

from tests.mpy import run_mpy
from tools.sim.chip.build import chip_binary

from srp6a import N



def custom(code):
    return run_mpy("import srpmath\n" + code, path=("lib",), micropython=chip_binary(roost=True))


def test_pow_mod_agrees_with_python_pow():
    import random
    rng = random.Random(19)
    mods = [(1 << 3072) - rng.getrandbits(3000) * 2 - 1, N, 23]
    cases = []
    for n in mods:
        size = (n.bit_length() + 7) // 8
        for _ in range(3):
            base, exp = rng.getrandbits(size * 8 + 16), rng.getrandbits(512)   # base > n is reduced
            cases.append((base.to_bytes(size + 2, "big").hex(), exp.to_bytes(64, "big").hex(),
                          n.to_bytes(size, "big").hex()))
    out = custom("for b, e, n in %r:\n    print(srpmath.pow_mod(bytes.fromhex(b), bytes.fromhex(e), "
                 "bytes.fromhex(n)).hex())\n" % (cases,)).split()
    want = [pow(int(b, 16), int(e, 16), int(n, 16)).to_bytes(len(n) // 2, "big").hex() for b, e, n in cases]
    assert out == want


def test_sha512_of_parts_is_the_sha512_of_their_concatenation():
    parts = [os.urandom(n) for n in (0, 1, 127, 128, 129, 977)]
    out = custom("parts = [bytes.fromhex(p) for p in %r]\nprint(srpmath.sha512(*parts).hex())\n"
                 "print(srpmath.sha512().hex())\nprint(srpmath.sha512(bytearray(b'abc'), memoryview(b'de')).hex())\n"
                 % ([p.hex() for p in parts],)).split()
    assert out == [hashlib.sha512(b"".join(parts)).hexdigest(), hashlib.sha512(b"").hexdigest(),
                   hashlib.sha512(b"abcde").hexdigest()]


@pytest.mark.parametrize("call,error", [
    ("srpmath.pow_mod(b'\\x05', b'\\x03', b'\\x10')", "ValueError"),          # even modulus
    ("srpmath.pow_mod(b'\\x05', b'\\x03', b'')", "ValueError"),               # no modulus
    ("srpmath.pow_mod(b'\\x05', b'\\x03', b'\\xff' * 513)", "ValueError"),    # over 4096 bits
    ("srpmath.pow_mod(5, b'\\x03', b'\\x17')", "TypeError"),                  # not bytes-like
    ("srpmath.sha512(b'a', 5)", "TypeError"),
])
def test_bad_input_is_a_clear_error(call, error):
    out = custom("try:\n    %s\n    print('no error')\nexcept Exception as e:\n    print(type(e).__name__, e)\n" % call)
    assert out.split()[0] == error, out


def test_srp6a_uses_it_in_the_custom_build_and_python_elsewhere():
    code = "import srp6a\nprint(srp6a.srpmath is not None, srp6a.verifier('wifiprov', 'abcd1234', b'\\x01' * 16).hex())\n"
    custom_out = run_mpy(code, path=("lib",), micropython=chip_binary(roost=True)).split()
    stock_out = run_mpy(code, path=("lib",)).split()
    assert custom_out[0] == "True" and stock_out[0] == "False"
    assert custom_out[1] == stock_out[1]
