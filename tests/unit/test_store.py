"""firmware/store.py under the MicroPython unix port, on a LittleFS image in tmp_path.

Each test runs one micropython process: PRELUDE mounts a fresh 2 MiB image at
/flash through a block device that counts writes, then the test's code runs and
prints `RESULT <json>` lines that the test checks here.
"""
import json

import pytest

from tests.mpy import run_mpy

PATH = ("lib", ".", "tools/sim/chip")
SECRET_MARK = "S3CR3T"

PRELUDE = r'''
import vfs, os, json, log
from flash import FileBlockDevice
from firmware import records, store

class CountingBD(FileBlockDevice):
    pages = 0      # write() calls of the simulated flash (one 256-byte page each)
    programmed = 0  # bytes programmed
    erases = 0     # 4 KB sector erases
    def writeblocks(self, block, buf, offset=None):
        CountingBD.programmed += len(buf)
        CountingBD.pages += (len(buf) + 255) // 256
        super().writeblocks(block, buf, offset)
    def ioctl(self, op, arg):
        if op == 6:
            CountingBD.erases += 1
        return super().ioctl(op, arg)

def counts():
    return [CountingBD.pages, CountingBD.programmed, CountingBD.erases]

def delta(c0):
    return [a - b for a, b in zip(counts(), c0)]

MNT = "/flash"
DIR = MNT + "/store"
bd = CountingBD(%(img)r)
vfs.VfsLfs2.mkfs(bd)
vfs.mount(vfs.VfsLfs2(bd), MNT)

def reboot():
    """Unmount and mount again, then a new Store: what a power cycle leaves."""
    vfs.umount(MNT)
    vfs.mount(vfs.VfsLfs2(bd), MNT)
    return store.Store(MNT)

def result(**kw):
    print("RESULT", json.dumps(kw))

def raw(path):
    with open(path, "rb") as f:
        return f.read()

def put(path, data):
    with open(path, "wb") as f:
        f.write(data)
'''


@pytest.fixture
def mpy(tmp_path):
    img = tmp_path / "flash.img"
    img.write_bytes(b"\xff" * 0x200000)

    def run(code, heap="100K"):
        out = run_mpy(PRELUDE % {"img": str(img)} + code, heap=heap, path=PATH)
        results = [json.loads(line[7:]) for line in out.splitlines() if line.startswith("RESULT ")]
        return out, results
    return run


def errors(out):
    return [line for line in out.splitlines() if " ERROR store: " in line]


def test_roundtrip_and_reboot(mpy):
    out, [r] = mpy(r'''
s = store.Store(MNT)
before = s.load_all()
s.set_factory({"node_id": "N-1", "pop": "p0p", "serial": "SN1", "ca_cert": "-----BEGIN CERT-----\n" + "A" * 1200})
s.add_wifi("caf\u00e9 \"wifi\"", "pw")
s.update("user", user_id="u-1", secret="sec", status="pending")
s.set("telemetry", {"enabled": False, "interval_s": 15, "extra": [1, {"b": None}]})
s.update("cursor", seq=41)
s2 = reboot()
result(before=before, factory=s2.factory, wifi=s2.get("wifi"), user=s2.get("user"),
       tele=s2.get("telemetry"), cursor=s2.get("cursor"), claim=s2.get("claim"), src=s2.load_all(),
       files=sorted(os.listdir(DIR)))
''')
    assert set(r["before"].values()) == {"default"}
    assert r["factory"]["node_id"] == "N-1" and r["factory"]["ca_cert"].endswith("A" * 1200)
    assert r["factory"]["endpoints"]["mqtt"] == ""          # defaults fill what was not given
    assert r["wifi"] == {"networks": [{"ssid": 'caf\u00e9 "wifi"', "password": "pw"}]}
    assert r["user"] == {"user_id": "u-1", "secret": "sec", "status": "pending", "reset": False}
    assert r["tele"] == {"enabled": False, "interval_s": 15, "extra": [1, {"b": None}]}
    assert r["cursor"] == {"seq": 41, "dropped": 0, "sinks": {}}
    assert r["claim"] == {"code": "", "claimed": False}
    assert r["src"]["wifi"] == "primary" and r["src"]["claim"] == "default"
    assert "claim" not in r["files"] and "cursor" in r["files"]
    assert not errors(out)


