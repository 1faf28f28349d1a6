# One midPoint-style registration exchange with the key a person typed at the console, and
# the sealed answer this project defines (docs/registration.md):
#
#   GET <registration>/<serial>?key=<lookup half>&nonce=<fresh 16 bytes, hex>
#     -> sealed: AES-256-GCM under PBKDF2-HMAC-SHA256(secret half), bound to serial and nonce
#     -> "channel=<id>\nwriteKey=<key>\n" inside; stored as the `registration` record.
#
# Loaded for an attempt and unloaded after it (firmware/cloud/registration.py owns the
# retries). A bad answer never changes what is stored.
import os
from binascii import hexlify, unhexlify

from micropython import const

import log
from aes import GCM            # loaded with this module, before the exchange fragments the heap
from httpc import request
from pbkdf2 import pbkdf2_sha256

_TIMEOUT_S = const(10)
_MAX_BODY = const(1024)
_ITER_MIN = const(10000)
_ITER_MAX = const(200000)
_CONTEXT = "roost-midpoint-v1|"
# Answers that a retry soon will not change (a person must act in the cloud first).
SLOW = {404: "server does not know this registration key",
         409: "serial belongs to another organisation",
         500: "server error (an ambiguous registration key?)"}


class RegistrationError(Exception):
    """Registration failed; .status is the HTTP status, or 0 if there was no usable answer."""

    def __init__(self, msg, status=0):
        super().__init__(msg)
        self.status = status


def _fields(text):
    out = {}
    for line in text.split("\n"):
        k, sep, v = line.strip().partition("=")
        if sep:
            out[k] = v
    return out


def _derive(key, serial, iterations):
    salt = _CONTEXT + serial + "|" + key[:8]
    return pbkdf2_sha256(key[9:].encode(), salt.encode(), iterations, 32)


def open_answer(body, key, serial, nonce_hex, plaintext_ok=False):
    """(channel, write key) from a 200 answer; raises RegistrationError saying what is wrong."""
    try:
        f = _fields(body.decode())
    except UnicodeError:
        raise RegistrationError("bad answer (not text)")
    if "v" in f:
        if f["v"] != "1" or f.get("kdf") != "pbkdf2-sha256":
            raise RegistrationError("sealed answer of an unknown version")
        try:
            iterations = int(f["iter"])
            iv = unhexlify(f["iv"])
            sealed = unhexlify(f["sealed"])
        except (KeyError, ValueError):
            raise RegistrationError("bad sealed answer")
        if not _ITER_MIN <= iterations <= _ITER_MAX:
            raise RegistrationError("sealed answer asks for %d KDF iterations (allowed %d..%d)"
                                    % (iterations, _ITER_MIN, _ITER_MAX))
        if len(iv) != 12 or len(sealed) < 17:
            raise RegistrationError("bad sealed answer")
        import time
        t0 = time.ticks_ms()
        dk = _derive(key, serial, iterations)
        log.info("registration", "key derived: %d PBKDF2 iterations in %d ms" % (
            iterations, time.ticks_diff(time.ticks_ms(), t0)))
        aad = "%s%s|%s|%d" % (_CONTEXT, serial, nonce_hex, iterations)
        try:
            plain = GCM(dk).decrypt(iv, sealed, aad.encode())
        except ValueError:
            raise RegistrationError("answer failed authentication (wrong registration key, "
                                    "tampered or replayed)")
        try:
            f = _fields(plain.decode())
        except UnicodeError:
            raise RegistrationError("bad sealed answer (not text)")
    elif not plaintext_ok:
        raise RegistrationError("plain-text answer refused (the factory config asks for a sealed one)")
    channel = f.get("channel", "")
    write_key = f.get("writeKey", "")
    if not (channel.isdigit() and len(channel) <= 20):
        raise RegistrationError("bad channel number in the answer")
    if not (0 < len(write_key) <= 64 and all(c.isalpha() or c.isdigit() for c in write_key)):
        raise RegistrationError("bad write key in the answer")
    return channel, write_key


async def register(store, serial, tls=None):
    """One exchange; stores and returns (channel, write key). Raises RegistrationError, with
    .status the HTTP status, or 0 if there was no answer or no usable one."""
    factory = store.factory
    key = store.get("regkey")["key"]
    nonce = hexlify(os.urandom(16)).decode()
    url = "%s/%s?key=%s&nonce=%s" % (factory["endpoints"]["registration"].rstrip("/"),
                                     serial, key[:8], nonce)
    try:
        status, body = await request("GET", url, {"Accept": "text/plain"},
                                     timeout=_TIMEOUT_S, max_body=_MAX_BODY, ssl=tls)
    except Exception as e:      # asyncio's CancelledError is not an Exception: it passes
        raise RegistrationError("no answer from the registration server (%s)" % log.why(e))
    if status != 200:
        reason = body.split(b"\n", 1)[0].decode("utf-8", "replace")[:80]
        raise RegistrationError("HTTP %d: %s (%s)" % (
            status, SLOW.get(status, "registration failed"), reason), status)
    channel, write_key = open_answer(body, key, serial, nonce, factory["registration_plaintext"])
    if store.get("regkey")["key"] != key:
        raise RegistrationError("registration key changed meanwhile; answer dropped")
    store.set("registration", {"done": True, "channel": channel, "write_key": write_key})
    return channel, write_key
