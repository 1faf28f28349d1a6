"""lib/protobuf.py: the exact bytes of esp-provisioning sections 4, 5 and 8, cross-checks with the
`protobuf` package (dynamic descriptors), hypothesis fuzzing, and the same checks under MicroPython."""
import os

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, empty_pb2, message_factory, unknown_fields
from hypothesis import given, settings
from hypothesis import strategies as st

import protobuf as pb
from tests.mpy import run_mpy

# (name, wire bytes, encoder expression using `pb`, expected decode: sub-messages as nested dicts)
CASES = [
    ("sec0 session", "52 03 a2 01 00",
     "pb.field_varint(2, 0) + pb.field_msg(10, pb.field_varint(1, 0) + pb.field_msg(20))",
     {10: {20: {}}}),
    ("sec0 response", "52 05 08 01 aa 01 00",
     "pb.field_msg(10, pb.field_varint(1, 1) + pb.field_msg(21, pb.field_varint(1, 0)))",
     {10: {1: 1, 21: {}}}),
    ("ScanStart", "52 06 08 01 18 05 20 78",
     "pb.field_varint(1, 0) + pb.field_msg(10, pb.message(pb.field_varint(1, True), pb.field_varint(2, False),"
     " pb.field_varint(3, 5), pb.field_varint(4, 120)))",
     {10: {1: 1, 3: 5, 4: 120}}),
    ("ScanStatus", "08 02", "pb.field_varint(1, 2)", {1: 2}),
    ("ScanResult", "08 04 72 02 10 02",
     "pb.field_varint(1, 4) + pb.field_msg(14, pb.field_varint(1, 0) + pb.field_varint(2, 2))",
     {1: 4, 14: {2: 2}}),
    ("cloud_user_assoc", "52 16 0a 08 75 73 65 72 2d 61 62 63 12 0a 73 65 63 72 65 74 2d 31 32 33",
     "pb.field_varint(1, 0) + pb.field_msg(10, pb.field_bytes(1, 'user-abc') + pb.field_bytes(2, 'secret-123'))",
     {10: {1: b"user-abc", 2: b"secret-123"}}),
    ("SetConfig", "08 02 62 13 0a 07 48 6f 6d 65 4e 65 74 12 08 70 61 35 35 77 6f 72 64",
     "pb.field_varint(1, 2) + pb.field_msg(12, pb.field_bytes(1, b'HomeNet') + pb.field_bytes(2, b'pa55word')"
     " + pb.field_bytes(3, b'') + pb.field_varint(4, 0))",
     {1: 2, 12: {1: b"HomeNet", 2: b"pa55word"}}),
    ("ApplyConfig", "08 04", "pb.field_varint(1, 4)", {1: 4}),
    ("GetStatus", "52 00", "pb.field_varint(1, 0) + pb.field_msg(10)", {10: {}}),
    ("CtrlReset", "08 01 5a 00", "pb.field_varint(1, 1) + pb.field_msg(11)", {1: 1, 11: {}}),
    ("RespSetConfig", "08 03 6a 00", "pb.field_varint(1, 3) + pb.field_msg(13, pb.field_varint(1, 0))",
     {1: 3, 13: {}}),
    ("RespApplyConfig", "08 05 7a 00", "pb.field_varint(1, 5) + pb.field_msg(15)", {1: 5, 15: {}}),
    ("RespGetStatus connecting", "08 01 5a 02 10 01",
     "pb.field_varint(1, 1) + pb.field_msg(11, pb.field_varint(1, 0) + pb.field_varint(2, 1))",
     {1: 1, 11: {2: 1}}),
    ("RespGetStatus connecting, empty connected", "08 01 5a 04 10 01 5a 00",
     "pb.field_varint(1, 1) + pb.field_msg(11, pb.field_varint(2, 1) + pb.field_msg(11))",
     {1: 1, 11: {2: 1, 11: {}}}),
    ("RespGetStatus auth error", "08 01 5a 04 10 03 50 00",
     "pb.field_varint(1, 1) + pb.field_msg(11, pb.field_varint(2, 3) + pb.field_varint(10, 0, always=True))",
     {1: 1, 11: {2: 3, 10: 0}}),
    ("RespGetStatus network not found", "08 01 5a 04 10 03 50 01",
     "pb.field_varint(1, 1) + pb.field_msg(11, pb.field_varint(2, 3) + pb.field_varint(10, 1, always=True))",
     {1: 1, 11: {2: 3, 10: 1}}),
    ("RespCtrlReset", "08 02 62 00", "pb.field_varint(1, 2) + pb.field_varint(2, 0) + pb.field_msg(12)",
     {1: 2, 12: {}}),
    ("RespSetUserMapping", "08 01 5a 0b 12 09 6e 6f 64 65 2d 30 30 30 31",
     "pb.field_varint(1, 1) + pb.field_msg(11, pb.field_varint(1, 0) + pb.field_bytes(2, 'node-0001'))",
     {1: 1, 11: {2: b"node-0001"}}),
    ("WiFiScanResult rssi -47", "0a 02 41 50 10 06 18 d1 ff ff ff ff ff ff ff ff 01 22 06 01 02 03 04 05 06 28 03",
     "pb.message(pb.field_bytes(1, b'AP'), pb.field_varint(2, 6), pb.field_varint(3, -47),"
     " pb.field_bytes(4, bytes([1, 2, 3, 4, 5, 6])), pb.field_varint(5, 3))",
     {1: b"AP", 2: 6, 3: 2**64 - 47, 4: bytes([1, 2, 3, 4, 5, 6]), 5: 3}),
]