def test_writes_only_on_change(mpy):
    out, [r] = mpy(r'''
s = store.Store(MNT)
w = []
w.append(s.set("user", {"user_id": "u", "secret": "x", "status": "pending"}))
c0 = counts()
w.append(s.set("user", {"status": "pending", "secret": "x", "user_id": "u"}))  # same, other order
w.append(s.update("user", status="pending"))
w.append(s.set("user", s.get("user")))
w.append(s.set("claim", records.defaults("claim")))       # never written and equal to defaults
w.append(s.add_wifi("a", "1"))
w.append(s.add_wifi("a", "1"))
same = delta(c0)
d = s.get("user"); d["status"] = "mapped"                 # mutating a returned dict changes nothing
w.append(s.set("user", {"user_id": "u", "secret": "x", "status": "pending"}))
c1 = counts()
w.append(s.update("user", status="mapped"))
changed = delta(c1)
s2 = reboot()
c2 = counts()
s2.load_all()
w.append(s2.update("user", status="mapped"))
boot = delta(c2)
result(w=w, same=same, changed=changed, boot=boot, user=s2.get("user"))
''')
    assert r["w"] == [True, False, False, False, False, True, False, False, True, False]
    wifi_write = r["same"]  # the only write in that window is add_wifi("a")
    assert wifi_write[0] > 0
    assert r["changed"][0] > 0
    assert r["boot"] == [0, 0, 0], "loading and an unchanged update must not touch the flash"
    assert r["user"]["status"] == "mapped"


def test_no_change_writes_nothing(mpy):
    _, [r] = mpy(r'''
s = store.Store(MNT)
s.update("cursor", seq=7)
c0 = counts()
for i in range(50):
    s.update("cursor", seq=7)
    s.set("wifi", {"networks": []})
result(d=delta(c0))
''')
    assert r["d"] == [0, 0, 0]


def test_sixth_wifi_network_drops_the_oldest(mpy):
    _, [r] = mpy(r'''
s = store.Store(MNT)
for i in range(6):
    s.add_wifi("net%d" % i, "pw%d" % i)
six = [n["ssid"] for n in s.wifi_networks()]
s.add_wifi("net3", "new3")            # known network: moves to the front, no duplicate
again = s.wifi_networks()
s.forget_wifi("net5")
s.set("wifi", {"networks": [{"ssid": str(i), "password": ""} for i in range(9)]})
capped = len(s.get("wifi")["networks"])
s.add_wifi("z", "zz")
s2 = reboot()
result(six=six, again=again, capped=capped, after=[n["ssid"] for n in s2.wifi_networks()])
''')
    assert r["six"] == ["net5", "net4", "net3", "net2", "net1"]
    assert r["again"][0] == {"ssid": "net3", "password": "new3"}
    assert [n["ssid"] for n in r["again"]] == ["net3", "net5", "net4", "net2", "net1"]
    assert r["capped"] == 5
    assert r["after"] == ["z", "0", "1", "2", "3"]


def test_factory_reset_keeps_factory(mpy):
    out, [r] = mpy(r'''
s = store.Store(MNT)
s.set_factory({"node_id": "N-9", "pop": "abc"})
s.set_factory({"node_id": "N-9", "pop": "abcd"})       # factory gets a backup too
for name in records.RUNTIME:
    d = records.defaults(name); d["marker"] = 1
    s.set(name, d); d["marker"] = 2; s.set(name, d)     # primary and backup
s.factory_reset()
now = {n: s.get(n) for n in records.RUNTIME}
s2 = reboot()
after = {n: s2.get(n) for n in records.RUNTIME}
files = sorted(os.listdir(DIR))
# A cut in the middle of a reset: the marker is there, some records are not erased yet.
s2.update("user", user_id="u"); s2.add_wifi("w", "p")
put(DIR + "/RESET", b"")
os.remove(DIR + "/user")
s3 = reboot()
result(now=now, after=after, files=files, factory=s3.factory, resumed=s3.get("wifi"),
       user=s3.get("user"), files2=sorted(os.listdir(DIR)))
''')
    erased = [n for n in r["now"] if n not in ("cursor",)]        # records.RESET_KEEPS
    assert all("marker" not in r["now"][n] and "marker" not in r["after"][n] for n in erased)
    assert r["now"]["cursor"]["marker"] == 2 and r["after"]["cursor"]["marker"] == 2
    assert r["files"] == ["cursor", "cursor.bak", "factory", "factory.bak"]
    assert r["factory"]["node_id"] == "N-9" and r["factory"]["pop"] == "abcd"
    assert r["resumed"] == {"networks": []} and r["user"]["user_id"] == ""
    assert r["files2"] == ["cursor", "cursor.bak", "factory", "factory.bak"]
    assert "finishing an interrupted factory reset" in out


