"""Power cuts at every flash operation of the telemetry outbox (firmware/telemetry/outbox.py).

tests/faults/scenario_outbox.py runs on the simulated board (deployed and started by
tests/faults/powercut.py, as the store's harness does) and counts flash operations: a
256-byte page program or a 4 KB erase. A dry run gives the number of operations N of the
whole scenario; then, for every k < N, a fresh board runs the scenario with the power cut
before operation k (the chip says CUT and is SIGKILLed), boots again and reports what its
outbox holds. Where that boot itself wrote to flash (a repair: a torn store record, an
empty segment, a spent segment not yet deleted), it is cut too, before each of its
operations, and the board boots once more. Every boot is checked against what the run had
promised before the cut (see `check`).

ROOST_OUTBOX_CUTS=N cuts at N operations spread evenly over the run instead of at all of
them (a quick look); the cut points are deterministic either way.
"""
import os
import shutil
import time
from pathlib import Path

from tests.faults import powercut

SCENARIO = Path(__file__).with_name("scenario_outbox.py")
SINKS = ("mqtt", "thingspeak")
MAIN = """import os
import scenario_outbox
mode, cut = (os.getenv("ROOST_SCENARIO") or "check -1").split()
getattr(scenario_outbox, mode)(int(cut))
"""


def _tagged(lines):
    """(words, line) for each non-blank line of the chip's output."""
    for line in lines:
        p = line.split()
        if p:
            yield p, line


class Promises:
    """What the run had promised when the power went, from its output."""

    def __init__(self, lines):
        self.stored = set()                     # seqs whose flush() returned
        self.cursor = dict.fromkeys(SINKS, 0)   # per sink: its last ack() that returned
        self.started = dict.fromkeys(SINKS, 0)  # per sink: the highest ack() called
        self.dropped = 0
        self.acked = 0
        self.inflight = None                    # ("flush", first, last) or ("ack", sink, seq)
        self.cut = self.done = None
        for p, _ in _tagged(lines):
            if p[0] == "FLUSH":
                self.inflight = ("flush", int(p[1]), int(p[2]))
            elif p[0] == "FLUSHED":
                first, last, self.dropped, self.acked, mqtt, ts = map(int, p[1:7])
                self.stored.update(range(first, last + 1))
                self.cursor = {"mqtt": mqtt, "thingspeak": ts}   # a drop moves them
                self.inflight = None
            elif p[0] == "ACK":
                self.inflight = ("ack", p[1], int(p[2]))
                self.started[p[1]] = max(self.started[p[1]], int(p[2]))
            elif p[0] == "ACKED":
                self.cursor[p[1]] = int(p[2])
                self.dropped, self.acked = int(p[3]), int(p[4])
                self.inflight = None
            elif p[0] == "CUT":
                self.cut = int(p[1])
            elif p[0] == "DONE":
                self.done = int(p[1][1:])


def parse_boot(lines):
    """A check boot's report: {"bootops", "state", "cursor", "pending", "bad", "files", ...}."""
    b = {"cursor": {}, "pending": {}, "bad": [], "exc": [], "works": None, "ready": False,
         "bootops": None, "state": None, "files": None,
         "damaged": 0, "store_errors": 0}
    for p, line in _tagged(lines):
        if p[0] == "BOOTOPS":
            b["bootops"] = int(p[1])
        elif p[0] == "STATE":
            b["state"] = tuple(map(int, p[1:4]))
        elif p[0] == "CURSOR":
            b["cursor"][p[1]] = int(p[2])
        elif p[0] == "PENDING":
            seqs = []
            for r in p[2].split(",") if p[2] != "-" else ():
                a, z = map(int, r.split("-"))
                seqs.extend(range(a, z + 1))
            b["pending"][p[1]] = seqs
        elif p[0] == "BADREC":
            b["bad"].append(line.strip())
        elif p[0] == "FILES":
            b["files"] = [] if p[1] == "-" else [f.split(":") for f in p[1].split(",")]
        elif p[0] == "WORKS":
            b["works"] = " ".join(p[1:])
        elif p[0] == "EXC":
            b["exc"].append(line.strip())
        elif p[0] == "READY":
            b["ready"] = True
        elif "WARN outbox: segment" in line:
            b["damaged"] += 1
        elif "ERROR store:" in line:
            b["store_errors"] += 1
    return b


