"""A fleet on one host: N simulated boards (50 unless told) provisioned and streaming at once
through one Mosquitto and one local cloud.

    make bench                                    (run(rows): 50 boards)
    .venv/bin/python -m tests.bench.fleet --boards 100 [--window 30] [--phones 16] [-v]

The story of a person with a box of boards: the cloud has a bootstrap config for every board, and
every board its factory config (PoP, cloud, CA). All are powered on at once. Phones provision
them (security 1, over BLE: tests/sim/phone.py ONBOARDING) with the Wi-Fi credentials and the owner's mapping secret, a few boards
at a time; for each, the owner's app asks the cloud for the user-node mapping and polls until it
is confirmed. Each board bootstraps, connects over TLS MQTT, reports its mapping and subscribes to
its commands; the cloud then asks it to sample every second. The whole fleet streams for a
measured window. Then the cloud tells every board to stop sampling and asks for its status, and
must end up holding every reading each board says it took (seqs 1..last_seq), each once.

Figures (host figures: every chip is the MicroPython unix port on this machine; docs/simulator.md):
- power-on to all N onboarded (mapping confirmed and sampling every second), the queue for a free
  phone included; per board, its phone's first scan to that moment (median, slowest);
- readings/s delivered: the readings the cloud holds (all of them stored: lost = 0) whose time
  stamps are within the window, over its length (N/s asked); the rate they arrived at, each
  board's from its first to its last message in the window, summed; a reading's age when stored
  (taken to received_at). A board sends its 1 s readings in batches of ~11 every ~11 s (they reach
  flash 10 s at a time, and only flash is sent), so counting arrivals within the window instead
  would count 2 or 3 batches per board as they fall: +-15% from run to run with 50 boards;
- lost readings (must be 0), duplicates kept (must be 0), resends the cloud discarded, reboots,
  boards whose console logged an error;
- host memory, sampled every 0.5 s from /proc: the peak of the summed resident sets of this
  process, every chip process and Mosquitto; the same counting shared pages once (PSS); each
  chip's peak; this process's threads and open files at their peak;
- CPU: the share of the machine's cores busy while onboarding and while streaming, and who used
  it (the chips, this process, Mosquitto). The machine figure includes anything else running.
  While streaming most of it is the simulator's own: a board makes ~18 air round trips a second
  (JSON lines to this process: the button polled every 100 ms, the LED set every 200 ms, Wi-Fi
  checks, the sensor), cheap on a chip.
"""
import argparse
import concurrent.futures
import json
import math
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tools import deploy
from tools.cloud.local import LocalCloud
from tools.sim.board import Board

from tests.bench.hostmeter import CpuMark, HostMeter
from tests.bench.table import print_table
from tests.sim.conftest import POP, PROV, WIFI, home_world
from tests.sim.phone import provision
from tests.sim.test_cloud import api, map_request
from tests.sim.test_streaming import LISTENING

WINDOW_S = 30
INTERVAL_S = 1
# Boards onboarded at a time. With the real Bluetooth stack (NimBLE on every chip, Bumble
# controllers and hosts in Python), a board's BLE provisioning costs far more host CPU than with
# the old hand-written air: on this 2-core machine 40 phones at once saturated the cores and
# boards missed their 30 s deadlines; a few per core keep every board's steps at their pace.
PHONES_PER_CORE = 4
MAPPING_POLL_S = 0.5
ROW = "fleet: %d boards, "      # every row's name starts so (make bench's table: docs/budgets.md)
ERRORS = (b" ERROR ", b"Traceback", b"MemoryError", b"[sim] chip exited", b"[sim] watchdog")


class FleetError(Exception):
    pass


@dataclass
class Node:
    """One board of the fleet and what happened to it (monotonic seconds)."""
    board: Board
    node_id: str
    secret: str
    phone_at: float = None          # a phone starts scanning for it
    provisioned_at: float = None    # the phone saw "Wi-Fi connected"
    streaming_at: float = None      # mapping confirmed and sampling every second
    last_seq: int = None            # readings it took, as it says once sampling stopped
    readings: list = field(default_factory=list, repr=False)    # what the cloud holds
    stats: dict = None

    @property
    def onboarding_s(self):
        return self.streaming_at - self.phone_at

    def console_errors(self):
        out = bytes(self.board.out)
        return [e.decode() for e in ERRORS if e in out]


def open_files_for(boards):
    """Raise this process's soft limit of open files to what `boards` boards need (Mosquitto and
    the chips inherit it). Each board holds ~12 descriptors in this process: its air, UART and
    proxy listeners, the chip's pipes and air links, both ends of its HTTP and MQTT connections
    through its proxies. The usual soft limit of 1024 ends near 80 boards: proxies cannot open
    their sockets (EMFILE), and boards fail to bootstrap ("OSError 24")."""
    need = 256 + 24 * boards
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        raise FleetError("%d boards need about %d open files; the hard limit is %d (ulimit -Hn)"
                         % (boards, need, hard))
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


