"""Run code under the MicroPython unix port from pytest (the chip the firmware really runs on)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def micropython_binary():
    """The unix port: $ROOST_MICROPYTHON, else the one beside this Python, else PATH."""
    env = os.environ.get("ROOST_MICROPYTHON")
    if env:
        return env
    beside = Path(sys.executable).with_name("micropython")
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if not found:
        raise RuntimeError("no micropython binary: run `make setup` or set ROOST_MICROPYTHON")
    return found


def run_mpy(code, heap="100K", path=("lib", "firmware"), timeout=60, check=True):
    """Run `code` with the project's lib/ (and firmware/) importable; return stdout as text.

    Paths are relative to the repository root. Raises AssertionError with the output on failure.
    """
    sys_path = ":".join(str(ROOT / p) for p in path)
    prelude = "import sys\nsys.path[:0] = %r.split(':')\n" % sys_path
    proc = subprocess.run(
        [micropython_binary(), "-X", "heapsize=" + heap, "-c", prelude + code],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )
    if check and proc.returncode != 0:
        raise AssertionError("micropython failed (%d):\n%s%s" % (proc.returncode, proc.stdout, proc.stderr))
    return proc.stdout
