"""The simulated BLE radio, driven through its real doors: a peripheral program on the chip
(MicroPython `bluetooth` API, IRQs delivered under asyncio) and a central on the host
(tools/sim/ble.py), with the console as the window on what the firmware saw."""
import re
import subprocess
from pathlib import Path

import pytest

from tools.sim.ble import (AttError, BleDisconnected, BleError, BleTimeout, normalize_uuid,
                           REASON_CONNECTION_TIMEOUT, REASON_REMOTE_USER_TERMINATED)
from tools.sim.board import micropython_binary

ROOT = Path(__file__).resolve().parents[2]
SVC = "021a9004-0382-4aea-bff4-6b3f1c5adfb4"
SVC_LE = bytes.fromhex("b4df5a1c3f6bf4bfea4a820304901a02")


def chr_uuid(n):
    return "021a%04x-0382-4aea-bff4-6b3f1c5adfb4" % n


# A provisioning-like peripheral: four characteristics with 0x2901 names; "long" has a 512-byte
# buffer and answers a write with the reversed value (stored before the write is acknowledged);
# "control" takes commands; reads of "secret" are denied from IRQ 4.
PERIPHERAL = r'''
import asyncio
import bluetooth
from micropython import const

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_GATTS_READ_REQUEST = const(4)
_IRQ_GATTS_INDICATE_DONE = const(20)
_IRQ_MTU_EXCHANGED = const(21)

SVC = bluetooth.UUID("021a9004-0382-4aea-bff4-6b3f1c5adfb4")


def chr_uuid(n):
    b = bytearray(bytes(SVC))
    b[12] = n & 0xFF
    b[13] = n >> 8
    return bluetooth.UUID(bytes(b))


_RW = bluetooth.FLAG_READ | bluetooth.FLAG_WRITE
_CTL = _RW | bluetooth.FLAG_WRITE_NO_RESPONSE | bluetooth.FLAG_NOTIFY | bluetooth.FLAG_INDICATE
_DESC = ((bluetooth.UUID(0x2901), bluetooth.FLAG_READ),)
SERVICE = (SVC, (
    (chr_uuid(0xFF51), _RW, _DESC),
    (chr_uuid(0xFF52), _RW, _DESC),
    (chr_uuid(0xFF53), _CTL, _DESC),
    (chr_uuid(0xFF54), bluetooth.FLAG_READ, _DESC),
))

ble = bluetooth.BLE()
print("same", ble is bluetooth.BLE())
try:
    ble.config("mac")
except OSError as e:
    print("mac inactive", e.errno)
ble.active(True)
ble.config(mtu=MTU)
ble.config(gap_name="PROV_TEST")
for bad in ({"mtu": 22}, {"mtu": 528}):
    try:
        ble.config(**bad)
    except OSError as e:
        print("mtu", bad["mtu"], e.errno)
try:
    ble.config("rxbuf")
except ValueError as e:
    print("rxbuf", e)
mac = ble.config("mac")
print("mac", mac[0], mac[1].hex(), ble.config("gap_name"), ble.config("mtu"))
((short, short_d, long_, long_d, ctl, ctl_d, secret, secret_d),) = ble.gatts_register_services((SERVICE,))
print("handles", short, short_d, long_, long_d, ctl, ctl_d, secret, secret_d)
for h, n in zip((short_d, long_d, ctl_d, secret_d), (b"prov-session", b"prov-config", b"control", b"secret")):
    ble.gatts_write(h, n)
ble.gatts_set_buffer(long_, 512)
try:
    ble.gatts_read(999)
except OSError as e:
    print("bad handle", e.errno)
ADV = b"\x02\x01\x06" + bytes((17, 0x07)) + bytes(SVC)
RESP = b"\x0a\x09PROV_TEST"


def advertise():
    ble.gap_advertise(100000, ADV, resp_data=RESP)


def irq(event, data):
    if event == _IRQ_CENTRAL_CONNECT:
        conn, t, addr = data
        print("irq 1", conn, t, bytes(addr).hex())
    elif event == _IRQ_CENTRAL_DISCONNECT:
        conn, t, addr = data
        print("irq 2", conn, t, bytes(addr).hex())
        advertise()
    elif event == _IRQ_GATTS_WRITE:
        conn, h = data
        v = ble.gatts_read(h)
        print("irq 3", conn, h, len(v), v[:24])
        if h == long_:
            ble.gatts_write(long_, bytes(reversed(v)))
        elif h == ctl:
            cmd, _, arg = v.partition(b":")
            if cmd == b"notify":
                ble.gatts_notify(conn, ctl, arg)
            elif cmd == b"indicate":
                ble.gatts_indicate(conn, ctl, arg)
            elif cmd == b"update":
                ble.gatts_write(ctl, arg, True)
            elif cmd == b"bye":
                print("gap_disconnect", ble.gap_disconnect(conn), ble.gap_disconnect(conn + 1))
            elif cmd == b"mtu":
                ble.gattc_exchange_mtu(conn)
            elif cmd == b"big":
                ble.gatts_notify(conn, ctl, b"z" * 40)
            elif cmd == b"boom":
                raise RuntimeError("handler failed")
    elif event == _IRQ_GATTS_READ_REQUEST:
        conn, h = data
        print("irq 4", conn, h)
        if h == secret:
            return 0x05
    elif event == _IRQ_GATTS_INDICATE_DONE:
        print("irq 20", *data)
    elif event == _IRQ_MTU_EXCHANGED:
        print("irq 21", *data)


ble.irq(irq)
advertise()
try:
    ble.gatts_register_services((SERVICE,))
except OSError as e:
    print("register while advertising", e.errno)


async def main():
    print("ready")
    while True:
        await asyncio.sleep(1)


asyncio.run(main())
'''


