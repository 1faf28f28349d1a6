"""Readings (tools/cloud/readings.py, docs/cloud.md "Readings"): the SenML parser, storage once per
(node, seq) with its counters, then LocalCloud's wiring through the real Mosquitto: a thing
publishing on its data channel over TLS, duplicates, a malformed message, the ACL."""
import json
import logging

import pytest

from cloud_helpers import Clock, Thing, call, published_or_dropped
from tools.cloud.db import Database
from tools.cloud.local import data_channel_of
from tools.cloud.readings import ReadingsService, channel_of, parse_senml

NOW = 1767225600.0                                  # 2026-01-01T00:00:00Z


def pack(*records):
    return json.dumps(list(records)).encode()


def reading(seq, v=21.5, **kw):
    return dict({"n": "temperature", "u": "Cel", "v": v, "seq": seq}, **kw)


# --- parse_senml ----------------------------------------------------------------------------

def test_base_fields_carry_over_to_the_following_records():
    got = parse_senml(pack({"bn": "n1:", "bt": NOW, "bu": "Cel", "n": "temperature", "v": 21.5, "seq": 1},
                           {"n": "temperature", "v": 21.7, "t": 30, "seq": 2},
                           {"bu": "%RH", "n": "humidity", "v": 40, "t": 30.5, "seq": 3},
                           {"n": "battery", "u": "V", "v": 3.7, "seq": 4}), received_at=NOW + 100)
    assert got == [
        {"seq": 1, "name": "temperature", "unit": "Cel", "value": 21.5, "time": NOW},
        {"seq": 2, "name": "temperature", "unit": "Cel", "value": 21.7, "time": NOW + 30},
        {"seq": 3, "name": "humidity", "unit": "%RH", "value": 40, "time": NOW + 30.5},
        {"seq": 4, "name": "battery", "unit": "V", "value": 3.7, "time": NOW},
    ]
    assert type(got[2]["value"]) is int                                   # the JSON type is kept


def test_base_only_records_base_value_and_no_unit():
    got = parse_senml(pack({"bn": "n1:", "bt": NOW, "bv": 20, "bver": 10, "note": "ignored"},
                           {"n": "temperature", "v": 1.5, "seq": 7}, {"n": "state", "vs": "ok", "seq": 8}), NOW)
    assert got == [{"seq": 7, "name": "temperature", "unit": None, "value": 21.5, "time": NOW},
                   {"seq": 8, "name": "state", "unit": None, "value": "ok", "time": NOW}]


@pytest.mark.parametrize("bt, t, expected", [
    (None, None, NOW),                              # no time: now
    (None, -30, NOW - 30),                          # relative: 30 s before the message arrived
    (-60, 10.5, NOW - 49.5),                        # bt + t, relative
    (None, 2 ** 28 - 1, NOW + 2 ** 28 - 1),         # still relative (RFC 8428 4.5.3)
    (None, 2 ** 28, 2.0 ** 28),                     # absolute from here
    (NOW - 5, 2, NOW - 3),                          # absolute base, relative offset
    (2 ** 27, 2 ** 27, 2.0 ** 28),                  # the sum decides
])
def test_relative_and_absolute_time(bt, t, expected):
    rec = reading(1)
    rec.update({k: x for k, x in (("bt", bt), ("t", t)) if x is not None})
    got = parse_senml(pack(rec), received_at=NOW)[0]["time"]
    assert got == expected and type(got) is float


def test_string_and_bool_values():
    got = parse_senml(pack({"n": "door", "vb": False, "seq": 1}, {"n": "fw", "vs": "1.2.0", "seq": 2},
                           {"n": "empty", "vs": "", "seq": 3}), NOW)
    assert [(r["value"], type(r["value"])) for r in got] == [(False, bool), ("1.2.0", str), ("", str)]


def test_bytes_str_and_unknown_plain_labels():
    payload = '[{"n":"t","v":1,"seq":1,"seq_note":"x","ut":60,"extra":{"a":1}}]'
    assert parse_senml(payload, NOW) == parse_senml(payload.encode(), NOW) == parse_senml(
        bytearray(payload.encode()), NOW)


