"""A bleak backend over a Bumble host: bleak code becomes a phone on the simulator's air.

Each BumbleScanner / BumbleClient is a phone of its own: a Bumble Device (host stack) whose
controller is a new AirController that tools/sim/radio.serve_phones creates for each TCP
connection ("tcp-client:HOST:PORT", HCI H4). The air's address comes from the `air=`
argument ("host:port", (host, port) or a port on 127.0.0.1), install(air), or $ROOST_BLE_AIR.
Bumble runs in the caller's event loop, as bleak does.

    BleakScanner(backend=BumbleScanner, air="127.0.0.1:5555")
    BleakClient(device_or_address, backend=BumbleClient, air="127.0.0.1:5555")

install() makes plain BleakScanner() / BleakClient() use these, so third-party code (e.g.
Espressif's esp_prov) runs unchanged:

    ROOST_BLE_AIR=127.0.0.1:5555 python -m tools.ble.bleak_bumble esp_prov.py --transport ble ...

The client behaves as BlueZ does: MTU 517 requested at connect, long (prepare/execute) writes
and read-blob reads for values over MTU-3, notifications preferred over indications, the
disconnected callback called on every disconnection.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import uuid
from typing import Any

import bleak
import bleak.backends.client
import bleak.backends.scanner
from bleak import BleakScanner
from bleak.assigned_numbers import gatt_char_props_to_strs
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import (BleakBluetoothNotAvailableError, BleakBluetoothNotAvailableReason,
                       BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError)
from bumble import att, core, hci
from bumble.device import Device, Peer
from bumble.transport import open_transport

log = logging.getLogger(__name__)

ENV = "ROOST_BLE_AIR"
OPEN_TIMEOUT = 10.0         # s: TCP connect + controller reset
DISCONNECT_TIMEOUT = 10.0   # s, as BlueZ
REQUESTED_MTU = 517         # what BlueZ, Android and iOS ask for
_default_air = None         # set by install()
_tasks: set[asyncio.Task] = set()   # phone closings in flight (keep a reference)


def air_address(air=None) -> tuple[str, int]:
    air = air or _default_air or os.environ.get(ENV)
    if not air:
        raise BleakBluetoothNotAvailableError(
            "no simulated air: pass air='host:port' or set $%s" % ENV,
            BleakBluetoothNotAvailableReason.NO_BLUETOOTH)
    if isinstance(air, int):
        return "127.0.0.1", air
    if isinstance(air, tuple):
        return air[0], int(air[1])
    host, _, port = str(air).rpartition(":")
    return host or "127.0.0.1", int(port)


class _Phone:
    """One phone: a Bumble host on its own controller on the air."""

    def __init__(self, device: Device, transport):
        self.device = device
        self.transport = transport

    @classmethod
    async def open(cls, air) -> _Phone:
        host, port = air_address(air)
        try:
            transport = await asyncio.wait_for(
                open_transport("tcp-client:%s:%d" % (host, port)), OPEN_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as e:
            raise BleakBluetoothNotAvailableError(
                "no simulated air at %s:%d (%s)" % (host, port, e),
                BleakBluetoothNotAvailableReason.NO_BLUETOOTH) from e
        device = Device.with_hci("bleak", hci.Address.generate_static_address(),
                                 transport.source, transport.sink)
        try:
            await asyncio.wait_for(device.power_on(), OPEN_TIMEOUT)
        except BaseException:
            await transport.close()
            raise
        return cls(device, transport)

    async def close(self):
        # The air sees the phone's controller go: any link left drops (timeout) at the peer.
        await self.transport.close()


def _uuid(u: core.UUID) -> str:
    """A Bumble UUID as bleak writes it: 128-bit, lower case."""
    return str(uuid.UUID(bytes=bytes(reversed(u.uuid_128_bytes))))


T = core.AdvertisingData.Type
UUID_LISTS = {T.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS: 2, T.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS: 2,
              T.COMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS: 4, T.INCOMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS: 4,
              T.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS: 16,
              T.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS: 16}
SERVICE_DATA = {T.SERVICE_DATA_16_BIT_UUID: 2, T.SERVICE_DATA_32_BIT_UUID: 4, T.SERVICE_DATA_128_BIT_UUID: 16}


def _advertisement_data(adv, previous: AdvertisementData | None) -> AdvertisementData:
    """Bumble's Advertisement (advertising data + scan response, merged by its accumulator)
    as bleak's AdvertisementData, merged with what was seen before as BlueZ does."""
    names: dict[int, str] = {}
    tx_power = None
    manufacturer: dict[int, bytes] = {}
    service_data: dict[str, bytes] = {}
    uuids: list[str] = []
    for kind, value in adv.data.ad_structures:
        if kind in (T.COMPLETE_LOCAL_NAME, T.SHORTENED_LOCAL_NAME):
            names[kind] = value.decode("utf-8", "replace")
        elif kind in UUID_LISTS:
            n = UUID_LISTS[kind]
            uuids += [_uuid(core.UUID.from_bytes(value[i:i + n])) for i in range(0, len(value) - n + 1, n)]
        elif kind in SERVICE_DATA and len(value) >= SERVICE_DATA[kind]:
            n = SERVICE_DATA[kind]
            service_data[_uuid(core.UUID.from_bytes(value[:n]))] = bytes(value[n:])
        elif kind == T.TX_POWER_LEVEL and value:
            tx_power = int.from_bytes(value[:1], "little", signed=True)      # dBm, signed
        elif kind == T.MANUFACTURER_SPECIFIC_DATA and len(value) >= 2:
            manufacturer[int.from_bytes(value[:2], "little")] = bytes(value[2:])
    name = names.get(T.COMPLETE_LOCAL_NAME) or names.get(T.SHORTENED_LOCAL_NAME)
    if previous is not None:
        name = name or previous.local_name
        manufacturer = {**previous.manufacturer_data, **manufacturer}
        service_data = {**previous.service_data, **service_data}
        uuids = previous.service_uuids + uuids
        tx_power = previous.tx_power if tx_power is None else tx_power
    return AdvertisementData(local_name=name, manufacturer_data=manufacturer,
                             service_data=service_data, service_uuids=list(dict.fromkeys(uuids)),
                             tx_power=tx_power, rssi=adv.rssi, platform_data=(adv,))


