"""ESP32 pace: the chip can run at an ESP32's speed (tools/sim/pace.py, esp32_pace.c)."""
from mpy import run_mpy
from tools.sim import pace
from tools.sim.board import micropython_binary


def paced(code, factor):
    return run_mpy(code, path=(), env={"ROOST_PACE": str(factor)}, timeout=120)


def test_the_host_is_calibrated_against_the_esp32s_dhrystone_rate():
    factor = pace.calibrate(micropython_binary())
    assert factor > 5, "an x86 host runs MicroPython tens of times faster than an ESP32"
    # Paced, the chip's Dhrystone rate is the ESP32's (within what a shared host allows).
    rate = pace.stones(micropython_binary(), pace=factor, loops=1500)
    assert pace.ESP32_PYSTONES / 2 < rate < pace.ESP32_PYSTONES * 2, (factor, rate)


WORK = """
import time
t = time.ticks_ms()
n = 0
for i in range(100000):
    n += i * i
print(time.ticks_diff(time.ticks_ms(), t))
"""


def test_work_is_slowed_by_the_factor_and_waits_are_not():
    out = paced("import _simchip\nprint(_simchip.pace())\n" + WORK + """
t = time.ticks_ms()
time.sleep_ms(300)
print(time.ticks_diff(time.ticks_ms(), t))
""", 20)
    factor, work_ms, sleep_ms = out.split()
    assert float(factor) == 20.0
    # The work's time at host speed: the best of a few runs (a busy host only makes it look slower,
    # and the pacer counts CPU time, not time spent waiting for a core).
    host_ms = min(int(paced(WORK, 1)) for _ in range(5))
    assert int(work_ms) >= 10 * max(host_ms, 1), (work_ms, host_ms)
    assert 300 <= int(sleep_ms) < 450, "a wait is not CPU work: not stretched"
