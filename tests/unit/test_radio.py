"""tools/sim/radio.py: the Bluetooth LE air (Bumble), its controller fixes, chips on ptys, phones.

Each test of a Bumble gap runs the same scenario with radio's controller (passes) and with
bumble.controller.Controller (an xfail, strict: it must fail there). The scenario drives HCI
as NimBLE does (legacy advertising commands). Gap tests run in-process on the test's loop;
the chip/phone tests go through the radio thread, a pty and TCP, as the simulator does.
"""
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bumble import hci, gatt
from bumble.controller import Controller
from bumble.core import UUID, AdvertisingData as AD, TimeoutError as BumbleTimeoutError
from bumble.device import Device, Peer
from bumble.link import LocalLink
from bumble.transport import open_transport

from tools.sim import radio
from tools.sim.radio import AirController, AirLink

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "6e400001-b5a3-f393-e0a9-e50e24dcca9e"
DATA = "6e400002-b5a3-f393-e0a9-e50e24dcca9e"
EVENTS = "6e400003-b5a3-f393-e0a9-e50e24dcca9e"
INDICATIONS = "6e400004-b5a3-f393-e0a9-e50e24dcca9e"
PROTECTED = "6e400005-b5a3-f393-e0a9-e50e24dcca9e"
ESPRESSIF = 0x02E5
CHIP_MAC = bytes.fromhex("240AC4123456")     # as esp_read_mac gives it: most significant first
PUBLIC, RANDOM = hci.OwnAddressType.PUBLIC, hci.OwnAddressType.RANDOM


def run(coro, timeout=15.0):
    """Run a test scenario on a fresh loop, bounded."""
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


def uuid_bytes(u):
    return bytes(reversed(bytes.fromhex(u.replace("-", ""))))


def adv_data(name=None, tx_power=-8):
    """Flags + the 128-bit service UUID + TX power: 24 bytes. The name does not fit too."""
    return bytes(AD([(AD.FLAGS, bytes([0x06])),
                     (AD.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS, uuid_bytes(SERVICE)),
                     (AD.TX_POWER_LEVEL, tx_power.to_bytes(1, "little", signed=True))]))


def scan_rsp_data(name):
    return bytes(AD([(AD.COMPLETE_LOCAL_NAME, name.encode()),
                     (AD.MANUFACTURER_SPECIFIC_DATA, ESPRESSIF.to_bytes(2, "little") + b"roost1")]))


class Peripheral:
    """A pure-Bumble GATT peripheral shaped like the provisioning firmware: a 512-byte
    read/write characteristic, a notify(+indicate) one, an indicate-only one and one that
    needs encryption, each named by a 0x2901 user description; legacy advertising with the
    service UUID, the name in the scan response, re-advertising after a disconnection."""

    def __init__(self, spec, name="PROV_TEST", own_address_type=RANDOM, interval_ms=20):
        self.spec, self.name, self.own_address_type = spec, name, own_address_type
        self.interval_ms = interval_ms
        self.att_requests = []       # names of the ATT PDUs the server received

    @staticmethod
    def _label(text):
        return [gatt.Descriptor(gatt.GATT_CHARACTERISTIC_USER_DESCRIPTION_DESCRIPTOR,
                                gatt.Descriptor.READABLE, text.encode())]

    async def start(self):
        P = gatt.Characteristic.Properties
        self.transport = await open_transport(self.spec)
        self.device = Device.with_hci(self.name, hci.Address.generate_static_address(),
                                      self.transport.source, self.transport.sink)
        self.data = gatt.Characteristic(DATA, P.READ | P.WRITE | P.WRITE_WITHOUT_RESPONSE,
                                        gatt.Characteristic.READABLE | gatt.Characteristic.WRITEABLE,
                                        b"hello", descriptors=self._label("data"))
        self.events = gatt.Characteristic(EVENTS, P.NOTIFY | P.INDICATE, 0, b"",
                                          descriptors=self._label("events"))
        self.indications = gatt.Characteristic(INDICATIONS, P.INDICATE, 0, b"",
                                               descriptors=self._label("indications"))
        self.protected = gatt.Characteristic(PROTECTED, P.READ | P.WRITE,
                                             gatt.Characteristic.READ_REQUIRES_ENCRYPTION
                                             | gatt.Characteristic.WRITE_REQUIRES_ENCRYPTION, b"x",
                                             descriptors=self._label("protected"))
        self.device.add_service(gatt.Service(SERVICE, [self.data, self.events, self.indications,
                                                       self.protected]))
        server = self.device.gatt_server
        on_gatt_pdu = server.on_gatt_pdu

        def record(connection, pdu):
            self.att_requests.append(pdu.name)
            on_gatt_pdu(connection, pdu)
        server.on_gatt_pdu = record
        await self.device.power_on()
        await self.advertise()
        return self

    async def advertise(self):
        await self.device.start_advertising(
            own_address_type=self.own_address_type, auto_restart=True,
            advertising_data=adv_data(), scan_response_data=scan_rsp_data(self.name),
            advertising_interval_min=self.interval_ms, advertising_interval_max=self.interval_ms)

    @property
    def address(self):
        a = (self.device.public_address if self.own_address_type == PUBLIC
             else self.device.random_address)
        return a.to_string(False)

    async def close(self):
        if self.device.legacy_advertiser is not None:
            self.device.legacy_advertiser.auto_restart = False    # nothing after the power cut
        await self.transport.close()


