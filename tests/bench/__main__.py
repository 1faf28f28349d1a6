"""make bench: every benchmark, one table.

Host-driven benchmarks are modules here with run(rows); chip benchmarks are bench_*.py files
run by path under the MicroPython unix port (the simulated chip), printing "name: value unit"
lines; each finds lib/ from its own __file__.
"""
import importlib
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
HOST = ("footprint", "boot", "ram", "heap", "provisioning", "cloud", "registration", "telemetry", "crypto", "pace",
        "fleet")
LINE = re.compile(r"^(.+?):?\s+([-\d.]+)\s*(\S*)\s*$")   # "name: value unit" or "name value"


def chip_bench(path, rows):
    from tools.sim.board import micropython_binary
    r = subprocess.run([micropython_binary(), "-X", "heapsize=4M", str(path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    if r.returncode:
        rows.append(("%s FAILED" % path.name, r.stderr.strip().splitlines()[-1] if r.stderr else "?", ""))
        return
    for line in r.stdout.splitlines():
        m = LINE.match(line.strip())
        if m:
            rows.append(("%s: %s" % (path.stem[6:], m.group(1)), m.group(2), m.group(3)))


def main():
    from tests.bench.table import print_table
    rows = []
    for name in HOST:
        # A benchmark that fails says so in its row and the others still run.
        try:
            importlib.import_module("tests.bench." + name).run(rows)
        except Exception as e:      # noqa: BLE001 - any failure is reported, not fatal
            why = (str(e).strip().splitlines() or [type(e).__name__])[0][:100]
            rows.append(("%s FAILED" % name, why, ""))
    for path in sorted(HERE.glob("bench_*.py")):
        chip_bench(path, rows)
    print_table(rows)


main()