def test_dump_redacts_every_secret(mpy):
    out, [r] = mpy(r'''
MARK = %r
s = store.Store(MNT)
fac = records.defaults("factory")
for k in records.SECRET_FIELDS["factory"]:
    if "." in k:                      # a field of a sub-record, e.g. prov.softap_key
        a, b = k.split(".")
        fac[a][b] = MARK + "-factory-" + k
    else:
        fac[k] = MARK + "-factory-" + k
fac["endpoints"]["api_token"] = MARK + "-token"          # unlisted, but looks secret
s.set_factory(fac)
for i in range(5):
    s.add_wifi("ssid%%d" %% i, MARK + "-wifi-%%d" %% i)
for name in records.RUNTIME:
    if name == "wifi":
        continue
    d = records.defaults(name)
    for f in records.SECRET_FIELDS.get(name, ()):
        d[f] = MARK + "-" + name + "-" + f
    if name == "bootstrap":
        d["channels"] = [{"id": "c1", "key": MARK + "-nested"}]
    s.set(name, d)
# every field whose name looks secret is in SECRET_FIELDS (the documented list)
missing = []
for name in records.NAMES:
    listed = [f.split(".")[-1] for f in records.SECRET_FIELDS.get(name, ())]
    for k in records.defaults(name):
        if records.is_secret(k) and k not in listed:
            missing.append(name + "." + k)
dump = s.dump()
text = json.dumps(dump) + repr(s) + repr(dump)
# damage a record so the store logs about it: the log line must not carry its content
put(DIR + "/user", raw(DIR + "/user")[:-3])
s2 = reboot()
s2.get("user")
result(leak=MARK in text, missing=missing, dump=dump)
''' % SECRET_MARK)
    assert r["missing"] == []
    assert not r["leak"], "a secret reached the dump"
    assert SECRET_MARK not in out, "a secret reached a log line or the console"
    d = r["dump"]
    assert d["factory"]["pop"] == "<%d bytes>" % len(SECRET_MARK + "-factory-pop")
    assert d["wifi"]["networks"][0]["password"].startswith("<") and d["wifi"]["networks"][0]["ssid"] == "ssid4"
    assert d["user"]["secret"].endswith(" bytes>") and d["user"]["status"] == "none"
    assert d["bootstrap"]["channels"][0] == {"id": "c1", "key": "<%d bytes>" % len(SECRET_MARK + "-nested")}
    assert d["factory"]["endpoints"]["api_token"].endswith(" bytes>")


def test_migration_wifi_v1_to_v2(mpy):
    out, [r] = mpy(r'''
os.mkdir(DIR)
body = b'{"psk":"hunter22","ssid":"home"}'
put(DIR + "/wifi", store.encode(1, body) + body)
c0 = counts()
s = store.Store(MNT)
v = s.get("wifi")
load_writes = delta(c0)
src = s.sources()["wifi"]
s.add_wifi("office", "pw2")                 # the write is version 2; the backup keeps the v1 copy
hdr_ver = raw(DIR + "/wifi")[3]
bak_ver = raw(DIR + "/wifi.bak")[3]
put(DIR + "/wifi", b"")                      # lose the primary: the v1 backup is lifted again
s2 = reboot()
from_bak = s2.get("wifi")
# an empty v1 record lifts to no networks
put(DIR + "/wifi", store.encode(1, b'{"ssid":"","psk":""}') + b'{"ssid":"","psk":""}')
empty = reboot().get("wifi")
# a copy from a newer firmware is refused, not guessed at
b3 = b'{"networks":[],"new":1}'
put(DIR + "/wifi", store.encode(3, b3) + b3)
s4 = reboot()
result(v=v, load_writes=load_writes, src=src, hdr_ver=hdr_ver, bak_ver=bak_ver, from_bak=from_bak,
       empty=empty, newer=s4.get("wifi"), newer_src=s4.sources()["wifi"])
''')
    assert r["v"] == {"networks": [{"ssid": "home", "password": "hunter22"}]}
    assert r["load_writes"] == [0, 0, 0] and r["src"] == "primary"
    assert (r["hdr_ver"], r["bak_ver"]) == (2, 1)
    assert r["from_bak"] == r["v"]
    assert r["empty"] == {"networks": []}
    assert r["newer_src"] == "backup" and r["newer"] == r["v"]
    assert any("wifi: primary copy schema v3 is newer" in e for e in errors(out))


