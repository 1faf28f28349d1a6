"""The simulated board's Bluetooth LE radio, and the phone at the other end of it.

The chip runs tools/sim/shims/sim_bluetooth.py as its `bluetooth` module. It keeps the attribute
values in its own heap (as MicroPython's gatts_db does on an ESP32) and tells this radio what the
air needs: advertising payloads, the GATT layout, notifications, disconnects. This radio plays
NimBLE's part on the air side (handles, CCCDs, MTU, ATT permissions, long reads and writes) and a
central (a phone) for host code and tests:

    radio = board.ble
    adv = radio.scan(timeout=2)[0]            # only while the chip advertises
    with radio.connect() as conn:             # IRQ 1 on the chip; advertising stops
        conn.exchange_mtu(512)                # min of both sides; IRQ 21
        ch = conn.characteristic(UUID)        # discovery is done on first use
        conn.write(ch, request)               # up to 512 bytes (long write); IRQ 3
        response = conn.read(ch)              # Read + Read Blob; IRQ 4 may deny (AttError)

The central's operations reach the chip on its events socket (the "ble" channel of the air) and
each waits for the chip's reply, i.e. until the firmware's IRQ handler has run: the chip delivers
them from an asyncio task, so a firmware that is not running asyncio never answers, and the
central's call ends in BleTimeout. Operations the chip starts (gatts_notify, gap_disconnect,
gattc_exchange_mtu) arrive as air requests on other threads; the IRQs they cause later (20, 2, 21)
are queued to the chip without waiting, since the chip is blocked in that request meanwhile.

Thread-safety: one condition variable guards all state; host threads wait on it for replies,
which the attach thread (reading the events socket) fills in.
"""
import json
import os
import queue
import socket
import threading
import time
import uuid as _uuid
from dataclasses import dataclass, field

DEFAULT_TIMEOUT = 10.0          # the real ATT transaction timeout is 30 s; tests want failures sooner
ATT_TIMEOUT = 30.0
ATT_MAX_LEN = 512               # largest attribute value ATT can carry (long reads and writes)
DEFAULT_MTU = 23
MAX_CONNECTIONS = 4             # CONFIG_BT_NIMBLE_MAX_CONNECTIONS on ESP32 builds
DEFAULT_GAP_NAME = b"MPY ESP32"
DEFAULT_CHIP_MTU = 256          # IDF CONFIG_BT_NIMBLE_ATT_PREFERRED_MTU
GAP_NAME_MAX = 31               # CONFIG_BT_NIMBLE_GAP_DEVICE_NAME_MAX_LEN
ADV_MAX = 31                    # legacy advertising / scan response payload

# errno values the chip's OSError carries (MicroPython's mperrno on ESP32)
EBUSY, ENODEV, EINVAL, ENOTCONN, EALREADY = 16, 19, 22, 107, 114

# ATT error codes
ATT_INVALID_HANDLE = 0x01
ATT_READ_NOT_PERMITTED = 0x02
ATT_WRITE_NOT_PERMITTED = 0x03
ATT_INSUFFICIENT_AUTHEN = 0x05
ATT_INVALID_OFFSET = 0x07
ATT_INVALID_ATTR_VALUE_LEN = 0x0D
ATT_UNLIKELY = 0x0E

# HCI disconnect reasons as the central reports them
REASON_CONNECTION_TIMEOUT = 0x08       # the peripheral vanished (power cut, reset)
REASON_REMOTE_USER_TERMINATED = 0x13   # the peripheral called gap_disconnect / turned BLE off
REASON_LOCAL_HOST_TERMINATED = 0x16    # we (the central) disconnected

# Characteristic flags as MicroPython (and NimBLE) define them
F_READ, F_WRITE_NO_RESPONSE, F_WRITE, F_NOTIFY, F_INDICATE = 0x02, 0x04, 0x08, 0x10, 0x20
F_READ_ENC, F_READ_AUTHEN = 0x0200, 0x0400
F_WRITE_ENC, F_WRITE_AUTHEN = 0x1000, 0x2000

IRQ_CENTRAL_CONNECT, IRQ_CENTRAL_DISCONNECT = 1, 2
IRQ_GATTS_INDICATE_DONE, IRQ_MTU_EXCHANGED = 20, 21