class BumbleScanner(BaseBleakScanner):
    """bleak scanner backend: a phone scanning the air (active unless scanning_mode="passive")."""

    def __init__(self, detection_callback=None, service_uuids=None, scanning_mode="active",
                 *, air=None, **kwargs: Any):
        super().__init__(detection_callback, service_uuids)
        self._active = scanning_mode != "passive"
        self._air = air
        self._phone: _Phone | None = None

    async def start(self) -> None:
        if self._phone is not None:
            raise BleakError("already scanning")
        self.seen_devices = {}
        phone = await _Phone.open(self._air)
        phone.device.on("advertisement", self._on_advertisement)
        try:
            await phone.device.start_scanning(active=self._active)
        except BaseException:
            await phone.close()
            raise
        self._phone = phone

    async def stop(self) -> None:
        phone, self._phone = self._phone, None
        if phone is not None:
            await phone.close()

    def _on_advertisement(self, adv) -> None:
        address = adv.address.to_string(False)
        previous = self.seen_devices.get(address)
        data = _advertisement_data(adv, previous[1] if previous else None)
        if not self.is_allowed_uuid(data.service_uuids):
            return
        # details: the typed address (public/random), which a connection needs
        device = self.create_or_update_device(address, address, data.local_name, adv.address, data)
        self.call_detection_callbacks(device, data)


