"""ThingSpeak-compatible channels (cloud-contracts.md 3) over real HTTP: /update in its forms, the
rate limit (fake clock), keys and rotation, /update.json, bulk_update.json, feeds.json."""
import json
import re
from urllib.parse import urlencode

import pytest

from cloud_helpers import Services

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def svc():
    s = Services(rate_limit_s=15)
    yield s
    s.close()


@pytest.fixture
def ch(svc):
    return svc.ts.create_channel("Thermometer t1", ["temperature", "humidity"], owner="org-1")


def post(svc, path, params, headers=FORM):
    return svc.call("POST", path, urlencode(params).encode(), headers)


def write(svc, key, tick=15, **params):
    """A form POST /update after `tick` seconds; (status, body, reason)."""
    svc.clock.now += tick
    st, hdrs, body = post(svc, "/update", dict(params, api_key=key))
    return st, body, hdrs.get("X-Roost-Reason")


def stored(svc, ch):
    return [(e["entry_id"], e["field1"]) for e in svc.ts.entries(ch["id"])]


def test_channel_created_from_python(svc, ch):
    assert ch["id"] == 1000001 and ch["name"] == "Thermometer t1" and ch["owner"] == "org-1"
    assert ch["fields"] == {"field1": "temperature", "field2": "humidity"} and ch["public"] is False
    for k in ("write_key", "read_key"):
        assert re.fullmatch(r"[A-Z0-9]{16}", ch[k])
    assert ch["write_key"] != ch["read_key"]
    assert svc.ts.create_channel("second")["id"] == 1000002
    assert svc.ts.channel(ch["id"]) == ch and svc.ts.channel(5) is None
    with pytest.raises(ValueError):
        svc.ts.create_channel("x", {"field9": "no"})


def test_update_forms_and_increasing_entry_ids(svc, ch):
    key = ch["write_key"]
    assert write(svc, key, field1="21.5")[:2] == (200, "1")                           # form body
    svc.clock.now += 15
    assert svc.call("GET", "/update?" + urlencode({"api_key": key, "field1": "21.6"}))[::2] == (200, "2")
    for n, header in enumerate(("THINGSPEAKAPIKEY", "X-THINGSPEAKAPIKEY", "thingspeakapikey"), 3):
        svc.clock.now += 15
        st, _, body = post(svc, "/update", {"field1": str(20 + n), "headers": "false"}, dict(FORM, **{header: key}))
        assert (st, body) == (200, str(n))
    svc.clock.now += 15
    st, hdrs, body = svc.call("POST", "/update", json.dumps({"api_key": key, "field1": 22.25, "status": "ok"}).encode(),
                              {"Content-Type": "application/json"})
    assert (st, body) == (200, "6") and hdrs["Content-Type"] == "text/plain"
    svc.clock.now += 15
    st, hdrs, body = post(svc, "/update.json?api_key=" + key, {"field2": "40", "lat": "48.1", "long": "-11.5",
                                                               "elevation": "520", "status": "fine"})
    entry = json.loads(body)
    assert st == 200 and hdrs["Content-Type"] == "application/json"
    assert entry == dict({"field%d" % i: None for i in range(1, 9)}, channel_id=ch["id"], entry_id=7,
                         created_at=entry["created_at"], field2="40", latitude="48.1", longitude="-11.5",
                         elevation="520", status="fine")
    assert entry["created_at"].endswith("Z") and len(entry["created_at"]) == 20
    assert stored(svc, ch) == [(1, "21.5"), (2, "21.6"), (3, "23"), (4, "24"), (5, "25"), (6, "22.25"), (7, None)]
    assert svc.ts.channel(ch["id"])["last_entry_id"] == 7


def test_rate_limit_answers_0_and_stores_nothing(svc, ch):
    key = ch["write_key"]
    assert write(svc, key, tick=0, field1="1")[:2] == (200, "1")
    st, body, why = write(svc, key, tick=14.9, field1="2")
    assert (st, body) == (200, "0") and why.startswith("rate limit")
    assert write(svc, key, tick=0.1, field1="3")[:2] == (200, "2")       # 15 s after the last *accepted* write
    assert stored(svc, ch) == [(1, "1"), (2, "3")]
    other = svc.ts.create_channel("other")                               # the limit is per channel
    assert write(svc, other["write_key"], tick=0, field1="x")[:2] == (200, "1")
    svc.ts.rate_limit_s = 0                                              # 0 disables it
    assert [write(svc, key, tick=0, field1="y")[1] for _ in range(3)] == ["3", "4", "5"]


def test_bad_missing_and_rotated_keys_get_400(svc, ch):
    old = ch["write_key"]
    assert write(svc, "AAAAAAAAAAAAAAAA", field1="1")[:2] == (400, "-1")
    assert write(svc, "", field1="1")[:2] == (400, "-1")
    assert svc.call("POST", "/update", b"field1=1", FORM)[::2] == (400, "-1")
    assert svc.call("GET", "/update.json?field1=1&api_key=" + ch["read_key"])[::2] == (400, "-1")
    assert write(svc, old, field1="1")[:2] == (200, "1")
    new = svc.ts.rotate_write_key(ch["id"])
    assert new != old and svc.ts.channel(ch["id"])["write_key"] == new
    assert write(svc, old, field1="2")[:2] == (400, "-1")
    assert write(svc, new, field1="3")[:2] == (200, "2")
    with pytest.raises(KeyError):
        svc.ts.rotate_write_key(999)


