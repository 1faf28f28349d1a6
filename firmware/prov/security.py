# Protocomm security schemes 0 and 1 (device side). Security 2 lives in sec2.py so its
# big-integer code is only imported by devices configured for it.
#
# A scheme object is one session's state: handshake(request) answers prov-session
# messages, and once `ready` is set, encrypt()/decrypt() protect every other endpoint.
import hashlib
import os

import protobuf as pb
import x25519
from aes import CTR
from firmware.prov import messages as m
from firmware.prov.errors import AuthFailed, ProvError




class Sec0:
    VERSION = 0

    def __init__(self):
        self.ready = False

    def handshake(self, data):
        msg, d = m.scheme_in(data, 0, 10)
        if msg != 0 or 20 not in d:
            raise ProvError("expected S0 session command")
        self.ready = True
        # SessionData{sec0{msg=S0_Session_Response, sr{status=Success}}} = 52 05 08 01 aa 01 00
        return m.session_out(0, 10, pb.field_varint(1, 1) + pb.field_msg(21))

    def encrypt(self, data):
        return data

    decrypt = encrypt


def _ct_equal(a, b):
    if len(a) != len(b):
        return False
    r = 0
    for i in range(len(a)):
        r |= a[i] ^ b[i]
    return r == 0


class Sec1:
    """X25519 + proof of possession + AES-256-CTR, one keystream for both directions."""

    VERSION = 1

    def __init__(self, pop=None):
        # The PoP is mixed into the key as SHA-256(PoP); keep only that, not the PoP itself.
        self._pop_hash = hashlib.sha256(pop).digest() if pop else None
        self.ready = False
        self._step = 0
        self._ctr = None

    def handshake(self, data):
        msg, d = m.scheme_in(data, 1, 11)
        if msg == 0:
            # Session_Command0 (also mid-session: it restarts the handshake).
            return self._command0(pb.decode(d.get(20) or b"").get(1, b""))
        if msg == 2 and self._step == 1:
            return self._command1(pb.decode(d.get(22) or b"").get(2, b""))
        raise ProvError("unexpected handshake message")

    def _command0(self, client_pub):
        self.ready = False
        self._step = 0
        if len(client_pub) != 32:
            raise ProvError("client public key must be 32 bytes")
        private = os.urandom(32)
        self._device_pub = x25519.public_key(private)
        try:
            shared = x25519.x25519(private, client_pub)
        except ValueError:
            raise ProvError("invalid client public key")
        key = bytearray(shared)
        if self._pop_hash:
            for i in range(32):
                key[i] ^= self._pop_hash[i]
        device_random = os.urandom(16)
        self._ctr = CTR(bytes(key), device_random)
        self._client_pub = client_pub
        self._step = 1
        sr0 = pb.field_bytes(2, self._device_pub) + pb.field_bytes(3, device_random)
        return m.session_out(1, 11, pb.field_varint(1, 1) + pb.field_msg(21, sr0))

    def _command1(self, client_verify):
        if len(client_verify) != 32:
            self._step = 0
            raise ProvError("client verify data must be 32 bytes")
        # Keystream bytes 0..31 decrypt the client's proof that it knows the key (and so the PoP).
        if not _ct_equal(self._ctr.crypt(client_verify), self._device_pub):
            self._step = 0
            raise AuthFailed("key mismatch: wrong proof of possession")
        device_verify = self._ctr.crypt(self._client_pub)
        self._step = 2
        self.ready = True
        return m.session_out(1, 11, pb.field_varint(1, 3) + pb.field_msg(23, pb.field_bytes(3, device_verify)))

    def encrypt(self, data):
        return self._ctr.crypt(data)

    decrypt = encrypt
