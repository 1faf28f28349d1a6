# Chip-side power-cut scenario for firmware/telemetry/outbox.py (MicroPython).
#
# The flash is remounted with every flash operation counted (one 256-byte page program,
# or one 4 KB sector erase) and the power cut before operation number `cut`: the chip
# prints CUT and hangs until the harness SIGKILLs it. The flash then holds exactly the
# operations before the cut. The scenario is deterministic, so operation n is the same
# flash operation in every run from the same image.
#
# "run <cut>"    on a fresh filesystem: readings, flushes of 1 and of 16, acks of two sinks
#                (thingspeak lags), twice past capacity. Prints what was promised:
#   FLUSH <first> <last> @<op>                 about to flush the buffered readings first..last
#   FLUSHED <first> <last> <dropped> <acked> <mqtt cursor> <thingspeak cursor> @<op>
#                                              flush() returned: first..last are stored
#   ACK <sink> <seq> @<op>                     about to ack
#   ACKED <sink> <seq> <dropped> <acked> @<op> ack() returned
#   DONE @<op>                                 the whole run, no cut (cut < 0 or past the end)
# "check <cut>"  the reboot: a new Outbox on the same filesystem (its repair cut before
#                operation `cut` of the boot, if cut >= 0), then what it holds, then proof
#                that it still works. Prints:
#   BOOTOPS <n>                                flash operations the boot (constructor) did
#   STATE <next_seq> <acked> <dropped>
#   CURSOR <sink> <seq>
#   PENDING <sink> <seqs in readings() order as ranges, e.g. 5-9,12-12 or ->
#                                              (pending() is checked to be its start)
#   BADREC <sink> <seq> <t> <synced> <sensor> <value>  a pending reading not as it was added
#   FILES <name:size,...>                      /outbox after the boot
#   WORKS ok | WORKS fail <why>                add, flush, pending, ack, reboot, pending again
#   EXC <repr>                                 anything raised (with its traceback)
#   READY
#
# It runs on the simulated board as its main.py (tests/faults/powercut.py deploys it
# beside the firmware; tests/faults/test_outbox_power_cut.py drives it).
import os
import sys
import time
import vfs

import flash
from firmware.store import Store
from firmware.telemetry.outbox import Outbox

SINKS = ("mqtt", "thingspeak")
CAPACITY = 256          # the smallest the outbox allows: two segments of 128
BD = None       # the board's flash, remounted
FLASH = None    # ... and the CutFile under it


class CutFile:
    """The flash image file under the board's block device (tools/sim/chip/flash.py), which
    writes one 256-byte page program or one 4 KB sector erase per write() call: each is
    counted, and the power goes before operation number `cut`."""

    def __init__(self, f, cut):
        self.f = f
        self.ops = 0
        self.cut = cut

    def seek(self, *args):
        return self.f.seek(*args)

    def readinto(self, buf):
        return self.f.readinto(buf)

    def write(self, buf):
        if self.ops == self.cut:
            print("CUT", self.ops)
            while True:          # the harness pulls the plug (SIGKILL) on this line
                time.sleep(1)
        self.ops += 1
        return self.f.write(buf)


def mount(cut):
    """Remount / (the board's flash, as rom.py mounted it) with its operations counted."""
    global BD, FLASH
    if BD is None:
        # rom.py hid the host's files; the flash image is one of them (an absolute path).
        vfs.mount(vfs.VfsPosix("/"), "/host")
        try:
            BD = flash.FileBlockDevice("/host" + os.getenv("ROOST_FLASH"))
        finally:
            vfs.umount("/host")
        FLASH = BD.f = CutFile(BD.f, cut)
    vfs.umount("/")
    vfs.mount(vfs.VfsLfs2(BD), "/")
    os.chdir("/")


def reading(seq):
    """(value, t, synced, sensor) of the reading the run adds as seq: exact in a float32."""
    synced = seq % 3 != 0
    return seq * 0.25 - 10, (1700000000 + 7 * seq) if synced else 1000 + seq, synced, seq % 4


def boot():
    return Outbox(Store("/"), SINKS, capacity=CAPACITY)


def _at():
    return "@%d" % FLASH.ops


def _add(box, n):
    first = box.next_seq
    for seq in range(first, first + n):
        value, t, synced, sensor = reading(seq)
        assert box.add(value, t, synced, sensor) == seq
    print("FLUSH", first, first + n - 1, _at())
    box.flush()
    c = box.cursors
    print("FLUSHED", first, first + n - 1, box.dropped, box.acked, c["mqtt"], c["thingspeak"], _at())
    return first + n - 1