# --- the fleet ---------------------------------------------------------------------------------

class Fleet:
    """N boards from one firmware image in `directory`, each known to `cloud`, all in one room
    (one World: one access point, the cloud's services), owned by one user."""

    def __init__(self, directory, cloud, size, phones=None, log=None):
        self.dir = Path(directory)
        self.cloud = cloud
        self.size = size
        self.phones = min(size, phones or PHONES_PER_CORE * (os.cpu_count() or 2))
        self.log = log or (lambda line: None)
        self.owner = cloud.add_user("fleet-owner@example.com", "pw")
        self.token = cloud.login("fleet-owner@example.com", "pw")
        self.world = home_world(cloud)
        self.nodes = []
        self.powered_at = None
        self.window = None              # (start, end) of the measured streaming, epoch seconds

    # -- the factory -----------------------------------------------------------------------------
    def manufacture(self):
        """Every board's flash: the firmware (.mpy) and its own factory config; the cloud gets
        a bootstrap config per board. Nothing is powered yet."""
        template = self.dir / "firmware.img"
        deploy.to_image(template, mpy=True, log=lambda line: None)
        for i in range(self.size):
            mac = bytes.fromhex("24a162%06x" % (i + 1))
            node_id = mac.hex().upper()
            self.cloud.add_device(node_id)
            image = self.dir / ("%s.img" % node_id)
            shutil.copyfile(template, image)
            board = Board(image, world=self.world, mac=mac)
            self.nodes.append(Node(board, node_id, secret="secret-%s" % node_id))
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
            list(pool.map(self._write_factory_config, self.nodes))

    def _write_factory_config(self, node):
        factory = dict(PROV, **self.cloud.factory_for(node.node_id))
        deploy.factory_to_image(node.board.flash, factory, log=lambda line: None)

    # -- onboarding ------------------------------------------------------------------------------
    def power_on(self):
        self.powered_at = time.monotonic()
        for node in self.nodes:
            node.board.start()

    def onboard_all(self):
        """Phones onboard every board, `self.phones` boards at a time."""
        self.everyone(self.onboard, "onboarded", lambda node: "in %.1f s" % node.onboarding_s)

    def onboard(self, node):
        """One phone's and the owner's app's part for one board, until it samples every second."""
        board, cloud = node.board, self.cloud
        node.phone_at = time.monotonic()
        provision(board, POP, *WIFI, user_id=self.owner, secret=node.secret)
        node.provisioned_at = time.monotonic()
        self.confirm_mapping(node)
        # Commands sent before the board subscribed are lost (clean session): wait for it.
        board.wait_for(LISTENING, timeout=30)
        answer = cloud.command(node.node_id, "interval %d" % INTERVAL_S, timeout=15)
        if answer != "ok":
            raise FleetError("interval %d answered %r" % (INTERVAL_S, answer))
        node.streaming_at = time.monotonic()

    def confirm_mapping(self, node, timeout=60.0):
        """The owner's app: asks the cloud to map the node to its user, then polls the request
        at a phone app's pace (roost's CLI: every second). Polled every 0.1 s, as one board's
        tests do, 100 phones made 1000 HTTP requests a second to the cloud's one Python process,
        whose MQTT client then took over 15 s to see the boards' answers to commands."""
        request = map_request(self.cloud, self.token, node.node_id, node.secret)
        deadline = time.monotonic() + timeout
        while True:
            status = api(self.cloud, "GET", "/v1/user/nodes/mapping?request_id=" + request,
                         self.token)["request_status"]
            if status == "confirmed":
                return
            if status != "requested" or time.monotonic() > deadline:
                raise FleetError("user-node mapping %s" % status)
            time.sleep(MAPPING_POLL_S)

    def everyone(self, fn, done_what, say=lambda node: ""):
        """fn(node) for every node, `self.phones` at a time. Every node gets its turn; then
        FleetError names each one that failed, with the tail of its console."""
        failures = []
        with concurrent.futures.ThreadPoolExecutor(self.phones, thread_name_prefix="phone") as pool:
            futures = {pool.submit(fn, node): node for node in self.nodes}
            for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
                node = futures[future]
                try:
                    future.result()
                    self.log("%d/%d %s: %s %s" % (done, self.size, done_what, node.node_id, say(node)))
                except Exception as e:
                    failures.append((node, e))
                    self.log("%d/%d FAILED: %s: %s" % (done, self.size, node.node_id, e))
        if failures:
            raise FleetError("%d of %d boards not %s:\n%s" % (
                len(failures), self.size, done_what, "\n".join(self._failure(n, e) for n, e in failures)))

    @staticmethod
    def _failure(node, e):
        tail = bytes(node.board.out[-2500:]).decode(errors="replace")
        return "--- %s: %s: %s\n%s" % (node.node_id, type(e).__name__, e, tail)

    # -- streaming -------------------------------------------------------------------------------
    def stream(self, seconds):
        """Let the fleet stream for a window of whole seconds starting on a whole second: the
        boards stamp readings with whole seconds (time.time() truncated), so a stamp within the
        window is a reading taken within it."""
        start = math.ceil(time.time())
        end = start + seconds
        time.sleep(max(0.0, start - time.time()))
        time.sleep(max(0.0, end - time.time()))
        self.window = (start, end)

    def stop_sampling(self):
        """Every board stops sampling (it then flushes what it holds to flash) and says how many
        readings it took."""
        def stop(node):
            answer = self.cloud.command(node.node_id, "stream off", timeout=15)
            if answer != "ok":
                raise FleetError("stream off answered %r" % answer)
            node.last_seq = json.loads(self.cloud.command(node.node_id, "status", timeout=15))["last_seq"]
        self.everyone(stop, "stopped", lambda node: "after %d readings" % node.last_seq)

    def collect(self, timeout=60.0):
        """Wait until the cloud holds as many readings as each board took (or `timeout` passed:
        the difference shows as lost), then note what it holds."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            try:
                self.cloud.wait_readings(node.node_id, node.last_seq, max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                pass
            node.readings = self.cloud.readings(node.node_id)
            node.stats = self.cloud.reading_stats(node.node_id)

    # -- the host --------------------------------------------------------------------------------
    def processes(self):
        """[(key, pid)]: this process, Mosquitto, and each board's chip under its node ID."""
        procs = [("host", os.getpid())]
        if self.cloud.broker.proc:
            procs.append(("mosquitto", self.cloud.broker.proc.pid))
        for node in self.nodes:
            p = node.board.proc
            if p is not None:
                procs.append((node.node_id, p.pid))
        return procs

    def stop(self):
        for node in self.nodes:
            node.board.stop()


