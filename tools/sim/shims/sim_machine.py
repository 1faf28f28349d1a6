# `machine` for the simulated board: the unix port's own machine module plus the
# ESP32 pieces the firmware uses. Anything physical (pins, sensor, reset) is asked
# of the supervisor, which owns the world and the power switch.
import machine as _unix
import os
import time

import _air
import _simchip

from micropython import const

PWRON_RESET = const(1)
HARD_RESET = const(2)
WDT_RESET = const(3)
DEEPSLEEP_RESET = const(4)
SOFT_RESET = const(5)

Signal = _unix.Signal
idle = _unix.idle
time_pulse_us = _unix.time_pulse_us
mem8 = _unix.mem8
mem16 = _unix.mem16
mem32 = _unix.mem32

_uid = None


def unique_id():
    global _uid
    if _uid is None:
        _uid = bytes.fromhex(os.getenv("ROOST_MAC"))
    return _uid


def reset_cause():
    return int(os.getenv("ROOST_RESET_CAUSE") or PWRON_RESET)


def wake_reason():
    return 0


def freq(hz=None):
    return 240000000 if hz is None else None


def _restart(kind, **kw):
    # The supervisor kills this process and starts the chip again; never returns.
    _air.call("power", kind=kind, **kw)
    while True:
        time.sleep(1)


def reset():
    _restart("hard")


def soft_reset():
    _restart("soft")


def deepsleep(ms=0):
    _restart("deepsleep", ms=ms)


def lightsleep(ms=0):
    time.sleep_ms(ms)


class Pin:
    IN = const(1)
    OUT = const(3)
    OPEN_DRAIN = const(7)
    PULL_UP = const(2)
    PULL_DOWN = const(1)
    IRQ_RISING = const(1)
    IRQ_FALLING = const(2)

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self._id = id
        self._mode = mode
        self._v = 0
        if value is not None:
            self.value(value)

    def init(self, mode=-1, pull=-1, value=None):
        self._mode = mode
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            if self._mode == Pin.OUT:
                return self._v
            return _air.call("pin", pin=self._id)["value"]
        self._v = 1 if v else 0
        _air.call("pin", pin=self._id, value=self._v)

    __call__ = value

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3):
        return None


class ADC:
    ATTN_0DB = const(0)
    ATTN_11DB = const(3)

    def __init__(self, pin, atten=3):
        self._pin = pin.id if hasattr(pin, "id") else getattr(pin, "_id", pin)

    def atten(self, a):
        pass

    def read_u16(self):
        return _air.call("adc", pin=self._pin)["u16"]

    def read_uv(self):
        return _air.call("adc", pin=self._pin)["uv"]

    def read(self):
        return self.read_u16() >> 4


class RTC:
    # The RTC keeps counting across resets and deep sleep, from 2000-01-01 at power on
    # (the chip's clock: esp32_clock.c); its slow memory survives soft reset and deep sleep,
    # not a power cut.
    def datetime(self, dt=None):
        if dt is None:
            t = time.localtime()
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], time.time_ns() // 1000 % 1000000)
        # (year, month, day, weekday, hours, minutes, seconds, subseconds): weekday is ignored,
        # as machine_rtc.c ignores it.
        secs = time.mktime((dt[0], dt[1], dt[2], dt[4], dt[5], dt[6], 0, 0))
        base = _simchip.set_clock(secs, dt[7] if len(dt) > 7 else 0)
        _air.call("clock", base_us=str(base))

    def init(self, dt):
        self.datetime(dt)

    def memory(self, data=None):
        if data is None:
            return bytes.fromhex(_air.call("rtc_memory")["data"])
        if len(data) > 2048:
            raise ValueError("data too large")
        _air.call("rtc_memory", data=bytes(data).hex())


class WDT:
    def __init__(self, id=0, timeout=5000):
        self._timeout = timeout
        _air.call("wdt", timeout=timeout)

    def feed(self):
        _air.call("wdt", feed=1)