_BASE_UUID = "-0000-1000-8000-00805f9b34fb"


class BleError(Exception):
    pass


class BleTimeout(BleError, TimeoutError):
    pass


class BleDisconnected(BleError, ConnectionError):
    def __init__(self, reason, msg=None):
        super().__init__(msg or "disconnected (reason 0x%02x)" % reason)
        self.reason = reason


class AttError(BleError):
    """The peripheral answered an ATT request with an error response."""

    def __init__(self, code, handle=None):
        super().__init__("ATT error 0x%02x on handle %s" % (code, handle))
        self.code = code
        self.handle = handle


def normalize_uuid(u):
    """Any UUID spelling -> bleak's form: 128-bit lower-case text ("00002901-0000-1000-...")."""
    if isinstance(u, int):
        return "%08x%s" % (u, _BASE_UUID)
    if isinstance(u, _uuid.UUID):
        return str(u)
    if isinstance(u, (bytes, bytearray, memoryview)):
        return uuid_from_le(bytes(u))
    s = str(u).strip().lower()
    if len(s) in (4, 8) and all(c in "0123456789abcdef" for c in s):
        return "%08x%s" % (int(s, 16), _BASE_UUID)
    return str(_uuid.UUID(s))


def uuid_from_le(b):
    """LSB-first UUID bytes (as on the air, and as MicroPython's bytes(UUID)) -> text."""
    if len(b) in (2, 4):
        return "%08x%s" % (int.from_bytes(b, "little"), _BASE_UUID)
    return str(_uuid.UUID(bytes=bytes(b[::-1])))


def _le(u):
    """Text UUID -> the shortest LSB-first bytes, as it travels in attribute declarations."""
    if u.endswith(_BASE_UUID) and u.startswith("0000"):
        return int(u[:8], 16).to_bytes(2, "little")
    return _uuid.UUID(u).bytes[::-1]


def parse_ad(data):
    """Advertising (or scan response) AD structures -> dict of what a scanner reports."""
    out = {"flags": None, "name": None, "service_uuids": [], "manufacturer_data": {},
           "service_data": {}, "tx_power": None}
    i = 0
    while i < len(data):
        n = data[i]
        if n == 0 or i + 1 + n > len(data):
            break
        t, v = data[i + 1], bytes(data[i + 2:i + 1 + n])
        i += 1 + n
        if t == 0x01 and v:
            out["flags"] = v[0]
        elif t in (0x08, 0x09):
            if t == 0x09 or out["name"] is None:
                out["name"] = v.decode("utf-8", "replace")
        elif t in (0x02, 0x03, 0x04, 0x05, 0x06, 0x07):
            size = {0x02: 2, 0x03: 2, 0x04: 4, 0x05: 4, 0x06: 16, 0x07: 16}[t]
            for j in range(0, len(v) - size + 1, size):
                out["service_uuids"].append(uuid_from_le(v[j:j + size]))
        elif t == 0xFF and len(v) >= 2:
            out["manufacturer_data"][int.from_bytes(v[:2], "little")] = v[2:]
        elif t in (0x16, 0x20, 0x21):
            size = {0x16: 2, 0x20: 4, 0x21: 16}[t]
            out["service_data"][uuid_from_le(v[:size])] = v[size:]
        elif t == 0x0A and v:
            out["tx_power"] = int.from_bytes(v[:1], "little", signed=True)
    return out


@dataclass(frozen=True)
class Advertisement:
    addr: str                  # "24:0A:C4:12:34:58", as bleak shows it
    addr_type: int
    name: str
    adv_data: bytes
    resp_data: bytes
    service_uuids: list
    manufacturer_data: dict
    service_data: dict
    flags: int
    connectable: bool
    interval_us: int
    rssi: int = -50


@dataclass(frozen=True)
class Descriptor:
    uuid: str
    handle: int


@dataclass(frozen=True)
class Characteristic:
    uuid: str
    handle: int                # the declaration
    value_handle: int
    properties: int            # the declaration's properties byte (READ 0x02, WRITE 0x08, ...)
    descriptors: tuple = ()

    def descriptor(self, uuid):
        u = normalize_uuid(uuid)
        for d in self.descriptors:
            if d.uuid == u:
                return d
        raise KeyError("no descriptor %s on characteristic %s" % (u, self.uuid))