# ---------------------------------------------------------------------------------------------
# In-process harness for the gap tests: two (or more) hosts on one link, on the test's loop
# ---------------------------------------------------------------------------------------------
class Recorder:
    """Between a controller and its host: every HCI packet the host receives, awaitable."""

    def __init__(self, sink):
        self.sink, self.packets, self.changed = sink, [], asyncio.Event()

    def on_packet(self, packet):
        self.packets.append(packet)
        self.changed.set()
        self.sink.on_packet(packet)

    async def until(self, predicate, timeout=2.0):
        async def wait():
            while not predicate():
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(wait(), timeout)

    def acl_payload_sizes(self):
        return [int.from_bytes(p[3:5], "little") for p in self.packets if p[0] == hci.HCI_ACL_DATA_PACKET]

    def reports(self):
        """(kind, address, data) of each advertising report, legacy or extended."""
        out = []
        for p in self.packets:
            if p[0] != hci.HCI_EVENT_PACKET or p[1] != hci.HCI_LE_META_EVENT:
                continue
            event = hci.HCI_Packet.from_bytes(p)
            if isinstance(event, hci.HCI_LE_Advertising_Report_Event):
                for r in event.reports:
                    out.append(({0: "ADV_IND", 1: "ADV_DIRECT_IND", 2: "ADV_SCAN_IND", 3: "ADV_NONCONN_IND",
                                 4: "SCAN_RSP"}[r.event_type], r.address, r.data))
            elif isinstance(event, hci.HCI_LE_Extended_Advertising_Report_Event):
                for r in event.reports:
                    kind = "SCAN_RSP" if r.event_type & 0x08 else "EXT_%02X" % r.event_type
                    out.append((kind, r.address, r.data))
        return out

    def subevents(self):
        return [p[3] for p in self.packets if p[0] == hci.HCI_EVENT_PACKET and p[1] == hci.HCI_LE_META_EVENT]


async def host(link, controller_cls, name, public=None):
    """A Bumble host on its own controller on `link`; .recorder sees what the host receives."""
    controller = controller_cls(name, link=link, public_address=public)
    device = Device.with_hci(name, hci.Address.generate_static_address(), controller, controller)
    device.recorder = controller.host = Recorder(controller.host)
    device.controller = controller
    await device.power_on()
    return device


