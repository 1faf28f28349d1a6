"""Boot figures of the simulated board: power-on to banner, heap at the banner."""
import re
import statistics
import tempfile
import time
from pathlib import Path

from tools import deploy
from tools.sim.board import Board

BANNER = re.compile(rb"heap free (\d+) alloc (\d+) reset")
SIM_BASELINE = "import _air, gc; gc.collect(); print(_air.BASELINE)"


def run(rows, cycles=20):
    with tempfile.TemporaryDirectory() as d:
        image = Path(d) / "b.img"
        deploy.to_image(image, mpy=True, log=lambda line: None)
        board = Board(image)
        times, free, alloc = [], [], []
        try:
            for i in range(cycles):
                mark = board.mark()
                t0 = time.perf_counter()
                if i == 0:
                    board.start()
                else:
                    board.power_cut()
                m = board.wait_for(BANNER, since=mark, timeout=10)
                times.append((time.perf_counter() - t0) * 1000)
                free.append(int(m.group(1)))
                alloc.append(int(m.group(2)))
            from tools.console import Console
            with Console("socket://127.0.0.1:%d" % board.console.port) as c:
                baseline = int(c.exec(SIM_BASELINE).strip())
        finally:
            board.stop()
    rows.append(("boot: power-on to banner (median of %d)" % cycles, "%.0f" % statistics.median(times), "ms"))
    rows.append(("boot: gc.mem_free() at banner (free + largest IDF block)", "%d" % min(free), "B"))
    rows.append(("boot: heap allocated at banner", "%d" % max(alloc), "B"))
    rows.append(("boot: of which the simulator's shims and REPL", "%d" % baseline, "B"))
    rows.append(("boot: of which the firmware", "%d" % (max(alloc) - baseline), "B"))