@pytest.fixture
def periph(board):
    """A started board running PERIPHERAL (local MTU 500), advertising and ready."""
    def make(mtu=500):
        b = board(main="MTU = %d\n" % mtu + PERIPHERAL)
        b.wait_for("ready", timeout=10)
        return b
    return make


def handles(b):
    m = b.wait_for(re.compile(rb"handles ([\d ]+)\r\n"))
    return dict(zip(("short", "short_d", "long", "long_d", "ctl", "ctl_d", "secret", "secret_d"),
                    map(int, m.group(1).split())))


def test_advertisement_scan_response_and_address(periph):
    b = periph()
    (adv,) = b.ble.scan(timeout=2)
    assert adv.name == "PROV_TEST"                       # from the scan response only
    assert b"PROV_TEST" not in adv.adv_data and b"PROV_TEST" in adv.resp_data
    assert SVC_LE in adv.adv_data and adv.service_uuids == [SVC]
    assert adv.flags == 0x06 and adv.connectable
    bt_mac = bytearray(b.mac)
    bt_mac[5] = (bt_mac[5] + 2) & 0xFF                   # IDF: BT address = base MAC + 2
    assert adv.addr == ":".join("%02X" % x for x in bt_mac)
    b.wait_for("mac 0 %s b'PROV_TEST' 500" % bt_mac.hex())
    assert b.ble.scan(timeout=0.2, name_prefix="prov_") and not b.ble.scan(timeout=0.05, name_prefix="x")


def test_api_errors_match_the_esp32_port(periph):
    b = periph()
    b.wait_for("same True")
    b.wait_for("mac inactive 19")                        # ENODEV while not active
    b.wait_for("mtu 22 22")                              # EINVAL outside 23..527
    b.wait_for("mtu 528 22")
    b.wait_for("rxbuf unknown config param")             # ESP32 builds use sync events
    b.wait_for("bad handle 22")
    b.wait_for("register while advertising 16")          # EBUSY: the GATT table is not mutable