@pytest.mark.parametrize("records", [
    [reading(1, bad_=1)],
    [reading(1), reading(2, foo_="x")],                                  # anywhere in the message
    [{"bn": "n1:", "bx_": 1}, reading(1)],                               # in a base-only record
])
def test_unknown_must_understand_label_rejects_the_message(records):
    with pytest.raises(ValueError, match="must-understand label '(bad|foo|bx)_'"):
        parse_senml(pack(*records), NOW)


MALFORMED = [
    (b"not json", "not UTF-8 JSON"),
    (b"\xff\xfe[]", "not UTF-8 JSON"),
    (b"", "not UTF-8 JSON"),
    (b"[" * 100000, "not UTF-8 JSON"),
    (b'{"n": "t", "v": 1, "seq": 1}', "not a JSON array"),
    (b'"x"', "not a JSON array"),
    (b"[]", "no readings"),
    (b'[{"bn": "n1:", "bt": 5}]', "no readings"),
    (b"[1]", "record 0: not an object"),
    (pack(reading(1), [reading(2)]), "record 1: not an object"),
    (pack({"v": 1, "seq": 1}), "no name"),
    (pack(reading(1, n="")), "no name"),
    (pack(reading(1, n=5)), "no name"),
    (pack({"n": "t", "v": 1}), "no seq"),
    (pack(reading(0)), "seq must be an integer >= 1"),
    (pack(reading(-3)), "seq must be an integer >= 1"),
    (pack(reading(1.0)), "seq must be an integer >= 1"),
    (pack(reading("1")), "seq must be an integer >= 1"),
    (pack(reading(True)), "seq must be an integer >= 1"),
    (pack(reading(2 ** 63)), "seq must be an integer >= 1"),
    (pack({"n": "t", "seq": 1}), "no value"),
    (pack({"n": "t", "seq": 1, "vd": "aGk="}), "no value"),
    (pack(reading(1, vs="x")), "more than one value"),
    (pack(reading(1, v="21.5")), "v is not a number"),
    (pack(reading(1, v=True)), "v is not a number"),
    (pack(reading(1, v=None)), "v is not a number"),
    (b'[{"n": "t", "v": NaN, "seq": 1}]', "v is not a finite number"),
    (b'[{"n": "t", "v": 1e400, "seq": 1}]', "v is not a finite number"),
    (pack({"n": "t", "vs": 1, "seq": 1}), "vs is not a string"),
    (pack({"n": "t", "vb": 1, "seq": 1}), "vb is not true or false"),
    (pack(reading(1, t="now")), "t is not a number"),
    (pack(reading(1, bt="x")), "bt is not a number"),
    (pack(reading(1, bn=1)), "bn is not a string"),
    (pack(reading(1, bu=None)), "bu is not a string"),
    (pack(reading(1, u=5)), "u is not a string"),
    (pack(reading(1, u=None)), "u is not a string"),
    (pack(reading(1, bver=11)), "bver 11 is not supported"),
    (pack(reading(1, bver="10")), "bver is not an integer"),
    (b'[{"bv": 1e308, "n": "t", "v": 1e308, "seq": 1}]', "bv \\+ v is not a finite number"),
    (pack(reading(1), reading(2), reading(1, v=22)), "record 2: seq 1 appears twice"),
]


@pytest.mark.parametrize("payload, message", MALFORMED)
def test_malformed_messages_are_rejected(payload, message):
    with pytest.raises(ValueError, match=message):
        parse_senml(payload, NOW)


def test_topics_and_data_channels():
    assert channel_of("channels/abc/messages") == "abc"
    assert channel_of("channels/abc/messages/") == "abc"
    assert channel_of("channels/abc/messages/senml/temp") == "abc"
    for topic in ("channels/abc", "channels//messages", "channels/abc/message", "/channels/abc/messages",
                  "node/abc/messages", "channels/a/b/messages"):
        assert channel_of(topic) is None, topic
    meta = [{"id": "d", "metadata": {"type": "data"}}, {"id": "c", "metadata": {"type": "control"}}]
    assert data_channel_of({"channels": meta}) == "d"
    assert data_channel_of({"channels": [{"id": "a"}, {"id": "b"}]}) == "b"        # the agent's order
    assert data_channel_of({"channels": [{"id": "a", "metadata": {"type": "control"}}]}) is None
    assert data_channel_of({"channels": []}) is None


