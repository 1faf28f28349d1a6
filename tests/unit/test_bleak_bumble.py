"""tools/ble/bleak_bumble.py: unchanged bleak code as a phone on the simulated air.

The peripheral is a pure-Bumble GATT server (test_radio.Peripheral) on its own controller,
joined through radio.serve_phones like every phone; bleak drives it through the backend.
"""
import asyncio
import subprocess
import sys

import bleak
import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.exc import (BleakBluetoothNotAvailableError, BleakDeviceNotFoundError, BleakError,
                       BleakGATTProtocolError, BleakGATTProtocolErrorCode)
from bumble import hci

from test_radio import (DATA, ESPRESSIF, EVENTS, INDICATIONS, PROTECTED, ROOT, SERVICE, Peripheral,
                        adv_data, run, scan_rsp_data)
from tools.ble import bleak_bumble
from tools.ble.bleak_bumble import BumbleClient, BumbleScanner
from tools.sim import radio

VALUE = bytes(range(256)) * 2
USER_DESCRIPTION = "00002901-0000-1000-8000-00805f9b34fb"


@pytest.fixture
def air():
    link = radio.AirLink()
    server = radio.serve_phones(link)
    yield "127.0.0.1:%d" % server.port
    server.close()


def with_peripheral(air, body, **kw):
    """Run body(peripheral) with a started peripheral on the air."""
    async def scenario():
        p = await Peripheral("tcp-client:" + air, **kw).start()
        try:
            return await body(p)
        finally:
            await p.close()
    return run(scenario())


async def find(air, name="PROV_TEST", **kw):
    device = await BleakScanner.find_device_by_name(name, timeout=3, backend=BumbleScanner, air=air, **kw)
    assert device is not None
    return device


def test_scan_merges_the_scan_response_like_bluez(air):
    # The 31-byte limit: the service UUID fills the advertising data, the name goes in the scan response.
    assert len(adv_data()) <= 31 and len(scan_rsp_data("PROV_TEST")) <= 31
    assert len(adv_data()) + len(scan_rsp_data("PROV_TEST")) > 31

    async def body(p):
        seen = asyncio.Queue()
        async with BleakScanner(lambda d, ad: seen.put_nowait((d, ad)), backend=BumbleScanner, air=air):
            while True:
                device, ad = await seen.get()
                if device.address == p.address:
                    break
        assert ad.local_name == "PROV_TEST" == device.name
        assert ad.service_uuids == [SERVICE]
        assert ad.manufacturer_data == {ESPRESSIF: b"roost1"}
        assert ad.tx_power == -8 and ad.rssi == radio.RSSI

        assert (await find(air)).address == p.address
        by_filter = await BleakScanner.find_device_by_filter(
            lambda d, ad: SERVICE in ad.service_uuids, timeout=3, backend=BumbleScanner, air=air)
        assert by_filter.address == p.address
        found = await BleakScanner.discover(0.1, return_adv=True, backend=BumbleScanner, air=air)
        assert found[p.address][1].local_name == "PROV_TEST"

        # A passive scanner sends no SCAN_REQ: no name, but the advertising data.
        async with BleakScanner(lambda d, ad: seen.put_nowait((d, ad)), scanning_mode="passive",
                                backend=BumbleScanner, air=air):
            device, ad = await seen.get()
            while device.address != p.address:
                device, ad = await seen.get()
        assert ad.local_name is None and ad.service_uuids == [SERVICE]
    with_peripheral(air, body)