async def legacy_advertise(device, adv_type=radio.ADV_IND, data=b"", scan_rsp=b"", interval=0x20,
                           own=RANDOM, parameters=True):
    """What NimBLE sends (legacy commands): parameters, data, scan response, enable."""
    if parameters:
        await device.send_command(hci.HCI_LE_Set_Advertising_Parameters_Command(
            advertising_interval_min=interval, advertising_interval_max=interval,
            advertising_type=adv_type, own_address_type=own, peer_address_type=0,
            peer_address=hci.Address.ANY, advertising_channel_map=7, advertising_filter_policy=0))
    await device.send_command(hci.HCI_LE_Set_Advertising_Data_Command(advertising_data=data))
    await device.send_command(hci.HCI_LE_Set_Scan_Response_Data_Command(scan_response_data=scan_rsp))
    await device.send_command(hci.HCI_LE_Set_Advertising_Enable_Command(advertising_enable=1))


def with_and_without_fix(cls_fixed=AirController, cls_plain=Controller):
    return pytest.mark.parametrize("controller_cls", [
        pytest.param(cls_fixed, id="fixed"),
        pytest.param(cls_plain, id="bumble", marks=pytest.mark.xfail(strict=True, reason="bumble gap"))])


async def connected_pair(controller_cls, link=None, big_value=False):
    """A peripheral (legacy advertising, random address) and a central connected to it."""
    link = link if link is not None else AirLink()
    peripheral = await host(link, controller_cls, "peripheral")
    if big_value:
        value = bytes(range(256)) * 2
        peripheral.add_service(gatt.Service(SERVICE, [gatt.Characteristic(
            DATA, gatt.Characteristic.Properties.READ, gatt.Characteristic.READABLE, value)]))
    central = await host(link, controller_cls, "central")
    await legacy_advertise(peripheral, data=adv_data())
    connection = await central.connect(peripheral.random_address, timeout=2)
    return peripheral, central, connection


# ---------------------------------------------------------------------------------------------
# The gaps
# ---------------------------------------------------------------------------------------------
@with_and_without_fix()
@pytest.mark.parametrize("host_buffer", [0, 64])
def test_gap1_acl_to_host_fragmented_to_its_buffer(controller_cls, host_buffer):
    """A 512-byte read at MTU 517 is one 516-byte L2CAP PDU: the host must get it in HCI ACL
    packets of at most 251 bytes (first PB=0b10, then 0b01), or of its HCI_Host_Buffer_Size."""
    async def scenario():
        peripheral, central, connection = await connected_pair(controller_cls, big_value=True)
        if host_buffer:
            await central.send_command(hci.HCI_Host_Buffer_Size_Command(
                host_acl_data_packet_length=host_buffer, host_synchronous_data_packet_length=0,
                host_total_num_acl_data_packets=8, host_total_num_synchronous_data_packets=0))
        peer = Peer(connection)
        assert await peer.request_mtu(517) == 517
        await peer.discover_services()
        [service] = peer.get_services_by_uuid(UUID(SERVICE))
        [characteristic] = await service.discover_characteristics()
        central.recorder.packets.clear()
        assert await characteristic.read_value() == bytes(range(256)) * 2
        sizes = central.recorder.acl_payload_sizes()
        assert sum(sizes) == 512 + 1 + 4                     # ATT read response + L2CAP header
        assert max(sizes) <= (host_buffer or 251), sizes
        pb_flags = [(p[2] >> 4) & 3 for p in central.recorder.packets if p[0] == hci.HCI_ACL_DATA_PACKET]
        assert pb_flags == [0b10] + [0b01] * (len(sizes) - 1)
    run(scenario())


