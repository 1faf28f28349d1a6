"""The GC heap a board needs, phase by phase (tests/sim/lifecycle.py): the live heap's high in
each phase (sampled at every scheduler step and I/O, on an ample heap), and the smallest
`-X heapsize` on which the whole life passes (bisection, unwatched), for security 1 and 2, with
the code in LittleFS (.mpy, loaded into the heap), in ROMFS and frozen into MicroPython (both
run from flash).

    .venv/bin/python -m tests.bench.heap [--sec 1] [--code mpy]
"""
import argparse
import tempfile
import time
from pathlib import Path

from tools.cloud.local import LocalCloud
from tools.sim.board import heap_bytes

from tests.bench.table import print_table
from tests.sim import lifecycle

AMPLE = "192K"
STEP = 4096


def profile(cloud, workdir, image, sec, code, rows, n):
    life = lifecycle.live(cloud, workdir, image, AMPLE, sec, n)
    if not life.passed:
        raise RuntimeError("the life failed on an ample heap: %r" % life)
    for name in lifecycle.NAMES:
        rows.append(("heap: %s, sec%d, code in %s: live high" % (name, sec, code), "%d" % life.peak[name], "B"))
    return max(life.peak.values())


def smallest(cloud, workdir, image, sec, code, rows, live_high, n):
    t0 = time.monotonic()
    # No heap below the live high can pass; the search starts there.
    heap, runs = lifecycle.smallest_heap(cloud, workdir, image, sec, live_high // STEP * STEP,
                                         AMPLE, STEP, first=n)
    failed = [r for r in runs if not r.passed]
    below = ""
    if failed:      # what gives out first just below it
        r = max(failed, key=lambda r: heap_bytes(r.heap))
        below = "; %s fails in %s" % (r.heap, lifecycle.NAMES[len(r.done)])
    rows.append(("heap: smallest -X heapsize for the whole life, sec%d, code in %s (%d runs, %.0f s%s)"
                 % (sec, code, len(runs), time.monotonic() - t0, below), "%d" % (heap // 1024), "K"))
    return len(runs)


def run(rows, secs=(1, 2), codes=lifecycle.CODES):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        cloud = LocalCloud(d / "cloud").start()
        try:
            n = 0
            for code in codes:
                image = lifecycle.template(d / ("%s.img" % code), code)
                for sec in secs:
                    high = profile(cloud, d, image, sec, code, rows, n)
                    n += 1
                    n += smallest(cloud, d, image, sec, code, rows, high, n)
        finally:
            cloud.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--sec", type=int, action="append")
    ap.add_argument("--code", action="append", choices=lifecycle.CODES)
    a = ap.parse_args()
    out = []
    run(out, tuple(a.sec or (1, 2)), tuple(a.code or lifecycle.CODES))
    print_table(out)
