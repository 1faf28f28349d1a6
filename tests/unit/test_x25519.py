"""lib/x25519.py: RFC 7748 known answers, Security 1 vector, cross-check with `cryptography`, and MicroPython."""
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.mpy import run_mpy
from x25519 import public_key, x25519

h = bytes.fromhex

# RFC 7748 section 5.2
RFC_5_2 = [
    ("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
     "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
     "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"),
    ("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
     "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
     "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"),
]
ITER_1 = "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"
ITER_1000 = "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"

# RFC 7748 section 6.1
ALICE_PRIV = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
ALICE_PUB = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
BOB_PRIV = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"
BOB_PUB = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
SHARED = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"

P = 2**255 - 19
# u-coordinates of small-order points (and non-canonical encodings of them): the output is all zero.
LOW_ORDER = [
    0, 1, P - 1, P, P + 1,
    int.from_bytes(h("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"), "little"),
    int.from_bytes(h("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"), "little"),
]


def le(n):
    return n.to_bytes(32, "little")


@pytest.mark.parametrize("k,u,out", RFC_5_2)
def test_rfc7748_5_2(k, u, out):
    assert x25519(h(k), h(u)).hex() == out


def test_rfc7748_5_2_iterated():
    k = u = le(9)
    for i in range(1000):
        k, u = x25519(k, u), k
        if i == 0:
            assert k.hex() == ITER_1
    assert k.hex() == ITER_1000


def test_rfc7748_6_1():
    assert public_key(h(ALICE_PRIV)).hex() == ALICE_PUB
    assert public_key(h(BOB_PRIV)).hex() == BOB_PUB
    assert x25519(h(ALICE_PRIV), h(BOB_PUB)).hex() == SHARED
    assert x25519(h(BOB_PRIV), h(ALICE_PUB)).hex() == SHARED


def test_sec1_vector(vector):
    v = vector("esp_prov_sec1.json")
    dev = h(v["inputs"]["device_private"])
    cli = h(v["inputs"]["client_private"])
    d = v["derived"]
    assert public_key(dev).hex() == d["device_pubkey"]
    assert public_key(cli).hex() == d["client_pubkey"]
    assert x25519(dev, h(d["client_pubkey"])).hex() == d["x25519_shared"]
    assert x25519(cli, h(d["device_pubkey"])).hex() == d["x25519_shared"]
    pop = hashlib.sha256(v["inputs"]["pop"].encode()).digest()
    assert pop.hex() == d["sha256_pop"]
    key = bytes(a ^ b for a, b in zip(h(d["x25519_shared"]), pop))
    assert key.hex() == d["aes256_key"]


@pytest.mark.parametrize("u", LOW_ORDER)
def test_zero_shared_secret_rejected(u):
    with pytest.raises(ValueError):
        x25519(h(ALICE_PRIV), le(u % 2**256))


def test_noncanonical_and_top_bit():
    k = h(ALICE_PRIV)
    bob = int.from_bytes(h(BOB_PUB), "little")
    assert x25519(k, le(bob | (1 << 255))).hex() == SHARED  # top bit ignored
    assert x25519(k, le(9 + P)) == public_key(k)  # u >= p works modulo p


@pytest.mark.parametrize("k,u", [(bytes(31), bytes(32)), (bytes(32), bytes(33)), (b"", b"")])
def test_bad_lengths(k, u):
    with pytest.raises(ValueError):
        x25519(k, u)


def test_clamping_ignores_low_bits_and_bit_255():
    k = bytearray(h(ALICE_PRIV))
    k2 = bytearray(k)
    k2[0] ^= 7
    k2[31] ^= 0x80
    assert public_key(bytes(k2)) == public_key(bytes(k))


def _ref(k, u):
    return X25519PrivateKey.from_private_bytes(k).exchange(X25519PublicKey.from_public_bytes(u))


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_against_cryptography(k, u):
    try:
        want = _ref(k, u)
    except ValueError:  # cryptography also refuses an all-zero result
        with pytest.raises(ValueError):
            x25519(k, u)
        return
    assert x25519(k, u) == want


@settings(max_examples=30, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_public_key_against_cryptography(k):
    want = X25519PrivateKey.from_private_bytes(k).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert public_key(k) == want


def test_micropython(vector):
    v = vector("esp_prov_sec1.json")
    d = v["derived"]
    args = dict(k1=RFC_5_2[0][0], u1=RFC_5_2[0][1], k2=RFC_5_2[1][0], u2=RFC_5_2[1][1],
                alice=ALICE_PRIV, bob_pub=BOB_PUB, dev=v["inputs"]["device_private"],
                cli=v["inputs"]["client_private"], pop=v["inputs"]["pop"].encode())
    out = run_mpy("""
import binascii, hashlib
from x25519 import x25519, public_key
h = binascii.unhexlify
x = lambda b: binascii.hexlify(b).decode()
print(x(x25519(h(%(k1)r), h(%(u1)r))))
print(x(x25519(h(%(k2)r), h(%(u2)r))))
print(x(public_key(h(%(alice)r))), x(x25519(h(%(alice)r), h(%(bob_pub)r))))
dev, cli = h(%(dev)r), h(%(cli)r)
print(x(public_key(dev)), x(public_key(cli)))
s1, s2 = x25519(dev, public_key(cli)), x25519(cli, public_key(dev))
pop = hashlib.sha256(%(pop)r).digest()
print(x(s1), s1 == s2, x(bytes(a ^ b for a, b in zip(s1, pop))))
k = u = b"\\x09" + bytes(31)
k, u = x25519(k, u), k
print(x(k))
try:
    x25519(dev, bytes(32))
    print("accepted zero")
except ValueError:
    print("rejected zero")
""" % args).split("\n")
    assert out[0] == RFC_5_2[0][2]
    assert out[1] == RFC_5_2[1][2]
    assert out[2] == ALICE_PUB + " " + SHARED
    assert out[3] == d["device_pubkey"] + " " + d["client_pubkey"]
    assert out[4] == d["x25519_shared"] + " True " + d["aes256_key"]
    assert out[5] == ITER_1
    assert out[6] == "rejected zero"