@dataclass(frozen=True)
class Service:
    uuid: str
    start: int
    end: int
    characteristics: tuple = ()

    def characteristic(self, uuid):
        u = normalize_uuid(uuid)
        for c in self.characteristics:
            if c.uuid == u:
                return c
        raise KeyError("no characteristic %s in service %s" % (u, self.uuid))


@dataclass(frozen=True)
class Notification:
    handle: int
    data: bytes
    indication: bool
    time: float = field(default_factory=time.monotonic)


class _Attr:
    """One row of the peripheral's attribute table."""
    __slots__ = ("kind", "uuid", "flags", "char", "static")

    def __init__(self, kind, uuid, flags=0, char=None, static=None):
        self.kind = kind        # "service", "decl", "value", "cccd", "desc"
        self.uuid = uuid
        self.flags = flags      # characteristic flags; for descriptors READ/WRITE as MicroPython maps them
        self.char = char        # value handle of the characteristic this belongs to
        self.static = static    # fn() -> bytes for values NimBLE serves itself (GAP service)


class _Link:
    """The chip's events socket: requests out (one writer thread keeps them in order), replies
    (matched by id) in. Writes never happen on the caller's thread, so an air request handler can
    queue an IRQ for the chip while the chip is blocked waiting for that handler's answer."""

    def __init__(self, sock):
        self.sock = sock
        self.next_id = 0
        self.waiting = set()
        self.replies = {}
        self.closed = False
        self._queue = queue.SimpleQueue()
        threading.Thread(target=self._writer, daemon=True, name="ble-link").start()

    def send(self, msg):
        self._queue.put(json.dumps(msg).encode() + b"\n")

    def _writer(self):
        while True:
            data = self._queue.get()
            if data is None:
                return
            try:
                self.sock.sendall(data)
            except OSError:
                return  # the chip is gone; the reader sees it too and wakes the waiters

    def close(self):
        self.closed = True
        self._queue.put(None)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader blocked in recv
        except OSError:
            pass


