# Mainflux-style bootstrap (docs/cloud.md; cloud-contracts.md section 1): the device asks
# GET <bootstrap url>/<external id> with its external key and learns its thing ID and key
# (its MQTT login), its channels and its broker URL (in `content`).
#
# Secure variant, exactly as the Mainflux server: AES-CFB128 with the raw bytes of the
# shared encrypt key; the header carries hex(IV || CFB(external key)), the body comes back
# as binary IV || CFB(JSON). CFB has no MAC: a tampered body almost always decrypts to
# something that is not JSON (refused here); one that still parses yields credentials the
# broker rejects, which sends the device back here. That is the server's design, not ours.
import json
import os
from binascii import hexlify

import log
from httpc import HTTPError, request

_TIMEOUT_S = 10
_MAX_BODY = 6144          # a config with certificates is a few KB; more is refused, not buffered
# Field names per server generation: Mainflux 2019-2023, Mainflux 2023+, Magistrala v0.20.
_ID_FIELDS = ("thing_id", "mainflux_id", "client_id")
_KEY_FIELDS = ("thing_key", "mainflux_key", "client_secret")
_CHANNEL_FIELDS = ("channels", "mainflux_channels")
_MEANING = {
    400: "bad request (empty external ID?)",
    401: "missing key or wrong auth prefix",
    403: "external key rejected",
    404: "no bootstrap config for this external ID",
    503: "cloud's things service unavailable",
}


class BootstrapError(Exception):
    """Bootstrap failed; .status is the HTTP status, or 0 if no answer / unusable answer."""

    def __init__(self, msg, status=0):
        super().__init__(msg)
        self.status = status


def _auth(factory, iv=None):
    key = factory["external_key"]
    if factory.get("bootstrap_secure"):
        iv = iv or os.urandom(16)
        key = hexlify(iv + _cfb(factory, iv, key.encode(), True)).decode()
    return factory.get("auth_prefix", "Thing ") + key


def _cfb(factory, iv, data, encrypt):
    import aes
    k = factory["bootstrap_enc_key"].encode()
    if len(k) not in (16, 24, 32):
        raise BootstrapError("bootstrap_enc_key must be 16, 24 or 32 characters")
    return aes.cfb128_encrypt(k, iv, data) if encrypt else aes.cfb128_decrypt(k, iv, data)


def _first(doc, names):
    for n in names:
        if n in doc:
            return doc[n]
    return None


def parse(body):
    """The bootstrap document -> the `bootstrap` record's fields; BootstrapError if unusable."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeError):
        raise BootstrapError("response is not JSON")
    if type(doc) is not dict:
        raise BootstrapError("response is not a JSON object")
    tid, tkey = _first(doc, _ID_FIELDS), _first(doc, _KEY_FIELDS)
    if type(tid) is not str or not tid or type(tkey) is not str or not tkey:
        raise BootstrapError("response has no thing ID/key")
    chans = []
    for ch in _first(doc, _CHANNEL_FIELDS) or ():      # a config without channels sends null
        if type(ch) is not dict or type(ch.get("id")) is not str:
            raise BootstrapError("malformed channel")
        meta = ch.get("metadata")
        kind = meta.get("type", "") if type(meta) is dict else ""
        chans.append({"id": ch["id"], "type": kind if type(kind) is str else ""})
    rec = {"done": True, "thing_id": tid, "thing_key": tkey, "channels": chans}
    for k in ("content", "client_cert", "client_key", "ca_cert"):
        v = doc.get(k, "")
        rec[k] = v if type(v) is str else ""
    return rec


async def fetch(factory, external_id):
    """Ask the bootstrap server; returns the record fields or raises BootstrapError."""
    base = factory["endpoints"]["bootstrap"].rstrip("/")
    if not base or not factory["external_key"]:
        raise BootstrapError("factory config has no bootstrap URL or external key")
    secure = factory.get("bootstrap_secure")
    url = "%s/%s%s" % (base, "secure/" if secure else "", external_id)
    try:
        status, body = await request("GET", url, {"Authorization": _auth(factory)},
                                     timeout=_TIMEOUT_S, max_body=_MAX_BODY)
    except HTTPError as e:      # it answered, but not in HTTP we can use
        raise BootstrapError("bad answer from %s (%s)" % (url, e))
    except Exception as e:      # OSError, timeout: down, unreachable, or silent
        raise BootstrapError("no answer from %s (%s)" % (url, log.why(e)))
    if status != 200:
        raise BootstrapError("HTTP %d: %s" % (status, _MEANING.get(status, "server error")), status)
    if secure:
        if len(body) < 17:
            raise BootstrapError("secure response too short", status)
        body = _cfb(factory, body[:16], body[16:], False)
    try:
        return parse(body)
    except BootstrapError as e:
        if not secure:
            raise
        raise BootstrapError("%s: wrong encrypt key or tampered response" % e, status)