def test_connect_fires_irq1_and_stops_advertising(periph):
    b = periph()
    conn = b.ble.connect(timeout=5)
    b.wait_for("irq 1 %d 1 %s" % (conn.handle, b.ble.central_addr.hex()))
    assert b.ble.scan(timeout=0.1) == []
    assert conn.mtu == 23


def test_write_longer_than_default_buffer_is_truncated_silently(periph):
    b = periph()
    h = handles(b)
    with b.ble.connect() as conn:
        data = bytes(range(100))
        conn.write(h["short"], data)                     # no error: NimBLE truncates silently
        b.wait_for("irq 3 %d %d 20 " % (conn.handle, h["short"]))
        assert conn.read(h["short"]) == data[:20]


def test_long_write_with_set_buffer_then_read_sees_handler_response(periph):
    b = periph()
    h = handles(b)
    with b.ble.connect() as conn:
        data = bytes((i * 7) & 0xFF for i in range(512))
        mark = b.mark()
        conn.write(h["long"], data)                      # Prepare/Execute at MTU 23
        b.wait_for("irq 3 %d %d 512 " % (conn.handle, h["long"]), since=mark)
        mark = b.mark()
        assert conn.read(h["long"]) == data[::-1]        # stored before the write was acked
        # Read + Read Blobs of MTU-1 = 22 bytes: NimBLE asks Python (IRQ 4) for every one.
        pieces = 512 // 22 + 1
        b.wait_for(re.compile(rb"(irq 4 [^\r]*\r\n(?:(?!irq 4 ).*\r\n)*){%d}" % pieces), since=mark)
        assert b.out[mark:].count(b"irq 4 ") == pieces
        with pytest.raises(AttError) as e:
            conn.write(h["long"], bytes(513))
        assert e.value.code == 0x0D


def test_mtu_exchange_takes_the_minimum_and_fires_irq21(periph):
    b = periph()
    h = handles(b)
    with b.ble.connect() as conn:
        assert conn.exchange_mtu(512) == 500             # the chip offers config('mtu') = 500
        b.wait_for("irq 21 %d 500" % conn.handle)
        with pytest.raises(BleError):
            conn.exchange_mtu(512)                       # once per connection
        conn.write(h["ctl"], b"x" * 497, response=False)  # fits MTU-3
        with pytest.raises(BleError):
            conn.write(h["ctl"], b"x" * 498, response=False)
    b.wait_for("irq 2")
    with b.ble.connect() as conn:
        assert conn.exchange_mtu(185) == 185             # an iOS-sized central
        b.wait_for("irq 21 %d 185" % conn.handle)


def test_device_initiated_mtu_exchange(periph):
    b = periph(mtu=256)
    h = handles(b)
    with b.ble.connect() as conn:
        conn.write(h["ctl"], b"mtu")
        b.wait_for("irq 21 %d 256" % conn.handle)        # min(256, the phone's 517)
        assert conn.mtu == 256


def test_discovery_user_description_descriptors(periph):
    b = periph()
    h = handles(b)
    with b.ble.connect() as conn:
        svc = conn.service(SVC)
        names = {}
        for c in svc.characteristics:
            d = c.descriptor(0x2901)
            names[conn.read(d).decode()] = c
        assert set(names) == {"prov-session", "prov-config", "control", "secret"}
        assert names["prov-session"].uuid == chr_uuid(0xFF51)
        assert names["prov-session"].value_handle == h["short"]
        assert names["prov-session"].descriptor(0x2901).handle == h["short_d"]
        assert names["prov-session"].properties == 0x0A  # READ | WRITE
        ctl = names["control"]
        assert [d.uuid for d in ctl.descriptors] == [normalize_uuid(0x2902), normalize_uuid(0x2901)]
        assert ctl.descriptor(0x2901).handle == h["ctl_d"]  # the CCCD takes a handle, not returned
        assert conn.read(3) == b"PROV_TEST"              # GAP Device Name, served by the stack
        assert conn.characteristic(chr_uuid(0xFF52), service=SVC).value_handle == h["long"]