def test_data_problems_answer_0_never_400(svc, ch):
    key = ch["write_key"]
    cases = [({}, "no field and no status"),
             ({"lat": "48"}, "no field and no status"),                  # a position alone is no entry
             ({"field1": "x" * 256}, "field1 is longer than 255 bytes"),
             ({"field2": "\u00e9" * 128}, "field2 is longer than 255 bytes"),   # bytes, not characters
             ({"status": "s" * 256}, "status is longer than 255 bytes"),
             ({"field1": "1", "lat": "91"}, "lat must be a number in -90..90"),
             ({"field1": "1", "long": "east"}, "long must be a number"),
             ({"field1": "1", "elevation": "inf"}, "elevation must be a number"),
             ({"field1": "1", "created_at": "yesterday"}, "created_at is not an ISO 8601 time")]
    for params, why in cases:
        st, body, reason = write(svc, key, **params)
        assert (st, body) == (200, "0") and reason.startswith(why), (params, reason)
    svc.clock.now += 15
    st, hdrs, body = svc.call("POST", "/update?api_key=" + key, b"{not json", {"Content-Type": "application/json"})
    assert (st, body) == (200, "0") and hdrs["X-Roost-Reason"].startswith("body:")
    assert stored(svc, ch) == []
    assert write(svc, key, field1="x" * 255, field2="\u00e9" * 127)[:2] == (200, "1")


def test_created_at_formats_and_uniqueness(svc, ch):
    key = ch["write_key"]
    assert write(svc, key, field1="a", created_at="2014-12-31 23:59:59")[:2] == (200, "1")
    assert write(svc, key, field1="b", created_at="2015-01-01T00:59:59+01:00")[:2] == (200, "0")  # the same instant
    assert write(svc, key, field1="c", created_at="2015-01-01T00:00:01Z")[:2] == (200, "2")
    assert [e["created_at"] for e in svc.ts.entries(ch["id"])] == ["2014-12-31T23:59:59Z", "2015-01-01T00:00:01Z"]
    write(svc, key, field1="now")
    assert svc.ts.entries(ch["id"])[-1]["created_at"] == "2026-01-01T00:01:00Z"     # the clock, 4 x 15 s later


def test_a_write_sent_again_is_kept_once(svc, ch):
    # A device that got no answer sends the same entries again: answered, not stored twice.
    key = ch["write_key"]
    one = dict(field1="21.5", field2="7", created_at="2026-01-01T00:00:00Z")
    assert write(svc, key, **one)[:2] == (200, "1")
    assert write(svc, key, **one)[:2] == (200, "1")                    # the same entry again
    assert write(svc, key, **dict(one, field1="22"))[:2] == (200, "0")  # another value at that time
    batch = [{"created_at": 1767225600 + i, "field1": str(i), "field2": str(8 + i)} for i in range(1, 4)]
    assert bulk(svc, ch["id"], {"write_api_key": key, "updates": batch})[0] == 202
    svc.clock.now += 15
    more = batch + [{"created_at": 1767225604, "field1": "4", "field2": "12"}]
    assert bulk(svc, ch["id"], {"write_api_key": key, "updates": more})[0] == 202
    assert [e["field2"] for e in svc.ts.entries(ch["id"])] == ["7", "9", "10", "11", "12"]
    svc.clock.now += 15
    clash = [dict(batch[0], field1="other")]
    st, answer = bulk(svc, ch["id"], {"write_api_key": key, "updates": clash})
    assert st == 400 and answer["error"].startswith("update 0: the channel has another entry at")


def bulk(svc, channel_id, body):
    st, _, text = svc.call("POST", "/channels/%s/bulk_update.json" % channel_id, json.dumps(body).encode(),
                           {"Content-Type": "application/json"})
    return st, json.loads(text)


def test_bulk_update_with_delta_t_and_created_at(svc, ch):
    key = ch["write_key"]
    updates = [{"delta_t": 0, "field1": 1.5},
               {"delta_t": 10, "field1": "2", "latitude": 10, "longitude": 20},
               {"delta_t": "5", "status": "hi"},
               {"created_at": "2025-06-01T12:00:00Z", "field2": 7},
               {"delta_t": 60, "field1": "after"},
               {"created_at": 1700000000, "field1": "epoch"}]
    assert bulk(svc, ch["id"], {"write_api_key": key, "updates": updates}) == (202, {"success": True})
    got = [(e["entry_id"], e["created_at"], e["field1"], e["field2"], e["status"]) for e in svc.ts.entries(ch["id"])]
    assert got == [(1, "2026-01-01T00:00:00Z", "1.5", None, None),
                   (2, "2026-01-01T00:00:10Z", "2", None, None),
                   (3, "2026-01-01T00:00:15Z", None, None, "hi"),
                   (4, "2025-06-01T12:00:00Z", None, "7", None),
                   (5, "2025-06-01T12:01:00Z", "after", None, None),
                   (6, "2023-11-14T22:13:20Z", "epoch", None, None)]
    assert svc.ts.entries(ch["id"])[1]["latitude"] == "10"
    assert write(svc, key, tick=0, field1="single")[:2] == (200, "7")     # bulk does not use up /update's limit


