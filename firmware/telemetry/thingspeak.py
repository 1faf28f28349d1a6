# ThingSpeak's write API (cloud-contracts.md §3.1), with the channel write key that
# self-registration stored. Only the exchange lives here; what to send and when is the caller's.
#
#   entry = await update("http://cloud.lan", write_key, (("field1", "21.5"), ("status", "ok")))
#
# The answer's body is the new entry ID; 0 means "not inserted" (rate limit: one write per
# channel per 15 s on a free licence). 400/401/403/404 mean the key is not (or no longer)
# valid: KeyRejected, so the caller can register again and get the current key.
from micropython import const

from httpc import request

_TIMEOUT_S = const(10)
_MAX_BODY = const(256)
_REJECTED = (400, 401, 403, 404)


class KeyRejected(Exception):
    pass


class ThingSpeakError(Exception):
    pass


def _quote(s):
    out = []
    for b in s.encode():
        c = chr(b)
        out.append(c if b < 128 and (c.isalpha() or c.isdigit() or c in "-._~") else "%%%02X" % b)
    return "".join(out)


async def update(base, write_key, fields, ssl=None):
    """POST <base>/update with (name, value) pairs; returns the entry ID (0: not inserted)."""
    body = "&".join("%s=%s" % (k, _quote(str(v))) for k, v in fields)
    status, answer = await request(
        "POST", base.rstrip("/") + "/update",
        {"X-THINGSPEAKAPIKEY": write_key, "Content-Type": "application/x-www-form-urlencoded"},
        body, timeout=_TIMEOUT_S, max_body=_MAX_BODY, ssl=ssl)
    if status in _REJECTED:
        raise KeyRejected("write key rejected (HTTP %d)" % status)
    if status != 200:
        raise ThingSpeakError("HTTP %d from ThingSpeak" % status)
    try:
        return int(answer.strip())
    except ValueError:
        raise ThingSpeakError("bad answer from ThingSpeak")