@with_and_without_fix()
def test_gap2_scan_response_is_the_advertisers_and_goes_to_active_scanners(controller_cls):
    async def scenario():
        link = AirLink()
        peripheral = await host(link, controller_cls, "peripheral")
        active = await host(link, controller_cls, "active")
        passive = await host(link, controller_cls, "passive")
        await active.start_scanning(legacy=True, active=True)
        await passive.start_scanning(legacy=True, active=False)
        await legacy_advertise(peripheral, data=adv_data(), scan_rsp=scan_rsp_data("PROV_TEST"))
        me = peripheral.random_address

        def kinds(rec):
            return [k for k, a, d in rec.reports() if a == me]
        await active.recorder.until(lambda: "SCAN_RSP" in kinds(active.recorder))
        await passive.recorder.until(lambda: len(kinds(passive.recorder)) >= 3)
        scan_rsp = [d for k, a, d in active.recorder.reports() if a == me and k == "SCAN_RSP"]
        assert scan_rsp[0] == scan_rsp_data("PROV_TEST")
        assert "SCAN_RSP" not in kinds(passive.recorder)
    run(scenario())


@with_and_without_fix()
def test_gap2_every_legacy_type_is_sent_scan_response_only_when_scannable(controller_cls):
    async def scenario():
        link = AirLink()
        scannable = await host(link, controller_cls, "scannable")
        silent = await host(link, controller_cls, "nonconnectable")
        scanner = await host(link, controller_cls, "scanner")
        await scanner.start_scanning(legacy=True, active=True)
        await legacy_advertise(scannable, radio.ADV_SCAN_IND, b"\x02\x01\x06", b"\x03\xff\x01\x02")
        await legacy_advertise(silent, radio.ADV_NONCONN_IND, b"\x02\x01\x04", b"\x03\xff\x03\x04")

        def seen(who):
            return [(k, d) for k, a, d in scanner.recorder.reports() if a == who.random_address]
        await scanner.recorder.until(lambda: len(seen(silent)) >= 2 and ("SCAN_RSP", b"\x03\xff\x01\x02") in seen(scannable), 0.5)
        assert ("ADV_SCAN_IND", b"\x02\x01\x06") in seen(scannable)
        assert set(seen(silent)) == {("ADV_NONCONN_IND", b"\x02\x01\x04")}
    run(scenario())


@with_and_without_fix()
def test_gap2_legacy_scanning_gets_legacy_reports(controller_cls):
    """A host that scans with legacy commands (NimBLE without BLE_EXT_ADV) gets LE Advertising
    Report events (subevent 0x02), never extended ones (0x0D) it did not ask for."""
    async def scenario():
        link = AirLink()
        peripheral = await host(link, controller_cls, "peripheral")
        scanner = await host(link, controller_cls, "scanner")
        await scanner.start_scanning(legacy=True, active=True)
        await legacy_advertise(peripheral, data=adv_data(), scan_rsp=scan_rsp_data("X"))
        await scanner.recorder.until(lambda: len(scanner.recorder.reports()) >= 2)
        assert set(scanner.recorder.subevents()) == {hci.HCI_LE_ADVERTISING_REPORT_EVENT}
    run(scenario())


def test_extended_scanning_gets_extended_reports_of_legacy_pdus():
    async def scenario():
        link = AirLink()
        peripheral = await host(link, AirController, "peripheral")
        scanner = await host(link, AirController, "scanner")
        await scanner.send_command(hci.HCI_LE_Set_Extended_Scan_Parameters_Command(
            own_address_type=RANDOM, scanning_filter_policy=0, scanning_phys=1,
            scan_types=[1], scan_intervals=[16], scan_windows=[16]))
        await scanner.send_command(hci.HCI_LE_Set_Extended_Scan_Enable_Command(
            enable=1, filter_duplicates=0, duration=0, period=0))
        await legacy_advertise(peripheral, data=adv_data(), scan_rsp=scan_rsp_data("X"))
        await scanner.recorder.until(lambda: len(scanner.recorder.reports()) >= 2)
        kinds = [k for k, a, d in scanner.recorder.reports()]
        assert kinds[:2] == ["EXT_13", "SCAN_RSP"]      # ADV_IND (legacy bit), its scan response
        assert set(scanner.recorder.subevents()) == {hci.HCI_LE_EXTENDED_ADVERTISING_REPORT_EVENT}
    run(scenario())