# --- what the fleet did ------------------------------------------------------------------------

def lost(node):
    """How many of the seqs 1..last_seq the board took the cloud does not hold."""
    return len(set(range(1, node.last_seq + 1)) - {r["seq"] for r in node.readings})


def duplicates_kept(node):
    seqs = [r["seq"] for r in node.readings]
    return len(seqs) - len(set(seqs))


def in_window(node, key, window):
    """The node's readings whose `key` ("received_at": stored, "time": taken) is in the window."""
    start, end = window
    return [r for r in node.readings if start <= r[key] < end]


def arrival_rate(node, window):
    """The rate the node's readings arrived, from its first to its last message in the window:
    the readings of all but the first over the time between them (readings/s). Unlike a count
    within the window, this does not depend on where the board's 10 s batches fall in it."""
    stored = in_window(node, "received_at", window)
    arrivals = sorted({r["received_at"] for r in stored})
    if len(arrivals) < 2:
        return None
    first, last = arrivals[0], arrivals[-1]
    return sum(1 for r in stored if r["received_at"] > first) / (last - first)


def _mib(n):
    return "%.1f" % (n / 2 ** 20)


def _seconds(xs, fn):
    return "%.1f" % fn(xs) if xs else "-"         # "-": nothing stored within a short window


def figures(fleet, meter, cpu):
    """Rows (name, value, unit) of one fleet run; cpu: CpuMark.since() of onboarding, streaming."""
    nodes, n = fleet.nodes, fleet.size
    span = fleet.window[1] - fleet.window[0]
    taken = sum(len(in_window(x, "time", fleet.window)) for x in nodes)
    ages = [r["received_at"] - r["time"] for x in nodes for r in in_window(x, "received_at", fleet.window)]
    arriving = [arrival_rate(x, fleet.window) for x in nodes]
    onboarding = [x.onboarding_s for x in nodes]
    chips = meter.chip_peaks()
    p = ROW % n
    rows = [
        (p + "power-on to all onboarded (mapping confirmed, sampling every %d s; %d phones)"
         % (INTERVAL_S, fleet.phones), "%.1f" % (max(x.streaming_at for x in nodes) - fleet.powered_at), "s"),
        (p + "one board's onboarding, phone's scan to sampling (median)", "%.1f" % statistics.median(onboarding), "s"),
        (p + "one board's onboarding, phone's scan to sampling (slowest)", "%.1f" % max(onboarding), "s"),
        (p + "one board's provisioning, phone start to Wi-Fi connected (median)",
         "%.1f" % statistics.median(x.provisioned_at - x.phone_at for x in nodes), "s"),
        (p + "readings/s delivered (stored, taken within the %.0f s window; %d/s asked)"
         % (span, n // INTERVAL_S), "%.1f" % (taken / span), "readings/s"),
        (p + "readings/s arriving (each board's first to last message in the window, summed)",
         "%.1f" % sum(arriving) if None not in arriving else "-", "readings/s"),
        (p + "a reading's age when stored, taken to stored (median; 10 s flash batches)",
         _seconds(ages, statistics.median), "s"),
        (p + "a reading's age when stored (oldest)", _seconds(ages, max), "s"),
        (p + "readings taken in all (the boards' last seq)", "%d" % sum(x.last_seq for x in nodes), ""),
        (p + "lost readings (taken, not in the cloud)", "%d" % sum(lost(x) for x in nodes), ""),
        (p + "duplicates kept", "%d" % sum(duplicates_kept(x) for x in nodes), ""),
        (p + "resends the cloud discarded (kept once)", "%d" % sum(x.stats["duplicates"] for x in nodes), ""),
        (p + "board reboots", "%d" % sum(x.board.boots - 1 for x in nodes), ""),
        (p + "boards whose console logged an error", "%d" % sum(bool(x.console_errors()) for x in nodes), ""),
        (p + "peak host memory, RSS of this process + %d chips + Mosquitto" % n, _mib(meter.peak_rss), "MiB"),
        (p + "peak host memory, the same with shared pages counted once (PSS)", _mib(meter.peak_pss), "MiB"),
        (p + "one chip process's peak RSS (median)", _mib(statistics.median(chips)), "MiB"),
        (p + "one chip process's peak RSS (largest)", _mib(max(chips)), "MiB"),
        (p + "Mosquitto's peak RSS", _mib(meter.peak_by_key.get("mosquitto", 0)), "MiB"),
        (p + "this process's peak RSS (cloud, board supervisors, phones)", _mib(meter.peak_by_key["host"]), "MiB"),
        (p + "this process's threads (peak)", "%d" % meter.peak_threads, ""),
        (p + "this process's open files (peak)", "%d" % meter.peak_files, ""),
    ]
    for phase, (machine, by) in zip(("onboarding", "streaming"), cpu):
        rows.append((p + "CPU busy while %s, all %d cores" % (phase, os.cpu_count()), "%.0f" % (machine * 100), "%"))
        rows.append((p + "CPU while %s: chips (this process, Mosquitto), of one core" % phase,
                     "%.0f" % (by["chips"] * 100), "%% (%.0f%%, %.0f%%)" % (by["host"] * 100, by["mosquitto"] * 100)))
    return rows


def run_fleet(directory, boards, window=WINDOW_S, phones=None, log=None):
    """The whole story in `directory`: (rows, the fleet), the fleet stopped and its cloud too.
    Raises FleetError if a board does not onboard or stop."""
    open_files_for(boards)
    cloud = LocalCloud(Path(directory) / "cloud").start()
    fleet = meter = None
    try:
        fleet = Fleet(directory, cloud, boards, phones=phones, log=log)
        fleet.manufacture()
        meter = HostMeter(fleet.processes).start()
        cpu = CpuMark(fleet.processes)
        fleet.power_on()
        fleet.onboard_all()
        onboarding_cpu = cpu.since()
        cpu = CpuMark(fleet.processes)
        fleet.stream(window)
        streaming_cpu = cpu.since()
        fleet.stop_sampling()
        fleet.collect()
        meter.stop()
        meter.check()
        return figures(fleet, meter, (onboarding_cpu, streaming_cpu)), fleet
    finally:
        if meter:
            meter.stop()
        if fleet:
            fleet.stop()
        cloud.stop()


def run(rows, boards=50, window=WINDOW_S):
    """make bench's entry: the fleet's rows appended to `rows`."""
    with tempfile.TemporaryDirectory() as d:
        rows += run_fleet(d, boards, window)[0]


def main():
    ap = argparse.ArgumentParser(prog="python -m tests.bench.fleet", description=__doc__.split("\n\n")[0])
    ap.add_argument("--boards", type=int, default=50)
    ap.add_argument("--window", type=int, default=WINDOW_S, help="seconds of streaming measured")
    ap.add_argument("--phones", type=int, default=None,
                    help="boards onboarded at a time (default %d per core)" % PHONES_PER_CORE)
    ap.add_argument("-v", "--verbose", action="store_true", help="each board's progress on stderr")
    args = ap.parse_args()
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if args.verbose else None
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        rows, _ = run_fleet(d, args.boards, args.window, args.phones, log)
    print_table(rows)
    print("(run time %.0f s)" % (time.monotonic() - started))


if __name__ == "__main__":
    main()
