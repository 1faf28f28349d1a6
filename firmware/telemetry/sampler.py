# Takes a reading every `telemetry.interval_s` (while `telemetry.enabled`) and stores it in
# the outbox, with its sequence number and time. Runs from the first boot with a network
# configured, online or not: what it stores waits in the outbox until a sink delivers it.
#
# Flush policy (docs/telemetry.md): a reading is appended to flash at once when readings are
# 10 s or more apart; faster readings are batched, at most 16 or 10 s at a time, so flash
# wear stays bounded. Readings still in the batch when the power goes are lost: they were
# never stored (nor sent: sinks only send what is on flash).
import asyncio
import time

from micropython import const

import log
from epoch import UNIX_OFFSET
from firmware import board

_BATCH = const(16)
_FLUSH_MS = const(10000)
_SYNCED_AFTER = 1704067200 - UNIX_OFFSET   # 2024-01-01: a clock before that was never set


def clock():
    """(seconds, synced): seconds since the port's epoch (2000 on an ESP32), if the clock
    was set from the network; an unset ESP32 clock starts at 2000-01-01 on every boot."""
    t = int(time.time())
    return t, t >= _SYNCED_AFTER


class Sampler:
    def __init__(self, store, outbox):
        self.store = store
        self.outbox = outbox
        self.stored = asyncio.Event()   # set when readings reached flash: the sinks wake
        self.wake = asyncio.Event()     # set when the settings changed (a command)
        self._up_ms = 0
        self._last = time.ticks_ms()
        self._oldest = None             # ticks of the oldest reading still in the batch
        self._boot = None               # epoch seconds of this boot, once the clock is set
        self._last_stamp = None         # the time of the last reading (seconds)

    def uptime(self):
        """Seconds since boot, without the ~12-day wrap of ticks_ms."""
        now = time.ticks_ms()
        self._up_ms += time.ticks_diff(now, self._last)
        self._last = now
        return self._up_ms // 1000

    def boot_time(self):
        """Epoch seconds of this boot once the clock was set from the network, else None.
        Fixed from then on, so a reading's resolved time is the same every time it is sent."""
        if self._boot is None:
            t, synced = clock()
            if synced:
                self._boot = t - self.uptime()
        return self._boot

    async def run(self):
        # After a quick reset the clock runs on, and the last reading before it may be from this
        # very second: one more at that time would clash where times are unique (ThingSpeak's
        # created_at refuses it). A second's wait makes every reading of this boot later.
        await asyncio.sleep_ms(1000)
        interval_ms = 60000
        while True:
            try:
                s = self.store.get("telemetry")
                interval_ms = max(1, s["interval_s"]) * 1000
                if s["enabled"]:
                    self.sample(interval_ms)
                elif self.outbox.buffered():
                    self.flush()
            except Exception as e:      # no heap, a bug: this round's reading, never the task
                log.error("telemetry", "sampling failed (%s)" % log.why(e))
            try:
                await asyncio.wait_for_ms(self.wake.wait(), interval_ms)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()

    def sample(self, interval_ms=0):
        t, synced = clock()
        stamp = t if synced else self.uptime()
        if stamp == self._last_stamp:
            # A command woke us within the second of the last reading: two readings at one
            # time would clash where times are unique (ThingSpeak's created_at).
            return None
        try:
            value = board.temperature_c()
        except Exception as e:      # a sensor fault costs a reading, never the task
            log.warning("telemetry", "sensor read failed (%s)" % log.why(e))
            return None
        if value != value or value in (float("inf"), float("-inf")):
            # NaN would make the whole SenML batch it rides in unacceptable to the cloud.
            log.warning("telemetry", "sensor gave no number; reading skipped")
            return None
        self._last_stamp = stamp
        seq = self.outbox.add(value, stamp, synced)
        if self._oldest is None:
            self._oldest = time.ticks_ms()
        if (interval_ms >= _FLUSH_MS or self.outbox.buffered() >= _BATCH
                or time.ticks_diff(time.ticks_ms(), self._oldest) >= _FLUSH_MS):
            self.flush()
        return seq

    def flush(self):
        try:
            self.outbox.flush()
        except (OSError, MemoryError) as e:     # flash full or failing, no heap: keep the rest
            log.error("telemetry", "cannot store readings (%s)" % log.why(e))
            return
        self._oldest = None
        self.stored.set()
