"""A backlog of readings in a simulated board's outbox, in seconds instead of N sampling intervals.

    info = fill(board, 10000)     # firmware stopped, 10,000 readings stored, firmware restarted
    info["first"], info["last"]   # the seqs they got; info["dropped"]: cursor.dropped after it

How: through the serial console (tools/console.py) the firmware is stopped and the chip soft-reset
into the raw REPL (boot.py runs, main.py does not: the heap is the firmware's own, free). There
device code opens the Store and the Outbox with the sinks the firmware would name (outbox.sinks():
"mqtt" with a bootstrap endpoint, "thingspeak" once a registration key is stored), and adds and
flushes the readings through Outbox.add()/flush(), exactly the calls the sampler makes. So they are
stored as the firmware stores them: seqs go on from the outbox's next_seq, segments are 128 readings,
and past the capacity the oldest are dropped, counted in cursor.dropped and logged ("outbox full:
dropped N oldest readings"). Then the console restarts the firmware (Ctrl-D at the friendly REPL:
boot.py and main.py, as at power-on but with reset cause SOFT_RESET), which finds them at boot.

The readings look like the sampler's with network time: the sensor's value (read once through the
board's ADC), epoch seconds marked synced, one every `spacing_s` seconds, the last one taken now. The
times come from the host's clock (the network time the board would have), not the board's, which
a soft reset may leave unset. With many readings the first ones are older than readings the board
took before (it was not really offline that long); nothing downstream looks at that order.
"""
import json
import time

from tools.console import Console

# Runs on the board. Names below are substituted by fill(); prints one JSON line.
_FILL = """
import gc, json, time
from firmware import board
from firmware.store import Store
from firmware.telemetry.outbox import Outbox, sinks
store = Store()
box = Outbox(store, sinks(store))
value = board.temperature_c()
first, n, spacing, now = box.next_seq, %(n)d, %(spacing)d, %(now)d
gc.collect()
t0 = time.ticks_ms()
for i in range(n):
    box.add(value, now - (n - 1 - i) * spacing, True)
    if box.buffered() == 128 or i == n - 1:
        box.flush()
ms = time.ticks_diff(time.ticks_ms(), t0)
print(json.dumps({"first": first, "last": box.next_seq - 1, "pending": len(box), "dropped": box.dropped,
                  "sinks": list(box.cursors), "value": value, "ms": ms}))
"""


def console(board):
    """A Console on the board's serial port (use it in a with block)."""
    return Console("socket://127.0.0.1:%d" % board.console.port)


def run_stopped(board, code, timeout=120, restart=True):
    """Run device code with the firmware stopped (after a soft reset into the raw REPL, so the heap
    is the firmware's); returns what it printed. restart: start the firmware again afterwards."""
    with console(board) as c:
        out = c.exec(code, soft_reset=True, timeout=timeout)
        if restart:
            c.restart()
    return out


def fill(board, n, spacing_s=1, restart=True, timeout=120):
    """Store n readings in the board's outbox as the sampler would (see the module's doc); returns
    {"first", "last": their seqs, "pending": readings waiting, "dropped": cursor.dropped,
    "sinks": [...], "value", "ms": the device's time for the adds and flushes}."""
    code = _FILL % {"n": n, "spacing": spacing_s, "now": time.time()}
    out = run_stopped(board, code, timeout=timeout, restart=restart)
    return json.loads(out.strip().splitlines()[-1])