@with_and_without_fix()
def test_gap3_advertising_interval_in_0625_ms_units(controller_cls):
    async def scenario():
        link = AirLink()
        fixed = await host(link, controller_cls, "one-second")
        default = await host(link, controller_cls, "default", public=radio._address(CHIP_MAC))
        scanner = await host(link, controller_cls, "scanner")
        await scanner.start_scanning(legacy=True, active=False)
        await legacy_advertise(fixed, interval=1600)                 # 1600 x 0.625 ms = 1 s
        await legacy_advertise(default, parameters=False)            # never set: 1.28 s, public
        await scanner.recorder.until(lambda: {a for k, a, d in scanner.recorder.reports()}
                                     >= {fixed.random_address, default.public_address})
        loop = asyncio.get_running_loop()
        next_in = {name: d.controller.le_legacy_advertiser.timer_handle.when() - loop.time()
                   for name, d in (("fixed", fixed), ("default", default))}
        assert 0.9 < next_in["fixed"] <= 1.0, next_in
        assert 1.18 < next_in["default"] <= 1.28, next_in
    run(scenario())


@pytest.mark.parametrize("link_cls", [
    pytest.param(AirLink, id="fixed"),
    pytest.param(LocalLink, id="bumble", marks=pytest.mark.xfail(strict=True, reason="bumble gap"))])
def test_gap4_data_comes_from_the_public_address_a_peripheral_advertised(link_cls):
    """The chip's NimBLE advertises with the board's public MAC: the central connects to that
    address, and the peripheral's data must come from it (not from its unset random one)."""
    async def scenario():
        link = link_cls()
        peripheral = await host(link, AirController, "chip", public=radio._address(CHIP_MAC))
        central = await host(link, AirController, "phone")
        await legacy_advertise(peripheral, data=adv_data(), own=PUBLIC)
        target = hci.Address("24:0A:C4:12:34:56", hci.Address.PUBLIC_DEVICE_ADDRESS)
        connection = await central.connect(target, timeout=2)
        arrived = asyncio.get_running_loop().create_future()
        on_link_acl_data = central.controller.on_link_acl_data

        def spy(sender, transport, data):
            if not arrived.done():
                arrived.set_result(sender)
            on_link_acl_data(sender, transport, data)
        central.controller.on_link_acl_data = spy
        mtu = asyncio.create_task(Peer(connection).request_mtu(517))
        try:
            sender = await arrived                                  # the MTU response
            assert sender == target
            assert sender in central.controller.le_connections
            assert await mtu == 517
        finally:
            mtu.cancel()
    run(scenario())


@with_and_without_fix()
def test_gap5_create_connection_cancel_completes(controller_cls):
    """A connect() that times out cancels LE Create Connection; the controller must then
    report the connection failed (0x02), else Bumble waits forever and refuses the next one."""
    async def scenario():
        link = AirLink()
        peripheral = await host(link, controller_cls, "peripheral")
        central = await host(link, controller_cls, "central")
        absent = hci.Address("11:22:33:44:55:66", hci.Address.PUBLIC_DEVICE_ADDRESS)
        attempt = asyncio.create_task(central.connect(absent, timeout=0.1))
        try:
            done, _ = await asyncio.wait({attempt}, timeout=0.5)
            assert attempt in done, "connect() hangs after its timeout"
            assert isinstance(attempt.exception(), BumbleTimeoutError)
        finally:
            attempt.cancel()
        await legacy_advertise(peripheral, data=adv_data())
        await central.connect(peripheral.random_address, timeout=2)
    run(scenario())