class BumbleClient(BaseBleakClient):
    """bleak client backend: a phone connecting to a peripheral on the air."""

    def __init__(self, address_or_ble_device, services=None, *, disconnected_callback=None,
                 timeout: float = 10.0, air=None, **kwargs: Any):
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback,
                         timeout=timeout)
        self._target = None       # hci.Address (typed) of the peripheral
        self._name = None
        if isinstance(address_or_ble_device, BLEDevice):
            self._name = address_or_ble_device.name
            if isinstance(address_or_ble_device.details, hci.Address):
                self._target = address_or_ble_device.details
        self._wanted_services = services      # set of UUID strings, or None for all
        self._air = air
        self._phone: _Phone | None = None
        self._connection = None
        self._peer: Peer | None = None
        self._subscribers: dict[int, Any] = {}
        self._closing: asyncio.Future | None = None
        self.disconnect_reason: int | None = None    # HCI reason of the last disconnection

    @property
    def name(self) -> str:
        return self._name or self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        return self._peer.gatt_client.mtu if self._peer else att.ATT_DEFAULT_MTU

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if pair:
            log.info("pairing is not simulated: connecting without it")
        if self.is_connected:
            return
        timeout = kwargs.get("timeout", self._timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._target is None:      # an address string: find it first, as BlueZ does
            device = await BleakScanner.find_device_by_address(
                self.address, timeout=timeout, backend=BumbleScanner, air=self._air)
            if device is None:
                raise BleakDeviceNotFoundError(self.address, "Device with address %s was not found" % self.address)
            self._target, self._name = device.details, device.name
        phone = await _Phone.open(self._air)
        try:
            await asyncio.wait_for(self._connect(phone, deadline), max(deadline - loop.time(), 0.01))
        except BaseException:
            if self._connection is not None:
                await self.disconnect()
            else:
                await phone.close()
            raise

    async def _connect(self, phone: _Phone, deadline: float) -> None:
        try:
            # Bumble cancels the LE Create Connection itself when its timeout expires
            connection = await phone.device.connect(
                self._target, timeout=max(deadline - asyncio.get_running_loop().time(), 0.01))
        except core.TimeoutError as e:
            raise asyncio.TimeoutError("no connection to %s" % self.address) from e
        self._phone, self._connection = phone, connection
        self._closing = None
        self.disconnect_reason = None
        connection.on("disconnection", self._on_disconnection)
        self._peer = Peer(connection)
        await self._gatt(self._peer.request_mtu(REQUESTED_MTU))
        self.services = await self._discover(self._peer)

    async def _discover(self, peer: Peer) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        for proxy in await self._gatt(peer.discover_services()):
            if self._wanted_services and _uuid(proxy.uuid) not in self._wanted_services:
                continue
            service = BleakGATTService(proxy, proxy.handle, _uuid(proxy.uuid))
            collection.add_service(service)
            for char_proxy in await self._gatt(proxy.discover_characteristics()):
                char = BleakGATTCharacteristic(
                    char_proxy, char_proxy.handle, _uuid(char_proxy.uuid),
                    list(gatt_char_props_to_strs(int(char_proxy.properties))),
                    lambda: self.mtu_size - 3, service)
                collection.add_characteristic(char)
                for desc_proxy in await self._gatt(char_proxy.discover_descriptors()):
                    collection.add_descriptor(
                        BleakGATTDescriptor(desc_proxy, desc_proxy.handle, _uuid(desc_proxy.type), char))
        return collection

    def _on_disconnection(self, reason: int) -> None:
        if self._connection is None:
            return
        # 0: Bumble flushed its host because the air (TCP) went away: as a power cut, a timeout
        self.disconnect_reason = reason or hci.HCI_CONNECTION_TIMEOUT_ERROR
        if self._peer is not None:
            self._peer.gatt_client.on_disconnection()     # a pending request fails now
        self._connection = self._peer = self.services = None
        self._subscribers.clear()
        phone, self._phone = self._phone, None
        if phone is not None:        # in a task: this runs inside Bumble's event dispatch
            self._closing = task = asyncio.ensure_future(phone.close())
            _tasks.add(task)
            task.add_done_callback(_tasks.discard)
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is not None:
            try:
                await asyncio.wait_for(connection.disconnect(), DISCONNECT_TIMEOUT)
            except (asyncio.TimeoutError, hci.HCI_Error, core.BaseBumbleError) as e:
                log.debug("disconnect: %r", e)
            self._on_disconnection(hci.HCI_CONNECTION_TERMINATED_BY_LOCAL_HOST_ERROR)
        if self._closing is not None:
            await self._closing

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("pairing is not simulated")

    async def unpair(self) -> None:
        raise NotImplementedError("pairing is not simulated")

    # --- GATT ---------------------------------------------------------------------------------
    def _client(self):
        if self._peer is None:
            raise BleakError("Not connected")
        return self._peer.gatt_client

    async def _gatt(self, awaitable):
        """Bumble's errors as bleak raises them."""
        try:
            return await awaitable
        except att.ATT_Error as e:
            raise BleakGATTProtocolError(e.error_code) from e
        except core.TimeoutError as e:
            raise asyncio.TimeoutError(str(e)) from e
        except asyncio.CancelledError:
            # Bumble cancels a pending request when the link drops: that is not our cancellation
            task = asyncio.current_task()
            cancelling = getattr(task, "cancelling", lambda: 0)()     # Python >= 3.11
            if self._connection is None and not cancelling:
                raise BleakError("disconnected") from None
            raise

    async def _read(self, handle: int, use_cached: bool) -> bytearray:
        client = self._client()
        if use_cached and handle in client.cached_values:
            return bytearray(client.cached_values[handle][1])
        # a value of MTU-1 bytes is followed by read blobs (Bumble), up to 512 bytes
        return bytearray(await self._gatt(client.read_value(handle)))

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, *,
                             use_cached: bool = False, **kwargs: Any) -> bytearray:
        return await self._read(characteristic.handle, use_cached)

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data, response: bool) -> None:
        client, data = self._client(), bytes(data)
        if not response and len(data) > self.mtu_size - 3:
            raise BleakError("write without response: %d bytes > MTU-3 (%d)" % (len(data), self.mtu_size - 3))
        # with response, more than MTU-3 bytes becomes a long write (prepare/execute) in Bumble
        await self._gatt(client.write_value(characteristic.handle, data, with_response=response))

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, *,
                                   use_cached: bool = False, **kwargs: Any) -> bytearray:
        return await self._read(descriptor.handle, use_cached)

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data) -> None:
        await self._gatt(self._client().write_value(descriptor.handle, bytes(data), with_response=True))

    async def start_notify(self, characteristic: BleakGATTCharacteristic, callback, **kwargs: Any) -> None:
        client = self._client()
        if not {"notify", "indicate"} & set(characteristic.properties):
            raise BleakError("characteristic %s can neither notify nor indicate" % characteristic.uuid)
        if characteristic.get_descriptor("2902") is None:
            raise BleakError("characteristic %s has no CCCD" % characteristic.uuid)

        def on_value(value: bytes) -> None:
            callback(bytearray(value))

        self._subscribers[characteristic.handle] = on_value
        await self._gatt(client.subscribe(characteristic.obj, on_value, prefer_notify=True))
        # BlueZ and CoreBluetooth deliver notifications and indications alike, whichever the
        # CCCD enabled (and MicroPython's gatts_indicate ignores the CCCD); Bumble delivers
        # only the kind subscribed to. Listen to both (unsubscribe removes it from both).
        for table in (client.notification_subscribers, client.indication_subscribers):
            table.setdefault(characteristic.handle, set()).add(on_value)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        client = self._client()
        subscriber = self._subscribers.pop(characteristic.handle, None)
        await self._gatt(client.unsubscribe(characteristic.obj, subscriber))


