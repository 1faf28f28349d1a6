"""A board's whole life on a given heap, phase by phase, with its live heap watched
(tools/sim/chip/heapwatch.py): power on, BLE provisioning (security 1 or 2), bootstrap, TLS MQTT
with the user mapping, streaming. Used by the heap budget test and `make bench` (tests/bench/heap.py).

Each phase ends at a console line the firmware prints anyway, so the samples (tagged with the
chip's ticks_ms, like log lines) split into phases without the firmware knowing it is watched.
"""
import re
from collections import namedtuple
from pathlib import Path

from tools import deploy
from tools.sim.chip import build as chip_build
from tools.prov.factory import sec2_factory
from tools.sim.board import Board, heap_bytes

from tests.sim.conftest import POP, WIFI, home_world
from tests.sim.phone import provision

SRP = sec2_factory(POP)
READINGS = 6                         # streamed and stored by the cloud before the streaming phase ends
# (phase, the console line that ends it, seconds it may take on a heap that fits)
# The ticks must start the line: a number run into it (output without a newline) would push a
# phase's end past the next phase's samples.
PHASES = (
    ("boot", rb"(?m)^(\d+) INFO prov: provisioning open", 15),
    ("provisioning", rb"(?m)^(\d+) INFO prov: provisioning done", 30),
    ("bootstrap", rb"(?m)^(\d+) INFO cloud: bootstrapped", 20),
    ("tls_mqtt", rb"(?m)^(\d+) INFO cloud: user mapping delivered", 20),
    ("streaming", None, 40),
)
NAMES = tuple(p[0] for p in PHASES)


class Life:
    """What one run showed: the phases it completed and the live heap's high per phase."""

    def __init__(self, heap, sec):
        self.heap, self.sec = heap, sec
        self.done = []                # names of the phases completed, in order
        self.peak = {}                # phase -> highest live heap sampled in it (B)
        self.failure = None           # why the first incomplete phase did not complete

    @property
    def passed(self):
        return len(self.done) == len(PHASES)

    def __repr__(self):
        return "Life(%s, sec%d, done=%s, peak=%s%s)" % (self.heap, self.sec, self.done, self.peak,
                                                       ", failure=%r" % self.failure if self.failure else "")


# Where the firmware's code is: .mpy files in LittleFS (loaded into the heap), the ROMFS
# partition (run from flash), or frozen into the chip's MicroPython (the project's manifest.py).
CODES = ("mpy", "romfs", "frozen")


class Firmware(namedtuple("Firmware", "image micropython")):
    """A deployed flash image to copy per board, and the chip binary it runs on (None: the plain chip)."""


def template(path, code="mpy"):
    """The firmware deployed as `roost deploy --mpy [--romfs | --frozen]` writes it; a Firmware."""
    deploy.to_image(path, mpy=True, romfs=code == "romfs", frozen=code == "frozen", log=lambda line: None)
    return Firmware(path, chip_build.chip_binary(roost=True) if code == "frozen" else None)


def live(cloud, workdir, firmware, heap, sec, n, watch=True):
    """Run board number `n` through its life on `heap` (e.g. "96K") with security `sec`; a Life.
    watch=False runs it unwatched: sampling collects at every scheduler step, which a real
    heap does not, so the smallest heap is searched without it."""
    workdir = Path(workdir)
    mac = bytes.fromhex("24a16e%02x%04x" % (sec, n))
    node = mac.hex().upper()
    cloud.add_device(node)
    image = workdir / ("life%d.img" % n)
    image.write_bytes(Path(firmware.image).read_bytes())
    rom = deploy.romfs_path(firmware.image)
    if rom.exists():
        deploy.romfs_path(image).write_bytes(rom.read_bytes())
    prov = {"sec": sec, "transports": ["ble"], "timeout_s": 600}
    prov.update(SRP if sec == 2 else {})
    deploy.factory_to_image(image, dict(cloud.factory_for(node), pop=POP if sec == 1 else "", prov=prov),
                            log=lambda line: None)
    samples = workdir / ("life%d.heap" % n)
    board = Board(image, world=home_world(cloud), heap=heap, mac=mac, heapwatch=samples if watch else None,
                  micropython=firmware.micropython).start()
    life = Life(heap, sec)
    ends = []
    try:
        for name, line, timeout in PHASES:
            try:
                if name == "provisioning":
                    provision(board, POP if sec == 1 else None, *WIFI, user_id="owner",
                              secret="s3cret", password=POP if sec == 2 else None, transport="ble")
                if name == "streaming":
                    ends.append(_stream(cloud, board, node, timeout))
                else:
                    ends.append(int(board.wait_for(re.compile(line), timeout=timeout).group(1)))
            except Exception as e:  # noqa: BLE001 - any failure ends the life at this phase
                life.failure = "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")
                break
            life.done.append(name)
    finally:
        board.stop()
    life.peak = _peaks(samples, ends)
    return life


def _stream(cloud, board, node, timeout):
    """Sample every second until the cloud holds READINGS of them; the chip's ticks then."""
    board.wait_for(b"listening for commands", timeout=timeout)
    if cloud.command(node, "interval 1", timeout=10) != "ok":
        raise RuntimeError("the board refused 'interval 1'")
    cloud.wait_readings(node, READINGS, timeout=timeout)
    # The chip's clock now: the answer to a status command is logged with it.
    mark = board.mark()
    cloud.command(node, "status", timeout=10)
    return int(board.wait_for(re.compile(rb"(\d+) INFO cloud: command status"), since=mark, timeout=10).group(1))


def _peaks(samples, ends):
    """{phase: highest sample in it}, for the phases that ended (ends: chip ticks of each end)."""
    if not Path(samples).exists():
        return {}
    peak = {}
    for line in Path(samples).read_text().splitlines():
        t, n = (int(x) for x in line.split())
        for name, end in zip(NAMES, ends):
            # Strictly before: a sample in the same millisecond as the phase's last line may
            # already be the next phase's work (BLE starting right after "provisioning open").
            if t < end:
                peak[name] = max(peak.get(name, 0), n)
                break
    return peak


def smallest_heap(cloud, workdir, firmware, sec, lo, hi, step=4096, first=0):
    """Bisect the smallest heap (a multiple of `step` in [lo, hi]) on which the whole life
    passes; (that heap, the runs: Lifes)."""
    lo, hi = heap_bytes(lo) // step, heap_bytes(hi) // step
    runs = []
    n = first
    while lo < hi:
        mid = (lo + hi) // 2
        life = live(cloud, workdir, firmware, "%dK" % (mid * step // 1024), sec, n, watch=False)
        n += 1
        runs.append(life)
        if life.passed:
            hi = mid
        else:
            lo = mid + 1
    return hi * step, runs

