# `bluetooth` for the simulated board: the peripheral side of MicroPython's
# NimBLE binding (extmod/modbluetooth.c + nimble/modbluetooth_nimble.c).
# The attribute values live here, in this chip's heap, as they do on a real
# ESP32 (the gatts_db); everything the air needs to know (advertising, the
# GATT layout, notifications) goes to the supervisor (tools/sim/ble.py), which
# plays the phone. Checks the supervisor can make (is BLE active, data lengths,
# EBUSY while advertising) are made there to keep this module small: it costs
# heap on the simulated chip.
#
# The central's operations (connect, write, read, MTU exchange) arrive on a
# second socket, read by an asyncio task: on a real chip the NimBLE task
# preempts the firmware, here the firmware must be running asyncio for IRQs to
# be delivered. Each operation is handled completely (buffer updated, IRQ
# handler called) before the reply goes back, so a value the handler stores
# with gatts_write() is what the central's next read sees, as on NimBLE where
# GATTS_WRITE runs before the ATT Write Response is sent.
import json
import sys

import _air

from micropython import const

# Only these five are exported by the real module; firmware must define the
# others (FLAG_READ_ENCRYPTED = 0x0200 ...) itself, as MicroPython's docs say.
FLAG_READ = const(0x0002)
FLAG_WRITE_NO_RESPONSE = const(0x0004)
FLAG_WRITE = const(0x0008)
FLAG_NOTIFY = const(0x0010)
FLAG_INDICATE = const(0x0020)

_ATTR_LEN = const(20)  # MP_BLUETOOTH_DEFAULT_ATTR_LEN on standard ESP32 builds

_on = False
_handler = None
_link = None  # the events socket; opened once per boot
_db = {}  # handle -> [value bytes, capacity, append]


class UUID:
    def __init__(self, v):
        if isinstance(v, int):
            if v >> 16:
                raise ValueError("invalid UUID")
            v = bytes((v & 0xFF, v >> 8))
        # bytes(UUID) works too (a UUID iterates its bytes), so UUID(uuid) copies.
        b = bytes(v.encode() if isinstance(v, str) else v)
        if len(b) not in (2, 4, 16):
            # Text such as '6E400001-B5A3-...': MSB first, stored LSB first.
            b = bytes(reversed(bytes.fromhex(b.replace(b"-", b""))))
            if len(b) != 16:
                raise ValueError("invalid UUID")
        self._b = b

    def __iter__(self):
        # bytes(uuid) -> LSB-first bytes, like the real type's buffer protocol.
        return iter(self._b)

    def __eq__(self, o):
        return isinstance(o, UUID) and o._b == self._b

    def __hash__(self):
        return hash(self._b)

    def __repr__(self):
        h = bytes(reversed(self._b)).hex()
        if len(h) < 9:
            return "UUID(0x%s)" % h
        return "UUID('%s-%s-%s-%s-%s')" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def _entry(h):
    if not _on:
        raise OSError(19)  # ENODEV: BLE not active
    try:
        return _db[h]
    except KeyError:
        raise OSError(22)  # EINVAL, as mp_bluetooth_gatts_db_* answer


def _irq(event, data):
    if _handler:
        try:
            return _handler(event, data)
        except Exception as e:
            print("Unhandled exception in IRQ callback handler")
            sys.print_exception(e)


async def _serve(reader):
    global _link
    while True:
        line = await reader.readline()
        if not line:
            _link = None  # the supervisor is gone; the chip is about to be too
            return
        m = json.loads(line)
        a = m["a"]
        r = {"i": m["i"]}
        try:
            if m["ev"] == "write":
                e = _db[a[1]]
                d = bytes.fromhex(m["d"])
                # Silent truncation to the buffer (modbluetooth_nimble.c has a TODO
                # to fail with "insufficient resources"); append mode accumulates.
                e[0] = (e[0] + d)[:e[1]] if e[2] else d[:e[1]]
                _irq(3, tuple(a))
            elif m["ev"] == "read":
                # NimBLE calls the access callback for every Read and Read Blob PDU,
                # giving Python the chance to deny (non-zero = the ATT error code,
                # True counts as 1) or to refresh the value with gatts_write first.
                e = _irq(4, tuple(a))
                if e is True or (isinstance(e, int) and e):
                    r["e"] = int(e)
                else:
                    r["d"] = _db[a[1]][0].hex()
            else:  # connect, disconnect, MTU exchanged, indicate done
                if "addr" in m:
                    a.append(memoryview(bytes.fromhex(m["addr"])))
                _irq(m["n"], tuple(a))
        except KeyError:
            r["e"] = 1  # invalid handle: the services were replaced meanwhile
        _link.write(json.dumps(r).encode() + b"\n")


