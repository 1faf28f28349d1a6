"""Client side of protocomm security 0, 1 and 2 (spec section 5).

Each scheme is driven the same way: `handshake(exchange)` runs the prov-session round trips
through `exchange(request) -> response`; then `encrypt`/`decrypt` wrap every other endpoint's
payload. The steps are also public (`command0`, `command1(resp0)`, `finish(resp1)`) so tests can
feed the known-answer vectors byte by byte; keys and randoms are injectable for the same reason.
"""
import hashlib
import secrets

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives import serialization
from cryptography.exceptions import InvalidTag
from google.protobuf.message import DecodeError

from . import ProvError, TransportError
from . import proto

WRONG_POP = "wrong PoP: device rejected the handshake"


class Security:
    version = None

    def command0(self):
        raise NotImplementedError

    def command1(self, response0):
        """Returns the second request, or None when the scheme has one round trip."""
        return None

    def finish(self, response1):
        pass

    def handshake(self, exchange):
        response0 = exchange(self.command0())
        request1 = self.command1(response0)
        if request1 is None:
            return
        try:
            response1 = exchange(request1)
        except TransportError as e:
            # The device checks our proof at command 1 and, on a mismatch, fails the request
            # (BLE: ATT error or disconnect; HTTP: socket closed): that is how a wrong PoP shows.
            raise ProvError("%s (%s)" % (WRONG_POP, e)) from e
        self.finish(response1)

    def encrypt(self, data):
        return data

    def decrypt(self, data):
        return data

    def _payload(self, data, step):
        """Parse SessionData and return this scheme's payload, checking sec_ver and msg type."""
        try:
            s = proto.SessionData.FromString(bytes(data))
        except DecodeError:
            raise ProvError("handshake: device sent an unreadable SessionData (%d bytes)" % len(data))
        which = s.WhichOneof("proto")
        if which != "sec%d" % self.version:
            raise ProvError("handshake: device answered with %s, expected security %d (wrong --sec?)"
                            % (which or "no payload", self.version))
        payload = getattr(s, which)
        if payload.msg != step:
            raise ProvError("handshake: device answered message type %d, expected %d" % (payload.msg, step))
        return payload


def _status_ok(status, what):
    if status != proto.Status.Success:
        if what == "proof":
            raise ProvError("%s (status %s)" % (WRONG_POP, proto.Status.Name(status)))
        raise ProvError("handshake: device answered %s with status %s" % (what, proto.Status.Name(status)))


class Sec0(Security):
    """No encryption: one round trip that only opens the session."""
    version = 0

    def command0(self):
        return proto.SessionData(sec_ver=0, sec0=proto.Sec0Payload(
            msg=proto.Sec0MsgType.S0_Session_Command, sc={})).SerializeToString()

    def command1(self, response0):
        p = self._payload(response0, proto.Sec0MsgType.S0_Session_Response)
        _status_ok(p.sr.status, "session command")
        return None


class Sec1(Security):
    """X25519 key agreement, key = shared XOR SHA-256(PoP), AES-256-CTR.

    One CTR keystream belongs to the session and serves both directions in processing order
    (verify data first, then request 1, response 1, ...): `encrypt` and `decrypt` are the same
    operation on the same encryptor, so a lost message desynchronises the session for good."""
    version = 1

    def __init__(self, pop=None, client_private=None):
        self.pop = pop.encode() if isinstance(pop, str) else pop
        self._private = (X25519PrivateKey.from_private_bytes(client_private) if client_private
                         else X25519PrivateKey.generate())
        self.client_pubkey = self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self._ctr = None

    def command0(self):
        return proto.SessionData(sec_ver=1, sec1=proto.Sec1Payload(
            msg=proto.Sec1MsgType.Session_Command0,
            sc0=proto.SessionCmd0(client_pubkey=self.client_pubkey))).SerializeToString()

    def command1(self, response0):
        p = self._payload(response0, proto.Sec1MsgType.Session_Response0)
        _status_ok(p.sr0.status, "session command 0")
        device_pubkey, device_random = p.sr0.device_pubkey, p.sr0.device_random
        if len(device_pubkey) != 32 or len(device_random) != 16:
            raise ProvError("handshake: device key or random has the wrong length (%d, %d)"
                            % (len(device_pubkey), len(device_random)))
        try:
            shared = self._private.exchange(X25519PublicKey.from_public_bytes(device_pubkey))
        except ValueError:  # a low-order point gives an all-zero secret
            raise ProvError("handshake: device sent an invalid X25519 public key")
        key = shared
        if self.pop:  # empty or absent PoP (`no_pop`): the shared secret is the key
            digest = hashlib.sha256(self.pop).digest()
            key = bytes(a ^ b for a, b in zip(shared, digest))
        self.key = key
        self.device_pubkey = device_pubkey
        self._ctr = Cipher(algorithms.AES(key), modes.CTR(device_random)).encryptor()
        verify = self._ctr.update(device_pubkey)
        return proto.SessionData(sec_ver=1, sec1=proto.Sec1Payload(
            msg=proto.Sec1MsgType.Session_Command1,
            sc1=proto.SessionCmd1(client_verify_data=verify))).SerializeToString()

    def finish(self, response1):
        p = self._payload(response1, proto.Sec1MsgType.Session_Response1)
        _status_ok(p.sr1.status, "proof")
        if len(p.sr1.device_verify_data) != 32:
            raise ProvError("handshake: device verify data has %d bytes, not 32" % len(p.sr1.device_verify_data))
        if self._ctr.update(p.sr1.device_verify_data) != self.client_pubkey:
            raise ProvError("handshake: the device could not prove it holds the session key "
                            "(not the device we talked to, or a broken cipher)")

    def encrypt(self, data):
        if self._ctr is None:
            raise ProvError("no session: establish_session() first")
        return self._ctr.update(bytes(data))

    decrypt = encrypt


