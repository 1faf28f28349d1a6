# Protocomm security scheme 2 (device side): SRP6a proves the password (the PoP) without
# the device knowing it, then AES-256-GCM protects every other endpoint (spec
# esp-provisioning.md 5.2, messages 6.5). Imported only by devices configured for sec 2,
# so sec 1 devices do not pay the heap of lib/srp6a and lib/sha512.
#
#   Command0 {username, A}  -> Response0 {B, salt}           (three 3072-bit modexps)
#   Command1 {M}            -> Response1 {HAMK, nonce}        wrong M: AuthFailed
#   data phase: GCM key K[0:32], IV = 8 random bytes || 32-bit BE counter, starting at 1 and
#   advanced after every successful decrypt and encrypt (sec_patch_ver 1).
import os

from micropython import const

import protobuf as pb
import srp6a
from aes import GCM
from firmware.prov import messages as m
from firmware.prov.errors import AuthFailed, ProvError

_A_LEN = const(384)
_PROOF_LEN = const(64)
_LAST = 0xFFFFFFFF  # the last usable counter (next: 0, refused); no const: not a small int on 32 bits


class Sec2:
    VERSION = 2

    def __init__(self, salt, verifier, b=None, nonce=None):
        # b (SRP secret exponent) and nonce (the 8 random nonce bytes) are for known-answer
        # tests only; a device always leaves them None.
        self._salt = salt
        self._verifier = verifier
        self._b = b
        self._fixed = nonce
        self._prefix = None
        self.ready = False
        self._srp = None      # srp6a.Server between Command0 and Command1
        self._gcm = None
        self._ctr = 0

    def handshake(self, data):
        msg, d = m.scheme_in(data, 2, 12)
        if msg == 0:
            # S2Session_Command0 (also mid-session: it restarts the handshake).
            return self._command0(pb.decode(d.get(20) or b""))
        if msg == 2 and self._srp is not None:
            return self._command1(pb.decode(d.get(22) or b"").get(1, b""))
        raise ProvError("unexpected handshake message")

    def _command0(self, sc0):
        self.ready = False
        self._srp = self._gcm = None
        user = sc0.get(1, b"")
        A = sc0.get(2, b"")
        if not 0 < len(user) <= 0xFFFF:
            raise ProvError("username must be 1..65535 bytes")
        if len(A) != _A_LEN:
            raise ProvError("client public key must be 384 bytes")
        # v = 0 (an unset factory verifier) makes S = 0 and K = H(""), and v = 1 is x = 0:
        # anyone could then compute the proof. Refuse rather than let every password in.
        if not self._salt or int.from_bytes(self._verifier, "big") % srp6a.N < 2:
            raise ProvError("no valid SRP salt/verifier in the factory config")
        srp = srp6a.Server(self._salt, self._verifier, self._b)
        try:
            B = srp.challenge(user, A)
        except ValueError:  # A mod N == 0, or u == 0
            raise ProvError("invalid client public key")
        except MemoryError:  # said as such: protocomm would log any other error as "malformed"
            raise ProvError("out of memory for the SRP math")
        self._srp = srp
        sr0 = pb.field_bytes(2, B) + pb.field_bytes(3, self._salt)
        return m.session_out(2, 12, pb.field_varint(1, 1) + pb.field_msg(21, sr0))

    def _command1(self, proof):
        srp = self._srp
        self._srp = None  # one try per challenge: a new guess needs a new Command0
        if len(proof) != _PROOF_LEN:
            raise ProvError("client proof must be 64 bytes")
        try:
            hamk = srp.verify(proof)
        except ValueError:
            raise AuthFailed("client proof mismatch: wrong password (PoP)")
        self._gcm = GCM(srp.key[:32])
        self._prefix = self._fixed or os.urandom(8)
        self._ctr = 1
        self.ready = True
        sr1 = pb.field_bytes(2, hamk) + pb.field_bytes(3, self._nonce())
        return m.session_out(2, 12, pb.field_varint(1, 3) + pb.field_msg(23, sr1))

    def _nonce(self):
        return self._prefix + self._ctr.to_bytes(4, "big")

    def decrypt(self, data):
        # Refuse a request whose response would need counter 0: the client must start over.
        if not self.ready or self._ctr >= _LAST:
            raise ProvError("no session (or nonce counter exhausted): handshake first")
        try:
            out = self._gcm.decrypt(self._nonce(), data)
        except ValueError:  # bad tag or too short: nothing changes, the session goes on
            raise ProvError("request failed GCM authentication")
        self._ctr += 1
        return out

    def encrypt(self, data):
        if not self.ready or self._ctr > _LAST:
            raise ProvError("no session (or nonce counter exhausted): handshake first")
        out = self._gcm.encrypt(self._nonce(), data)
        self._ctr += 1
        if self._ctr > _LAST:
            self.ready = False
        return out