# --- ReadingsService: stored once, counters, order ----------------------------------------------

@pytest.fixture
def svc():
    db = Database()
    yield ReadingsService(db, Clock(NOW))
    db.close()


def test_duplicates_are_stored_once_and_counted(svc):
    assert svc.ingest("n1", pack(reading(1), reading(2, v=21.7), reading(3, v=21.9))) == (3, 0)
    svc.clock.now += 10
    assert svc.ingest("n1", pack(reading(1), reading(2, v=21.7), reading(3, v=21.9))) == (0, 3)  # re-sent
    assert svc.ingest("n1", pack(reading(3, v=21.9), reading(4, v=22.0))) == (1, 1)
    got = svc.readings("n1")
    assert [(r["seq"], r["value"], r["received_at"]) for r in got] == [
        (1, 21.5, NOW), (2, 21.7, NOW), (3, 21.9, NOW), (4, 22.0, NOW + 10)]
    assert got[0] == {"seq": 1, "name": "temperature", "unit": "Cel", "value": 21.5, "time": NOW,
                      "received_at": NOW}
    assert svc.stats("n1") == {"count": 4, "duplicates": 4, "rejected": 0, "first_seq": 1, "last_seq": 4,
                               "gaps": 0}


def test_a_rejected_message_stores_nothing_and_is_counted(svc, caplog):
    svc.ingest("n1", pack(reading(1)))
    with caplog.at_level(logging.WARNING, "roost.cloud.readings"):
        for payload in (pack(reading(2), reading(3, v="hot")), b"\x00garbage", pack(reading(4, x_=1))):
            with pytest.raises(ValueError):
                svc.ingest("n1", payload)
    assert [r["seq"] for r in svc.readings("n1")] == [1]                  # not even seq 2
    assert svc.stats("n1")["rejected"] == 3 and svc.stats("n1")["duplicates"] == 0
    assert "node n1: message rejected: record 1: v is not a number" in caplog.text
    assert svc.stats("n2")["rejected"] == 0


def test_out_of_order_readings_and_gaps(svc):
    for seq in (10, 5, 7):                                               # after a reconnect, say
        assert svc.ingest("n1", pack(reading(seq))) == (1, 0)
    assert [r["seq"] for r in svc.readings("n1")] == [5, 7, 10]
    assert svc.stats("n1") == {"count": 3, "duplicates": 0, "rejected": 0, "first_seq": 5, "last_seq": 10,
                               "gaps": 3}                                # 6, 8, 9
    assert [r["seq"] for r in svc.readings("n1", since_seq=5)] == [7, 10]
    assert [r["seq"] for r in svc.readings("n1", limit=2)] == [5, 7]
    assert [r["seq"] for r in svc.readings("n1", since_seq=7, limit=5)] == [10]
    svc.ingest("n1", pack(reading(6), reading(8), reading(9)))
    assert svc.stats("n1")["gaps"] == 0 and svc.stats("n1")["count"] == 6


def test_empty_stats_and_nodes_are_separate(svc):
    assert svc.stats("n1") == {"count": 0, "duplicates": 0, "rejected": 0, "first_seq": None,
                               "last_seq": None, "gaps": 0}
    assert svc.readings("n1") == []
    assert svc.ingest("n1", pack(reading(1))) == (1, 0)
    assert svc.ingest("n2", pack(reading(1, v=5))) == (1, 0)              # same seq, another node
    assert [r["value"] for r in svc.readings("n2")] == [5]


def test_values_keep_their_json_type_in_storage(tmp_path):
    db = Database(tmp_path / "cloud.db")
    ReadingsService(db, Clock(NOW)).ingest("n1", pack(
        reading(1, v=21), reading(2, v=21.0), {"n": "s", "vs": "21", "seq": 3}, {"n": "b", "vb": True, "seq": 4},
        {"n": "z", "vb": False, "seq": 5}))
    db.close()
    db = Database(tmp_path / "cloud.db")                                  # and they survive a restart
    got = [r["value"] for r in ReadingsService(db).readings("n1")]
    db.close()
    assert got == [21, 21.0, "21", True, False]
    assert [type(v) for v in got] == [int, float, str, bool, bool]


