# Protocomm over BLE GATT, as Espressif's phone apps and esp_prov expect it: one
# service, one READ|WRITE characteristic per endpoint named by a 0x2901 descriptor,
# write the request then read the response. One protocomm session per connection.
#
# Requests are answered inside the GATTS_WRITE IRQ, as IDF's protocomm answers them in
# NimBLE's GATT access callback: NimBLE delivers the write before the ATT write response,
# so the response stored here is what the client's next read sees (spec: micropython-esp32
# 4.2). Nothing can make that read wait for the main task: on an ESP32 the handler holds
# the GIL, and waiting would mean giving it up, which lets the main task collect this
# handler's frames. So the handler must be short and polite (docs/simulator.md, "BLE IRQ
# context"): no printing (log.later), nothing that blocks or gives up the GIL, a shallow
# stack; the endpoints queue their slow work for the main task (firmware/prov/endpoints.py).
# A refused request, or any exception at all, leaves an empty value and the following read
# is denied with an ATT error, which clients take as a dead session.
from micropython import const

import log
from firmware import board
from firmware.prov.errors import ProvError

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_GATTS_READ_REQUEST = const(4)
_IRQ_MTU_EXCHANGED = const(21)
_ATT_UNLIKELY_ERROR = const(0x0E)
_MAX_VALUE = const(512)          # ATT maximum attribute length: requests arrive whole up to this
_MTU = const(517)                # room for a 512-byte value in one read
_ADV_INTERVAL_US = const(160000)  # 0x100 * 0.625 ms, as IDF advertises
# The RainMaker/IDF example service; esp_prov computes the same UUIDs when descriptors fail.
_SERVICE = "021a9004-0382-4aea-bff4-6b3f1c5adfb4"
_CHAR = "021a%04x-0382-4aea-bff4-6b3f1c5adfb4"


def _adv_payload(service):
    # Flags (LE General Discoverable, BR/EDR not supported) + complete list of 128-bit UUIDs.
    return b"\x02\x01\x06\x11\x07" + bytes(service)


class BleTransport:
    def __init__(self, pc, name):
        self._pc = pc
        self.name = name
        self._ble = None
        self._by_handle = {}      # value handle -> endpoint name
        self._denied = set()      # handles whose last request was refused
        self._session = None
        self._conn = None
        self.open = False

    def start(self):
        ble = board.ble()
        ble.config(gap_name=self.name, mtu=_MTU)
        ble.irq(self._irq)
        service = board.UUID(_SERVICE)
        eps = self._pc.endpoints()
        chars = tuple((board.UUID(_CHAR % uid), board.FLAG_READ | board.FLAG_WRITE,
                       ((board.UUID(0x2901), board.FLAG_READ),)) for _, uid in eps)
        ((*handles,),) = ble.gatts_register_services(((service, chars),))
        for i, (name, _) in enumerate(eps):
            value, desc = handles[2 * i], handles[2 * i + 1]
            ble.gatts_write(desc, name.encode())
            ble.gatts_set_buffer(value, _MAX_VALUE)
            self._by_handle[value] = name
        self._ble = ble
        self._adv = _adv_payload(service)
        self._resp = bytes((len(self.name) + 1, 0x09)) + self.name.encode()
        self.open = True
        self._advertise()
        log.info("prov", "BLE: advertising as %s" % self.name)

    def stop(self):
        self.open = False
        if self._ble:
            self._ble.gap_advertise(None)
            if self._conn is not None:
                self._ble.gap_disconnect(self._conn)
            # The radio's IRQ hook is the last reference to this transport (and through it to
            # every provisioning module): drop it, or unloading them frees nothing.
            self._ble.irq(None)
            board.ble_off()
            self._ble = None

    def _advertise(self):
        self._ble.gap_advertise(_ADV_INTERVAL_US, adv_data=self._adv, resp_data=self._resp)

    def _irq(self, event, data):
        # On the NimBLE task (see the top of this file). An exception escaping here would
        # disable the handler for good (modbluetooth.c): none does.
        try:
            return self._event(event, data)
        except Exception as e:
            log.later(log.ERROR, "prov", "BLE: event %d failed: %s" % (event, log.why(e)))
            return _ATT_UNLIKELY_ERROR if event == _IRQ_GATTS_READ_REQUEST else 0

    def _event(self, event, data):
        if event == _IRQ_GATTS_WRITE:
            self._write(data[0], data[1])
        elif event == _IRQ_GATTS_READ_REQUEST:
            if data[1] in self._denied:
                self._denied.discard(data[1])
                return _ATT_UNLIKELY_ERROR
        elif event == _IRQ_CENTRAL_CONNECT:
            self._conn = data[0]
            self._session = self._pc.open_session()
            log.later(log.INFO, "prov", "BLE: client connected")
        elif event == _IRQ_CENTRAL_DISCONNECT:
            self._conn = None
            if self._session:
                self._session.close()
                self._session = None
            for h in self._by_handle:   # no response of this session may leak to the next
                self._ble.gatts_write(h, b"")
            self._denied.clear()
            log.later(log.INFO, "prov", "BLE: client disconnected")
            if self.open:
                self._advertise()
        elif event == _IRQ_MTU_EXCHANGED:
            log.later(log.DEBUG, "prov", "BLE: MTU %d" % data[1])
        return 0

    def _write(self, conn, handle):
        endpoint = self._by_handle.get(handle)
        request = self._ble.gatts_read(handle)
        if endpoint is None or not request or conn != self._conn:
            return
        try:
            response = self._session.handle(endpoint, request)
            self._denied.discard(handle)
        except Exception as e:      # ProvError: refused; anything else: refused too, and said
            log.later(log.WARNING, "prov", "BLE: %s refused: %s" % (endpoint, e if isinstance(e, ProvError)
                                                                   else log.why(e)))
            response = b""
            self._denied.add(handle)
        self._ble.gatts_write(handle, response)