# helpers shared with the MicroPython run (kept as source so both interpreters execute the same code)
HELPERS = """
def tree(buf, exp):
    d = pb.decode(buf)
    assert sorted(d) == sorted(exp), (sorted(d), sorted(exp))
    for f in exp:
        if isinstance(exp[f], dict):
            tree(d[f], exp[f])
        else:
            assert d[f] == exp[f], (f, d[f], exp[f])
    return True


def summary(buf):
    try:
        d = pb.decode(buf)
    except ValueError as e:
        return "E:" + str(e)
    out = []
    for f in sorted(d):
        v = d[f]
        out.append("%d=%s" % (f, v if isinstance(v, int) else binascii.hexlify(v).decode()))
    return ";".join(out)
"""
import binascii  # noqa: E402  (used by HELPERS)

exec(HELPERS)


def wire(hexstr):
    return bytes.fromhex(hexstr.replace(" ", ""))


@pytest.mark.parametrize("name,hexstr,expr,expected", CASES, ids=[c[0] for c in CASES])
def test_section8_bytes(name, hexstr, expr, expected):
    assert eval(expr) == wire(hexstr)
    assert tree(wire(hexstr), expected)


def test_sec1_session_messages(vector):
    v = vector("esp_prov_sec1.json")
    d, m = v["derived"], v["session_messages"]
    h = bytes.fromhex

    def session(msg, field, body):
        return pb.field_varint(2, 1) + pb.field_msg(11, pb.field_varint(1, msg) + pb.field_msg(field, body))

    assert session(0, 20, pb.field_bytes(1, h(d["client_pubkey"]))).hex() == m["SessionCmd0"]
    assert session(1, 21, pb.field_varint(1, 0) + pb.field_bytes(2, h(d["device_pubkey"]))
                   + pb.field_bytes(3, h(v["inputs"]["device_random"]))).hex() == m["SessionResp0"]
    assert session(2, 22, pb.field_bytes(2, h(d["client_verify_data"]))).hex() == m["SessionCmd1"]
    assert session(3, 23, pb.field_varint(1, 0)
                   + pb.field_bytes(3, h(d["device_verify_data"]))).hex() == m["SessionResp1"]
    # and the device's decoding of what the client sends
    top = pb.decode(h(m["SessionCmd0"]))
    assert top[2] == 1
    sec1 = pb.decode(top[11])
    assert sec1.get(1, 0) == 0
    assert pb.decode(sec1[20])[1].hex() == d["client_pubkey"]
    sc1 = pb.decode(pb.decode(pb.decode(h(m["SessionCmd1"]))[11])[22])
    assert sc1[2].hex() == d["client_verify_data"]


