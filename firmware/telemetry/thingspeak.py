# ThingSpeak's write API (cloud-contracts.md §3.1, §3.2), with the channel write key that
# self-registration stored. Only the exchanges live here; what to send and when is the
# caller's (firmware/telemetry/thingspeak_sink.py, firmware/cloud/registration.py).
#
#   entry = await update("http://cloud.lan", key, (("field1", "21.5"), ("status", "ok")))
#   await bulk_update("http://cloud.lan", channel, key, updates, buf)   # updates(): str chunks
#
# update's answer is the new entry ID; 0 means "not inserted" (rate limit: one write per
# channel per 15 s on a free licence). bulk_update answers 202; 429 means "too soon".
# 400/401/403/404 mean the key (or the channel) is not, or no longer, valid: KeyRejected, so
# the caller can register again and get the current key.
import time

from micropython import const

from httpc import request

_TIMEOUT_S = const(10)
_MAX_BODY = const(256)
_REJECTED = (400, 401, 403, 404)


class KeyRejected(Exception):
    pass


class ThingSpeakError(Exception):
    def __init__(self, msg, status=0):
        super().__init__(msg)
        self.status = status


def iso(t):
    """ThingSpeak's created_at: ISO 8601 in UTC."""
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % time.gmtime(t)[:6]


def _quote(s):
    out = []
    for b in s.encode():
        c = chr(b)
        out.append(c if b < 128 and (c.isalpha() or c.isdigit() or c in "-._~") else "%%%02X" % b)
    return "".join(out)


async def _post(url, write_key, ctype, body, ssl, buf=None):
    status, answer = await request(
        "POST", url, {"X-THINGSPEAKAPIKEY": write_key, "Content-Type": ctype},
        body, timeout=_TIMEOUT_S, max_body=_MAX_BODY, ssl=ssl, buf=buf)
    if status in _REJECTED:
        raise KeyRejected("write key rejected (HTTP %d)" % status)
    return status, answer


async def update(base, write_key, fields, ssl=None):
    """POST <base>/update with (name, value) pairs; returns the entry ID (0: not inserted)."""
    body = "&".join("%s=%s" % (k, _quote(str(v))) for k, v in fields)
    status, answer = await _post(base.rstrip("/") + "/update", write_key,
                                 "application/x-www-form-urlencoded", body, ssl)
    if status != 200:
        raise ThingSpeakError("HTTP %d from ThingSpeak" % status, status)
    try:
        return int(answer.strip())
    except ValueError:
        raise ThingSpeakError("bad answer from ThingSpeak")


async def bulk_update(base, channel, write_key, updates, buf, ssl=None):
    """POST <base>/channels/<channel>/bulk_update.json. updates: a function returning an
    iterator of the JSON text (str) of the update objects (called twice); buf: a bytearray
    to send it through (see httpc.request).
    Raises ThingSpeakError (status 429: too soon) unless the server accepted them all."""
    def body():
        yield b'{"write_api_key":"%s","updates":[' % write_key.encode()
        sep = b""
        for u in updates():
            yield sep + u.encode()
            sep = b","
        yield b"]}"
    status, _ = await _post("%s/channels/%s/bulk_update.json" % (base.rstrip("/"), channel), write_key,
                            "application/json", body, ssl, buf)
    if status not in (200, 202):
        raise ThingSpeakError("HTTP %d from ThingSpeak bulk_update" % status, status)
