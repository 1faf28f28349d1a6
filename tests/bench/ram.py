"""The firmware's RAM on an ESP32_GENERIC without PSRAM (the simulated chip's default profile,
tools/sim/chip/esp32/esp32_ram.c; docs/simulator.md "RAM"), at three moments of a board's life:
waiting for provisioning over BLE, waiting over SoftAP, and streaming over TLS MQTT. For each: the
GC heap's size (it starts at 56,000 B and grows into the IDF heap), gc.mem_free() (free + the
largest IDF block), the IDF heap's free bytes and largest block (151,600 B free at start), and the
least each region has had free since boot, summed (the tightest the IDF has been).

Read through the serial console at the end of each moment (its Ctrl-C stops the firmware).
"""
import re
import tempfile
from pathlib import Path

from tools import deploy
from tools.cloud.local import LocalCloud
from tools.console import Console
from tools.sim.board import Board

from tests.bench.table import run_alone
from tests.sim.conftest import POP, PROV, WIFI, home_world
from tests.sim.phone import provision

CONNECTED = re.compile(rb"MQTT connected to \S+ \(TLS\)")
READ = ("import esp32, gc, micropython; r = esp32.idf_heap_info(esp32.HEAP_DATA); micropython.mem_info(); "
        "print('ram', gc.mem_free(), sum(x[1] for x in r), max(x[2] for x in r), sum(x[3] for x in r))")


def read_ram(board):
    with Console("socket://127.0.0.1:%d" % board.console.port) as c:
        out = c.exec(READ)
    gc_total = int(re.search(r"GC: total: (\d+)", out).group(1))
    return (gc_total,) + tuple(map(int, re.search(r"ram (\d+) (\d+) (\d+) (\d+)", out).groups()))


def moment(cloud, image, mac, transport, stream):
    node = mac.hex().upper()
    cloud.add_device(node)
    factory = dict(PROV, **cloud.factory_for(node))
    factory["prov"] = dict(factory["prov"], transports=[transport])
    deploy.factory_to_image(image, factory, log=lambda line: None)
    board = Board(image, world=home_world(cloud), mac=mac).start()
    try:
        board.wait_for(b"provisioning open for", timeout=20)
        if stream:
            provision(board, POP, *WIFI, transport=transport)
            board.wait_for(CONNECTED, timeout=30)
            board.wait_for(b"INFO app: online", timeout=10)
        return read_ram(board)
    finally:
        board.stop()


def run(rows):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        template = d / "t.img"
        deploy.to_image(template, mpy=True, log=lambda line: None)
        cloud = LocalCloud(d / "cloud").start()
        try:
            for i, (name, transport, stream) in enumerate((
                    ("waiting for provisioning over BLE", "ble", False),
                    ("waiting for provisioning over SoftAP", "softap", False),
                    ("streaming over TLS MQTT (provisioned over SoftAP)", "softap", True))):
                image = d / ("b%d.img" % i)
                image.write_bytes(template.read_bytes())
                gc_total, mem_free, idf_free, largest, least = moment(
                    cloud, image, bytes.fromhex("24a1630000%02x" % i), transport, stream)
                rows.append(("ram: %s: GC heap" % name, "%d" % gc_total, "B"))
                rows.append(("ram: %s: gc.mem_free()" % name, "%d" % mem_free, "B"))
                rows.append(("ram: %s: IDF heap free" % name, "%d" % idf_free, "B"))
                rows.append(("ram: %s: IDF largest free block" % name, "%d" % largest, "B"))
                rows.append(("ram: %s: IDF least free since boot" % name, "%d" % least, "B"))
        finally:
            cloud.stop()


if __name__ == "__main__":
    run_alone(run)
