# The firmware's live GC heap over time, for heap budgets (tests/sim/lifecycle.py). Only when
# the supervisor sets ROOST_HEAPWATCH to a host file: rom.py opens it before the host
# filesystem goes away.
#
# A sample is gc.mem_alloc() right after a collection, less what the simulator itself holds
# (_air.BASELINE): what the firmware keeps alive at that instant. Samples are taken at every
# asyncio scheduler step and every air call (Wi-Fi, BLE, NVS...), so everything held across an
# await or an I/O is seen; a temporary that lives and dies inside one synchronous stretch is
# not (the smallest passing heap, found by bisection, covers those and fragmentation too).
# A line "ticks_ms bytes" is written on each new high and whenever the heap moved by _STEP,
# with the same ticks_ms the firmware's log lines start with, so phases can be cut by them.
import gc
import sys
import time

import _air

_STEP = 512
_out = None
_last = 0
_high = 0
_wait = None


def _watched_wait(queue, dt):
    _sample()
    _wait(queue, dt)


def _sample():
    global _last, _high, _wait
    base = getattr(_air, "BASELINE", None)
    if base is None:        # rom.py has not pinned the simulator's share yet
        return
    if _wait is None and "asyncio.core" in sys.modules:
        # Hooked when the firmware imports asyncio, not before: importing it here would move
        # its RAM into the simulator's share and flatter the firmware.
        io = sys.modules["asyncio.core"].IOQueue
        _wait = io.wait_io_event
        io.wait_io_event = _watched_wait
    gc.collect()
    n = gc.mem_alloc() - base
    if n > _high or n - _last >= _STEP or _last - n >= _STEP:
        _high = max(_high, n)
        _last = n
        _out.write("%d %d\n" % (time.ticks_ms(), n))
        _out.flush()


def start(path):
    """Open the host file and sample at every air call; called by rom.py before the host
    filesystem is unmounted and before it pins the simulator's share."""
    global _out
    _out = open(path, "a")     # a reboot carries on the same timeline
    _air.HOOK = _sample
