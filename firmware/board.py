# The hardware facade: the only firmware module that imports machine, network,
# bluetooth and esp32 (but for netclock.py, which sets the RTC, loaded only for that),
# so the rest of the firmware reads as application logic and the pin map of a board
# lives in one place.
import gc

import bluetooth
import machine
import network
from micropython import const

_PIN_BUTTON = const(0)   # BOOT button on ESP32 dev kits, active low
_PIN_LED = const(2)      # blue on-board LED on most ESP32 dev kits
_PIN_TEMP = const(34)    # analog temperature sensor (TMP36: 0.5 V at 0 degC, 10 mV/degC)

_led = None
_button = None
_sta = None
_ap = None

# network.WLAN.status() values of the ESP32 port (ports/esp32/modnetwork_globals.h).
STAT_IDLE = const(1000)
STAT_CONNECTING = const(1001)
STAT_GOT_IP = const(1010)


def node_id():
    """The node's identity: its factory base MAC (eFuse), as 12 upper-case hex digits."""
    return "".join("%02X" % b for b in machine.unique_id())


def reset_cause():
    return machine.reset_cause()


def heap():
    """(free, allocated) bytes of the MicroPython heap after a collection."""
    gc.collect()
    return gc.mem_free(), gc.mem_alloc()


def out_of_memory(e):
    """True for the errors of a full heap: a MemoryError (the GC heap), or ENOMEM from the IDF's
    (mbedTLS, lwIP and the Wi-Fi driver take from it)."""
    return isinstance(e, MemoryError) or (isinstance(e, OSError) and e.errno == 12)


def memory():
    """Where the RAM is, for a log line: the GC heap's size and free bytes, and the IDF heap's
    free bytes and largest block (what a TLS session's buffers must fit in)."""
    import esp32
    gc.collect()
    idf = esp32.idf_heap_info(esp32.HEAP_DATA)
    largest = max(r[2] for r in idf)
    free = gc.mem_free() - largest      # mem_free() counts the block the heap could grow into
    return "GC heap %d B, %d free; IDF heap %d B free, largest block %d B" % (
        gc.mem_alloc() + free, free, sum(r[1] for r in idf), largest)


def led(on):
    global _led
    if _led is None:
        _led = machine.Pin(_PIN_LED, machine.Pin.OUT)
    _led.value(1 if on else 0)


def button_pressed():
    global _button
    if _button is None:
        _button = machine.Pin(_PIN_BUTTON, machine.Pin.IN, machine.Pin.PULL_UP)
    return _button.value() == 0


def temperature_c():
    adc = machine.ADC(machine.Pin(_PIN_TEMP), atten=machine.ADC.ATTN_11DB)
    return (adc.read_uv() / 1000000 - 0.5) * 100


def sta():
    """The Wi-Fi station interface, active."""
    global _sta
    if _sta is None:
        _sta = network.WLAN(network.WLAN.IF_STA)
    if not _sta.active():
        _sta.active(True)
    return _sta


def softap(essid=None, password=None):
    """The SoftAP interface: started with essid/password, stopped with essid=None."""
    global _ap
    if _ap is None:
        _ap = network.WLAN(network.WLAN.IF_AP)
    if essid is None:
        _ap.active(False)
        return _ap
    _ap.active(True)
    if password:
        _ap.config(essid=essid, password=password, authmode=3)  # WPA2-PSK
    else:
        _ap.config(essid=essid, authmode=0)
    return _ap


def ble():
    """The BLE radio (a singleton), active."""
    b = bluetooth.BLE()
    if not b.active():
        b.active(True)
    return b


def ble_off():
    bluetooth.BLE().active(False)


UUID = bluetooth.UUID
FLAG_READ = bluetooth.FLAG_READ
FLAG_WRITE = bluetooth.FLAG_WRITE


def reset():
    machine.reset()


def boot_note(note=None):
    """A word for the next boot, kept in RTC memory across a reset (lost on power-off):
    boot_note(b"...") sets it, boot_note() returns it and clears it. Only this firmware's
    notes ("roost:" prefix) are taken; anything else in RTC memory is left alone."""
    rtc = machine.RTC()
    if note is not None:
        rtc.memory(b"roost:" + note)
        return None
    got = bytes(rtc.memory())
    if not got.startswith(b"roost:"):
        return None
    rtc.memory(b"")
    return got[6:]