CORRUPTIONS = r'''
import random

def corrupt(path, kind, rnd):
    """Damage one record file the way a bad flash or a bad tool could."""
    if kind == "remove":
        os.remove(path)
        return
    data = bytearray(raw(path))
    if kind == "flip":
        for _ in range(1 + rnd.getrandbits(2)):
            i = rnd.getrandbits(16) % (len(data) * 8)
            data[i // 8] ^= 1 << (i % 8)
    elif kind == "truncate":
        data = data[:rnd.getrandbits(16) % len(data)]
    elif kind == "garbage":
        data = bytearray(rnd.getrandbits(8) for _ in range(1 + rnd.getrandbits(9)))
    elif kind == "badbody":                       # right header shape, wrong content
        data = data[:10] + bytearray(rnd.getrandbits(8) for _ in range(len(data) - 10))
    elif kind == "empty":
        data = b""
    elif kind == "huge":
        data = b"\x00" * 20000
    elif kind == "dir":
        os.remove(path)
        os.mkdir(path)
        return
    put(path, data)

def value(name, n):
    d = records.defaults(name)
    d["n"] = n
    if name == "wifi":
        d["networks"] = [{"ssid": "s%d" % n, "password": "p%d" % n}]
    if name == "factory":
        d["ca_cert"] = "C" * (n % 3 * 300)
    return d

def write(s, name, v):
    if name == "factory":
        s.set_factory(v)
    else:
        s.set(name, v)

def load(name):
    s = store.Store(MNT)
    got = s.factory if name == "factory" else s.get(name)
    return got.get("n"), s.sources()[name]
'''


def test_bad_input_every_record_every_kind(mpy):
    out, results = mpy(CORRUPTIONS + r'''
rnd = random
random.seed(7)
for name in records.NAMES:
    for kind in ("flip", "truncate", "garbage", "badbody", "empty", "remove", "huge", "dir"):
        s = store.Store(MNT)
        write(s, name, value(name, 1))
        write(s, name, value(name, 2))         # primary holds 2, backup holds 1
        print("CASE", name, kind, "primary")
        corrupt(DIR + "/" + name, kind, rnd)
        n1, src1 = load(name)                  # -> backup, and the primary is restored
        n1b, src1b = load(name)                # next boot: primary again, no error
        print("CASE", name, kind, "both")
        corrupt(DIR + "/" + name, kind, rnd)
        corrupt(DIR + "/" + name + ".bak", kind, rnd)
        n2, src2 = load(name)                  # -> defaults
        result(name=name, kind=kind, one=[n1, src1], healed=[n1b, src1b], both=[n2, src2])
        for suffix in ("", ".bak", ".new"):    # clean up for the next case
            p = DIR + "/" + name + suffix
            try:
                os.remove(p)
            except OSError:
                try:
                    os.rmdir(p)
                except OSError:
                    pass
''', heap="200K")
    assert len(results) == len(("flip", "truncate", "garbage", "badbody", "empty", "remove", "huge", "dir")) * 9
    for r in results:
        assert r["one"] == [1, "backup"], r
        assert r["healed"] == [1, "primary"], r
        assert r["both"] == [None, "default"], r
    # every damaged case logged an ERROR line naming the record
    cases = out.split("CASE ")[1:]
    for case in cases:
        head = case.split("\n", 1)[0]
        name = head.split()[0]
        errs = [e for e in errors(case) if (" %s: " % name) in e]
        if head.endswith("remove both"):
            assert not errs  # no file at all is a record never written: defaults, silently
            continue
        assert errs, "no error line for " + head
        if head.endswith("both"):
            assert any("no valid copy" in e for e in errs), head
        assert "Traceback" not in case


