"""ESP32 pace: the chip can run at an ESP32's speed (tools/sim/pace.py, esp32_pace.c)."""
import subprocess

from tools.sim import pace
from tools.sim.board import chip_env, micropython_binary


def paced(code, factor):
    env = chip_env(ROOST_PACE=str(factor))
    r = subprocess.run([micropython_binary(), "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_the_host_is_calibrated_against_the_esp32s_dhrystone_rate():
    factor = pace.calibrate(micropython_binary())
    assert factor > 5, "an x86 host runs MicroPython tens of times faster than an ESP32"
    # Paced, the chip's Dhrystone rate is the ESP32's (within what a shared host allows).
    rate = pace.stones(micropython_binary(), pace=factor, loops=1500)
    assert pace.ESP32_PYSTONES / 2 < rate < pace.ESP32_PYSTONES * 2, (factor, rate)


def test_work_is_slowed_by_the_factor_and_waits_are_not():
    out = paced("""
import time
def work():
    t = time.ticks_ms()
    n = 0
    for i in range(20000):
        n += i * i
    return time.ticks_diff(time.ticks_ms(), t)
import _simchip
print(_simchip.pace())
print(work())
t = time.ticks_ms()
time.sleep_ms(300)
print(time.ticks_diff(time.ticks_ms(), t))
""", 20)
    factor, work_ms, sleep_ms = out.split()
    assert float(factor) == 20.0
    host_ms = int(paced("import time\nt = time.ticks_ms()\nn = 0\nfor i in range(20000):\n    n += i * i\n"
                        "print(time.ticks_diff(time.ticks_ms(), t))", 1).strip())
    assert int(work_ms) >= 10 * max(host_ms, 1), (work_ms, host_ms)
    assert 300 <= int(sleep_ms) < 450, "a wait is not CPU work: not stretched"