def _hex(b):
    return None if b is None else bytes(b).hex()


def _uuid(u):
    if not isinstance(u, UUID):
        raise ValueError("invalid UUID")
    return u._b.hex()


class BLE:
    _self = None

    def __new__(cls):
        if BLE._self is None:
            BLE._self = object.__new__(cls)
        return BLE._self

    def active(self, v=None):
        global _on, _link
        if v is not None and bool(v) != _on:
            # The supervisor forgets name, MTU and services, as NimBLE's restart does.
            _air.call("ble.active", on=bool(v))
            _on = bool(v)
            _db.clear()
            if _on and _link is None:
                import asyncio  # frozen in the port: importable after the host fs is gone

                _link = _air.connect_events("ble")
                # Starts with the firmware's asyncio loop (create_task works before).
                asyncio.create_task(_serve(asyncio.StreamReader(_link)))
        return _on

    def config(self, *a, **kw):
        # The supervisor keeps the values and checks them (EINVAL, ENODEV, ...).
        if "gap_name" in kw:
            n = kw["gap_name"]
            kw["gap_name"] = _hex(n.encode() if isinstance(n, str) else n)
        r = _air.call("ble.config", a=a, kw=kw)
        if "ve" in r:
            raise ValueError(r["ve"])
        if "x" in r:  # bytes travel as hex: gap_name, or mac as (addr_type, addr)
            b = bytes.fromhex(r["x"])
            return (r["t"], b) if "t" in r else b
        return r.get("v")

    def irq(self, handler):
        global _handler
        if handler is not None and not callable(handler):
            raise ValueError("invalid handler")
        _handler = handler

    def gap_advertise(self, interval_us=500000, adv_data=None, resp_data=None, connectable=True):
        # None data means "the data of the previous call", which the supervisor keeps.
        _air.call("ble.adv", iv=interval_us, adv=_hex(adv_data), resp=_hex(resp_data),
                  conn=bool(connectable))

    def gap_disconnect(self, conn):
        return _air.call("ble.disconnect", c=conn)["ok"]

    def gatts_register_services(self, services):
        defs = []
        for s in services:
            chars = []
            for c in s[1]:
                ds = []
                for d in (c[2] if len(c) > 2 else ()):
                    ds.append((_uuid(d[0]), d[1]))
                chars.append((_uuid(c[0]), c[1], ds))
            defs.append((_uuid(s[0]), chars))
        r = _air.call("ble.services", s=defs)["h"]
        _db.clear()
        for i in range(len(r)):
            for h in r[i]:
                _db[h] = [b"", _ATTR_LEN, False]
            r[i] = tuple(r[i])
        return tuple(r)

    def gatts_read(self, h):
        e = _entry(h)
        v = e[0]
        if e[2]:
            e[0] = b""  # append mode: a read consumes what accumulated
        return v

    def gatts_write(self, h, data, send_update=False):
        e = _entry(h)
        e[0] = bytes(data)
        e[1] = max(e[1], len(e[0]))  # a local write grows the buffer (gatts_db_write)
        if send_update:  # to every central subscribed through the CCCD
            _air.call("ble.notify", c=None, h=h, d=e[0].hex())

    def gatts_set_buffer(self, h, n, append=False):
        _entry(h)[:] = [b"", n, bool(append)]  # gatts_db_resize drops the value

    def gatts_notify(self, conn, h, data=None, _ind=0):
        d = _entry(h)[0] if data is None else bytes(data)
        _air.call("ble.notify", c=conn, h=h, d=d.hex(), i=_ind)

    def gatts_indicate(self, conn, h, data=None):
        self.gatts_notify(conn, h, data, 1)

    def gattc_exchange_mtu(self, conn):
        _air.call("ble.mtu", c=conn)