# RFC 5054 3072-bit group (= RFC 3526 group 15), g = 5; hash SHA-512 throughout.
N = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200C"
    "BBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF", 16)
G = 5
N_LEN = 384


def _H(*parts):
    return hashlib.sha512(b"".join(parts)).digest()


def _bytes(n):
    """Minimal big-endian bytes (how SRP integers travel unless padded)."""
    return n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")


def _pad(n):
    return n.to_bytes(N_LEN, "big")


def _int(b):
    return int.from_bytes(b, "big")


class Sec2(Security):
    """SRP6a (client role) proves the password (the PoP) and yields K; AES-256-GCM with key K[:32].

    sec_patch_ver 1: the nonce's last 4 bytes count up after every encrypt and every decrypt, so
    request 1 uses the device's nonce n, response 1 n+1, request 2 n+2. sec_patch_ver 0 (old IDF):
    the nonce never changes."""
    version = 2

    def __init__(self, username="wifiprov", password=None, patch_ver=1, client_a=None):
        if not password:
            raise ProvError("security 2 needs a password (the PoP)")
        self.username = username.encode() if isinstance(username, str) else username
        self.password = password.encode() if isinstance(password, str) else password
        self.patch_ver = patch_ver
        while True:
            a = _int(client_a) if isinstance(client_a, (bytes, bytearray)) else client_a
            a = a or _int(secrets.token_bytes(32))
            A = pow(G, a, N)
            # The device takes A only as exactly 384 bytes; Espressif's client sends it unpadded
            # and fails once in 256 handshakes. Picking another `a` keeps the unpadded form.
            if len(_bytes(A)) == N_LEN:
                break
            if client_a:
                raise ValueError("client_a gives an A shorter than 384 bytes")
        self.a, self.A = a, _bytes(A)
        self._gcm = self._nonce = None

    def command0(self):
        return proto.SessionData(sec_ver=2, sec2=proto.Sec2Payload(
            msg=proto.Sec2MsgType.S2Session_Command0,
            sc0=proto.S2SessionCmd0(client_username=self.username, client_pubkey=self.A))).SerializeToString()

    def command1(self, response0):
        p = self._payload(response0, proto.Sec2MsgType.S2Session_Response0)
        _status_ok(p.sr0.status, "session command 0")
        B_bytes, salt = p.sr0.device_pubkey, p.sr0.device_salt
        B = _int(B_bytes)
        if not B_bytes or B % N == 0 or not salt:
            raise ProvError("handshake: device sent an invalid SRP public key or salt")
        u = _int(_H(_pad(_int(self.A)), _pad(B)))
        if u == 0:
            raise ProvError("handshake: SRP scrambling parameter is zero; retry")
        k = _int(_H(_bytes(N), _pad(G)))
        x = _int(_H(salt, _H(self.username, b":", self.password)))
        S = pow((B - k * pow(G, x, N)) % N, self.a + u * x, N)
        self.K = _H(_bytes(S))
        hn_xor_hg = bytes(i ^ j for i, j in zip(_H(_bytes(N)), _H(_pad(G))))
        self.M = _H(hn_xor_hg, _H(self.username), salt, self.A, B_bytes, self.K)
        return proto.SessionData(sec_ver=2, sec2=proto.Sec2Payload(
            msg=proto.Sec2MsgType.S2Session_Command1,
            sc1=proto.S2SessionCmd1(client_proof=self.M))).SerializeToString()

    def finish(self, response1):
        p = self._payload(response1, proto.Sec2MsgType.S2Session_Response1)
        _status_ok(p.sr1.status, "proof")
        if p.sr1.device_proof != _H(self.A, self.M, self.K):
            raise ProvError("handshake: the device's SRP proof (HAMK) is wrong: it does not know "
                            "the verifier for this password")
        if len(p.sr1.device_nonce) != 12:
            raise ProvError("handshake: device nonce has %d bytes, not 12" % len(p.sr1.device_nonce))
        self._gcm = AESGCM(self.K[:32])
        self._nonce = bytes(p.sr1.device_nonce)

    def encrypt(self, data):
        out = self._session().encrypt(self._nonce, bytes(data), None)
        self._advance()
        return out

    def decrypt(self, data):
        try:
            out = self._session().decrypt(self._nonce, bytes(data), None)
        except InvalidTag:
            raise ProvError("response failed GCM authentication (nonce out of step, or tampered)")
        self._advance()
        return out

    def _session(self):
        if self._gcm is None:
            raise ProvError("no session: establish_session() first")
        return self._gcm

    def _advance(self):
        """After every successful encrypt and decrypt (patch 1); patch 0 keeps the nonce."""
        if self.patch_ver < 1:
            return
        counter = (_int(self._nonce[8:]) + 1) & 0xFFFFFFFF
        if counter == 0:
            # The device refuses a zero counter; wrapping round would reuse nonces anyway.
            self._gcm = None
            raise ProvError("GCM nonce counter exhausted: start a new session")
        self._nonce = self._nonce[:8] + counter.to_bytes(4, "big")


def for_version(version, pop=None, username="wifiprov", password=None, patch_ver=0):
    """The client security object for a scheme number."""
    if version == 0:
        return Sec0()
    if version == 1:
        return Sec1(pop)
    if version == 2:
        return Sec2(username, password if password is not None else pop, patch_ver)
    raise ProvError("security %r is not supported (0, 1 or 2)" % version)