def _ack(box, sink, seq):
    print("ACK", sink, seq, _at())
    box.ack(sink, seq)
    print("ACKED", sink, seq, box.dropped, box.acked, _at())


def run(cut):
    mount(cut)
    box = boot()
    last = 0
    for i in range(1, 13):                  # readings 10 s or more apart: one append each
        last = _add(box, 1)
        if i % 4 == 0:
            _ack(box, "mqtt", last)
        if i == 6:
            _ack(box, "thingspeak", 3)
    for i in range(8):                      # fast readings: batches of 16; one spans two segments
        last = _add(box, 16)
        if i % 2:
            _ack(box, "mqtt", last)
        if i == 3:
            _ack(box, "thingspeak", 60)     # thingspeak lags behind
    for i in range(9):                      # past 256 stored: segment 1 goes, thingspeak's 61..128 counted
        last = _add(box, 16)
        if i % 3 == 2:
            _ack(box, "mqtt", last)
    _ack(box, "thingspeak", 200)
    for i in range(4):
        last = _add(box, 1)
    _ack(box, "mqtt", last)
    _ack(box, "thingspeak", last)           # everything delivered: spent segments deleted
    for i in range(18):                     # mqtt lags now: past capacity again
        last = _add(box, 16)
        if i % 4 == 3:
            _ack(box, "thingspeak", last)
    _ack(box, "mqtt", last - 20)
    last = _add(box, 1)
    print("DONE", _at())


def _ranges(seqs):
    out = []
    for s in seqs:
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return ",".join("%d-%d" % (a, b) for a, b in out) or "-"


def _mark(seq):
    # What check() adds after the reboot: apart from every reading of run() (sensor 9).
    return -1.5 - seq, 42 + seq, False, 9


def _works(box):
    """Add, flush, pending, ack, reboot: the outbox goes on after the cut. Returns why not, or None."""
    first = box.next_seq
    for seq in range(first, first + 3):
        value, t, synced, sensor = _mark(seq)
        if box.add(value, t, synced, sensor) != seq:
            return "add gave an unexpected seq"
    box.flush()
    for sink in SINKS:
        tail = [r for r in box.readings(sink, 1000) if r[0] >= first]
        if [r[0] for r in tail] != [first, first + 1, first + 2]:
            return "%s: the new readings are not pending: %r" % (sink, tail)
        for seq, t, synced, sensor, value in tail:
            if (value, t, synced, sensor) != _mark(seq):
                return "%s: new reading %d came back as %r" % (sink, seq, (value, t, synced, sensor))
        box.ack(sink, first + 2)
    mount(-1)
    box = boot()
    if box.next_seq != first + 3:
        return "next_seq %d after the reboot, not %d" % (box.next_seq, first + 3)
    for sink in SINKS:
        if box.cursors[sink] != first + 2 or box.pending(sink, 10):
            return "%s: not all acknowledged after the reboot (cursor %d)" % (sink, box.cursors[sink])
    left = [n for n in os.listdir("/outbox") if len(n) != 8]
    if left:
        return "stray files in /outbox: %r" % left
    return None


def check(cut):
    mount(cut)
    try:
        box = boot()
        print("BOOTOPS", FLASH.ops)
        FLASH.cut = -1             # a cut is only ever asked for inside the boot
        print("STATE", box.next_seq, box.acked, box.dropped)
        for sink in SINKS:
            print("CURSOR", sink, box.cursors[sink])
            # All of them one at a time (a list of 300 would not fit the heap; a sink asks
            # for 32), then pending() itself, which must be their start.
            seqs = []
            for seq, t, synced, sensor, value in box.readings(sink, 1000):
                seqs.append(seq)
                if (value, t, synced, sensor) != reading(seq):
                    print("BADREC", sink, seq, t, synced, sensor, value)
            if [r[0] for r in box.pending(sink, 32)] != seqs[:32]:
                print("BADREC", sink, "pending() differs from readings()")
            print("PENDING", sink, _ranges(seqs))
        print("FILES", ",".join("%s:%d" % (n, os.stat("/outbox/" + n)[6])
                                for n in sorted(os.listdir("/outbox"))) or "-")
        why = _works(box)
        print("WORKS", "fail " + why if why else "ok")
    except Exception as e:  # noqa: the checker must report, not die
        print("EXC", repr(e))
        sys.print_exception(e)
    print("READY")