@with_and_without_fix()
def test_gap6_reset_drops_links_and_stops_advertising(controller_cls):
    """A NimBLE restarted on the same controller sends HCI_Reset: its old links must go (the
    phone sees a supervision timeout, 0x08) and its old advertising stop."""
    async def scenario():
        peripheral, central, connection = await connected_pair(controller_cls)
        await legacy_advertise(peripheral, data=adv_data())          # advertising again
        reason = asyncio.get_running_loop().create_future()
        connection.on("disconnection", reason.set_result)
        await peripheral.send_command(hci.HCI_Reset_Command())
        assert await asyncio.wait_for(reason, 0.5) == hci.HCI_CONNECTION_TIMEOUT_ERROR
        assert not peripheral.controller.le_legacy_advertiser.enabled
        assert not peripheral.controller.le_connections
    run(scenario())


@with_and_without_fix()
def test_gap7_the_host_that_disconnects_gets_0x16(controller_cls):
    async def scenario():
        peripheral, central, connection = await connected_pair(controller_cls)
        peer_reason = asyncio.get_running_loop().create_future()
        [peer_connection] = peripheral.connections.values()
        peer_connection.on("disconnection", peer_reason.set_result)
        local_reason = asyncio.get_running_loop().create_future()
        connection.on("disconnection", local_reason.set_result)
        await connection.disconnect()
        assert await peer_reason == hci.HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR   # 0x13
        assert await local_reason == hci.HCI_CONNECTION_TERMINATED_BY_LOCAL_HOST_ERROR  # 0x16
    run(scenario())


# ---------------------------------------------------------------------------------------------
# Through the radio thread: a chip on a pty, phones on TCP
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def air():
    link = AirLink()
    server = radio.serve_phones(link)
    yield link, server, "127.0.0.1:%d" % server.port
    server.close()


def chip_spec(pty_path):
    return "serial:%s,1000000,rtscts" % pty_path       # as NimBLE opens MICROPYBTUART


def test_chip_on_a_pty_is_found_by_its_public_address_and_power_cut_drops_the_link(air):
    from bleak import BleakClient, BleakScanner
    from tools.ble.bleak_bumble import BumbleClient, BumbleScanner
    link, server, address = air
    chip = radio.attach_chip(link, CHIP_MAC)

    async def scenario():
        board = await Peripheral(chip_spec(chip.pty_path), own_address_type=PUBLIC).start()
        assert board.address == "24:0A:C4:12:34:56" == chip.address
        device = await BleakScanner.find_device_by_name("PROV_TEST", timeout=3, backend=BumbleScanner, air=address)
        assert device.address == "24:0A:C4:12:34:56"
        dropped = asyncio.get_running_loop().create_future()
        client = BleakClient(device, lambda c: dropped.set_result(True), backend=BumbleClient, air=address)
        await client.connect()
        assert client.mtu_size == 517
        await client.write_gatt_char(DATA, bytes(range(256)) * 2, response=True)
        assert await client.read_gatt_char(DATA) == bytes(range(256)) * 2
        await asyncio.to_thread(chip.close)                    # the board loses power
        await dropped
        assert not client.is_connected
        assert client._backend.disconnect_reason == hci.HCI_CONNECTION_TIMEOUT_ERROR
        assert chip.controller not in link.controllers
        await board.close()
    try:
        run(scenario())
    finally:
        chip.close()