def check(pr, b):
    """Problems with boot `b` after a run that promised `pr`; [] if it keeps every promise."""
    bad = list(b["exc"]) + list(b["bad"])
    if not b["ready"] or b["state"] is None or set(b["pending"]) != set(SINKS):
        return bad + ["the boot's report is incomplete (READY, STATE or PENDING missing)"]
    next_seq, acked, dropped = b["state"]
    # 5. dropped never decreases; a drop happens only inside flush(), and it removes the
    # oldest readings the slowest sink had not delivered: acked+1 .. acked+D, all stored.
    d = dropped - pr.dropped
    top = 0     # every seq up to here was dropped by the cut flush (0: nothing dropped)
    if d < 0:
        bad.append("5. dropped went back from %d to %d" % (pr.dropped, dropped))
    elif d and (pr.inflight or ("",))[0] != "flush":
        bad.append("5. dropped grew by %d with no flush in flight (%r)" % (d, pr.inflight))
    elif d:
        top = pr.acked + d
        unstored = sorted(set(range(pr.acked + 1, top + 1)) - pr.stored)
        if unstored:
            bad.append("5. %d counted as dropped but seqs %s..%s were never stored"
                       % (d, unstored[0], unstored[-1]))
    if acked < max(pr.acked, top):
        bad.append("3. acked %d is behind the promised %d" % (acked, max(pr.acked, top)))
    for sink in SINKS:
        cur, pend = b["cursor"][sink], b["pending"][sink]
        held = set(pend)
        # 3. the cursor is at least the last ack() that returned (or the drop that moved it)
        # and at most the last ack() called (or the drop): never backwards, never invented.
        lo = max(pr.cursor[sink], top)
        hi = max(pr.started[sink], top, pr.cursor[sink])
        if not lo <= cur <= hi:
            bad.append("3. %s: cursor %d, allowed %d..%d" % (sink, cur, lo, hi))
        # 2. pending(): strictly increasing, nothing at or below the sink's cursor (the one
        # it has now, nor the one it was promised), nothing that was never added.
        if any(a >= z for a, z in zip(pend, pend[1:])):
            bad.append("2. %s: pending() not strictly increasing: %s" % (sink, pend))
        if pend and pend[0] <= max(cur, pr.cursor[sink]):
            bad.append("2. %s: pending() starts at %d, at or below the cursor %d (promised %d)"
                       % (sink, pend[0], cur, pr.cursor[sink]))
        flushing = set()
        if pr.inflight and pr.inflight[0] == "flush":
            flushing = set(range(pr.inflight[1], pr.inflight[2] + 1))
        invented = sorted(held - pr.stored - flushing)
        if invented:
            bad.append("2. %s: pending() holds seqs never added: %s" % (sink, invented[:10]))
        # 1. every stored reading above the cursor is still there (value and time: BADREC).
        lost = sorted(s for s in pr.stored if s > cur and s not in held)
        if lost:
            bad.append("1. %s: %d stored readings lost: %s" % (sink, len(lost), lost[:10]))
        # 5. readings gone for a sink (stored, above its promised cursor, not pending) are
        # its own ack in flight or the drop, exactly: for the slowest sink, all D dropped.
        own = pr.inflight[2] if pr.inflight and pr.inflight[:2] == ("ack", sink) else 0
        gone = {s for s in pr.stored if s > pr.cursor[sink] and s not in held and s > own}
        if any(s > top for s in gone):
            bad.append("5. %s: readings gone without being dropped or acknowledged: %s"
                       % (sink, sorted(s for s in gone if s > top)[:10]))
        if d > 0 and pr.cursor[sink] == pr.acked and len(gone) != d:
            bad.append("5. %s: %d dropped counted, %d of its readings gone" % (sink, d, len(gone)))
    # 4. no seq that was promised stored (or still is on flash) is given out again.
    used = max(pr.stored | set(b["pending"]["mqtt"]) | set(b["pending"]["thingspeak"]) | {acked})
    if next_seq <= used:
        bad.append("4. next_seq %d would reuse seq %d" % (next_seq, used))
    # 6. the outbox works on: add, flush, pending, ack, reboot; no stray or torn file left.
    if b["works"] != "ok":
        bad.append("6. after the reboot: %s" % b["works"])
    for name, size in b["files"] or ():
        if len(name) != 8 or int(size) % 20:
            bad.append("6. /outbox/%s: %s bytes" % (name, size))
    return bad