def test_connect_mtu_services_descriptors_and_512_byte_values(air):
    async def body(p):
        async with BleakClient(await find(air), backend=BumbleClient, air=air) as client:
            assert client.is_connected and client.mtu_size == 517
            service = client.services.get_service(SERVICE)
            chars = {c.uuid: c for c in service.characteristics}
            assert set(chars) == {DATA, EVENTS, INDICATIONS, PROTECTED}
            assert sorted(chars[DATA].properties) == ["read", "write", "write-without-response"]
            assert sorted(chars[EVENTS].properties) == ["indicate", "notify"]
            assert chars[DATA].handle == p.data.handle
            assert chars[DATA].max_write_without_response_size == 514
            labels = {}
            for c in chars.values():
                d = c.get_descriptor(USER_DESCRIPTION)
                labels[c.uuid] = bytes(await client.read_gatt_descriptor(d))
                assert bytes(await client.read_gatt_descriptor(d.handle)) == labels[c.uuid]
            assert labels == {DATA: b"data", EVENTS: b"events", INDICATIONS: b"indications",
                              PROTECTED: b"protected"}
            assert chars[EVENTS].get_descriptor("2902") is not None

            assert await client.read_gatt_char(DATA) == b"hello"
            await client.write_gatt_char(DATA, VALUE, response=True)
            assert await client.read_gatt_char(chars[DATA]) == VALUE
            await client.write_gatt_char(DATA, b"quiet", response=False)
            assert await client.read_gatt_char(DATA.upper()) == b"quiet"
            assert "ATT_PREPARE_WRITE_REQUEST" not in p.att_requests   # 512 <= MTU-3: one write

            with pytest.raises(BleakGATTProtocolError) as e:
                await client.read_gatt_char(PROTECTED)
            assert e.value.code == BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION
            with pytest.raises(BleakGATTProtocolError) as e:
                await client.write_gatt_char(PROTECTED, b"x", response=True)
            assert e.value.code == BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION
            label = chars[DATA].get_descriptor(USER_DESCRIPTION)
            await client.write_gatt_descriptor(label, b"renamed")      # Bumble's server lets it
            assert await client.read_gatt_descriptor(label) == b"renamed"
            with pytest.raises(BleakError):
                await client.start_notify(DATA, lambda c, v: None)
        assert not client.is_connected
    with_peripheral(air, body)


def test_long_writes_and_reads_when_the_mtu_is_small(air):
    async def body(p):
        p.device.gatt_server.max_mtu = 100       # a peripheral that negotiates less
        async with BleakClient(await find(air), backend=BumbleClient, air=air) as client:
            assert client.mtu_size == 100
            await client.write_gatt_char(DATA, VALUE, response=True)
            assert p.data.value == VALUE
            assert await client.read_gatt_char(DATA) == VALUE
            assert "ATT_PREPARE_WRITE_REQUEST" in p.att_requests
            assert "ATT_EXECUTE_WRITE_REQUEST" in p.att_requests
            assert "ATT_READ_BLOB_REQUEST" in p.att_requests
            with pytest.raises(BleakError):
                await client.write_gatt_char(DATA, bytes(98), response=False)   # > MTU-3
    with_peripheral(air, body)


def test_notifications_and_indications(air):
    async def body(p):
        subscriptions = asyncio.Queue()
        for c in (p.events, p.indications):
            c.on("subscription", lambda bearer, notify, indicate, c=c:
                 subscriptions.put_nowait((c.uuid, notify, indicate)))
        got = asyncio.Queue()
        async with BleakClient(await find(air), backend=BumbleClient, air=air) as client:
            await client.start_notify(EVENTS, lambda c, v: got.put_nowait((c.uuid, v)))
            assert await subscriptions.get() == (p.events.uuid, True, False)  # notify preferred
            await client.start_notify(INDICATIONS, lambda c, v: got.put_nowait((c.uuid, v)))
            assert await subscriptions.get() == (p.indications.uuid, False, True)
            for i in range(3):
                await p.device.notify_subscribers(p.events, b"n%d" % i)
            await p.device.indicate_subscribers(p.indications, b"i" * 300)    # returns when confirmed
            assert [await got.get() for _ in range(4)] == [(EVENTS, bytearray(b"n0")), (EVENTS, bytearray(b"n1")),
                                                           (EVENTS, bytearray(b"n2")),
                                                           (INDICATIONS, bytearray(b"i" * 300))]
            # subscribed for notifications, EVENTS still gets an indication (MicroPython's
            # gatts_indicate ignores the CCCD): BlueZ delivers it, and so do we
            [connection] = p.device.connections.values()
            await p.device.indicate_subscriber(connection, p.events, b"forced", force=True)
            assert await got.get() == (EVENTS, bytearray(b"forced"))
            await client.stop_notify(EVENTS)
            assert await subscriptions.get() == (p.events.uuid, False, False)
            await p.device.notify_subscriber(connection, p.events, b"late", force=True)
            await p.device.notify_subscribers(p.indications, b"n-on-i", force=True)
            assert await got.get() == (INDICATIONS, bytearray(b"n-on-i"))   # not b"late"
    with_peripheral(air, body)


