"""The air: a virtual Bluetooth LE room built on Bumble (Google's Python Bluetooth stack).

Each simulated World has one `AirLink` (a Bumble LocalLink). On it:
  - each board's chip gets an `AirController` behind a pty (`attach_chip`): the chip's NimBLE
    opens the pty named by MICROPYBTUART and speaks HCI H4 to it, as to a UART controller;
  - each TCP connection to `serve_phones` is a new phone: another `AirController`, whose host
    (e.g. bleak over tools/ble/bleak_bumble.py) speaks HCI H4 over that socket.

Bumble provides the controllers, the link, the H4 parser; this module fixes the gaps of
bumble 0.0.236's Controller that matter to a NimBLE peripheral and its phones (see AirController)
and runs everything on one asyncio loop in a daemon thread per process. The public functions
are thread-safe: they submit to that loop and wait (with a timeout).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import itertools
import logging
import os
import secrets
import threading
import time
import tty

from bumble import controller as bumble_controller
from bumble import hci, ll
from bumble import link as bumble_link
from bumble.core import PhysicalTransport
from bumble.transport.common import StreamPacketSink, StreamPacketSource

log = logging.getLogger(__name__)

CALL_TIMEOUT = 10.0                 # s, for every call into the radio thread
RSSI = -50                          # dBm, every report (the air has no distances)
CONNECTION_TIMEOUT = hci.HCI_CONNECTION_TIMEOUT_ERROR                         # 0x08
LOCAL_HOST_TERMINATED = hci.HCI_CONNECTION_TERMINATED_BY_LOCAL_HOST_ERROR     # 0x16
UNKNOWN_CONNECTION = hci.HCI_UNKNOWN_CONNECTION_IDENTIFIER_ERROR              # 0x02
MAX_ACL_TO_HOST = 251       # LE data channel PDU payload with Data Length Extension (Vol 6 Part B 2.4)
DEFAULT_ADV_INTERVAL = 0x0800   # 1.28 s, the HCI default (Vol 4 Part E 7.8.5)

# Legacy advertising types (HCI_LE_Set_Advertising_Parameters, Vol 4 Part E 7.8.5)
ADV_IND, ADV_DIRECT_IND_HIGH, ADV_SCAN_IND, ADV_NONCONN_IND, ADV_DIRECT_IND_LOW = range(5)
SCANNABLE = (ADV_IND, ADV_SCAN_IND)
CONNECTABLE = (ADV_IND, ADV_DIRECT_IND_HIGH, ADV_DIRECT_IND_LOW)
DIRECTED = (ADV_DIRECT_IND_HIGH, ADV_DIRECT_IND_LOW)
# Report event types: legacy report (7.7.65.2) and extended report of a legacy PDU (7.7.65.13)
LEGACY_REPORT = {ADV_IND: 0x00, ADV_DIRECT_IND_HIGH: 0x01, ADV_DIRECT_IND_LOW: 0x01,
                 ADV_SCAN_IND: 0x02, ADV_NONCONN_IND: 0x03}
LEGACY_SCAN_RSP = 0x04
EXT_REPORT = {ADV_IND: 0x13, ADV_DIRECT_IND_HIGH: 0x15, ADV_DIRECT_IND_LOW: 0x15,
              ADV_SCAN_IND: 0x12, ADV_NONCONN_IND: 0x10}
EXT_SCAN_RSP = {ADV_IND: 0x1B, ADV_SCAN_IND: 0x1A}


# ---------------------------------------------------------------------------------------------
# The radio thread: one asyncio loop per process, shared by every link, board and phone
# ---------------------------------------------------------------------------------------------
_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def _log_loop_exception(loop, context):
    # One board's or phone's failure must not stop the air: log it and carry on.
    log.warning("radio: %s", context.get("message"), exc_info=context.get("exception"))


def air_loop() -> asyncio.AbstractEventLoop:
    """The radio thread's event loop (started on first use)."""
    global _loop, _thread
    with _lock:
        if _loop is None or not _thread.is_alive():
            _loop = asyncio.new_event_loop()
            _loop.set_exception_handler(_log_loop_exception)
            _thread = threading.Thread(target=_loop.run_forever, daemon=True, name="radio")
            _thread.start()
        return _loop