def test_read_denied_by_irq4_reaches_the_central_as_att_error(periph):
    b = periph()
    h = handles(b)
    with b.ble.connect() as conn:
        with pytest.raises(AttError) as e:
            conn.read(h["secret"])
        assert e.value.code == 0x05
        with pytest.raises(AttError) as e:
            conn.write(h["secret"], b"x")                # no WRITE flag: the stack refuses
        assert e.value.code == 0x03
        assert conn.read(h["short"]) == b""              # a read before any write: empty


def test_notify_indicate_and_send_update(periph):
    b = periph()
    h = handles(b)
    with b.ble.connect() as conn:
        conn.write(h["ctl"], b"notify:hello")
        n = conn.wait_notification(h["ctl"], timeout=2)
        assert (n.data, n.indication) == (b"hello", False)
        conn.write(h["ctl"], b"indicate:yo")
        n = conn.wait_notification(h["ctl"], timeout=2)
        assert (n.data, n.indication) == (b"yo", True)
        b.wait_for("irq 20 %d %d 0" % (conn.handle, h["ctl"]))
        conn.write(h["ctl"], b"update:quiet")            # nobody subscribed: nothing sent
        conn.subscribe(h["ctl"])
        assert conn.read(h["ctl"] + 1) == b"\x01\x00"   # the CCCD
        conn.write(h["ctl"], b"update:loud")
        assert conn.wait_notification(timeout=2).data == b"loud"
        assert conn.notifications == []
        conn.write(h["ctl"], b"big")                     # 40 bytes, truncated to MTU-3 by the stack
        assert conn.wait_notification(timeout=2).data == b"z" * 20


def test_handler_exception_is_printed_and_the_write_still_acknowledged(periph):
    b = periph()
    h = handles(b)
    with b.ble.connect() as conn:
        conn.write(h["ctl"], b"boom")
        b.wait_for("Unhandled exception in IRQ callback handler")
        conn.write(h["ctl"], b"notify:alive")
        assert conn.wait_notification(timeout=2).data == b"alive"


def test_central_disconnect_fires_irq2(periph):
    b = periph()
    conn = b.ble.connect()
    conn.disconnect()
    b.wait_for("irq 2 %d 1 %s" % (conn.handle, b.ble.central_addr.hex()))
    assert not conn.connected
    with pytest.raises(BleDisconnected):
        conn.read(3)
    assert b.ble.scan(timeout=2)                          # the firmware advertises again
    assert b.ble.connect().handle == 0                   # handles are reused


def test_peripheral_disconnect_is_seen_by_the_central(periph):
    b = periph()
    h = handles(b)
    conn = b.ble.connect()
    seen = []
    conn.on_disconnect = seen.append
    conn.write(h["ctl"], b"bye")
    assert conn.wait_disconnected(timeout=2) == REASON_REMOTE_USER_TERMINATED
    assert seen == [REASON_REMOTE_USER_TERMINATED]
    b.wait_for("gap_disconnect True False")              # a second call: not connected
    b.wait_for("irq 2 %d" % conn.handle)


def test_power_cut_during_connection(periph):
    b = periph()
    h = handles(b)
    conn = b.ble.connect()
    conn.write(h["short"], b"before")
    mark = b.mark()
    b.power_cut()
    assert conn.wait_disconnected(timeout=2) == REASON_CONNECTION_TIMEOUT
    with pytest.raises(BleDisconnected):
        conn.write(h["short"], b"after")
    b.wait_for("ready", since=mark)
    assert b.boots == 2
    assert b.ble.scan(timeout=5)
    with b.ble.connect() as again:
        assert again.read(h["short"]) == b""             # RAM values died with the chip


