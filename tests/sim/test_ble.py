"""Bluetooth through the real stack: a peripheral program on the chip (MicroPython's `bluetooth`
module, NimBLE speaking HCI to its Bumble controller), and bleak as the phone (tools/ble's Bumble
backend on the board's air), with the console as the window on what the firmware saw."""
import asyncio
import re

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakError

from tools.ble.bleak_bumble import BumbleClient, BumbleScanner

SVC = "021a9004-0382-4aea-bff4-6b3f1c5adfb4"
USER_DESCRIPTION = "00002901-0000-1000-8000-00805f9b34fb"


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
try:
    ble.gap_advertise(100000, ADV + b"\x0b\x09" + b"x" * 10)     # 32 bytes: over the legacy limit
except OSError as e:
    print("adv too long", e.errno)
try:
    ble.gap_advertise(100000, ADV, resp_data=b"\x20\x09" + b"y" * 31)
except OSError as e:
    print("resp too long", e.errno)


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
    """A started board running PERIPHERAL (local MTU `mtu`), advertising and ready."""
    def make(mtu=517):
        b = board(main="MTU = %d\n" % mtu + PERIPHERAL)
        b.wait_for("ready", timeout=10)
        return b
    return make


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def phone(board, **kw):
    return BleakClient(board.ble_address, backend=BumbleClient, air=board.ble_air, **kw)


async def scan(board, timeout=1.0):
    found = await BleakScanner.discover(timeout=timeout, return_adv=True, backend=BumbleScanner,
                                        air=board.ble_air)
    return {d.address: adv for d, adv in found.values()}


async def endpoints(client):
    """{0x2901 name: characteristic} of the provisioning service, as the phone apps map them."""
    out = {}
    for ch in client.services.get_service(SVC).characteristics:
        d = ch.get_descriptor(USER_DESCRIPTION)
        out[bytes(await client.read_gatt_descriptor(d.handle)).decode()] = ch
    return out


def test_advertisement_and_scan_response_as_a_phone_sees_them(periph):
    b = periph()
    # NimBLE refuses a legacy payload over 31 bytes (the host's own checks, as on the ESP32).
    b.wait_for(re.compile(rb"adv too long -?\d+\r\n"))
    b.wait_for("resp too long 22")
    advs = run(scan(b))
    adv = advs[b.ble_address]                     # IDF: the BT address is the base MAC + 2
    assert adv.local_name == "PROV_TEST"          # only in the scan response
    assert adv.service_uuids == [SVC]
    assert b.wait_for(re.compile(rb"mac 0 ([0-9a-f]{12}) b'PROV_TEST' 517")).group(1).decode() \
        == b.ble_address.replace(":", "").lower()


def test_connect_mtu_517_and_the_0x2901_names(periph):
    b = periph()

    async def go():
        async with phone(b) as c:
            names = await endpoints(c)
            return c.mtu_size, sorted(names), names["prov-session"].uuid, names["prov-session"].properties
    mtu, names, uuid, props = run(go())
    assert mtu == 517
    b.wait_for(re.compile(rb"irq 21 \d+ 517"))
    b.wait_for(re.compile(rb"irq 1 \d+ [01] [0-9a-f]{12}"))
    assert names == ["control", "prov-config", "prov-session", "secret"]
    assert uuid == chr_uuid(0xFF51) and sorted(props) == ["read", "write"]


@pytest.mark.parametrize("mtu", [517, 100])
def test_write_with_response_then_read_512_bytes(periph, mtu):
    """512 bytes each way: in one ATT PDU at MTU 517 (which needs the controller to fragment to
    NimBLE's 255-byte ACL buffers: Bumble's gap 1), and as a long write (prepare/execute) and
    read blobs at MTU 100. The answer is stored before the write is acknowledged."""
    b = periph(mtu)
    data = bytes((i * 7) & 0xFF for i in range(512))

    async def go():
        async with phone(b) as c:
            ch = (await endpoints(c))["prov-config"]
            await c.write_gatt_char(ch, data, response=True)
            return c.mtu_size, bytes(await c.read_gatt_char(ch))
    got_mtu, back = run(go())
    assert got_mtu == mtu
    assert back == data[::-1]
    b.wait_for(re.compile(rb"irq 3 \d+ \d+ 512 "))


def test_write_longer_than_the_default_buffer_is_truncated_silently(periph):
    b = periph()

    async def go():
        async with phone(b) as c:
            ch = (await endpoints(c))["prov-session"]
            await c.write_gatt_char(ch, bytes(range(100)), response=True)
            return bytes(await c.read_gatt_char(ch))
    assert run(go()) == bytes(range(20))          # MP_BLUETOOTH_DEFAULT_ATTR_LEN
    b.wait_for(re.compile(rb"irq 3 \d+ \d+ 20 "))


def test_read_denied_by_irq4_and_write_without_the_flag(periph):
    b = periph()

    async def go():
        async with phone(b) as c:
            eps = await endpoints(c)
            errors = []
            for op in (c.read_gatt_char(eps["secret"]), c.write_gatt_char(eps["secret"], b"x", response=True)):
                try:
                    await op
                    errors.append(None)
                except BleakError as e:
                    errors.append(str(e))
            return errors, bytes(await c.read_gatt_char(eps["prov-session"]))
    errors, empty = run(go())
    assert all(errors), errors
    assert empty == b""                           # a read before any write: empty