def call(coro, timeout: float = CALL_TIMEOUT):
    """Run a coroutine on the radio loop from another thread and return its result."""
    loop = air_loop()
    if threading.current_thread() is _thread:
        coro.close()
        raise RuntimeError("radio.call() from the radio thread itself would deadlock")
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError("the radio thread did not answer within %.0f s" % timeout) from None


# ---------------------------------------------------------------------------------------------
# The link
# ---------------------------------------------------------------------------------------------
class AirLink(bumble_link.LocalLink):
    """A room's air. All its controllers must live on one loop (the radio loop, or a test's)."""

    def send_acl_data(self, sender_controller, destination_address, transport, data):
        # Gap 4: LocalLink gives LE data the sender's *random* address as source. A controller
        # whose host advertises/connects with its public address (NimBLE on the chip) then sends
        # from 00:00:00:00:00:00 and the peer drops every packet ("no connection for ...").
        # The source of LE data is the address the connection was made with (Vol 6 Part B 1.3).
        if transport != PhysicalTransport.LE:
            return super().send_acl_data(sender_controller, destination_address, transport, data)
        connection = sender_controller.le_connections.get(destination_address)
        source = connection.self_address if connection else sender_controller.random_address
        destination = self.find_le_controller(destination_address)
        if destination is not None:
            asyncio.get_running_loop().call_soon(
                destination.on_link_acl_data, source, transport, data)

    def send_ll_control_pdu(self, sender_address, receiver_address, packet):
        # LocalLink raises when the peer is gone (power cut): then nobody hears it, as on air.
        receiver = self.find_le_controller(receiver_address)
        if receiver is None:
            log.debug("LL %s to %s: nobody there", packet, receiver_address)
            return
        asyncio.get_running_loop().call_soon(receiver.on_ll_control_pdu, sender_address, packet)

    def send_advertising_pdu(self, sender_controller, packet):
        # Only a scanning or initiating controller listens to advertisements; the others would
        # drop them. Skipping them keeps a room of N advertising boards from costing N x N
        # deliveries per interval on the radio thread (a fleet of 50 in one room). Other PDUs
        # on the advertising channels (CONNECT_IND to an advertiser) go to every controller.
        loop = asyncio.get_running_loop()
        advertisement = isinstance(packet, ll.AdvInd)
        for c in list(self.controllers):    # a snapshot: controllers join and leave meanwhile
            if c is sender_controller:
                continue
            if advertisement and not (c.le_scan_enable or c.pending_le_connection):
                continue
            loop.call_soon(c.on_ll_advertising_pdu, packet)

    def remove_controller(self, controller):
        self.controllers.discard(controller)


# ---------------------------------------------------------------------------------------------
# The controller
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class AirAdvPdu(ll.AdvInd):
    """A legacy advertising PDU on the air, with its type and the advertiser's scan response.

    There is no SCAN_REQ/SCAN_RSP exchange (Vol 6 Part B 4.4.3.2) on a link without timing:
    a scannable PDU carries what the advertiser would answer, and only an active scanner
    reports it. (A subclass of AdvInd so that a plain Bumble controller still sees ADV_IND.)"""
    adv_type: int = ADV_IND
    scan_response: bytes | None = None
    target_address: hci.Address | None = None


