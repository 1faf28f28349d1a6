"""Power-cut harness (CPython): cut the chip's power at seeded random instants and
check after every cut that each record holds its last acknowledged value or the
value that was being written, never a mix, garbage, or a lost acknowledged value.

The harness only knows the chip through `start_chip(image, mode, start)`, which
powers up a chip on the flash image `image` and returns it as a running process
(a `subprocess.Popen` with text stdout and stderr) speaking the line protocol of
tests/faults/scenario_store.py. Modes: "check" (boot, print the STATE lines and
READY, stop) and "run" (boot, check, then write until the power is cut; `start` is
the lowest counter to use). `board_chip` starts the simulated board's chip
(tools/sim/chip/rom.py) on an image that `prepare_board` filled with the firmware and
the scenario as main.py, exactly as a deploy does.
Each cut is a SIGKILL of that process at a seeded random instant.
tests/faults/test_outbox_power_cut.py uses the same board, plug and lanes for the
telemetry outbox, with its power cut before each flash operation in turn instead.

Usage: `python -m tests.faults.powercut [CUTS] [SEED]` or through pytest
(tests/faults/test_power_cut.py).
"""
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from firmware import records  # noqa: E402  (pure data: the schema the chip uses)

SCENARIO = Path(__file__).with_name("scenario_store.py")
FACTORY = "factory"
KEPT_BY_RESET = (FACTORY,) + records.RESET_KEEPS
IMAGE_SIZE = 0x200000


# main.py of the board under test: the scenario, in the mode the harness asks for.
_MAIN = """import os
import scenario_store
mode, start = (os.getenv("ROOST_SCENARIO") or "check 0").split()
if mode == "check":
    print("READY", scenario_store.check("/")[1])
else:
    scenario_store.run("/", int(start))
"""


def prepare_board(image, staging, scenario=SCENARIO, main=_MAIN):
    """A new board: erased flash, then the firmware (.mpy) with the scenario beside it and
    `main` as main.py, written by the same deploy step as `roost deploy --image`."""
    import shutil
    from tools import deploy
    Path(image).write_bytes(b"\xff" * IMAGE_SIZE)
    shutil.copytree(deploy.build(mpy=True), staging, dirs_exist_ok=True)
    Path(staging, "main.py").write_text(main)
    shutil.copyfile(scenario, Path(staging, Path(scenario).name))
    deploy.files_to_image(image, staging)


def board_chip(image, mode, start=0):
    """Power on the simulated board's chip (tools/sim/chip/rom.py: mount the flash, boot.py,
    main.py) on `image`, with an ESP32_GENERIC's RAM, running the scenario in `mode`; a power
    cut is a SIGKILL of it."""
    from tools.sim.board import INITIAL_HEAP, chip_command, chip_env, micropython_binary
    env = chip_env(ROOST_FLASH=str(image), ROOST_SCENARIO="%s %d" % (mode, start),
                   ROOST_AIR="127.0.0.1:9", ROOST_ROMFS="", ROOST_RAM="esp32")
    return subprocess.Popen(
        chip_command(micropython_binary(), INITIAL_HEAP),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env)


class Counters:
    """Counts kept per lane, added up at the end (every attribute a number or a list)."""

    def add(self, other):
        for k, v in vars(other).items():
            setattr(self, k, getattr(self, k) + v)


class Report(Counters):
    def __init__(self):
        self.cuts = 0            # SIGKILLs delivered
        self.boot_cuts = 0       # ... of which landed before the boot check finished
        self.boots = 0           # boots whose state was fully checked
        self.corrupt = 0         # records found in a state not allowed
        self.fallbacks = 0       # records loaded from the backup copy
        self.interrupted = 0     # "write was interrupted" warnings at boot
        self.errors = 0          # ERROR lines from the store at boot
        self.acks = 0
        self.resets = 0          # factory resets acknowledged
        self.latency_us = []     # store call latency measured inside the chip
        self.problems = []       # first few corrupt findings, for the failure message

    def summary(self):
        lat = sorted(self.latency_us)

        def pct(p):
            return lat[min(len(lat) - 1, int(len(lat) * p))] if lat else 0
        mean = sum(lat) / len(lat) if lat else 0
        return ("powercut: cuts=%d boot_cuts=%d checked_boots=%d corrupt=%d fallbacks_to_backup=%d "
                "interrupted_writes=%d store_errors=%d acks=%d resets=%d "
                "set_us mean=%.0f p50=%d p99=%d max=%d"
                % (self.cuts, self.boot_cuts, self.boots, self.corrupt, self.fallbacks,
                   self.interrupted, self.errors, self.acks, self.resets,
                   mean, pct(0.5), pct(0.99), lat[-1] if lat else 0))