def test_bulk_update_limits_and_errors(svc, ch):
    key, one = ch["write_key"], [{"delta_t": 0, "field1": "1"}]
    assert bulk(svc, ch["id"], {"write_api_key": key, "updates": one})[0] == 202
    svc.clock.now += 14
    st, body = bulk(svc, ch["id"], {"write_api_key": key, "updates": [{"delta_t": 0, "field1": "2"}]})
    assert st == 429 and "bulk" in body["error"]
    svc.clock.now += 1
    bad = [({"write_api_key": "WRONG", "updates": one}, 400, "write_api_key"),
           ({"updates": one}, 400, "write_api_key"),
           ({"write_api_key": key, "updates": {}}, 400, "updates must be a list of 1 to 960"),
           ({"write_api_key": key, "updates": []}, 400, "updates must be a list of 1 to 960"),
           ({"write_api_key": key, "updates": [{"delta_t": 1, "field1": "x"}] * 961}, 400,
            "updates must be a list of 1 to 960"),
           ({"write_api_key": key, "updates": [{"delta_t": 1, "field1": "x"}, {"delta_t": 0, "field1": "y"}]},
            400, "update 1: delta_t must be > 0"),
           ({"write_api_key": key, "updates": [{"field1": "x"}]}, 400, "update 0: needs created_at or delta_t"),
           ({"write_api_key": key, "updates": [{"delta_t": 1}]}, 400, "update 0: no field"),
           ({"write_api_key": key, "updates": [{"delta_t": 1, "field1": "x"}, "no"]}, 400,
            "update 1: not an object"),
           ({"write_api_key": key, "updates": [{"delta_t": 1, "field1": "x" * 256}]}, 400, "update 0: field1"),
           ({"write_api_key": key, "updates": [{"created_at": "2020-01-01 00:00:00", "field1": "x"}] * 2},
            400, "update 1: an earlier update of the list is at 2020-01-01T00:00:00Z"),
           ({"write_api_key": key, "updates": [{"created_at": "99999999999999", "field1": "x"}]}, 400,
            "update 0: bad created_at")]
    for body, status, why in bad:
        st, answer = bulk(svc, ch["id"], body)
        assert st == status and answer["error"].startswith(why), (body, answer)
    assert bulk(svc, 1999999, {"write_api_key": key, "updates": one})[0] == 404
    assert bulk(svc, "abc", {"write_api_key": key, "updates": one})[0] == 404
    st, _, _ = svc.call("POST", "/channels/%d/bulk_update.json" % ch["id"], b"[]", {"Content-Type": "application/json"})
    assert st == 400
    assert len(svc.ts.entries(ch["id"])) == 1                             # all or nothing: only the first call
    assert bulk(svc, ch["id"], {"write_api_key": key, "updates": [{"delta_t": 1, "field1": "x"}] * 960})[0] == 202
    assert len(svc.ts.entries(ch["id"])) == 961


def feeds(svc, channel_id, query=""):
    st, hdrs, body = svc.call("GET", "/channels/%s/feeds.json%s" % (channel_id, query))
    return st, json.loads(body)


def test_feeds_with_and_without_the_read_key(svc, ch):
    for v in ("20", "21", "22"):
        write(svc, ch["write_key"], field1=v)
    st, doc = feeds(svc, ch["id"], "?api_key=" + ch["read_key"])
    assert st == 200 and [e["field1"] for e in doc["feeds"]] == ["20", "21", "22"]
    assert doc["channel"] == {"id": ch["id"], "name": "Thermometer t1", "field1": "temperature", "field2": "humidity",
                              "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:45Z",
                              "last_entry_id": 3}
    assert [e["entry_id"] for e in feeds(svc, ch["id"], "?results=2&api_key=" + ch["read_key"])[1]["feeds"]] == [2, 3]
    assert feeds(svc, ch["id"], "?results=x&api_key=" + ch["read_key"])[1]["channel"]["id"] == ch["id"]
    for query in ("", "?api_key=" + ch["write_key"], "?api_key=WRONG"):
        assert feeds(svc, ch["id"], query) == (200, -1)                  # ThingSpeak's "no access"
    assert feeds(svc, 1999999, "?api_key=" + ch["read_key"]) == (404, -1)
    public = svc.ts.create_channel("public", ["t"], public=True)
    assert feeds(svc, public["id"]) == (200, {"channel": feeds(svc, public["id"])[1]["channel"], "feeds": []})