def test_a_repeat_with_other_content_keeps_the_first_and_says_so(svc, caplog):
    svc.ingest("n1", pack(reading(1, v=21.5)))
    svc.clock.now += 60
    with caplog.at_level(logging.WARNING, "roost.cloud.readings"):
        assert svc.ingest("n1", pack(reading(1, v=21.5, t=-60))) == (0, 1)      # same reading, later
        assert "other content" not in caplog.text
        assert svc.ingest("n1", pack(reading(1, v=99.0))) == (0, 1)            # a reused seq
    assert "seq 1 sent again with other content" in caplog.text
    assert svc.readings("n1")[0]["value"] == 21.5 and svc.stats("n1")["duplicates"] == 2


def test_base_name_of_another_node_is_logged_the_channel_decides(svc, caplog):
    with caplog.at_level(logging.WARNING, "roost.cloud.readings"):
        svc.ingest("n1", pack(dict(reading(1), bn="n1:")))
        assert caplog.text == ""
        svc.ingest("n1", pack(dict(reading(2), bn="n2:")))
    assert "base name 'n2:'" in caplog.text
    assert [r["seq"] for r in svc.readings("n1")] == [1, 2] and svc.readings("n2") == []


# --- through the local cloud: a thing on its data channel over TLS -----------------------------

@pytest.fixture
def n1(cloud):
    """Device n1's config and its thing, connected over TLS."""
    cfg = cloud.add_device("n1")
    t = Thing(cloud, cfg)
    assert t.connected() == 0
    yield cfg, t
    t.close()


def test_readings_end_to_end_once_each(cloud, n1):
    cfg, t = n1
    ctl, data = (c["id"] for c in cfg["channels"])
    assert cloud.data_channel("n1") == data
    first = pack({"bn": "n1:", "bt": -20.0, "bu": "Cel"}, {"n": "temperature", "v": 21.5, "t": -10, "seq": 1},
                 {"n": "humidity", "u": "%RH", "v": 40, "seq": 2})
    sent = [("channels/%s/messages" % data, first),
            ("channels/%s/messages/senml" % data, pack(reading(3, v=21.6))),   # a subtopic
            ("channels/%s/messages" % data, first),                            # re-sent: duplicates
            ("channels/%s/messages" % data, b"[{not json"),                    # rejected
            ("channels/%s/messages/res" % ctl, b'[{"bn":"x","n":"control","vs":"ok"}]'),   # an agent reply
            ("channels/%s/messages" % data, pack(reading(5, v=21.8)))]         # out of order: 4 is late
    for topic, payload in sent:
        assert t.publish(topic, payload, qos=1).rc == 0
    got = cloud.wait_readings("n1", 4)
    assert [(r["seq"], r["name"], r["unit"], r["value"]) for r in got] == [
        (1, "temperature", "Cel", 21.5), (2, "humidity", "%RH", 40), (3, "temperature", "Cel", 21.6),
        (5, "temperature", "Cel", 21.8)]
    assert [r["time"] - r["received_at"] for r in got[:2]] == pytest.approx([-30, -20])    # relative
    assert cloud.reading_stats("n1") == {"count": 4, "duplicates": 2, "rejected": 1, "first_seq": 1,
                                         "last_seq": 5, "gaps": 1}
    late = ("channels/%s/messages" % data, pack(reading(4, v=21.7)))
    assert t.publish(*late, qos=1).rc == 0
    assert [r["seq"] for r in cloud.wait_readings("n1", 5)] == [1, 2, 3, 4, 5]
    assert cloud.reading_stats("n1")["gaps"] == 0
    # the message log has each of them once (logged after it was handled); commands go their way
    cloud.wait_message(late[0], match=lambda p: p == late[1])
    assert cloud.messages("channels/#") == sent + [late]
    assert t.subscribe("channels/%s/messages/req" % ctl) == 1
    req_id = cloud.send_command("n1", "rebootstrap")
    assert json.loads(t.wait_message("channels/%s/messages/req" % ctl))[0]["bn"] == req_id + ":"
    assert cloud.reading_stats("n1")["rejected"] == 1 and cloud.readings_service.dropped() == {}