class AirAdvertiser(bumble_controller.LegacyAdvertiser):
    def _on_timer_fired(self):
        try:
            self.send_advertising_data()
        except Exception:       # noqa: BLE001 - one bad delivery must not end the advertising
            log.warning("radio: advertising PDU not delivered", exc_info=True)
        # Gap 3: Bumble waits advertising_interval_min / 1000 s; the unit is 0.625 ms
        # (Vol 4 Part E 7.8.5), and a host that never set it means the default 1.28 s, not 0.
        interval = max(self.advertising_interval_min or DEFAULT_ADV_INTERVAL, 0x0020)
        self.timer_handle = asyncio.get_running_loop().call_later(
            interval * 0.625e-3, self._on_timer_fired)

    def send_advertising_data(self):
        # Bumble sends only ADV_IND, without the scan response; send every legacy type.
        if not self.enabled:
            return
        kind = self.advertising_type
        directed = kind in DIRECTED
        self.controller.send_advertising_pdu(AirAdvPdu(
            advertiser_address=self.address,
            data=b"" if directed else bytes(self.advertising_data),
            adv_type=kind,
            scan_response=bytes(self.scan_response_data) if kind in SCANNABLE else None,
            target_address=self.peer_address if directed else None))


class AirController(bumble_controller.Controller):
    """bumble.controller.Controller with the gaps of bumble 0.0.236 fixed (Core spec 5.x refs):

    1. ACL data to the host is fragmented to 251 bytes per HCI packet (or the host's
       HCI_Host_Buffer_Size). Bumble sends each L2CAP PDU whole ("TODO: should fragment");
       NimBLE drops ACL packets over its 255-byte buffer and loses sync.
    2. Scan responses: Bumble reports the advertising data again as SCAN_RSP. Here the
       advertiser's LE Set Scan Response Data reaches active scanners only, for scannable
       types only; ADV_SCAN_IND / ADV_NONCONN_IND / ADV_DIRECT_IND are sent at all.
       Reports are legacy unless the host enabled scanning with the extended command
       (Vol 4 Part E 3.1.1: no mixing), and LE Extended/Periodic Advertising are not
       offered: the ESP32 is a 4.2 controller, MicroPython's NimBLE is built without
       BLE_EXT_ADV (it would ignore extended reports), and Bumble's extended advertiser
       never sends scan responses either. Phones (Bumble hosts) then use legacy commands.
    3. Advertising interval in 0.625 ms units (see AirAdvertiser).
    4. (AirLink) LE data comes from the connection's own address, public or random.
    5. LE Create Connection Cancel completes the pending connection with status 0x02
       (Vol 4 Part E 7.8.13); Bumble never did, so a Bumble connect() with a timeout hung
       and the next LE Create Connection was refused as "disallowed".
    6. HCI_Reset resets (7.3.2): links dropped (the peer sees 0x08, as when a controller
       goes silent), advertising, scanning and initiating stopped. Bumble did nothing, so a
       NimBLE restarted on the same controller found old links and advertising running.
    7. The host that disconnects gets reason 0x16, "terminated by local host" (7.1.6);
       Bumble echoed the reason the host sent to the peer (0x13).
    """

    le_features = bumble_controller.Controller.le_features & ~(
        hci.LeFeatureMask.LE_EXTENDED_ADVERTISING | hci.LeFeatureMask.LE_PERIODIC_ADVERTISING)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.le_legacy_advertiser = AirAdvertiser(self)
        self.host_acl_data_packet_length = 0    # 0: the host did not say
        self.scan_extended = False              # scanning enabled by the extended command

    # --- power ------------------------------------------------------------------------------
    def drop_links(self, reason=CONNECTION_TIMEOUT):
        """Forget every LE link without telling our host; each peer sees `reason`."""
        for connection in list(self.le_connections.values()):
            try:
                connection.send_ll_control_pdu(ll.TerminateInd(reason))
            except Exception:    # a plain LocalLink raises when the peer is gone
                log.debug("peer of %s gone", connection.peer_address)
        self.le_connections.clear()

    def leave_air(self, reason=CONNECTION_TIMEOUT):
        """Power off: links drop (peers see `reason`), advertising stops, off the link."""
        self.drop_links(reason)
        self._stop_radio_activity()
        self.host = None
        if self.link is not None:
            self.link.remove_controller(self)

    def _stop_radio_activity(self):
        self.le_legacy_advertiser.stop()
        for advertising_set in self.advertising_sets.values():
            advertising_set.stop()
        self.le_scan_enable = False
        self.pending_le_connection = None

    # --- HCI commands -------------------------------------------------------------------------
    def on_hci_reset_command(self, command):
        self.drop_links(CONNECTION_TIMEOUT)     # gap 6
        self._stop_radio_activity()
        self.advertising_sets.clear()
        self.le_legacy_advertiser = AirAdvertiser(self)
        self.host_acl_data_packet_length = 0
        self.scan_extended = False
        self.le_scan_type = 0
        self._random_address = hci.Address.ANY_RANDOM
        return super().on_hci_reset_command(command)

    def on_hci_host_buffer_size_command(self, command):
        self.host_acl_data_packet_length = command.host_acl_data_packet_length   # gap 1
        return super().on_hci_host_buffer_size_command(command)

    def on_hci_le_set_scan_enable_command(self, command):
        self.scan_extended = False
        return super().on_hci_le_set_scan_enable_command(command)

    def on_hci_le_set_extended_scan_enable_command(self, command):
        self.scan_extended = True
        return super().on_hci_le_set_extended_scan_enable_command(command)

    def on_hci_le_set_extended_scan_parameters_command(self, command):
        # Bumble keeps no scan type from the extended command: take the first PHY's.
        if command.scan_types:
            self.le_scan_type = command.scan_types[0]
        return super().on_hci_le_set_extended_scan_parameters_command(command)

    def on_hci_le_create_connection_cancel_command(self, command):
        pending, self.pending_le_connection = self.pending_le_connection, None       # gap 5
        if pending is None:
            return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR)
        failed = hci.HCI_LE_Connection_Complete_Event(
            status=UNKNOWN_CONNECTION, connection_handle=0, role=hci.Role.CENTRAL,
            peer_address_type=pending.peer_address.address_type,
            peer_address=pending.peer_address, connection_interval=0,
            peripheral_latency=0, supervision_timeout=0, central_clock_accuracy=0)
        # after the Command Complete, which the caller sends when this returns
        asyncio.get_running_loop().call_soon(self.send_hci_packet, failed)
        return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)

    def on_hci_disconnect_command(self, command):
        connection = self.find_le_connection_by_handle(command.connection_handle)
        if connection is None:
            return super().on_hci_disconnect_command(command)
        self._send_hci_command_status(hci.HCI_COMMAND_STATUS_PENDING, command.op_code)
        connection.send_ll_control_pdu(ll.TerminateInd(command.reason))   # the peer: 0x13...
        self.on_le_disconnected(connection, LOCAL_HOST_TERMINATED)         # gap 7: us: 0x16
        return None

    # --- link -> host -------------------------------------------------------------------------
    def on_link_acl_data(self, sender_address, transport, data):
        connections = (self.le_connections if transport == PhysicalTransport.LE
                       else self.classic_connections)
        connection = connections.get(sender_address)
        if connection is None:
            log.debug("[%s] data from %s: no connection", self.name, sender_address)
            return
        # Gap 1: one L2CAP PDU arrives whole from the link; the host gets it in fragments no
        # larger than its buffer: first 0b10, then continuations 0b01 (Vol 4 Part E 5.4.2).
        size = min(MAX_ACL_TO_HOST, self.host_acl_data_packet_length or MAX_ACL_TO_HOST)
        for offset in range(0, max(len(data), 1), size):
            chunk = data[offset:offset + size]
            self.send_hci_packet(hci.HCI_AclDataPacket(
                connection.handle, 0b10 if offset == 0 else 0b01, 0, len(chunk), chunk))

    def on_ll_advertising_pdu(self, packet):
        if isinstance(packet, AirAdvPdu):
            self._on_legacy_advertising(packet)
        else:
            super().on_ll_advertising_pdu(packet)

    def _on_legacy_advertising(self, pdu: AirAdvPdu):
        if pdu.adv_type in DIRECTED and pdu.target_address not in (
                self.public_address, self.random_address):
            return                                     # directed to someone else
        if self.le_scan_enable:
            self._report(pdu, pdu.data, LEGACY_REPORT[pdu.adv_type], EXT_REPORT[pdu.adv_type])
            if self.le_scan_type == 1 and pdu.scan_response is not None:   # gap 2: active only
                self._report(pdu, pdu.scan_response, LEGACY_SCAN_RSP, EXT_SCAN_RSP[pdu.adv_type])
        pending = self.pending_le_connection
        if (pending is not None and pdu.adv_type in CONNECTABLE
                and pending.peer_address == pdu.advertiser_address):
            self.create_le_connection(pdu.advertiser_address)

    def _report(self, pdu, data, legacy_type, extended_type):
        address = pdu.advertiser_address
        direct = pdu.target_address
        if self.scan_extended:
            report = hci.HCI_LE_Extended_Advertising_Report_Event.Report(
                event_type=extended_type, address_type=address.address_type, address=address,
                primary_phy=hci.Phy.LE_1M, secondary_phy=0, advertising_sid=0xFF,
                tx_power=hci.HCI_LE_Extended_Advertising_Report_Event.TX_POWER_INFORMATION_NOT_AVAILABLE,
                rssi=RSSI, periodic_advertising_interval=0,
                direct_address_type=direct.address_type if direct else 0,
                direct_address=direct or hci.Address.ANY, data=data)
            self.send_hci_packet(hci.HCI_LE_Extended_Advertising_Report_Event([report]))
        else:
            report = hci.HCI_LE_Advertising_Report_Event.Report(
                event_type=legacy_type, address_type=address.address_type, address=address,
                data=data, rssi=RSSI)
            self.send_hci_packet(hci.HCI_LE_Advertising_Report_Event([report]))