def test_notifications_and_indications(periph):
    b = periph()

    async def go():
        got = asyncio.Queue()
        async with phone(b) as c:
            ch = (await endpoints(c))["control"]
            await c.start_notify(ch, lambda _, data: got.put_nowait(bytes(data)))
            for cmd in (b"notify:hello", b"indicate:yo", b"update:loud", b"big"):
                await c.write_gatt_char(ch, cmd, response=True)
            out = [await asyncio.wait_for(got.get(), 5) for _ in range(4)]
            await c.stop_notify(ch)
            return out
    assert run(go()) == [b"hello", b"yo", b"loud", b"z" * 40]
    b.wait_for(re.compile(rb"irq 20 \d+ \d+ 0"))  # the indication was confirmed


def test_disconnect_then_advertising_again(periph):
    b = periph()

    async def go():
        async with phone(b) as c:
            await endpoints(c)
        return await scan(b)
    assert b.ble_address in run(go())
    b.wait_for(re.compile(rb"irq 2 \d+ [01] [0-9a-f]{12}"))


def test_the_peripheral_hangs_up(periph):
    b = periph()

    async def go():
        lost = asyncio.get_running_loop().create_future()
        c = phone(b, disconnected_callback=lambda client: lost.done() or lost.set_result(True))
        await c.connect()
        ch = (await endpoints(c))["control"]
        await c.write_gatt_char(ch, b"bye", response=False)
        await asyncio.wait_for(lost, 5)
        return c.is_connected
    assert run(go()) is False
    b.wait_for("gap_disconnect True False")       # a second call: not connected


def test_a_power_cut_drops_the_link_and_the_values(periph):
    b = periph()

    async def go():
        lost = asyncio.get_running_loop().create_future()
        c = phone(b, disconnected_callback=lambda client: lost.done() or lost.set_result(True))
        await c.connect()
        ch = (await endpoints(c))["prov-session"]
        await c.write_gatt_char(ch, b"before", response=True)
        mark = b.mark()
        b.power_cut()
        await asyncio.wait_for(lost, 5)
        await asyncio.get_running_loop().run_in_executor(None, lambda: b.wait_for("ready", since=mark))
        async with phone(b) as again:
            return bytes(await again.read_gatt_char((await endpoints(again))["prov-session"]))
    assert run(go()) == b""                       # RAM values died with the chip
    assert b.boots == 2


APPEND = """
import asyncio, bluetooth
ble = bluetooth.BLE()
ble.active(True)
RW = bluetooth.FLAG_READ | bluetooth.FLAG_WRITE
((acc, ctl),) = ble.gatts_register_services(
    ((bluetooth.UUID(0x180F), ((bluetooth.UUID(0x2A19), RW), (bluetooth.UUID(0x2A1A), RW))),))
ble.gatts_set_buffer(acc, 30, True)


def irq(event, data):
    if event == 3 and data[1] == ctl:
        print("drained", ble.gatts_read(acc))


ble.irq(irq)
ble.gap_advertise(100000, b"\\x02\\x01\\x06\\x03\\x03\\x0f\\x18")


async def main():
    print("ready")
    await asyncio.sleep(3600)


asyncio.run(main())
"""


def test_append_mode_accumulates_until_gatts_read(board):
    b = board(main=APPEND)
    b.wait_for("ready")

    async def go():
        async with phone(b) as c:
            svc = c.services.get_service("180f")
            acc, ctl = svc.get_characteristic("2a19"), svc.get_characteristic("2a1a")
            for part in (b"a" * 12, b"b" * 12, b"c" * 12):
                await c.write_gatt_char(acc, part, response=True)
            first = bytes(await c.read_gatt_char(acc))
            await c.write_gatt_char(ctl, b"go", response=True)
            return first
    full = b"a" * 12 + b"b" * 12 + b"c" * 6           # 30 bytes kept, the rest dropped silently
    assert run(go()) == full                          # the stack's read does not consume
    b.wait_for("drained %r" % full)


@pytest.mark.parametrize("wait", ["time.sleep(3600)", "select.poll().poll(3600000)",
                                  "sys.stdin.buffer.read(1)"])
def test_the_ble_host_runs_while_the_main_thread_blocks(board, wait):
    """NimBLE runs on the main thread of the unix port; the variant's patch wakes it out of a
    blocking call when HCI data waits, as the NimBLE task would run on an ESP32."""
    b = board(main="""
        import bluetooth, select, sys, time
        ble = bluetooth.BLE()
        ble.active(True)
        ((h,),) = ble.gatts_register_services(((bluetooth.UUID(0x181A),
                                               ((bluetooth.UUID(0x2A6E), bluetooth.FLAG_READ),)),))
        ble.gatts_write(h, b"21.5")
        ble.irq(lambda e, d: print("irq", e))
        ble.gap_advertise(100000, b"\\x02\\x01\\x06\\x03\\x03\\x1a\\x18")
        print("blocking")
        %s
    """ % wait)
    b.wait_for("blocking")

    async def go():
        async with phone(b, timeout=5) as c:
            return bytes(await c.read_gatt_char("2a6e"))
    assert run(go()) == b"21.5"
    b.wait_for("irq 1")
