"""lib/aes.py: CTR (Security 1), GCM (Security 2), CFB128 (Mainflux bootstrap).

Known answers from the vectors, property tests against the `cryptography` package (CPython, with the
fake cryptolib installed by tests/unit/conftest.py), and the same vectors under the MicroPython unix
port with the real cryptolib.
"""
import json
import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

try:    # cryptography 47+ keeps CFB with the "decrepit" ciphers
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:
    CFB = modes.CFB
from hypothesis import given, settings
from hypothesis import strategies as st

import aes
from tests.mpy import run_mpy

h = bytes.fromhex
keys = st.sampled_from([16, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
block = st.binary(min_size=16, max_size=16)
# messages around the 256-byte keystream chunk and block boundaries
messages = st.binary(max_size=700)


def ref_ctr(key, ctr_block, data):
    e = Cipher(algorithms.AES(key), modes.CTR(ctr_block)).encryptor()
    return e.update(data) + e.finalize()


def ref_cfb(key, iv, data, decrypt=False):
    c = Cipher(algorithms.AES(key), CFB(iv))
    e = c.decryptor() if decrypt else c.encryptor()
    return e.update(data) + e.finalize()


# ---------------------------------------------------------------- CTR / Security 1

def test_sec1_keystream_chain(vector):
    """One CTR object for the whole session: verify data, then request at offset 64, response at 87."""
    v = vector("esp_prov_sec1.json")
    d, dp = v["derived"], v["data_phase"]
    ctr = aes.CTR(h(d["aes256_key"]), h(d["ctr_initial_counter_block"]))
    assert ctr.crypt(h(d["device_pubkey"])).hex() == d["client_verify_data"]
    assert ctr.crypt(h(d["client_pubkey"])).hex() == d["device_verify_data"]
    assert dp["request_keystream_offset"] == 64
    assert ctr.crypt(h(dp["request_plain"])).hex() == dp["request_encrypted"]
    assert dp["response_keystream_offset"] == 64 + len(h(dp["request_plain"]))
    assert ctr.crypt(h(dp["response_plain"])).hex() == dp["response_encrypted"]


def test_sec1_device_side_decrypts(vector):
    """The device's view: decrypt client_verify_data, encrypt device_verify_data, decrypt, encrypt."""
    v = vector("esp_prov_sec1.json")
    d, dp = v["derived"], v["data_phase"]
    ctr = aes.CTR(h(d["aes256_key"]), h(d["ctr_initial_counter_block"]))
    assert ctr.crypt(h(d["client_verify_data"])).hex() == d["device_pubkey"]
    assert ctr.crypt(h(d["client_pubkey"])).hex() == d["device_verify_data"]
    assert ctr.crypt(h(dp["request_encrypted"])).hex() == dp["request_plain"]
    assert ctr.crypt(h(dp["response_plain"])).hex() == dp["response_encrypted"]


def test_ctr_accepts_bytearray_memoryview_and_empty():
    key, cb = bytes(range(32)), bytes(16)
    want = ref_ctr(key, cb, bytes(40))
    ctr = aes.CTR(key, bytearray(cb))
    assert ctr.crypt(b"") == b""
    assert ctr.crypt(bytearray(10)) + ctr.crypt(memoryview(bytes(30))) == want


def test_ctr_counter_wraps_at_128_bits():
    key = bytes(range(32))
    cb = h("ff" * 15 + "f0")  # wraps to zero after 16 blocks, inside the first keystream chunk
    data = os.urandom(1000)
    assert aes.CTR(key, cb).crypt(data) == ref_ctr(key, cb, data)
    cb = h("ff" * 16)
    assert aes.CTR(key, cb).crypt(data) == ref_ctr(key, cb, data)


def test_ctr_counter_is_128_bit_not_64():
    key = bytes(32)
    cb = h("00" * 8 + "ff" * 8)  # the carry must go into byte 7
    data = bytes(64)
    assert aes.CTR(key, cb).crypt(data) == ref_ctr(key, cb, data)


def test_ctr_bad_counter_block():
    with pytest.raises(ValueError):
        aes.CTR(bytes(32), bytes(15))


@settings(max_examples=150, deadline=None)
@given(keys, block, messages, st.lists(st.integers(min_value=0, max_value=300), max_size=12))
def test_ctr_chunked_equals_one_shot(key, cb, data, cuts):
    want = ref_ctr(key, cb, data)
    ctr = aes.CTR(key, cb)
    out, i = [], 0
    for c in cuts:
        out.append(ctr.crypt(data[i:i + c]))
        i += c
    out.append(ctr.crypt(data[i:]))
    assert b"".join(out) == want


# ---------------------------------------------------------------- GCM / Security 2

def test_sec2_gcm_vector(vector):
    v = vector("esp_prov_sec2.json")
    dp = v["data_phase"]
    key = h(v["derived"]["K"])[:32]
    assert key.hex() == v["derived"]["aes_gcm_key"]
    assert dp["request_nonce"] == dp["device_nonce"]  # counter 1
    g = aes.GCM(key)
    # client side: encrypt request with counter 1; device side: decrypt it
    assert g.encrypt(h(dp["request_nonce"]), h(dp["request_plain"])).hex() == dp["request_encrypted"]
    assert g.decrypt(h(dp["request_nonce"]), h(dp["request_encrypted"])).hex() == dp["request_plain"]
    # device answers with counter 2
    assert dp["response_nonce"][-8:] == "00000002"
    assert g.encrypt(h(dp["response_nonce"]), h(dp["response_plain"])).hex() == dp["response_encrypted"]
    assert g.decrypt(h(dp["response_nonce"]), h(dp["response_encrypted"])).hex() == dp["response_plain"]


def test_gcm_mcgrew_viega_test_cases():
    # GCM spec (McGrew & Viega) test cases 1 and 2: zero key, zero IV
    g = aes.GCM(bytes(16))
    assert g.encrypt(bytes(12), b"").hex() == "58e2fccefa7e3061367f1d57a4e7455a"
    assert g.encrypt(bytes(12), bytes(16)).hex() == (
        "0388dace60b6a392f328c2b971b2fe78" "ab6e47d42cec13bdf53a67b21257bddf")


def test_gcm_rejects_tampering(vector):
    v = vector("esp_prov_sec2.json")
    dp = v["data_phase"]
    g = aes.GCM(h(v["derived"]["aes_gcm_key"]))
    good = h(dp["request_encrypted"])
    for i in (0, len(good) - 17, len(good) - 16, len(good) - 1):
        bad = bytearray(good)
        bad[i] ^= 1
        with pytest.raises(ValueError, match="GCM tag mismatch"):
            g.decrypt(h(dp["request_nonce"]), bytes(bad))
    with pytest.raises(ValueError, match="GCM tag mismatch"):  # wrong nonce counter
        g.decrypt(h(dp["response_nonce"]), good)
    with pytest.raises(ValueError, match="GCM tag mismatch"):  # AAD not used by Security 2
        g.decrypt(h(dp["request_nonce"]), good, b"x")
    with pytest.raises(ValueError):
        g.decrypt(h(dp["request_nonce"]), good[:15])


def test_gcm_bad_nonce_length():
    g = aes.GCM(bytes(32))
    for n in (0, 8, 11, 13, 16):
        with pytest.raises(ValueError):
            g.encrypt(bytes(n), b"abc")


@settings(max_examples=150, deadline=None)
@given(keys, st.binary(min_size=12, max_size=12), messages, st.binary(max_size=80))
def test_gcm_against_cryptography(key, nonce, data, aad):
    want = AESGCM(key).encrypt(nonce, data, aad or None)
    g = aes.GCM(key)
    assert g.encrypt(nonce, data, aad) == want
    assert g.decrypt(nonce, want, aad) == data
    assert g.decrypt(nonce, bytearray(want), aad) == data


@settings(max_examples=50, deadline=None)
@given(keys, st.binary(min_size=12, max_size=12), st.binary(min_size=16, max_size=200), st.data())
def test_gcm_any_flipped_bit_fails(key, nonce, sealed, data):
    g = aes.GCM(key)
    sealed = g.encrypt(nonce, sealed)
    bit = data.draw(st.integers(min_value=0, max_value=8 * len(sealed) - 1))
    bad = bytearray(sealed)
    bad[bit >> 3] ^= 1 << (bit & 7)
    with pytest.raises(ValueError):
        g.decrypt(nonce, bytes(bad))


# ---------------------------------------------------------------- CFB128 / Mainflux

def test_mainflux_cfb_vectors(vector):
    for v in vector("mainflux_cfb.json")["vectors"]:
        key = v["key_ascii"].encode() if "key_ascii" in v else h(v["key"])
        assert key.hex() == v["key"]
        iv, pt, ct = h(v["iv"]), h(v["plaintext"]), h(v["ciphertext"])
        if "plaintext_ascii" in v:
            assert pt == v["plaintext_ascii"].encode()
        assert aes.cfb128_encrypt(key, iv, pt) == ct, v["name"]
        assert aes.cfb128_decrypt(key, iv, ct) == pt, v["name"]
        if "first_block_plaintext" in v:
            assert aes.cfb128_encrypt(key, iv, h(v["first_block_plaintext"])).hex() == v["first_block_ciphertext"]
        if "cfb8_ciphertext_must_not_match" in v:
            assert ct[:2] != h(v["cfb8_ciphertext_must_not_match"])[:2]
        if "header_hex" in v:
            assert (iv + ct).hex() == v["header_hex"]
            assert "Thing " + (iv + ct).hex() == v["authorization_header"]
        if "wire_body" in v:
            assert iv + ct == h(v["wire_body"])


def test_cfb_empty_and_bad_iv():
    assert aes.cfb128_encrypt(bytes(16), bytes(16), b"") == b""
    assert aes.cfb128_decrypt(bytes(16), bytes(16), b"") == b""
    with pytest.raises(ValueError):
        aes.cfb128_encrypt(bytes(16), bytes(15), b"abc")
    with pytest.raises(ValueError):
        aes.cfb128_decrypt(bytes(16), bytes(17), b"abc")


@settings(max_examples=150, deadline=None)
@given(keys, block, messages)
def test_cfb_against_cryptography(key, iv, data):
    ct = ref_cfb(key, iv, data)
    assert aes.cfb128_encrypt(key, iv, data) == ct
    assert aes.cfb128_decrypt(key, iv, ct) == data
    assert aes.cfb128_decrypt(key, iv, memoryview(bytearray(ct))) == data


# ---------------------------------------------------------------- the fake cryptolib itself

def test_fake_cryptolib_matches_micropython():
    """The fake must behave like the real module for the calls lib/aes.py makes."""
    import cryptolib
    key32, key16, iv = bytes(range(32)), bytes(range(16)), bytes(range(100, 116))
    data = bytes(range(64))
    out = run_mpy("""
import cryptolib, binascii
x = lambda b: binascii.hexlify(b).decode()
print(x(cryptolib.aes(%r, 1).encrypt(%r)))
print(x(cryptolib.aes(%r, 1).encrypt(%r)))
c = cryptolib.aes(%r, 2, %r)
print(x(c.encrypt(%r[:16])) + x(c.encrypt(%r[16:])))
buf = bytearray(16)
r = cryptolib.aes(%r, 1).encrypt(%r[:16], buf)
print(r is buf, x(buf))
for bad in ((%r[:24], 1), (%r, 6)):
    try:
        cryptolib.aes(bad[0], bad[1], %r)
        print("ok")
    except ValueError:
        print("ValueError")
try:
    cryptolib.aes(%r, 1).encrypt(bytes(15))
    print("ok")
except ValueError:
    print("ValueError")
""" % (key32, data, key16, data, key32, iv, data, data, key32, data, key32, key32, iv, key32)).split("\n")
    fake = [
        cryptolib.aes(key32, 1).encrypt(data).hex(),
        cryptolib.aes(key16, 1).encrypt(data).hex(),
    ]
    c = cryptolib.aes(key32, 2, iv)
    fake.append(c.encrypt(data[:16]).hex() + c.encrypt(data[16:]).hex())
    buf = bytearray(16)
    r = cryptolib.aes(key32, 1).encrypt(data[:16], buf)
    fake.append("%s %s" % (r is buf, buf.hex()))
    for bad in ((key32[:24], 1), (key32, 6)):
        with pytest.raises(ValueError):
            cryptolib.aes(bad[0], bad[1], iv)
        fake.append("ValueError")
    with pytest.raises(ValueError):
        cryptolib.aes(key32, 1).encrypt(bytes(15))
    fake.append("ValueError")
    assert out[:len(fake)] == fake


# ---------------------------------------------------------------- MicroPython unix port

MPY_PRELUDE = """
import aes, binascii, json
h = binascii.unhexlify
x = lambda b: binascii.hexlify(b).decode()
"""


def test_micropython_sec1_chain(vector):
    v = vector("esp_prov_sec1.json")
    d, dp = v["derived"], v["data_phase"]
    out = run_mpy(MPY_PRELUDE + """
c = aes.CTR(h(%r), h(%r))
print(x(c.crypt(h(%r))))
print(x(c.crypt(h(%r))))
print(x(c.crypt(h(%r))))
print(x(c.crypt(h(%r))))
""" % (d["aes256_key"], d["ctr_initial_counter_block"], d["device_pubkey"], d["client_pubkey"],
       dp["request_plain"], dp["response_plain"])).split()
    assert out == [d["client_verify_data"], d["device_verify_data"], dp["request_encrypted"],
                   dp["response_encrypted"]]


def test_micropython_gcm_vector(vector):
    v = vector("esp_prov_sec2.json")
    dp = v["data_phase"]
    out = run_mpy(MPY_PRELUDE + """
g = aes.GCM(h(%r))
print(x(g.encrypt(h(%r), h(%r))))
print(x(g.decrypt(h(%r), h(%r))))
print(x(g.encrypt(h(%r), h(%r))))
try:
    g.decrypt(h(%r), h(%r))
    print("accepted")
except ValueError as e:
    print(str(e).replace(" ", "_"))
""" % (v["derived"]["aes_gcm_key"], dp["request_nonce"], dp["request_plain"],
       dp["request_nonce"], dp["request_encrypted"], dp["response_nonce"], dp["response_plain"],
       dp["response_nonce"], dp["request_encrypted"])).split()
    assert out == [dp["request_encrypted"], dp["request_plain"], dp["response_encrypted"],
                   "GCM_tag_mismatch"]


def test_micropython_cfb_vectors(vector):
    vs = vector("mainflux_cfb.json")["vectors"]
    out = run_mpy(MPY_PRELUDE + """
for v in json.loads(%r):
    key, iv, pt = h(v["key"]), h(v["iv"]), h(v["plaintext"])
    ct = aes.cfb128_encrypt(key, iv, pt)
    print(x(ct), aes.cfb128_decrypt(key, iv, ct) == pt)
""" % json.dumps(vs)).split("\n")
    assert out[:len(vs)] == ["%s True" % v["ciphertext"] for v in vs]


def test_micropython_random_against_cryptography():
    """Random keys, lengths and chunkings: MicroPython (real cryptolib) against `cryptography`."""
    rnd = os.urandom
    cases = []
    for n in (0, 1, 15, 16, 17, 31, 64, 255, 256, 257, 600):
        key = rnd(32 if n % 2 else 16)
        iv, nonce, aad = rnd(16), rnd(12), rnd(n % 20)
        data = rnd(n)
        cuts = [n // 3, n // 5 + 1]
        cases.append({
            "key": key.hex(), "iv": iv.hex(), "nonce": nonce.hex(), "aad": aad.hex(),
            "data": data.hex(), "cuts": cuts,
            "ctr": ref_ctr(key, iv, data).hex(),
            "gcm": AESGCM(key).encrypt(nonce, data, aad or None).hex(),
            "cfb": ref_cfb(key, iv, data).hex(),
        })
    out = run_mpy(MPY_PRELUDE + """
for c in json.loads(%r):
    key, iv, data = h(c["key"]), h(c["iv"]), h(c["data"])
    ctr = aes.CTR(key, iv)
    a, b = c["cuts"]
    parts = ctr.crypt(data[:a]) + ctr.crypt(data[a:a + b]) + ctr.crypt(data[a + b:])
    sealed = aes.GCM(key).encrypt(h(c["nonce"]), data, h(c["aad"]))
    ok = (x(parts) == c["ctr"], x(sealed) == c["gcm"],
          aes.GCM(key).decrypt(h(c["nonce"]), sealed, h(c["aad"])) == data,
          x(aes.cfb128_encrypt(key, iv, data)) == c["cfb"],
          aes.cfb128_decrypt(key, iv, h(c["cfb"])) == data)
    print(len(data), all(ok), ok)
""" % json.dumps(cases)).strip().split("\n")
    assert len(out) == len(cases)
    for line in out:
        assert " True " in line, line