def test_proto_ver_probe_is_not_protobuf():
    # `---` is field 5 with wire type 5 (fixed32): outside what the device decodes
    with pytest.raises(ValueError, match="bad wire type"):
        pb.decode(b"---")


# ---------------------------------------------------------------- encoding details

@pytest.mark.parametrize("n,hexstr", [
    (0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"), (2**32 - 1, "ffffffff0f"),
    (2**64 - 1, "ffffffffffffffffff01"), (-1, "ffffffffffffffffff01"), (-47, "d1ffffffffffffffff01"),
    (-2**31, "80808080f8ffffffff01"), (-2**63, "80808080808080808001"), (True, "01"),
])
def test_varint(n, hexstr):
    assert pb.varint(n).hex() == hexstr
    assert pb.decode(b"\x08" + pb.varint(n))[1] == n & (2**64 - 1)


def test_int_conversions():
    assert pb.to_int32(pb.decode(b"\x08" + pb.varint(-47))[1]) == -47
    assert pb.to_int32(2**31 - 1) == 2**31 - 1
    assert pb.to_int32(2**64 - 1) == -1
    assert pb.to_int64(2**64 - 2**63) == -2**63
    assert pb.to_int64(5) == 5


@pytest.mark.parametrize("call", [
    lambda: pb.varint(2**64), lambda: pb.varint(-2**63 - 1), lambda: pb.tag(0, 0),
    lambda: pb.tag(2**29, 0), lambda: pb.field_varint(0, 1),
])
def test_encode_errors(call):
    with pytest.raises(ValueError):
        call()


def test_omission_rules():
    assert pb.field_varint(1, 0) == b""
    assert pb.field_varint(1, False) == b""
    assert pb.field_varint(10, 0, always=True) == b"\x50\x00"
    assert pb.field_bytes(1, b"") == b""
    assert pb.field_bytes(1, "") == b""
    assert pb.field_bytes(1, b"", always=True) == b"\x0a\x00"
    assert pb.field_msg(11) == b"\x5a\x00"
    assert pb.field_msg(20, b"") == b"\xa2\x01\x00"
    assert pb.field_bytes(1, "é") == b"\x0a\x02\xc3\xa9"
    assert pb.field_bytes(1, memoryview(b"ab")) == b"\x0a\x02ab"


# spec section 4 tag table
@pytest.mark.parametrize("f,wt,hexstr", [
    (1, 0, "08"), (2, 0, "10"), (1, 2, "0a"), (2, 2, "12"), (3, 2, "1a"), (10, 2, "52"), (11, 2, "5a"),
    (12, 2, "62"), (13, 2, "6a"), (14, 2, "72"), (15, 2, "7a"), (20, 2, "a201"), (21, 2, "aa01"),
    (22, 2, "b201"), (23, 2, "ba01"),
])
def test_tags(f, wt, hexstr):
    assert pb.tag(f, wt).hex() == hexstr


# ---------------------------------------------------------------- decoding details

@pytest.mark.parametrize("data,msg", [
    (b"\x08", "truncated"),
    (b"\x08\x80", "truncated"),
    (b"\x0a\x05ab", "truncated"),
    (b"\x0a", "truncated"),
    (b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "truncated"),
    (b"\x08" + b"\xff" * 10 + b"\x01", "bad varint"),
    (b"\xff" * 11, "bad varint"),
    (b"\x09" + bytes(8), "bad wire type"),
    (b"\x0b", "bad wire type"),
    (b"\x0c", "bad wire type"),
    (b"\x0d" + bytes(4), "bad wire type"),
    (b"\x0e", "bad wire type"),
    (b"\x0f", "bad wire type"),
    (b"\x00\x00", "bad field number"),
    (b"\x02\x00", "bad field number"),
    (pb.varint(2**32 << 3), "bad field number"),
])
def test_decode_errors(data, msg):
    with pytest.raises(ValueError, match=msg):
        pb.decode(data)


def test_decode_details():
    assert pb.decode(b"") == {}
    # ten-byte varint: bits beyond 64 are dropped, as Google's decoders do
    assert pb.decode(b"\x08" + b"\xff" * 9 + b"\x7f") == {1: 2**64 - 1}
    # non-minimal varints are accepted
    assert pb.decode(b"\x88\x00\x81\x80\x00") == {1: 1}
    # last occurrence wins unless the field is declared repeated
    assert pb.decode(b"\x08\x01\x08\x02") == {1: 2}
    assert pb.decode(b"\x0a\x01a\x08\x05\x0a\x00", repeated=(1,)) == {1: [b"a", 5, b""]}
    assert pb.decode(b"\x08\x05", repeated=(2,)) == {1: 5}
    # unknown fields are returned; skipping is up to the caller
    assert pb.decode(b"\xf8\x07\x01\x08\x02") == {127: 1, 1: 2}
    # inputs of any buffer type; LEN values are copies
    buf = bytearray(b"\x0a\x02ab")
    d = pb.decode(memoryview(buf))
    buf[2] = 0
    assert d == {1: b"ab"} and isinstance(d[1], bytes)
    assert [(f, wt, bytes(v) if wt == 2 else v) for f, wt, v in pb.fields(b"\x08\x01\x12\x01x")] == [
        (1, 0, 1), (2, 2, b"x")]


# ---------------------------------------------------------------- cross-checks with google.protobuf

def _make_classes():
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="roost_pb_test.proto", package="rt", syntax="proto3")
    auth = fdp.enum_type.add(name="WifiAuthMode")
    for i, n in enumerate(["Open", "WEP", "WPA_PSK", "WPA2_PSK"]):
        auth.value.add(name=n, number=i)

    def msg(name, fields, oneofs=()):
        m = fdp.message_type.add(name=name)
        for o in oneofs:
            m.oneof_decl.add(name=o)
        for spec in fields:
            fname, num, typ = spec[:3]
            extra = spec[3] if len(spec) > 3 else {}
            fd = m.field.add(name=fname, number=num, type=typ,
                             label=F.LABEL_REPEATED if extra.get("repeated") else F.LABEL_OPTIONAL)
            if "type_name" in extra:
                fd.type_name = extra["type_name"]
            if "oneof" in extra:
                fd.oneof_index = extra["oneof"]

    msg("WiFiScanResult", [("ssid", 1, F.TYPE_BYTES), ("channel", 2, F.TYPE_UINT32), ("rssi", 3, F.TYPE_INT32),
                           ("bssid", 4, F.TYPE_BYTES), ("auth", 5, F.TYPE_ENUM, {"type_name": ".rt.WifiAuthMode"})])
    msg("RespScanResult", [("entries", 1, F.TYPE_MESSAGE, {"repeated": True, "type_name": ".rt.WiFiScanResult"})])
    msg("CmdSetConfig", [("ssid", 1, F.TYPE_BYTES), ("passphrase", 2, F.TYPE_BYTES), ("bssid", 3, F.TYPE_BYTES),
                         ("channel", 4, F.TYPE_INT32)])
    msg("RespGetStatus", [("status", 1, F.TYPE_UINT32), ("sta_state", 2, F.TYPE_UINT32),
                          ("fail_reason", 10, F.TYPE_UINT32, {"oneof": 0}),
                          ("connected", 11, F.TYPE_MESSAGE, {"oneof": 0, "type_name": ".rt.Empty"})],
        oneofs=["state"])
    msg("Empty", [])
    msg("Wide", [("u64", 1, F.TYPE_UINT64), ("i64", 2, F.TYPE_INT64), ("b", 3, F.TYPE_BOOL),
                 ("s", 4, F.TYPE_STRING), ("big", 536870911, F.TYPE_UINT32)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName("rt." + name))
            for name in ("WiFiScanResult", "RespScanResult", "CmdSetConfig", "RespGetStatus", "Wide")}