CHIP_SCRIPT = r"""
import asyncio, sys
sys.path.insert(0, sys.argv[2])
from test_radio import Peripheral, PUBLIC
async def main():
    await Peripheral(sys.argv[1], name="FIRST", own_address_type=PUBLIC).start()
    print("advertising", flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


def test_chip_survives_sigkill_and_a_new_host_on_the_same_or_a_new_pty(air):
    """A chip process SIGKILLed (even in the middle of a packet), then a new one opening the
    same pty, then a reset (close + attach_chip: a new pty): each new host works, and a phone
    connected to the old one sees its link time out."""
    from bleak import BleakClient, BleakScanner
    from tools.ble.bleak_bumble import BumbleClient, BumbleScanner
    link, server, address = air
    chip = radio.attach_chip(link, CHIP_MAC)
    chip.set_stale_input_gap(0.05)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    first = subprocess.Popen([sys.executable, "-c", CHIP_SCRIPT, chip_spec(chip.pty_path),
                              str(Path(__file__).parent)], stdout=subprocess.PIPE, env=env, cwd=ROOT)

    async def find(name):
        device = await BleakScanner.find_device_by_name(name, timeout=3, backend=BumbleScanner, air=address)
        assert device is not None, name
        return device

    async def scenario():
        assert await asyncio.to_thread(first.stdout.readline) == b"advertising\n"
        dropped = asyncio.get_running_loop().create_future()
        client = BleakClient(await find("FIRST"), lambda c: dropped.set_result(c._backend.disconnect_reason),
                             backend=BumbleClient, air=address)
        await client.connect()
        first.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait)
        with open(chip.pty_path, "wb", buffering=0) as pty:      # died mid-write: half an ACL packet
            pty.write(bytes([hci.HCI_ACL_DATA_PACKET, 0x01, 0x20, 0xFB, 0x00]) + bytes(40))
        time.sleep(0.1)                                           # the next chip boots later than 0.05 s
        second = await Peripheral(chip_spec(chip.pty_path), name="SECOND", own_address_type=PUBLIC).start()
        assert await dropped == hci.HCI_CONNECTION_TIMEOUT_ERROR  # its reset dropped FIRST's link
        async with BleakClient(await find("SECOND"), backend=BumbleClient, air=address) as c:
            assert await c.read_gatt_char(DATA) == b"hello"
        await second.close()
        await asyncio.to_thread(chip.close)                       # the supervisor's reset
        chip2 = await asyncio.to_thread(radio.attach_chip, link, CHIP_MAC)
        try:
            third = await Peripheral(chip_spec(chip2.pty_path), name="THIRD", own_address_type=PUBLIC).start()
            assert (await find("THIRD")).address == "24:0A:C4:12:34:56"
            await third.close()
        finally:
            await asyncio.to_thread(chip2.close)
    try:
        run(scenario(), timeout=20)
    finally:
        first.kill()
        first.wait()
        first.stdout.close()
        chip.close()


def test_each_phone_connection_is_a_new_controller_and_leaves_with_its_socket(air):
    link, server, address = air

    async def phone():
        transport = await open_transport("tcp-client:" + address)
        device = Device.with_hci("phone", hci.Address.generate_static_address(), transport.source, transport.sink)
        await device.power_on()
        return device, transport

    async def scenario():
        (a, ta), (b, tb) = await phone(), await phone()
        assert len(server.phones) == 2 and len(link.controllers) == 2
        assert a.public_address != b.public_address
        await a.start_advertising(advertising_interval_min=20, advertising_interval_max=20)
        connection = await b.connect(a.random_address, timeout=2)
        reason = asyncio.get_running_loop().create_future()
        connection.on("disconnection", reason.set_result)
        await ta.close()                                          # phone A goes away
        assert await reason == hci.HCI_CONNECTION_TIMEOUT_ERROR
        assert len(link.controllers) == 1
        await tb.close()
    run(scenario())


def test_a_failing_phone_or_callback_does_not_stop_the_air(air):
    import socket
    link, server, address = air
    air_loop = radio.air_loop()
    air_loop.call_soon_threadsafe(lambda: 1 / 0)                 # logged, not fatal
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(bytes([1, 0xFF, 0xFF, 2, 0, 0]))             # an unknown command
        s.sendall(b"\x07garbage\x02\x00")                       # a bad packet type, half an ACL

    async def inner():
        with pytest.raises(RuntimeError):
            radio.call(asyncio.sleep(0))                         # from the radio thread: refused
        return "ok"
    assert radio.call(inner()) == "ok"

    async def scenario():
        transport = await open_transport("tcp-client:" + address)
        device = Device.with_hci("phone", hci.Address.generate_static_address(), transport.source, transport.sink)
        await asyncio.wait_for(device.power_on(), 5)
        await transport.close()
    run(scenario())
    assert radio._thread.is_alive()
