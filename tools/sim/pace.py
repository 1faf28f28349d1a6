"""ESP32 pace: how much slower than this host the simulated chip must run to keep an ESP32's time.

The chip runs MicroPython 50-100x faster than an ESP32 at 240 MHz. calibrate() measures the host:
the chip runs Weicker's Dhrystone (tools/sim/chip/dhrystone.py, the program pystone is) and the
factor is its rate over the ESP32's published one, ESP32_PYSTONES. A chip started with
ROOST_PACE=<factor> then waits (spinning) whenever it runs ahead (tools/sim/chip/esp32/esp32_pace.c).
"""
import os
import subprocess
import threading

# MicroPython on an ESP32 at 240 MHz: about 1,661 pystones/s (MicroPython issue #5673, v1.12;
# ../shared/specs/esp32-port-behaviour.md section 6).
ESP32_PYSTONES = 1661
_ROUNDS = 3
_LOOPS = 20000
_PACED_LOOPS = 1500        # about a second at an ESP32's rate

_lock = threading.Lock()
_factors = {}       # binary -> factor: calibrated once per process


def stones(binary, pace=None, loops=_LOOPS):
    """Dhrystone loops per second on the chip (at `pace`, a factor, or host speed)."""
    env = dict(os.environ, MICROPYPATH=".frozen", ROOST_PACE=str(pace or ""))
    r = subprocess.run([binary, "-c", "import dhrystone; print(dhrystone.stones_per_second(%d))" % loops],
                       capture_output=True, text=True, env=env, timeout=120)
    if r.returncode:
        raise RuntimeError("the pace benchmark failed on the chip: %s" % (r.stderr or r.stdout).strip())
    return int(r.stdout.split()[-1])


def calibrate(binary):
    """The factor that brings this host's chip to an ESP32's speed. First the host's rate (the
    best of a few runs: a busy host only looks slower) over the ESP32's; then the chip is run at
    that factor and the factor corrected by what it measured, because work interleaved with the
    pacer's waits runs slower than work alone (esp32_pace.c)."""
    with _lock:
        if binary not in _factors:
            first = max(1.0, max(stones(binary) for _ in range(_ROUNDS)) / ESP32_PYSTONES)
            paced = stones(binary, pace=first, loops=_PACED_LOOPS)
            _factors[binary] = max(1.0, first * paced / ESP32_PYSTONES)
        return _factors[binary]


def factor(pace, binary):
    """--pace as given ("esp32", a number, or None/"host") -> the chip's factor (None: host speed)."""
    if pace in (None, "", "host"):
        return None
    if pace == "esp32":
        return calibrate(binary)
    return float(pace)