class Connection:
    """One central connection to the simulated peripheral. Methods block until the chip answers."""

    def __init__(self, radio, handle, link, peer):
        self.radio = radio
        self.handle = handle            # the chip's conn_handle
        self.peer = peer                # the peripheral's address
        self.mtu = DEFAULT_MTU
        self.connected = True
        self.reason = None              # HCI reason once disconnected
        self.disconnected = threading.Event()
        self.on_disconnect = None       # fn(reason); runs under the radio's lock: keep it short
        self.notifications = []         # Notification, oldest first; wait_notification() consumes
        self.cccd = {}                  # value handle -> CCCD bits this central wrote
        self.services = None
        self._link = link
        self._central_mtu_done = False
        self._device_mtu_done = False

    def __repr__(self):
        return "<Connection %d to %s%s>" % (self.handle, self.peer, "" if self.connected else " (closed)")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.connected:
            self.disconnect()

    # -- GATT client ---------------------------------------------------------------------------
    def exchange_mtu(self, mtu=517, timeout=None):
        """ATT Exchange MTU as a client (once per connection): returns min(ours, the chip's)."""
        with self.radio._cond:
            self._check()
            if self._central_mtu_done:
                raise BleError("MTU already exchanged on this connection")
            self._central_mtu_done = True
            new = max(DEFAULT_MTU, min(int(mtu), self.radio.chip_mtu))
            self.mtu = new
        self.radio._send({"ev": "irq", "n": IRQ_MTU_EXCHANGED, "a": [self.handle, new]},
                         timeout, conn=self)
        return new

    def discover(self):
        """All primary services with their characteristics and descriptors (served by the stack)."""
        with self.radio._cond:
            self._check()
            self.services = list(self.radio._services)
            return self.services

    def service(self, uuid):
        u = normalize_uuid(uuid)
        for s in self.services or self.discover():
            if s.uuid == u:
                return s
        raise KeyError("no service %s" % u)

    def characteristic(self, uuid, service=None):
        if service is not None:
            return self.service(service).characteristic(uuid)
        u = normalize_uuid(uuid)
        for s in self.services or self.discover():
            for c in s.characteristics:
                if c.uuid == u:
                    return c
        raise KeyError("no characteristic %s" % u)

    def read(self, handle, timeout=None):
        """Read, then Read Blob while the answer fills MTU-1 bytes: the whole value, <= 512 bytes."""
        handle = _handle_of(handle)
        radio = self.radio
        out = b""
        while True:
            with radio._cond:
                self._check()
                attr = radio._attrs.get(handle)
                local = radio._local_read(self, handle, attr, len(out))
                chunk = self.mtu - 1
            if local is None:
                r = radio._send({"ev": "read", "a": [self.handle, handle]}, timeout, conn=self)
                if "e" in r:
                    raise AttError(r["e"], handle)
                value = bytes.fromhex(r["d"])
                if len(out) > len(value):
                    raise AttError(ATT_INVALID_OFFSET, handle)
                piece = value[len(out):len(out) + chunk]
            else:
                piece = local[:chunk]
            out += piece
            if len(piece) < chunk or len(out) >= ATT_MAX_LEN:
                return out[:ATT_MAX_LEN]

    def write(self, handle, data, response=True, timeout=None):
        """Write Request (Prepare/Execute when longer than MTU-3) or, response=False, Write Command."""
        handle = _handle_of(handle)
        data = bytes(data)
        radio = self.radio
        with radio._cond:
            self._check()
            attr = radio._attrs.get(handle)
            if not response and len(data) > self.mtu - 3:
                raise BleError("write without response of %d bytes does not fit MTU %d"
                               % (len(data), self.mtu))
            if len(data) > ATT_MAX_LEN:
                raise AttError(ATT_INVALID_ATTR_VALUE_LEN, handle)
            if radio._local_write(self, handle, attr, data, response):
                return
        msg = {"ev": "write", "a": [self.handle, handle], "d": data.hex()}
        if not response:  # a Write Command: nothing comes back, the chip handles it in order
            with radio._cond:
                self._check()
                radio._push(self._link, msg)
            return
        r = radio._send(msg, timeout, conn=self)
        if "e" in r:
            raise AttError(r["e"], handle)

    def subscribe(self, characteristic, indicate=False, timeout=None):
        """Write the characteristic's CCCD (0x0001 notify, 0x0002 indicate)."""
        self.write(self._cccd_of(characteristic), b"\x02\x00" if indicate else b"\x01\x00", timeout=timeout)

    def unsubscribe(self, characteristic, timeout=None):
        self.write(self._cccd_of(characteristic), b"\x00\x00", timeout=timeout)

    def wait_notification(self, handle=None, timeout=None):
        """The oldest notification/indication received (for `handle`, if given); consumes it."""
        handle = None if handle is None else _handle_of(handle)
        deadline = time.monotonic() + (DEFAULT_TIMEOUT if timeout is None else timeout)
        with self.radio._cond:
            while True:
                for i, n in enumerate(self.notifications):
                    if handle is None or n.handle == handle:
                        return self.notifications.pop(i)
                if not self.connected:
                    raise BleDisconnected(self.reason)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BleTimeout("no notification%s" % ("" if handle is None else " on handle %d" % handle))
                self.radio._cond.wait(left)

    # -- link --------------------------------------------------------------------------------------
    def disconnect(self, timeout=None):
        """Terminate the link; returns once the chip has run IRQ 2 (or `timeout` passed)."""
        with self.radio._cond:
            if not self.connected:
                return
            self.radio._drop(self, REASON_LOCAL_HOST_TERMINATED)
        try:
            self.radio._send(self.radio._disconnect_irq(self), timeout, link=self._link)
        except BleError:
            pass  # the link is down whether or not the chip's host noticed in time

    def wait_disconnected(self, timeout=None):
        """Block until the link is gone; returns the HCI reason."""
        if not self.disconnected.wait(DEFAULT_TIMEOUT if timeout is None else timeout):
            raise BleTimeout("still connected")
        return self.reason

    # -- helpers -----------------------------------------------------------------------------------
    def _check(self):
        if not self.connected:
            raise BleDisconnected(self.reason)

    def _cccd_of(self, characteristic):
        vh = _handle_of(characteristic)
        with self.radio._cond:
            for h, a in self.radio._attrs.items():
                if a.kind == "cccd" and a.char == vh:
                    return h
        raise BleError("handle %d has no CCCD (no NOTIFY/INDICATE flag)" % vh)