PBC = _make_classes()
u32 = st.integers(min_value=0, max_value=2**32 - 1)
i32 = st.integers(min_value=-2**31, max_value=2**31 - 1)
scan_entry = st.fixed_dictionaries({
    "ssid": st.binary(max_size=32), "channel": u32, "rssi": i32,
    "bssid": st.binary(max_size=6), "auth": st.integers(min_value=0, max_value=3)})


def encode_entry(e):
    return pb.message(pb.field_bytes(1, e["ssid"]), pb.field_varint(2, e["channel"]), pb.field_varint(3, e["rssi"]),
                      pb.field_bytes(4, e["bssid"]), pb.field_varint(5, e["auth"]))


def decode_entry(buf):
    d = pb.decode(buf)
    return {"ssid": d.get(1, b""), "channel": d.get(2, 0), "rssi": pb.to_int32(d.get(3, 0)),
            "bssid": d.get(4, b""), "auth": d.get(5, 0)}


@settings(max_examples=200, deadline=None)
@given(scan_entry)
def test_scan_result_matches_google(e):
    ours = encode_entry(e)
    g = PBC["WiFiScanResult"](**e)
    assert ours == g.SerializeToString(deterministic=True)
    assert decode_entry(g.SerializeToString()) == e
    parsed = PBC["WiFiScanResult"]()
    parsed.ParseFromString(ours)
    assert parsed == g