# ---------------------------------------------------------------------------------------------
# Chips: a controller behind a pty
# ---------------------------------------------------------------------------------------------
class _PtySource(StreamPacketSource):
    """H4 from the chip. A chip killed in the middle of a write leaves half a packet in the
    parser; a new chip on the same pty would have its first packets swallowed into it. Like
    a UART receiver with an inter-byte timeout, drop a partial packet after a silence."""
    stale_after = 0.25      # s; a live writer writes a packet at once (a pty has no baud rate)
    last_data = 0.0

    def data_received(self, data):
        now = time.monotonic()
        if self.parser.packet and now - self.last_data > self.stale_after:
            log.debug("pty: dropping %d stale bytes of a partial packet", len(self.parser.packet))
            self.parser.reset()
        self.last_data = now
        super().data_received(data)


def _address(value, address_type=hci.Address.PUBLIC_DEVICE_ADDRESS) -> hci.Address:
    """6 bytes most significant first (as printed, as esp_read_mac gives), 'AA:BB:..' or an
    hci.Address."""
    if isinstance(value, hci.Address):
        return value
    if isinstance(value, str):
        return hci.Address(value, address_type)
    value = bytes(value)
    if len(value) != 6:
        raise ValueError("a Bluetooth address has 6 bytes")
    return hci.Address(bytes(reversed(value)), address_type)