def test_corruption_property_random(mpy):
    """Random records, random damage to a random subset of copies, many seeds:
    the store always loads the newest intact copy (or the defaults), never raises."""
    out, results = mpy(CORRUPTIONS + r'''
KINDS = ("flip", "truncate", "garbage", "badbody", "empty", "remove")
bad = []
done = 0
for seed in range(150):
    random.seed(seed)
    name = records.NAMES[random.getrandbits(8) % len(records.NAMES)]
    s = store.Store(MNT)
    a, b = 2 * seed + 1, 2 * seed + 2
    write(s, name, value(name, a))
    write(s, name, value(name, b))
    hit_p = random.getrandbits(1)
    hit_b = random.getrandbits(1)
    if hit_p:
        corrupt(DIR + "/" + name, KINDS[random.getrandbits(8) % len(KINDS)], random)
    if hit_b:
        corrupt(DIR + "/" + name + ".bak", KINDS[random.getrandbits(8) % len(KINDS)], random)
    try:
        got = load(name)
    except Exception as e:
        bad.append([seed, name, "raised " + repr(e)])
        continue
    want = (b, "primary") if not hit_p else (a, "backup") if not hit_b else (None, "default")
    if got != want:
        bad.append([seed, name, hit_p, hit_b, got, want])
    done += 1
    for n in records.NAMES:
        for suffix in ("", ".bak", ".new"):
            try:
                os.remove(DIR + "/" + n + suffix)
            except OSError:
                pass
result(bad=bad, done=done)
''', heap="200K")
    [r] = results
    assert r["bad"] == [] and r["done"] == 150


def test_never_raises_at_boot(mpy):
    out, [r] = mpy(r'''
put(MNT + "/store", b"not a directory")      # the store directory is a file
s = store.Store(MNT)
a = s.load_all()
os.remove(MNT + "/store")
os.mkdir(DIR)
body = b'{"networks": 5}'                    # intact file, wrong shape
put(DIR + "/wifi", store.encode(2, body) + body)
body = b'[1, 2]'                             # intact file, not an object
put(DIR + "/user", store.encode(1, body) + body)
s = store.Store(MNT)
result(a=a, wifi=s.get("wifi"), user=s.get("user"), src=s.load_all(), dump=len(s.dump()))
''')
    assert set(r["a"].values()) == {"default"}
    assert r["wifi"] == {"networks": []} and r["user"]["status"] == "none"
    assert r["src"]["wifi"] == "default"
    assert r["dump"] == 9
    assert any("wifi: stored value has a bad shape" in e for e in errors(out))
    assert any("user: no valid copy" in e for e in errors(out))


def test_api_misuse_is_refused_without_writing(mpy):
    _, [r] = mpy(r'''
s = store.Store(MNT)
seen = []
c0 = counts()
for fn in (lambda: s.set("factory", {}), lambda: s.set("nope", {}), lambda: s.get("nope"),
           lambda: s.set("user", [1]), lambda: s.set("user", {"secret": "x" * 9000}),
           lambda: s.set("wifi", {"networks": "x"}), lambda: s.set("telemetry", {"m": {1: 2}})):
    try:
        fn()
        seen.append(None)
    except Exception as e:
        seen.append(type(e).__name__)
result(seen=seen, d=delta(c0), user=s.get("user"))
''')
    assert r["seen"] == ["ValueError", "KeyError", "KeyError", "TypeError", "ValueError", "ValueError", "TypeError"]
    assert r["d"] == [0, 0, 0]


def test_crc_header_and_fallback_crc(mpy):
    _, [r] = mpy(r'''
import binascii, struct
body = b'{"seq":1}'
hdr = store.encode(1, body)
ok = store._check(hdr + body)
flips = 0
blob = bytearray(hdr + body)
for i in range(len(blob) * 8):              # every single-bit error is caught, header included
    blob[i // 8] ^= 1 << (i % 8)
    if store._check(blob)[0] is None:
        flips += 1
    blob[i // 8] ^= 1 << (i % 8)
same = all(store._crc32_py(bytes(i % 256 for i in range(n)), 77) == binascii.crc32(bytes(i % 256 for i in range(n)), 77) for n in (0, 1, 63, 300))
result(ok=list(ok), hdr=list(struct.unpack("<2sBBHI", hdr)[1:4]), undetected=flips, same=same)
''')
    assert r["ok"] == [None, 1]
    assert r["hdr"] == [1, 1, 9]
    assert r["undetected"] == 0
    assert r["same"]


