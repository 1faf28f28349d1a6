"""The sealed registration answer (docs/registration.md): tests/vectors/midpoint_seal.json checked
by an independent computation (hashlib + AESGCM, not tools/cloud/seal.py), then seal.py against
the vectors, and open_sealed refusing every change."""
import hashlib
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tools.cloud import seal

KEY, SERIAL, NONCE = "HQ481047-1JWORF43", "74743827342", "000102030405060708090a0b0c0d0e0f"
PLAIN = b"channel=142770\nwriteKey=C0FPQ9W3ET7A4S2S\n"


@pytest.fixture(scope="module")
def vectors(vector):
    return vector("midpoint_seal.json")


def test_vectors_by_an_independent_computation(vectors):
    assert [v["iterations"] for v in vectors["vectors"]] == [20000, 10000]
    for v in vectors["vectors"]:
        key = v["registration_key"]
        assert (v["lookup_half"], v["secret_half"]) == (key[:8], key[9:]) and key[8] == "-"
        assert v["salt"] == "roost-midpoint-v1|" + v["serial"] + "|" + key[:8]
        assert v["aad"] == "roost-midpoint-v1|%s|%s|%d" % (v["serial"], v["nonce_hex"].lower(), v["iterations"])
        dk = hashlib.pbkdf2_hmac("sha256", key[9:].encode("ascii"), v["salt"].encode("ascii"), v["iterations"], 32)
        assert dk.hex() == v["derived_key"]
        assert bytes.fromhex(v["plaintext_hex"]) == v["plaintext"].encode() == PLAIN
        sealed = AESGCM(dk).encrypt(bytes.fromhex(v["iv"]), PLAIN, v["aad"].encode("ascii"))
        assert sealed.hex() == v["ciphertext"] + v["tag"] and len(v["tag"]) == 32
        assert v["body"] == "v=1\nkdf=pbkdf2-sha256\niter=%d\niv=%s\nsealed=%s\n" % (
            v["iterations"], v["iv"], sealed.hex())


def test_seal_and_open_reproduce_the_vectors(vectors):
    for v in vectors["vectors"]:
        key, serial, nonce, n = v["registration_key"], v["serial"], v["nonce_hex"], v["iterations"]
        assert seal.derive_key(key[9:], serial, key[:8], n).hex() == v["derived_key"]
        assert seal.salt(serial, key[:8]).decode() == v["salt"] and seal.aad(serial, nonce, n).decode() == v["aad"]
        assert seal.seal(PLAIN, key, serial, nonce, n, iv=bytes.fromhex(v["iv"])) == v["body"]
        assert seal.seal(PLAIN, key, serial, nonce.upper(), n, iv=bytes.fromhex(v["iv"])) == v["body"]
        assert seal.open_sealed(v["body"], key, serial, nonce) == PLAIN
        assert seal.open_sealed(v["body"].encode(), key, serial, nonce.upper()) == PLAIN
    assert seal.parse_answer(PLAIN.decode()) == {"channel": 142770, "write_key": "C0FPQ9W3ET7A4S2S"}
    assert seal.answer_text(142770, "C0FPQ9W3ET7A4S2S") == PLAIN.decode()


def test_every_must_fail_case_fails(vectors):
    assert len(vectors["must_fail"]) >= 7
    for case in vectors["must_fail"]:
        with pytest.raises(ValueError, match="failed authentication"):
            seal.open_sealed(case["body"], case["registration_key"], case["serial"], case["nonce_hex"])


def _change(body, name, fn):
    lines = body.split("\n")
    i = [line.split("=")[0] for line in lines].index(name)
    lines[i] = name + "=" + fn(lines[i].split("=", 1)[1])
    return "\n".join(lines)


def _flip(hex_text, at):
    return hex_text[:at] + "%x" % (int(hex_text[at], 16) ^ 1) + hex_text[at + 1:]


def test_open_sealed_refuses_tampering_replay_and_wrong_keys():
    body = seal.seal(PLAIN, KEY, SERIAL, NONCE, iterations=10000)
    assert body != seal.seal(PLAIN, KEY, SERIAL, NONCE, iterations=10000)       # a fresh IV every time
    assert seal.open_sealed(body, KEY, SERIAL, NONCE) == PLAIN
    refused = [
        _change(body, "iv", lambda h: _flip(h, 0)),                    # IV
        _change(body, "sealed", lambda h: _flip(h, 0)),                # ciphertext
        _change(body, "sealed", lambda h: _flip(h, len(h) - 1)),       # tag
        _change(body, "iter", lambda n: "10001"),                      # iter is in the AAD and the KDF
    ]
    for bad in refused:
        with pytest.raises(ValueError, match="failed authentication"):
            seal.open_sealed(bad, KEY, SERIAL, NONCE)
    for key, serial, nonce in ((KEY, SERIAL, os.urandom(16).hex()),     # replayed to a new request
                               ("HQ481047-1JWORF44", SERIAL, NONCE),     # wrong secret half
                               ("HQ481048-1JWORF43", SERIAL, NONCE),     # wrong lookup half (salt)
                               (KEY, "74743827343", NONCE)):             # another device
        with pytest.raises(ValueError, match="failed authentication"):
            seal.open_sealed(body, key, serial, nonce)


@pytest.mark.parametrize("mangle, why", [
    (lambda b: b.replace("v=1", "v=2"), "version"),
    (lambda b: b.replace("kdf=pbkdf2-sha256", "kdf=scrypt"), "version"),
    (lambda b: _change(b, "iter", lambda n: "9999"), "outside"),
    (lambda b: _change(b, "iter", lambda n: "200001"), "outside"),
    (lambda b: _change(b, "iv", lambda h: h[:-2]), "iv must be"),
    (lambda b: _change(b, "sealed", lambda h: h[:30]), "iv must be"),
    (lambda b: _change(b, "sealed", lambda h: h + "zz"), "not hex"),
    (lambda b: b[:-1], "newline"),
    (lambda b: b + "extra=1\n", "lines"),
    (lambda b: "\n".join(reversed(b.split("\n")[:-1])) + "\n", "belongs"),
])
def test_open_sealed_refuses_malformed_bodies(mangle, why):
    body = seal.seal(PLAIN, KEY, SERIAL, NONCE, iterations=10000)
    with pytest.raises(ValueError, match=why):
        seal.open_sealed(mangle(body), KEY, SERIAL, NONCE)


def test_bad_inputs():
    for key in ("HQ481047_1JWORF43", "hq481047-1jworf43", "HQ481047-1JWORF4", ""):
        with pytest.raises(ValueError, match="registration key"):
            seal.seal(PLAIN, key, SERIAL, NONCE)
    with pytest.raises(ValueError, match="nonce"):
        seal.seal(PLAIN, KEY, SERIAL, NONCE[:-1])
    with pytest.raises(ValueError, match="IV"):
        seal.seal(PLAIN, KEY, SERIAL, NONCE, iv=b"short")
    for text in ("channel=x\nwriteKey=K\n", "channel=1\n", "nothing"):
        with pytest.raises(ValueError):
            seal.parse_answer(text)