class ChipRadio:
    """A chip's controller on the air, reachable through `pty_path` (give it to the chip as
    MICROPYBTUART). close(): the chip loses power; its peers see their links time out."""

    def __init__(self, controller, pty_path, primary, replica, read_transport, write_transport):
        self.controller = controller
        self.pty_path = pty_path
        self._fds = (primary, replica)
        self._transports = (read_transport, write_transport)
        self._source = read_transport.get_protocol()
        self.closed = False

    @property
    def address(self) -> str:
        return self.controller.public_address.to_string(False)

    def set_stale_input_gap(self, seconds: float):
        self._source.stale_after = seconds

    def close(self):
        if not self.closed:
            call(self.aclose())

    async def aclose(self):
        if self.closed:
            return
        self.closed = True
        try:
            self.controller.leave_air(CONNECTION_TIMEOUT)
        finally:
            read_transport, write_transport = self._transports
            read_transport.close()      # removes the reader now
            write_transport.abort()     # drops what the dead chip never read, removes the writer
            for fd in self._fds:
                try:
                    os.close(fd)
                except OSError:
                    pass


_names = itertools.count(1)


async def attach_chip_async(link: AirLink, public_address) -> ChipRadio:
    """attach_chip() on the calling loop (which must be the one of the link's controllers)."""
    loop = asyncio.get_running_loop()
    primary, replica = os.openpty()
    try:
        tty.setraw(primary)
        tty.setraw(replica)     # no echo, no line discipline: H4 bytes pass as they are
        path = os.ttyname(replica)
        # We keep `replica` open: without a reader on that side, the primary reads EIO when
        # the chip dies and asyncio would close the transport; with it, a killed chip is just
        # silence, and the next one opens the same path.
        read_transport, source = await loop.connect_read_pipe(
            _PtySource, open(primary, "rb", buffering=0, closefd=False))
        write_transport, _ = await loop.connect_write_pipe(
            asyncio.BaseProtocol, open(primary, "wb", buffering=0, closefd=False))
    except BaseException:
        os.close(primary)
        os.close(replica)
        raise
    address = _address(public_address)
    controller = AirController("chip-%s" % address.to_string(False), host_source=source,
                               host_sink=StreamPacketSink(write_transport), link=link,
                               public_address=address)
    return ChipRadio(controller, path, primary, replica, read_transport, write_transport)