@settings(max_examples=100, deadline=None)
@given(st.lists(scan_entry, max_size=5))
def test_repeated_nested_matches_google(entries):
    ours = pb.message(*[pb.field_msg(1, encode_entry(e)) for e in entries])
    g = PBC["RespScanResult"](entries=[PBC["WiFiScanResult"](**e) for e in entries])
    assert ours == g.SerializeToString(deterministic=True)
    got = pb.decode(g.SerializeToString(), repeated=(1,))
    assert [decode_entry(b) for b in got.get(1, [])] == entries


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=40), st.binary(max_size=70), st.binary(max_size=8), i32)
def test_set_config_matches_google(ssid, pw, bssid, channel):
    ours = pb.message(pb.field_bytes(1, ssid), pb.field_bytes(2, pw), pb.field_bytes(3, bssid),
                      pb.field_varint(4, channel))
    g = PBC["CmdSetConfig"](ssid=ssid, passphrase=pw, bssid=bssid, channel=channel)
    assert ours == g.SerializeToString(deterministic=True)
    d = pb.decode(g.SerializeToString())
    assert (d.get(1, b""), d.get(2, b""), d.get(3, b""), pb.to_int32(d.get(4, 0))) == (ssid, pw, bssid, channel)


@pytest.mark.parametrize("reason", [0, 1])
def test_oneof_scalar_zero_matches_google(reason):
    g = PBC["RespGetStatus"](sta_state=3, fail_reason=reason)
    ours = pb.field_varint(2, 3) + pb.field_varint(10, reason, always=True)
    assert ours == g.SerializeToString(deterministic=True)
    g = PBC["RespGetStatus"](sta_state=1)
    g.connected.SetInParent()
    assert pb.field_varint(2, 1) + pb.field_msg(11) == g.SerializeToString(deterministic=True) == b"\x10\x01\x5a\x00"


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**64 - 1), st.integers(min_value=-2**63, max_value=2**63 - 1),
       st.booleans(), st.text(max_size=20))
def test_wide_scalars_match_google(u64, i64, b, s):
    g = PBC["Wide"](u64=u64, i64=i64, b=b, s=s, big=u64 & 0xFFFFFFFF)
    ours = pb.message(pb.field_varint(1, u64), pb.field_varint(2, i64), pb.field_varint(3, b),
                      pb.field_bytes(4, s), pb.field_varint(536870911, u64 & 0xFFFFFFFF))
    assert ours == g.SerializeToString(deterministic=True)
    d = pb.decode(ours)
    assert d.get(1, 0) == u64 and pb.to_int64(d.get(2, 0)) == i64 and d.get(3, 0) == b
    assert d.get(4, b"").decode() == s


