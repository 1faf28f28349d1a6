"""The sealed registration answer, host side (docs/registration.md, "The sealed answer"): pure
functions that the registration service and the tests share.

A registration key `HQ481047-1JWORF43` has a lookup half (`HQ481047`, sent in the request) and a
secret half (`1JWORF43`, never sent). A request carrying a nonce gets

    v=1
    kdf=pbkdf2-sha256
    iter=20000
    iv=<12 bytes, hex>
    sealed=<hex: AES-256-GCM ciphertext || 16-byte tag>

    DK   = PBKDF2-HMAC-SHA256(secret half, "roost-midpoint-v1|<serial>|<lookup half>", iter, 32)
    AAD  = "roost-midpoint-v1|<serial>|<nonce hex, lower case>|<iter>"
    text = "channel=<id>\\nwriteKey=<key>\\n"        (the original midPoint answer)

    body = seal(answer_text(142770, "C0FPQ9W3ET7A4S2S"), "HQ481047-1JWORF43", serial, nonce_hex)
    open_sealed(body, "HQ481047-1JWORF43", serial, nonce_hex)   # -> the text, or ValueError

Known answers: tests/vectors/midpoint_seal.json.
"""
import binascii
import hashlib
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CONTEXT = "roost-midpoint-v1"
VERSION = "1"
KDF = "pbkdf2-sha256"
DEFAULT_ITERATIONS = 20000
MIN_ITERATIONS, MAX_ITERATIONS = 10000, 200000     # what the device accepts
IV_BYTES, TAG_BYTES, KEY_BYTES = 12, 16, 32
KEY_RE = re.compile(r"^[A-Z0-9]{8}-[A-Z0-9]{8}$")
NONCE_RE = re.compile(r"^[0-9A-Fa-f]{32}$")
LINES = ("v", "kdf", "iter", "iv", "sealed")


def split_key(key_text):
    """(lookup half, secret half) of a registration key; ValueError if it is not XXXXXXXX-XXXXXXXX."""
    if not isinstance(key_text, str) or not KEY_RE.match(key_text):
        raise ValueError("a registration key is 8 of [A-Z0-9], '-', 8 of [A-Z0-9]")
    return key_text[:8], key_text[9:]


def salt(serial, lookup_half):
    return ("%s|%s|%s" % (CONTEXT, serial, lookup_half)).encode()


def aad(serial, nonce_hex, iterations):
    return ("%s|%s|%s|%d" % (CONTEXT, serial, nonce_hex.lower(), iterations)).encode()


def derive_key(secret_half, serial, lookup_half, iterations):
    """DK: 32 bytes. The slow part; the server caches it per (organisation, serial, iter)."""
    return hashlib.pbkdf2_hmac("sha256", secret_half.encode(), salt(serial, lookup_half), iterations, KEY_BYTES)


def answer_text(channel, write_key):
    """The original midPoint answer (cloud-contracts.md 2.3), which is also the sealed plaintext."""
    return "channel=%s\nwriteKey=%s\n" % (channel, write_key)


def parse_answer(text):
    """{"channel": int, "write_key": str} from answer_text(); ValueError if it is not one."""
    fields = dict(line.split("=", 1) for line in text.split("\n") if "=" in line)
    channel, write_key = fields.get("channel", ""), fields.get("writeKey", "")
    if not re.fullmatch(r"[0-9]{1,20}", channel) or not re.fullmatch(r"[A-Za-z0-9]{1,64}", write_key):
        raise ValueError("not a registration answer: %r" % text[:80])
    return {"channel": int(channel), "write_key": write_key}


def seal_with(dk, plaintext, serial, nonce_hex, iterations, iv=None):
    """The five-line body under an already derived key (see seal)."""
    iv = os.urandom(IV_BYTES) if iv is None else bytes(iv)
    if len(iv) != IV_BYTES:
        raise ValueError("the IV is %d bytes" % IV_BYTES)
    sealed = AESGCM(dk).encrypt(iv, plaintext, aad(serial, nonce_hex, iterations))
    return "v=%s\nkdf=%s\niter=%d\niv=%s\nsealed=%s\n" % (VERSION, KDF, iterations, iv.hex(), sealed.hex())


def seal(plaintext, key_text, serial, nonce_hex, iterations=DEFAULT_ITERATIONS, iv=None):
    """The sealed answer (text) for `plaintext` (bytes) to the device `serial` that sent `nonce_hex`.
    iv: 12 bytes for known answers; a fresh random one by default (always, on a server)."""
    lookup, secret = split_key(key_text)
    if not NONCE_RE.match(nonce_hex):
        raise ValueError("the nonce is 32 hex digits")
    return seal_with(derive_key(secret, serial, lookup, iterations), plaintext, serial, nonce_hex, iterations, iv)


def _parse(body):
    text = body.decode() if isinstance(body, (bytes, bytearray)) else body
    lines = text.split("\n")
    if lines[-1] != "" or len(lines) != len(LINES) + 1:
        raise ValueError("a sealed answer is %d lines, each ending in a newline" % len(LINES))
    fields = {}
    for name, line in zip(LINES, lines):
        key, sep, value = line.partition("=")
        if key != name or not sep:
            raise ValueError("line %r where %s=... belongs" % (line[:40], name))
        fields[name] = value
    if fields["v"] != VERSION or fields["kdf"] != KDF:
        raise ValueError("unknown sealed answer version (v=%s, kdf=%s)" % (fields["v"], fields["kdf"]))
    if not fields["iter"].isdigit() or not MIN_ITERATIONS <= int(fields["iter"]) <= MAX_ITERATIONS:
        raise ValueError("iter=%s is outside %d..%d" % (fields["iter"], MIN_ITERATIONS, MAX_ITERATIONS))
    try:
        iv, sealed = binascii.unhexlify(fields["iv"]), binascii.unhexlify(fields["sealed"])
    except (binascii.Error, ValueError):
        raise ValueError("iv or sealed is not hex") from None
    if len(iv) != IV_BYTES or len(sealed) < TAG_BYTES:
        raise ValueError("iv must be %d bytes and sealed at least the %d-byte tag" % (IV_BYTES, TAG_BYTES))
    return int(fields["iter"]), iv, sealed


def open_sealed(body, key_text, serial, nonce_hex):
    """The plaintext (bytes) of a sealed answer, as the device checks it. ValueError if the body is
    malformed, or does not authenticate (wrong secret half, serial or nonce, any change in transit)."""
    lookup, secret = split_key(key_text)
    iterations, iv, sealed = _parse(body)
    try:
        return AESGCM(derive_key(secret, serial, lookup, iterations)).decrypt(
            iv, sealed, aad(serial, nonce_hex, iterations))
    except InvalidTag:
        raise ValueError("answer failed authentication (wrong registration key, serial or nonce, "
                         "tampered or replayed)") from None
