"""Run code under the MicroPython unix port from pytest (the chip the firmware really runs on)."""
import os
import subprocess
from pathlib import Path

from tools.sim.board import micropython_binary

ROOT = Path(__file__).resolve().parent.parent
# The chip counts time from 2000-01-01, as an ESP32 does: Unix seconds less this.
CHIP_EPOCH = 946684800


def run_mpy(code, heap="100K", path=("lib", "firmware"), timeout=60, check=True, env=None, micropython=None):
    """Run `code` with the project's lib/ (and firmware/) importable; return stdout as text.

    Paths are relative to the repository root; env: variables for the chip beside the host's
    (ROOST_PACE, ROOST_CLOCK_BASE_US...); micropython: another chip binary (the custom build:
    tools/sim/chip/build.py chip_binary(roost=True)). Raises AssertionError with the output on failure.
    """
    sys_path = ":".join(str(ROOT / p) for p in path)
    prelude = "import sys\nsys.path[:0] = %r.split(':')\n" % sys_path
    proc = subprocess.run(
        [micropython_binary(micropython), "-X", "heapsize=" + heap, "-c", prelude + code],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=dict(os.environ, **(env or {})),
    )
    if check and proc.returncode != 0:
        raise AssertionError("micropython failed (%d):\n%s%s" % (proc.returncode, proc.stdout, proc.stderr))
    return proc.stdout