APPEND = """
import asyncio, bluetooth
ble = bluetooth.BLE()
ble.active(True)
RW = bluetooth.FLAG_READ | bluetooth.FLAG_WRITE
((acc, ctl),) = ble.gatts_register_services(
    ((bluetooth.UUID(0x180F), ((bluetooth.UUID(0x2A19), RW), (bluetooth.UUID(0x2A1A), RW))),))
print("handles", acc, ctl)
ble.gatts_set_buffer(acc, 30, True)


def irq(event, data):
    if event == 3 and data[1] == ctl:
        print("drained", ble.gatts_read(acc))
        ble.gatts_write(acc, b"L" * 40)  # a local write grows the 30-byte buffer


ble.irq(irq)
ble.gap_advertise(100000, b"\\x02\\x01\\x06\\x03\\x03\\x0f\\x18")


async def main():
    print("ready")
    await asyncio.sleep(3600)


asyncio.run(main())
"""


def test_append_mode_accumulates_until_gatts_read(board):
    b = board(main=APPEND)
    acc, ctl = map(int, b.wait_for(re.compile(rb"handles (\d+) (\d+)\r\n")).groups())
    b.wait_for("ready")
    (adv,) = b.ble.scan(timeout=2)
    assert adv.service_uuids == [normalize_uuid(0x180F)] and adv.name is None
    with b.ble.connect() as conn:
        for part in (b"a" * 12, b"b" * 12, b"c" * 12):
            conn.write(acc, part)
        full = b"a" * 12 + b"b" * 12 + b"c" * 6          # 30 bytes kept, the rest dropped silently
        assert conn.read(acc) == full                    # the stack's read does not consume
        conn.write(ctl, b"go")
        b.wait_for("drained %r" % full)
        assert conn.read(acc) == b"L" * 40


def test_no_asyncio_means_timeouts_not_hangs(board):
    b = board(main="""
        import bluetooth, time
        ble = bluetooth.BLE()
        ble.active(True)
        ble.gap_advertise(100000, b"\\x02\\x01\\x06")
        print("blocking")
        while True:
            time.sleep(1)
    """)
    b.wait_for("blocking")
    with pytest.raises(BleTimeout):
        b.ble.connect(timeout=0.3)


SHIM_CHECK = r'''
import gc, sys
sys.path[:0] = [ROOT + "/tools/sim/chip", ROOT + "/tools/sim/shims"]
import flash, _air, repl
for _name in ("machine", "network", "esp32", "socket"):
    sys.modules[_name] = __import__("sim_" + _name)
gc.collect()
before = gc.mem_alloc()
import sim_bluetooth as bt
gc.collect()
print("cost", gc.mem_alloc() - before)
U = bt.UUID
u = U("021a9004-0382-4aea-bff4-6b3f1c5adfb4")
print(bytes(u).hex(), repr(u), repr(U(0x2901)), bytes(U(0x2901)).hex())
print(U(bytes(u)) == u, U(u) == u, hash(U(u)) == hash(u), U(0x2901) == U(b"\x01\x29"), U(1) != U(2))
print(len(bytes(U("abcd"))))  # a 4-byte buffer is a 32-bit UUID, as on the real port
for bad in (0x10000, "1234-5678", "zzz"):
    try:
        U(bad)
        print("accepted", bad)
    except ValueError:
        pass
print(bt.FLAG_READ, bt.FLAG_WRITE_NO_RESPONSE, bt.FLAG_WRITE, bt.FLAG_NOTIFY, bt.FLAG_INDICATE)
'''


def test_shim_uuid_semantics_and_heap_cost():
    r = subprocess.run([micropython_binary(), "-X", "heapsize=100K", "-c",
                        "ROOT = %r\n" % str(ROOT) + SHIM_CHECK], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    cost = int(lines[0].split()[1])
    assert cost < 6 * 1024, "the bluetooth shim takes %d bytes of the chip's heap" % cost
    assert lines[1:] == [
        "b4df5a1c3f6bf4bfea4a820304901a02 UUID('021a9004-0382-4aea-bff4-6b3f1c5adfb4') UUID(0x2901) 0129",
        "True True True True True",
        "4",
        "2 4 8 16 32",
    ]
