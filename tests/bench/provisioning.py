"""Provisioning on the simulated board: time from BLE connect to "connected", and the heap."""
import re
import statistics
import tempfile
import time
from pathlib import Path

from tools import deploy
from tools.prov.client import Provisioner
from tools.sim.board import Board
from tools.sim.world import AccessPoint, World

from tests.sim.phone import ble

FACTORY = {"pop": "abcd1234"}
LOW = re.compile(rb"lowest free heap (\d+)\r\n")
ONLINE = re.compile(rb"online, heap free (\d+)\r\n")


def run(rows, runs=5):
    times, lows, onlines = [], [], []
    with tempfile.TemporaryDirectory() as d:
        template = Path(d) / "t.img"
        deploy.to_image(template, mpy=True, factory=FACTORY, log=lambda line: None)
        for i in range(runs):
            image = Path(d) / ("b%d.img" % i)
            image.write_bytes(template.read_bytes())
            world = World(aps=[AccessPoint("home", "right horse battery")], connect_time=0.3)
            board = Board(image, world=world).start()
            try:
                board.wait_for(b"provisioning open", timeout=15)
                t0 = time.perf_counter()
                with ble(board) as t:
                    Provisioner(t, pop="abcd1234").provision("home", "right horse battery", user_id="u",
                                                             on_progress=None, poll=0.05)
                times.append((time.perf_counter() - t0) * 1000)
                lows.append(int(board.wait_for(LOW, timeout=10).group(1)))
                onlines.append(int(board.wait_for(ONLINE, timeout=10).group(1)))
            finally:
                board.stop()
    rows.append(("provisioning: BLE connect to Wi-Fi connected, sec1 (median of %d; "
                 "AP association modelled as 0.3 s)" % runs, "%.0f" % statistics.median(times), "ms"))
    rows.append(("provisioning: lowest free heap in the window (heap 100K)", "%d" % min(lows), "B"))
    rows.append(("provisioning: free heap once online (code unloaded)", "%d" % min(onlines), "B"))