# ---------------------------------------------------------------------------------------------
# Making plain BleakScanner() / BleakClient() use this backend
# ---------------------------------------------------------------------------------------------
_saved = None     # bleak's own selection functions, while installed


def _select(scanner_fn, client_fn):
    # bleak/__init__.py imported these names from bleak.backends.{scanner,client}: set both
    bleak.get_platform_scanner_backend_type = bleak.backends.scanner.get_platform_scanner_backend_type = scanner_fn
    bleak.get_platform_client_backend_type = bleak.backends.client.get_platform_client_backend_type = client_fn


def install(air=None) -> None:
    """Make plain BleakScanner() / BleakClient() (no backend=) use BumbleScanner / BumbleClient:
    they ask bleak.get_platform_{scanner,client}_backend_type(), which this replaces.
    `air` (else $ROOST_BLE_AIR) becomes the default air. uninstall() undoes it."""
    global _default_air, _saved
    if air is not None:
        _default_air = air
    if _saved is None:
        _saved = (bleak.get_platform_scanner_backend_type, bleak.get_platform_client_backend_type)
    _select(lambda: (BumbleScanner, BumbleScanner.__name__), lambda: (BumbleClient, BumbleClient.__name__))


def uninstall() -> None:
    global _default_air, _saved
    if _saved is not None:
        _select(*_saved)
    _saved = _default_air = None


def main(argv=None) -> None:
    """python -m tools.ble.bleak_bumble [--air HOST:PORT] (SCRIPT | -m MODULE) [ARGS...]:
    run a bleak program with install() done (the air from --air or $ROOST_BLE_AIR)."""
    import runpy
    argv = list(sys.argv[1:] if argv is None else argv)
    air = None
    if argv[:1] == ["--air"]:
        air, argv = argv[1], argv[2:]
    if not argv:
        raise SystemExit(main.__doc__)
    install(air)
    if argv[0] == "-m":
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