def test_admin_http_lists_readings(cloud):
    cloud.readings_service.ingest("n1", pack(*(reading(s) for s in (1, 2, 4))))
    assert call(cloud, "GET", "/admin/readings/n1")[0] == 401
    st, doc = call(cloud, "GET", "/admin/readings/n1", token=cloud.admin_token)
    assert st == 200 and doc["node_id"] == "n1" and [r["seq"] for r in doc["readings"]] == [1, 2, 4]
    assert doc["stats"] == cloud.reading_stats("n1") and doc["stats"]["gaps"] == 1
    st, doc = call(cloud, "GET", "/admin/readings/n1?since_seq=1&limit=1", token=cloud.admin_token)
    assert st == 200 and [r["seq"] for r in doc["readings"]] == [2]
    st, doc = call(cloud, "GET", "/admin/readings/n1?since_seq=%d" % 2 ** 70, token=cloud.admin_token)
    assert st == 200 and doc["readings"] == []
    for bad in ("since_seq=x", "limit=1.5", "since_seq=-1", "limit=-2"):
        assert call(cloud, "GET", "/admin/readings/n1?" + bad, token=cloud.admin_token)[0] == 400, bad
    assert call(cloud, "GET", "/admin/readings/", token=cloud.admin_token)[0] == 400
    st, doc = call(cloud, "GET", "/admin/readings/nobody", token=cloud.admin_token)
    assert st == 200 and doc["readings"] == [] and doc["stats"]["count"] == 0


def test_another_devices_channel_is_refused_and_strays_are_dropped(cloud, n1):
    t, other = n1[1], cloud.add_device("n2")
    theirs = cloud.data_channel("n2")
    assert published_or_dropped(cloud, t, "channels/%s/messages" % theirs, pack(reading(1))) is False
    assert cloud.reading_stats("n1")["count"] == cloud.reading_stats("n2")["count"] == 0
    # only the cloud itself could publish there: a channel nobody owns is counted, not stored
    cloud.publish("channels/nobody/messages", pack(reading(1)))
    cloud.wait_message("channels/nobody/messages")
    assert cloud.readings_service.dropped() == {"nobody": 1}
    # a control channel is not a data channel: nothing stored, nothing rejected
    cloud.publish("channels/%s/messages" % other["channels"][0]["id"], pack(reading(1)))
    cloud.wait_message("channels/%s/messages" % other["channels"][0]["id"])
    assert cloud.reading_stats("n2") == cloud.reading_stats("n1")
    assert cloud.reading_stats("n2")["count"] == 0 and cloud.reading_stats("n2")["rejected"] == 0
    with pytest.raises(TimeoutError, match="0 of 1 readings of node n2 .*'rejected': 0"):
        cloud.wait_readings("n2", 1, timeout=0.2)


def test_roost_cloud_readings_lists_the_latest_and_a_summary(cloud, capsys):
    from tools import cli
    cloud.readings_service.ingest("n1", json.dumps([{"n": "temperature", "u": "Cel", "v": 20 + s / 10, "seq": s,
                                                     "t": 1767225600 + s} for s in (1, 2, 3, 5)]))
    cloud.readings_service.ingest("n1", json.dumps([{"n": "temperature", "u": "Cel", "v": 20.3, "seq": 3}]))
    cli.main(["cloud", "readings", "n1", "--last", "2", "--dir", str(cloud.dir)])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[0].startswith("seq 3 ") and out[1].startswith("seq 5 ") and "20.5 Cel" in out[1]
    assert out[2].endswith("20.50 Cel  4 readings, seq 1..5, 1 missing, 1 sent twice (kept once)")
    cli.main(["cloud", "readings", "nobody", "--dir", str(cloud.dir)])
    assert capsys.readouterr().out == "-  no readings yet  0 readings, seq None..None, 0 missing, 0 sent twice (kept once)\n"