def test_disconnect_callback_readvertising_and_peripheral_disconnect(air):
    async def body(p):
        disconnections = asyncio.Queue()
        client = BleakClient(await find(air), lambda c: disconnections.put_nowait(c),
                             backend=BumbleClient, air=air)
        await client.connect()
        await client.disconnect()
        assert await disconnections.get() is client and disconnections.empty()
        assert not client.is_connected
        with pytest.raises(BleakError):
            client.services
        await client.disconnect()                         # again: nothing to do

        device = await find(air)                          # the peripheral advertises again
        await client.connect()                            # the same client reconnects
        assert await client.read_gatt_char(DATA) == b"hello"
        [connection] = p.device.connections.values()
        await connection.disconnect()                     # the peripheral hangs up
        assert await disconnections.get() is client
        assert client._backend.disconnect_reason == hci.HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR
        assert device.address == p.address
    with_peripheral(air, body)


def test_the_air_vanishing_drops_the_link_like_a_power_cut():
    link = radio.AirLink()
    server = radio.serve_phones(link)
    air = "127.0.0.1:%d" % server.port

    async def body(p):
        dropped = asyncio.get_running_loop().create_future()
        client = BleakClient(await find(air), lambda c: dropped.set_result(c), backend=BumbleClient, air=air)
        await client.connect()
        await asyncio.to_thread(server.close)             # the simulator stops
        assert await dropped is client and not client.is_connected
        assert client._backend.disconnect_reason == hci.HCI_CONNECTION_TIMEOUT_ERROR
        with pytest.raises(BleakError):
            await client.read_gatt_char(DATA)
    try:
        with_peripheral(air, body)
    finally:
        server.close()


def test_bleak_errors(air):
    async def body(p):
        with pytest.raises(BleakDeviceNotFoundError):
            await BleakClient("11:22:33:44:55:66", timeout=0.2, backend=BumbleClient, air=air).connect()
        absent = BLEDevice("11:22:33:44:55:66", None, hci.Address("11:22:33:44:55:66/P"))
        with pytest.raises(asyncio.TimeoutError):
            await BleakClient(absent, timeout=0.2, backend=BumbleClient, air=air).connect()
        with pytest.raises(BleakBluetoothNotAvailableError):
            await BleakScanner(backend=BumbleScanner, air="127.0.0.1:1").start()
        client = BleakClient(await find(air), backend=BumbleClient, air=air)
        with pytest.raises(BleakError):
            client.services
        async with client:                                # after the failures, the air still works
            assert await client.read_gatt_char(DATA) == b"hello"
    with_peripheral(air, body)


def test_install_makes_plain_bleak_use_the_air(air, monkeypatch):
    monkeypatch.setenv(bleak_bumble.ENV, air)
    original = bleak.get_platform_scanner_backend_type
    bleak_bumble.install()
    try:
        async def body(p):
            scanner = BleakScanner()
            assert scanner.backend_id == "BumbleScanner"
            device = await BleakScanner.find_device_by_name("PROV_TEST", timeout=3)
            async with BleakClient(device.address) as client:        # an address: found by scanning
                assert client.backend_id == "BumbleClient"
                assert await client.read_gatt_char(DATA) == b"hello"
        with_peripheral(air, body)
    finally:
        bleak_bumble.uninstall()
    assert bleak.get_platform_scanner_backend_type is original


SCRIPT = r"""
import asyncio
from bleak import BleakClient, BleakScanner       # plain bleak, no backend argument
async def main():
    device = await BleakScanner.find_device_by_name("PROV_TEST", timeout=5)
    async with BleakClient(device) as client:
        print(bytes(await client.read_gatt_char("%s")).decode(), client.mtu_size)
asyncio.run(main())
""" % DATA


def test_main_runs_an_unchanged_bleak_program(air, tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(SCRIPT)

    async def body(p):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tools.ble.bleak_bumble", "--air", air, str(script),
            cwd=ROOT, stdout=subprocess.PIPE)
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        assert out.decode().split() == ["hello", "517"]
    with_peripheral(air, body)