def attach_chip(link: AirLink, public_address) -> ChipRadio:
    """A new controller with that public address (6 bytes, most significant first) on the
    link, behind a new pty. Thread-safe (runs on the radio loop)."""
    return call(attach_chip_async(link, public_address))


# ---------------------------------------------------------------------------------------------
# Phones: a controller per TCP connection
# ---------------------------------------------------------------------------------------------
class _PhoneConnection(StreamPacketSource):
    def __init__(self, server: PhoneServer):
        super().__init__()
        self.server = server
        self.controller = None
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        # A phone's own public address (its host normally uses a random one anyway).
        address = hci.Address(secrets.token_bytes(6), hci.Address.PUBLIC_DEVICE_ADDRESS)
        self.controller = AirController("phone-%d" % next(_names), host_source=self,
                                        host_sink=StreamPacketSink(transport),
                                        link=self.server.link, public_address=address)
        self.server.phones.add(self)

    def connection_lost(self, exc):
        self.server.phones.discard(self)
        controller, self.controller = self.controller, None
        if controller is not None:
            controller.leave_air(CONNECTION_TIMEOUT)     # the phone's Bluetooth is gone
        self.on_transport_lost()


class PhoneServer:
    """TCP on 127.0.0.1:`port`; each connection is a new phone (HCI H4) on `link`."""

    def __init__(self, link: AirLink):
        self.link = link
        self.phones: set[_PhoneConnection] = set()
        self._server = None
        self.port = None

    async def start(self, port=0):
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _PhoneConnection(self), "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def close(self):
        if self._server is not None:
            call(self.aclose())

    async def aclose(self):
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for phone in list(self.phones):
            phone.transport.close()          # connection_lost takes the controller off the air


def serve_phones(link: AirLink, port: int = 0) -> PhoneServer:
    """Start a PhoneServer for `link` on the radio loop; its `.port` is where phones connect
    (ROOST_BLE_AIR=127.0.0.1:port for tools/ble/bleak_bumble.py)."""
    return call(PhoneServer(link).start(port))