def _handle_of(x):
    if isinstance(x, Characteristic):
        return x.value_handle
    if isinstance(x, Descriptor):
        return x.handle
    return int(x)


class BleRadio:
    """The board's BLE radio (chip side via the air) plus a synchronous central for host code."""

    def __init__(self, board):
        self.board = board
        self._cond = threading.Condition()
        self._link = None
        self.central_mtu = 517             # what the phone answers when the chip starts an exchange
        self.central_addr = bytes([0x40 | (os.urandom(1)[0] & 0x3F)]) + os.urandom(5)  # static random
        self.central_addr_type = 1
        self._conns = {}
        self._clear()

    def _clear(self):
        # Everything NimBLE forgets when the stack (re)starts or the chip dies.
        self.active = False
        self.gap_name = DEFAULT_GAP_NAME
        self.chip_mtu = DEFAULT_CHIP_MTU
        self.config = {}
        self._adv = None                   # dict while advertising
        self._adv_data = b""
        self._resp_data = b""
        self._attrs = {}
        self._services = []
        self._layout([])

    # -- supervisor doors (board.py) -------------------------------------------------------------
    def reset(self):
        """The chip died or restarted: links drop (the central sees a timeout), state is gone."""
        with self._cond:
            for c in list(self._conns.values()):
                self._drop(c, REASON_CONNECTION_TIMEOUT)
            link, self._link = self._link, None
            self._clear()
            self._cond.notify_all()
        if link:
            link.close()

    def attach(self, sock, rfile):
        """The chip opened its events socket: read its replies until it closes."""
        link = _Link(sock)
        with self._cond:
            old, self._link = self._link, link
            self._cond.notify_all()
        if old:
            old.close()
        try:
            for line in rfile:
                msg = json.loads(line)
                with self._cond:
                    if msg.get("i") in link.waiting:
                        link.replies[msg["i"]] = msg
                        self._cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            link.close()  # also ends its writer thread
            with self._cond:
                if self._link is link:
                    self._link = None
                self._cond.notify_all()

    def handle(self, msg):
        """An air request from the chip's bluetooth module -> reply dict (OSError -> errno)."""
        op = msg["op"][4:]
        with self._cond:
            if op == "active":
                return self._op_active(msg)
            if op == "config":
                return self._op_config(msg)
            if op == "adv" and msg["iv"] is None:
                self._adv = None  # stopping needs no active stack
                return {}
            if not self.active:
                raise OSError(ENODEV, "BLE not active")
            fn = getattr(self, "_op_" + op, None)
            if fn is None:
                raise OSError(EINVAL, "unknown ble op")
            return fn(msg) or {}

    # -- what the chip asks ------------------------------------------------------------------------
    def _op_active(self, msg):
        if bool(msg["on"]) != self.active:
            for c in list(self._conns.values()):
                # NimBLE's stop terminates links; no IRQ reaches Python during the stop.
                self._drop(c, REASON_REMOTE_USER_TERMINATED)
            self._clear()
            self.active = bool(msg["on"])
            self._cond.notify_all()
        return {}

    def _op_config(self, msg):
        args, kw = msg.get("a") or [], msg.get("kw") or {}
        if not args and not kw:
            return {"ve": "must query one param"}
        if args:
            if kw:
                return {"ve": "can't specify pos and kw args"}
            if len(args) != 1:
                return {"ve": "must query one param"}
            k = args[0]
            if k == "gap_name":
                return {"x": self.gap_name.hex()}
            if k in ("mac", "mtu") and not self.active:
                raise OSError(ENODEV, "BLE not active")
            if k == "mac":
                return {"t": 0, "x": self.address_bytes().hex()}
            if k == "mtu":
                return {"v": self.chip_mtu}
            return {"ve": "unknown config param"}  # 'rxbuf' too: ESP32 builds use sync events
        for k, v in kw.items():
            if k == "gap_name":
                name = bytes.fromhex(v)
                if len(name) > GAP_NAME_MAX:
                    raise OSError(EINVAL, "name too long")
                self.gap_name = name
            elif k in ("mtu", "addr_mode"):
                if not self.active:
                    raise OSError(ENODEV, "BLE not active")
                if k == "mtu":
                    if not 23 <= int(v) <= 527:
                        raise OSError(EINVAL, "mtu out of range")
                    self.chip_mtu = int(v)
                else:
                    self.config[k] = v
            elif k in ("bond", "mitm", "io", "le_secure"):
                self.config[k] = v
            else:
                return {"ve": "unknown config param"}
        return {}

    def _op_adv(self, msg):
        # None keeps the data of the previous call (the controller still holds it).
        adv = self._adv_data if msg["adv"] is None else bytes.fromhex(msg["adv"])
        resp = self._resp_data if msg["resp"] is None else bytes.fromhex(msg["resp"])
        if len(adv) > ADV_MAX or len(resp) > ADV_MAX:
            raise OSError(EINVAL, "advertising data too long")
        self._adv_data, self._resp_data = adv, resp
        self._adv = {"iv": int(msg["iv"]), "conn": bool(msg["conn"])}
        self._cond.notify_all()

    def _op_disconnect(self, msg):
        c = self._conns.get(msg["c"])
        if c is None:
            return {"ok": False}          # ENOTCONN -> False, as gap_disconnect answers
        self._drop(c, REASON_REMOTE_USER_TERMINATED)
        self._push(c._link, self._disconnect_irq(c))  # IRQ 2 comes later, as on NimBLE
        return {"ok": True}

    def _op_services(self, msg):
        if self._adv is not None or self._conns:
            raise OSError(EBUSY, "advertising or connected")  # ble_gatts_reset: not mutable
        return {"h": self._layout(msg["s"])}

    def _op_notify(self, msg):
        h, data, ind = msg["h"], bytes.fromhex(msg["d"]), bool(msg.get("i"))
        if msg["c"] is None:
            # gatts_write(send_update=True): ble_gatts_chr_updated -> every subscribed central,
            # indication if it asked for one, else notification.
            for c in self._conns.values():
                bits = c.cccd.get(h, 0)
                if bits:
                    self._deliver(c, h, data, bool(bits & 2))
            return
        c = self._conns.get(msg["c"])
        if c is None:
            raise OSError(ENOTCONN, "not connected")
        self._deliver(c, h, data, ind)

    def _op_mtu(self, msg):
        c = self._conns.get(msg["c"])
        if c is None:
            raise OSError(ENOTCONN, "not connected")
        if c._device_mtu_done:
            raise OSError(EALREADY, "MTU exchange already done")
        c._device_mtu_done = True
        c.mtu = max(DEFAULT_MTU, min(self.chip_mtu, self.central_mtu))
        self._push(c._link, {"ev": "irq", "n": IRQ_MTU_EXCHANGED, "a": [c.handle, c.mtu]})

    # -- GATT layout -----------------------------------------------------------------------------
    def _layout(self, defs):
        """Assign handles as NimBLE does: GAP and GATT services first, then per characteristic
        declaration, value, CCCD (only with NOTIFY/INDICATE; not returned to Python), descriptors.
        Returns the handles gatts_register_services returns: per service, each value handle
        followed by its descriptors' handles."""
        attrs, services, result = {}, [], []
        h = 1
        gap = [(normalize_uuid(0x1800), [
            (normalize_uuid(0x2A00), F_READ, [], lambda: self.gap_name),
            (normalize_uuid(0x2A01), F_READ, [], lambda: b"\x00\x00")]),
            (normalize_uuid(0x1801), [(normalize_uuid(0x2A05), F_INDICATE, [], lambda: b"")])]
        user = [(uuid_from_le(bytes.fromhex(s[0])),
                 [(uuid_from_le(bytes.fromhex(c[0])), int(c[1]),
                   [(uuid_from_le(bytes.fromhex(d[0])), int(d[1])) for d in c[2]], None)
                  for c in s[1]]) for s in defs]
        for n, (suuid, chars) in enumerate(gap + user):
            start = h
            attrs[h] = _Attr("service", suuid)
            h += 1
            handles, cs = [], []
            for cuuid, flags, descs, static in chars:
                decl = h
                attrs[h] = _Attr("decl", cuuid, flags)
                vh = h + 1
                attrs[vh] = _Attr("value", cuuid, flags, vh, static)
                h += 2
                handles.append(vh)
                ds = []
                if flags & (F_NOTIFY | F_INDICATE):
                    attrs[h] = _Attr("cccd", normalize_uuid(0x2902), F_READ | F_WRITE, vh)
                    ds.append(Descriptor(normalize_uuid(0x2902), h))
                    h += 1
                for duuid, dflags in descs:
                    attrs[h] = _Attr("desc", duuid, dflags, vh)
                    ds.append(Descriptor(duuid, h))
                    handles.append(h)
                    h += 1
                cs.append(Characteristic(cuuid, decl, vh, flags & 0xFF, tuple(ds)))
            services.append(Service(suuid, start, h - 1, tuple(cs)))
            if n >= len(gap):
                result.append(handles)
        self._attrs, self._services = attrs, services
        return result

    def _local_read(self, conn, handle, attr, offset):
        """What the stack answers itself (None: ask the chip). Raises AttError on a refusal."""
        if attr is None:
            raise AttError(ATT_INVALID_HANDLE, handle)
        if attr.kind == "service":
            value = _le(attr.uuid)
        elif attr.kind == "decl":
            value = bytes([attr.flags & 0xFF]) + (handle + 1).to_bytes(2, "little") + _le(attr.uuid)
        elif attr.kind == "cccd":
            value = conn.cccd.get(attr.char, 0).to_bytes(2, "little")
        else:
            if not attr.flags & F_READ:
                raise AttError(ATT_READ_NOT_PERMITTED, handle)
            if attr.kind == "value" and attr.flags & (F_READ_ENC | F_READ_AUTHEN):
                raise AttError(ATT_INSUFFICIENT_AUTHEN, handle)  # the link is never paired here
            if attr.static is None:
                return None
            value = attr.static()
        if offset > len(value):
            raise AttError(ATT_INVALID_OFFSET, handle)
        return value[offset:]

    def _local_write(self, conn, handle, attr, data, response):
        """Checks (raising AttError) and the writes the stack handles itself; True if handled."""
        if attr is None:
            raise AttError(ATT_INVALID_HANDLE, handle)
        if attr.kind == "cccd":
            if len(data) != 2:
                raise AttError(ATT_INVALID_ATTR_VALUE_LEN, handle)
            conn.cccd[attr.char] = int.from_bytes(data, "little")
            return True
        if attr.kind not in ("value", "desc") or attr.static is not None:
            raise AttError(ATT_WRITE_NOT_PERMITTED, handle)
        if attr.kind == "desc":
            allowed = attr.flags & (F_WRITE | F_WRITE_NO_RESPONSE)
        else:
            allowed = attr.flags & (F_WRITE if response else F_WRITE_NO_RESPONSE)
        if not allowed:
            raise AttError(ATT_WRITE_NOT_PERMITTED, handle)
        if attr.kind == "value" and attr.flags & (F_WRITE_ENC | F_WRITE_AUTHEN):
            raise AttError(ATT_INSUFFICIENT_AUTHEN, handle)
        return False

    # -- the central's API -----------------------------------------------------------------------
    def address_bytes(self):
        """The chip's Bluetooth address: base MAC + 2 in the last byte, as ESP-IDF derives it."""
        mac = bytearray(self.board.mac)
        mac[5] = (mac[5] + 2) & 0xFF
        return bytes(mac)

    @property
    def address(self):
        return ":".join("%02X" % b for b in self.address_bytes())

    @property
    def advertising(self):
        """The current Advertisement, or None."""
        with self._cond:
            return self._advertisement()

    def _advertisement(self):
        if self._adv is None:
            return None
        a, r = parse_ad(self._adv_data), parse_ad(self._resp_data)
        return Advertisement(
            addr=self.address, addr_type=0, name=r["name"] or a["name"],
            adv_data=self._adv_data, resp_data=self._resp_data,
            service_uuids=a["service_uuids"] + [u for u in r["service_uuids"] if u not in a["service_uuids"]],
            manufacturer_data={**a["manufacturer_data"], **r["manufacturer_data"]},
            service_data={**a["service_data"], **r["service_data"]},
            flags=a["flags"], connectable=self._adv["conn"], interval_us=self._adv["iv"])

    def scan(self, timeout=1.0, name_prefix=None):
        """Active scan: the board's advertisement (with its scan response), once it is seen.

        Returns as soon as the board advertises (matching `name_prefix`), else [] after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                adv = self._advertisement()
                if adv and (name_prefix is None or (adv.name or "").lower().startswith(name_prefix.lower())):
                    return [adv]
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._cond.wait(left)

    def connect(self, timeout=None):
        """Connect to the board once it advertises connectably; returns after the chip ran IRQ 1."""
        timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (self._adv and self._adv["conn"] and self._link and not self._link.closed):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BleTimeout("the board is not advertising connectably (or its firmware "
                                     "never started asyncio with BLE active)")
                self._cond.wait(left)
            if len(self._conns) >= MAX_CONNECTIONS:
                raise BleError("the peripheral has no free connection")
            handle = min(set(range(MAX_CONNECTIONS)) - set(self._conns))
            conn = Connection(self, handle, self._link, self.address)
            self._conns[handle] = conn
            self._adv = None  # a connection ends connectable advertising (NimBLE)
            self._cond.notify_all()
        try:
            self._send({"ev": "irq", "n": IRQ_CENTRAL_CONNECT, "a": [handle, self.central_addr_type],
                        "addr": self.central_addr.hex()}, max(0.0, deadline - time.monotonic()), conn=conn)
        except BleError:
            with self._cond:
                self._drop(conn, REASON_CONNECTION_TIMEOUT)
            raise
        return conn

    @property
    def connections(self):
        with self._cond:
            return list(self._conns.values())

    # -- plumbing --------------------------------------------------------------------------------
    def _drop(self, conn, reason):
        """Under the lock: the link is gone for the central."""
        if not conn.connected:
            return
        conn.connected = False
        conn.reason = reason
        if self._conns.get(conn.handle) is conn:
            del self._conns[conn.handle]
        conn.disconnected.set()
        self._cond.notify_all()
        if conn.on_disconnect:
            try:
                conn.on_disconnect(reason)
            except Exception:
                pass

    def _disconnect_irq(self, conn):
        return {"ev": "irq", "n": IRQ_CENTRAL_DISCONNECT, "a": [conn.handle, self.central_addr_type],
                "addr": self.central_addr.hex()}

    def _deliver(self, conn, handle, data, indication):
        # The stack truncates to what one PDU carries (MTU-3).
        conn.notifications.append(Notification(handle, data[:conn.mtu - 3], indication))
        self._cond.notify_all()
        if indication:  # the central's stack confirms at once; IRQ 20 follows on the chip
            self._push(conn._link, {"ev": "irq", "n": IRQ_GATTS_INDICATE_DONE, "a": [conn.handle, handle, 0]})

    def _push(self, link, msg):
        """Under the lock: queue a message to the chip without waiting for its reply."""
        if link is None or link.closed or link is not self._link:
            return
        link.next_id += 1
        msg["i"] = link.next_id
        link.send(msg)

    def _send(self, msg, timeout=None, conn=None, link=None):
        """Send a request to the chip and wait for its reply (its IRQ handler has then run)."""
        timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._cond:
            if conn is not None:
                conn._check()
                link = conn._link
            if link is None or link.closed or link is not self._link:
                raise BleDisconnected(REASON_CONNECTION_TIMEOUT, "the chip's BLE host is gone")
            self._push(link, msg)
            i = msg["i"]
            link.waiting.add(i)
            try:
                while i not in link.replies:
                    # The chip answers every request while it lives, even one whose handler
                    # ended the link (the ATT response is queued before the terminate).
                    if link.closed or link is not self._link:
                        raise BleDisconnected(REASON_CONNECTION_TIMEOUT, "the chip went away")
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                else:
                    return link.replies.pop(i)
            finally:
                link.waiting.discard(i)
                link.replies.pop(i, None)
            # An ATT transaction timeout leaves the bearer unusable: the central drops the link.
            if conn is not None and conn.connected:
                self._drop(conn, REASON_LOCAL_HOST_TERMINATED)
                self._push(link, self._disconnect_irq(conn))
        raise BleTimeout("the chip did not answer %s within %.1f s (is its asyncio loop running?)"
                         % (msg.get("ev"), timeout))