class Tally(powercut.Counters):
    def __init__(self):
        self.cuts = 0           # cuts during the run, each followed by a checked boot
        self.boot_cuts = 0      # cuts during a boot's repair, then one more checked boot
        self.repairs = 0        # boots after a run cut that wrote to flash
        self.in_flush = 0       # run cuts with a flush in flight
        self.in_ack = 0         # ... with an ack in flight
        self.in_drop = 0        # boots that found the cut flush's drop already counted
        self.damaged = 0        # "segment damaged" warnings at boot
        self.store_errors = 0
        self.problems = []

    def summary(self):
        return ("outbox powercut: run_cuts=%d (flush %d, ack %d) boot_cuts=%d repairing_boots=%d "
                "drops_in_flight=%d damaged_segments=%d store_errors=%d problems=%d"
                % (self.cuts, self.in_flush, self.in_ack, self.boot_cuts, self.repairs,
                   self.in_drop, self.damaged, self.store_errors, len(self.problems)))


def _chip(image, mode, cut, tag=None):
    """Run the chip in `mode`; with `tag`, pull the plug once it prints a line starting with
    it (None if it never does). Returns the output lines."""
    proc = powercut.board_chip(image, mode, cut)
    if tag is None:
        out, err = powercut._finish(proc)
        return out.splitlines() + err.splitlines()
    lines = []
    if not powercut.read_until(proc, tag, lines):
        out, err = powercut._finish(proc)
        raise RuntimeError("%s %d: no %s line; not deterministic?\n%s%s%s"
                           % (mode, cut, tag, "".join(lines[-20:]), out[-2000:], err[-2000:]))
    powercut.pull_plug(proc, lines)
    return lines


def _boot(image, pr, tally, where):
    b = parse_boot(_chip(image, "check", -1))
    tally.damaged += b["damaged"]
    tally.store_errors += b["store_errors"]
    for p in check(pr, b):
        tally.problems.append("%s: %s" % (where, p))
    return b


def cut_at(template, image, k, tally):
    """Cut the run before flash operation k, then boot (cut again inside its repair)."""
    shutil.copyfile(template, image)
    pr = Promises(_chip(image, "run", k, "CUT"))
    tally.cuts += 1
    tally.in_flush += bool(pr.inflight and pr.inflight[0] == "flush")
    tally.in_ack += bool(pr.inflight and pr.inflight[0] == "ack")
    snapshot = str(image) + ".cut"
    shutil.copyfile(image, snapshot)
    b = _boot(image, pr, tally, "cut at op %d (%r)" % (k, pr.inflight))
    if b["state"] and b["state"][2] > pr.dropped:
        tally.in_drop += 1
    for j in range(b["bootops"] or 0):
        tally.repairs += j == 0
        shutil.copyfile(snapshot, image)
        _chip(image, "check", j, "CUT")
        tally.boot_cuts += 1
        _boot(image, pr, tally, "cut at op %d (%r), then at op %d of the boot" % (k, pr.inflight, j))


def run_outbox_powercuts(workdir, lanes=2, cuts=None):
    """Cut at every flash operation of the scenario (or at `cuts` of them, evenly spread);
    returns (Tally, operations in the whole run)."""
    workdir = Path(workdir).resolve()      # the chip opens its image by absolute path
    template = workdir / "template.img"
    powercut.prepare_board(template, workdir / "staging", SCENARIO, MAIN)
    dry = workdir / "dry.img"
    shutil.copyfile(template, dry)
    pr = Promises(_chip(dry, "run", -1))
    if pr.done is None:
        raise RuntimeError("the scenario did not finish without a cut")
    total = Tally()
    for p in check(pr, parse_boot(_chip(dry, "check", -1))):
        total.problems.append("no cut: " + p)
    points = range(pr.done)
    if cuts and cuts < pr.done:
        points = sorted({i * pr.done // cuts for i in range(cuts)})

    def lane(i):
        tally = Tally()
        for k in points[i::lanes]:
            cut_at(template, workdir / ("flash%d.img" % i), k, tally)
        return tally
    for t in powercut.in_lanes(lanes, lane):
        total.add(t)
    return total, pr.done


def test_outbox_keeps_its_promises_through_a_cut_at_every_flash_operation(tmp_path, capsys,
                                                                         record_property):
    cuts = int(os.environ.get("ROOST_OUTBOX_CUTS", "0")) or None
    t = time.time()
    tally, ops = run_outbox_powercuts(tmp_path, lanes=2, cuts=cuts)
    line = tally.summary() + " flash_ops=%d seconds=%.1f" % (ops, time.time() - t)
    with capsys.disabled():            # shown with or without -s
        print("\n" + line)
    record_property("outbox_powercut", line)
    assert tally.problems == [], line + "\n" + "\n".join(tally.problems[:20])
    assert tally.cuts == (cuts or ops) and ops > 500, line
    assert tally.in_flush and tally.in_ack and tally.in_drop, line     # every kind of window was cut
    assert tally.store_errors == 0, line                 # a cut alone never damages a store copy