class Expectation:
    """What the flash may hold: per record the last acknowledged n ('NONE' if never
    written) and the n of a write in flight; or a factory reset in flight."""

    def __init__(self):
        self.known = {}
        self.pending = {}
        self.reset_pending = False
        self.top = 0

    def check_boot(self, states, report):
        """states: {record: (observed, source)} from one boot. Returns problem strings."""
        bad = []
        for rec, (got, src) in states.items():
            known = self.known.get(rec, "NONE")
            allowed = {known}
            if rec in self.pending:
                allowed.add(self.pending[rec])
            if self.reset_pending and rec not in KEPT_BY_RESET:
                allowed.add("NONE")
            if got == "BAD" or got not in allowed:
                bad.append("%s=%s (%s) allowed=%s" % (rec, got, src, sorted(allowed)))
            if src == "backup":
                report.fallbacks += 1
        if self.reset_pending and not bad:
            # all or nothing: either no runtime record was erased or all were
            held = [r for r, (got, _) in states.items()
                    if r not in KEPT_BY_RESET and self.known.get(r, "NONE") != "NONE"]
            kept = [r for r in held if states[r][0] == self.known[r]]
            if kept and len(kept) != len(held):
                bad.append("half-done factory reset: kept %s of %s" % (kept, held))
        # The flash is the truth from now on.
        self.known = {rec: got for rec, (got, _) in states.items()}
        self.pending = {}
        self.reset_pending = False
        return bad

    def feed(self, kind, rec, n, report):
        self.top = max(self.top, int(n) + 1)
        if kind == "WRITE":
            if rec == "reset":
                self.reset_pending = True
            else:
                self.pending[rec] = n
        elif rec == "reset":
            self.reset_pending = False
            self.known = {r: (v if r in KEPT_BY_RESET else "NONE") for r, v in self.known.items()}
            self.pending = {}
            report.resets += 1
        else:
            self.known[rec] = n
            self.pending.pop(rec, None)


def _parse(lines, exp, report):
    """Apply one chip run's output. Returns True if its boot check was complete."""
    states = {}
    ready = False
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        tag = parts[0]
        if tag == "STATE" and len(parts) == 4:
            states[parts[1]] = (parts[2], parts[3])
        elif tag == "READY":
            ready = True
            bad = exp.check_boot(states, report)
            report.boots += 1
            report.corrupt += len(bad)
            report.problems.extend(bad[:max(0, 5 - len(report.problems))])
        elif tag in ("WRITE", "ACK") and len(parts) >= 3:
            if tag == "ACK" and len(parts) < 4:
                continue  # cut while printing the ACK: stays pending
            exp.feed(tag, parts[1], parts[2], report)
            if tag == "ACK":
                report.acks += 1
                report.latency_us.append(int(parts[3]))
        elif "ERROR store:" in line:
            report.errors += 1
        elif "write was interrupted" in line:
            report.interrupted += 1
        elif tag in ("MOUNTFAIL", "EXC"):
            report.corrupt += 1
            report.problems.append(line.strip())
    return ready


def _finish(proc):
    out = proc.stdout.read()
    err = proc.stderr.read() if proc.stderr else ""
    proc.wait()
    return out, err


def read_until(proc, tag, lines):
    """Read the chip's output into `lines` up to and including the first line starting with
    `tag`; False if the chip stopped before printing one."""
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(tag):
            return True
    return False


def pull_plug(proc, lines):
    """Cut the chip's power (SIGKILL) and add the rest of its output to `lines`. Raises if
    the chip had already exited by itself: the cut then tested nothing."""
    proc.send_signal(signal.SIGKILL)
    out, err = _finish(proc)
    lines.extend(out.splitlines())
    if proc.returncode != -signal.SIGKILL:
        raise RuntimeError("chip exited by itself (%s):\n%s\n%s"
                           % (proc.returncode, "\n".join(l.rstrip() for l in lines[-20:]), err))


def run_lane(image, cuts, seed, start_chip=board_chip, max_delay=0.08, boot_cut_rate=0.1):
    """Cut the power `cuts` times on one board's flash image; return a Report."""
    rng = random.Random(seed)
    report = Report()
    exp = Expectation()
    prepare_board(image, Path(str(image) + ".staging"))
    for _ in range(cuts):
        proc = start_chip(image, "run", exp.top)
        lines = []
        if rng.random() < boot_cut_rate:
            time.sleep(rng.uniform(0, 0.03))          # anywhere, boot included
        else:
            read_until(proc, "READY", lines)          # after the boot check
            time.sleep(rng.uniform(0, max_delay))
        pull_plug(proc, lines)
        report.cuts += 1
        if not _parse(lines, exp, report):
            report.boot_cuts += 1
    out, err = _finish(start_chip(image, "check"))     # a last boot, not cut
    if not _parse(out.splitlines(), exp, report):
        raise RuntimeError("final check did not complete:\n%s%s" % (out, err))
    return report


def in_lanes(lanes, work):
    """work(i) for each lane i, all in parallel threads (each lane is its own chip process
    at a time); returns their results in lane order, or raises the first lane's error."""
    results = [None] * lanes
    errors = []

    def lane(i):
        try:
            results[i] = work(i)
        except Exception as e:  # reported below, in the caller's thread
            errors.append(e)
    threads = [threading.Thread(target=lane, args=(i,)) for i in range(lanes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def run_powercuts(cuts, seed, workdir, lanes=2, start_chip=board_chip, **kw):
    """Spread `cuts` over `lanes` images run in parallel; return the merged Report."""
    def lane(i):
        n = cuts // lanes + (1 if i < cuts % lanes else 0)
        return run_lane(Path(workdir) / ("flash%d.img" % i), n, seed * 1000 + i, start_chip, **kw)
    total = Report()
    for r in in_lanes(lanes, lane):
        total.add(r)
    return total


def main(argv):
    import tempfile
    cuts = int(argv[1]) if len(argv) > 1 else int(os.environ.get("ROOST_POWERCUTS", "300"))
    seed = int(argv[2]) if len(argv) > 2 else int(os.environ.get("ROOST_POWERCUT_SEED", "1"))
    with tempfile.TemporaryDirectory() as d:
        t = time.time()
        r = run_powercuts(cuts, seed, d)
        print(r.summary(), "seed=%d seconds=%.1f" % (seed, time.time() - t))
        for p in r.problems:
            print("  ", p)
    return 1 if r.corrupt else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