def test_flash_wear_budget(mpy, capsys):
    """Bytes the flash really programs (LittleFS metadata included) for one
    provisioning and for an hour of streaming; docs/storage.md quotes these."""
    out, [r] = mpy(r'''
s = store.Store(MNT)
s.set_factory({"node_id": "a0b1c2d3e4f5", "pop": "abcd1234", "serial": "SN000123",
               "external_id": "a0:b1:c2:d3:e4:f5", "external_key": "x" * 36,
               "ca_cert": "-----BEGIN CERTIFICATE-----\n" + "M" * 1200 + "\n-----END CERTIFICATE-----\n"})
steps = []
def step(label, fn):
    c0 = counts()
    fn()
    steps.append([label] + delta(c0))
uuid = "0f8fad5b-d9cb-469f-a165-70867728950e"
step("wifi", lambda: s.add_wifi("HomeNetwork-5G", "correct horse battery"))
step("user", lambda: s.set("user", {"user_id": "Ab3dE5gH7jK9mN1pQ3sT5v", "secret": "9f" * 16, "status": "pending"}))
step("claim", lambda: s.set("claim", {"code": "C" * 63}))
step("bootstrap", lambda: s.set("bootstrap", {"done": True, "thing_id": uuid, "thing_key": uuid,
     "channels": [{"id": uuid, "name": "data"}, {"id": uuid, "name": "control"}], "content": '{"interval": 60}'}))
step("user mapped", lambda: s.update("user", status="mapped"))
step("claim done", lambda: s.update("claim", code="", claimed=True))
N = 300
c0 = counts()
for i in range(1, N + 1):
    s.update("cursor", seq=i * 25)
cur = delta(c0)
result(steps=steps, cursor_n=N, cursor=cur, cursor_body=len(s._body["cursor"]))
''')
    steps = r["steps"]
    prov = [sum(x[i] for x in steps) for i in (1, 2, 3)]
    n = r["cursor_n"]
    per = [v / n for v in r["cursor"]]
    lines = ["flash wear (programmed bytes include LittleFS metadata):"]
    for label, pages, programmed, erases in steps:
        lines.append("  %-12s pages=%3d programmed=%5d B erases=%d" % (label, pages, programmed, erases))
    lines.append("  provisioning total: pages=%d programmed=%d B erases=%d" % tuple(prov))
    lines.append("  cursor update (avg of %d): pages=%.2f programmed=%.0f B erases=%.3f (body %d B)"
                 % (n, per[0], per[1], per[2], r["cursor_body"]))
    with capsys.disabled():  # shown with or without -s
        print("\n" + "\n".join(lines))
    assert prov[1] < 16 * 1024 and prov[2] <= 12
    assert per[1] < 1024 and per[2] < 0.5, "the hot record must stay an inline LittleFS file"


def test_outbox_flash_wear_per_reading(mpy, capsys):
    """Bytes programmed per reading by the telemetry outbox (firmware/telemetry/outbox.py),
    LittleFS metadata included: one append per reading (readings >= 10 s apart), batches of
    16, and the cursor write per acknowledged batch of 32. docs/telemetry.md quotes these."""
    out, [r] = mpy(r'''
from firmware.telemetry.outbox import Outbox
s = store.Store(MNT)
box = Outbox(s, ("mqtt",), root=MNT)
def per(n, batch, ack_every):
    c0 = counts()
    for i in range(n):
        box.add(21.5, 1764540000 + i, True)
        if box.buffered() >= batch:
            box.flush()
        if ack_every and (i + 1) % ack_every == 0:
            box.ack("mqtt", box.next_seq - 1)
    box.flush()
    return [v / n for v in delta(c0)]
result(single=per(256, 1, 0), batch16=per(256, 16, 0), acked=per(256, 1, 32))
''')
    lines = ["outbox flash wear per reading (programmed bytes include LittleFS metadata):"]
    for label in ("single", "batch16", "acked"):
        pages, programmed, erases = r[label]
        lines.append("  %-8s pages=%.2f programmed=%.0f B erases=%.3f" % (label, pages, programmed, erases))
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert r["batch16"][1] < r["single"][1] / 4, "batching must cut the bytes programmed per reading"
    assert r["single"][1] < 4096 and r["acked"][1] < 4096