field_list = st.lists(st.one_of(
    st.tuples(st.integers(min_value=1, max_value=2**29 - 1), st.just(0), st.integers(min_value=0, max_value=2**64 - 1)),
    st.tuples(st.integers(min_value=1, max_value=2**29 - 1), st.just(2), st.binary(max_size=40)),
), max_size=12)


@settings(max_examples=200, deadline=None)
@given(field_list)
def test_field_stream_matches_google_unknown_fields(items):
    buf = b"".join(pb.tag(f, wt) + (pb.varint(v) if wt == 0 else pb.varint(len(v)) + v) for f, wt, v in items)
    ours = [(f, wt, bytes(v) if wt == 2 else v) for f, wt, v in pb.fields(buf)]
    assert ours == items
    e = empty_pb2.Empty()
    e.ParseFromString(buf)
    theirs = [(u.field_number, u.wire_type, u.data) for u in unknown_fields.UnknownFieldSet(e)]
    assert theirs == items


# ---------------------------------------------------------------- fuzzing

def _walk(buf, depth=0):
    """Decode and try every LEN value as a sub-message too; only ValueError may escape."""
    try:
        d = pb.decode(buf, repeated=(1,))
    except ValueError:
        return
    if depth < 4:
        for v in d.values():
            for x in (v if isinstance(v, list) else [v]):
                if not isinstance(x, int):
                    _walk(x, depth + 1)


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_garbage(data):
    _walk(data)
    try:
        list(pb.fields(data))
    except ValueError:
        return
    # whatever we accept, Google's parser accepts too (it is more lenient: fixed32/64, groups)
    e = empty_pb2.Empty()
    e.ParseFromString(data)


valid_msg = st.builds(lambda items: b"".join(
    pb.tag(f, wt) + (pb.varint(v) if wt == 0 else pb.varint(len(v)) + v) for f, wt, v in items), field_list)


@settings(max_examples=500, deadline=None)
@given(valid_msg, st.data())
def test_fuzz_mutated_valid(buf, data):
    if not buf:
        return
    b = bytearray(buf)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        i = data.draw(st.integers(min_value=0, max_value=max(0, len(b) - 1)))
        if op == "flip" and b:
            b[i] ^= data.draw(st.integers(min_value=1, max_value=255))
        elif op == "cut":
            del b[i:]
        else:
            b[i:i] = data.draw(st.binary(min_size=1, max_size=3))
    _walk(bytes(b))


# ---------------------------------------------------------------- MicroPython unix port

def test_micropython_section8_and_fuzz():
    rnd = os.urandom
    garbage = [rnd(n % 40) for n in range(60)]
    for _, hexstr, _, _ in CASES:  # truncations and bit flips of the real messages
        w = wire(hexstr)
        garbage += [w[:i] for i in range(len(w))]
        garbage += [bytes(x ^ (1 << (i % 8)) if j == i else x for j, x in enumerate(w)) for i in range(len(w))]
    garbage += [b"\x08" + b"\xff" * 10 + b"\x01", b"\x0a\xff\xff\xff\xff\x0f", b"\x08" + b"\xff" * 9 + b"\x7f"]
    expected = [summary(g) for g in garbage]
    code = "import binascii\nimport protobuf as pb\n" + HELPERS + """
cases = %r
for name, hexstr, expr, exp in cases:
    w = binascii.unhexlify(hexstr.replace(" ", ""))
    print("OK" if eval(expr) == w and tree(w, exp) else "BAD " + name)
print("V", binascii.hexlify(pb.varint(-47)).decode(), pb.to_int32(pb.decode(b"\\x18" + pb.varint(-47))[3]))
for g in %r:
    print("S " + summary(g))
""" % (CASES, garbage)
    out = run_mpy(code, heap="400K").strip().split("\n")
    assert out[:len(CASES)] == ["OK"] * len(CASES)
    assert out[len(CASES)] == "V d1ffffffffffffffff01 -47"
    assert out[len(CASES) + 1:] == ["S " + s for s in expected]
