"""Self-registration on the simulated board (an ESP32_GENERIC's RAM) with the local cloud: the device cost of
the sealed answer's key derivation (PBKDF2-HMAC-SHA256) at the cloud's iteration count, the time
from "online" to "registered" on the chip, and the heap left once registered."""
import re
import statistics
import tempfile
from pathlib import Path

from tools import deploy
from tools.cloud.local import LocalCloud
from tools.sim.board import Board

from tests.bench.table import run_alone
from tests.sim.conftest import POP, PROV, WIFI, home_world
from tests.sim.phone import provision
from tests.sim.terminal import type_
from tests.sim.test_registration import KEY_ACCEPTED

DERIVED = re.compile(rb"key derived: (\d+) PBKDF2 iterations in (\d+) ms")
ONLINE = re.compile(rb"(\d+) INFO app: online")
REGISTERED = re.compile(rb"(\d+) INFO registration: registered")


def run(rows, runs=5, iterations=(10000, 20000, 50000)):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        template = d / "t.img"
        deploy.to_image(template, mpy=True, log=lambda line: None)
        for n in iterations:
            cloud = LocalCloud(d / ("cloud%d" % n), thingspeak_rate_limit=0, registration_iterations=n)
            cloud.start_http()
            try:
                key = cloud.add_org("bench")["registration_key"]
                kdf, chip, free = [], [], []
                for i in range(runs):
                    image = d / ("b%d-%d.img" % (n, i))
                    image.write_bytes(template.read_bytes())
                    factory = dict(cloud.registration_factory(), pop=POP, serial="bench%d-%d" % (n, i),
                                   prov=PROV["prov"])
                    deploy.factory_to_image(image, factory, log=lambda line: None)
                    board = Board(image, world=home_world(cloud)).start()
                    try:
                        board.wait_for(b"provisioning open", timeout=15)
                        type_(board, "key\r", "registration key: ")
                        type_(board, key + "\r", "registration key stored")
                        provision(board, POP, *WIFI)
                        free.append(int(board.wait_for(KEY_ACCEPTED, timeout=30).group(1)))
                        kdf.append(int(board.wait_for(DERIVED, timeout=1).group(2)))
                        on = int(board.wait_for(ONLINE, timeout=1).group(1))
                        chip.append(int(board.wait_for(REGISTERED, timeout=1).group(1)) - on)
                    finally:
                        board.stop()
                rows.append(("registration: PBKDF2 %d iterations on the chip (median of %d)"
                             % (n, runs), "%d" % statistics.median(kdf), "ms"))
                rows.append(("registration: online to registered on the chip, %d iterations (median)" % n,
                             "%d" % statistics.median(chip), "ms"))
            finally:
                cloud.stop_http()
        rows.append(("registration: gc.mem_free() once registered (lowest)", "%d" % min(free), "B"))


if __name__ == "__main__":
    run_alone(run)
