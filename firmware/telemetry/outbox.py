# The outbox: readings wait here, on flash, until a sink saw the cloud acknowledge them
# (docs/telemetry.md has the format, the crash reasoning and the wear budget).
#
#   box = Outbox(store, ("mqtt",))       # at boot: finds the segments, repairs a torn tail
#   seq = box.add(21.5, t, synced)       # buffered in RAM
#   box.flush()                          # appended to flash: from now on it survives a power cut
#   for r in box.pending("mqtt", 32): .. # (seq, t, synced, sensor, value), oldest first
#   box.ack("mqtt", seq)                 # that sink's cloud has everything up to seq
#
# Layout: /outbox/<first seq, 8 hex digits>, each an append-only segment of up to _SEG
# records of _REC bytes: "<IIfHH" seq, t (epoch s, or uptime s if not synced), value,
# flags (bit 0: t is epoch; bits 8..15: sensor index), then a CRC-32 of those 16 bytes.
# LittleFS commits an append when the file is closed, so a cut mid-append leaves the
# segment as it was; a record that still fails its CRC (a damaged block) ends the segment.
# Each sink (a cloud the readings go to) has its own cursor: every seq up to it reached that
# cloud. The store's `cursor` record keeps them ({"sinks": {name: seq}}) and their minimum,
# `seq`: every reading up to it is done, so its segments can go. When the outbox is full the
# oldest segment is dropped and the readings some sink had not got yet are counted in
# cursor.dropped and logged, never silently.
import os
import struct

from micropython import const

import log

try:
    from binascii import crc32
except ImportError:     # a port without it: the store has the same function in Python
    from firmware.store import _crc32_py as crc32

_DIR = "/outbox"
_REC = const(20)
_BODY = "<IIfHH"
_SEG = const(128)             # records per segment: 2560 bytes, within one 4 KB block
_SYNCED = const(1)
_READ = const(16)             # records read from flash at a time


def sinks(store):
    """The clouds readings go to: MQTT with a bootstrap server, ThingSpeak once somebody typed a
    registration key (until then no reading waits for it); the factory's `sinks` may narrow
    that down. (Here, not in app.py: the app module stays resident through provisioning.)"""
    f = store.factory
    out = []
    if f["endpoints"]["bootstrap"]:
        out.append("mqtt")
    if f["endpoints"]["thingspeak"] and f["endpoints"]["registration"] and store.get("regkey")["key"]:
        out.append("thingspeak")
    return [s for s in out if s in f["sinks"]] if f["sinks"] else out


class Outbox:
    def __init__(self, store, sinks, root="", capacity=96 * _SEG):
        """sinks: the names of the clouds readings go to. A sink's stored cursor is kept; a
        new one starts at the oldest reading still stored; one no longer named is forgotten."""
        self.store = store
        self.dir = root + _DIR
        self.capacity = max(capacity, 2 * _SEG)
        # The segments, oldest first: their first seqs and record counts. Two lists of small
        # ints, not a list per segment: a full outbox (96) is then ~1 KB of heap, not ~7 KB.
        self._firsts = []
        self._counts = []
        self._buf = bytearray()
        cur = store.get("cursor")
        self.acked = cur["seq"]     # every reading up to here is done: delivered to every sink
        self.dropped = cur.get("dropped", 0)
        known = cur.get("sinks") or {}
        self.cursors = {}
        for name in sinks:
            self.cursors[name] = max(known.get(name, 0), self.acked)
        if self.cursors:        # a sink no longer named held readings the others had
            self.acked = min(self.cursors.values())
        try:
            os.mkdir(self.dir)
        except OSError:
            pass
        last = 0
        for name in sorted(os.listdir(self.dir)):
            try:
                first = int(name, 16)
            except ValueError:      # a repair cut short (<seg>.new): the segment itself is intact
                os.remove(self.dir + "/" + name)
                continue
            n = self._check(first)
            if n:
                self._firsts.append(first)
                self._counts.append(n)
                last = first + n - 1
        self.next_seq = max(last, self.acked) + 1
        self.first_seq_this_boot = self.next_seq     # older readings' uptimes mean nothing now
        self._trim_acked()

    # -- what the sinks and the app see --

    def __len__(self):
        """Readings some sink has not delivered yet, stored or buffered."""
        stored = sum(self._counts) - (self._done(self._firsts[0], self._counts[0]) if self._firsts else 0)
        return stored + len(self._buf) // _REC

    def attach(self, sink):
        """A sink that starts now (a registration key was typed): it gets every reading still
        stored, and holds the ones it has not delivered from now on."""
        if sink not in self.cursors:
            self.cursors[sink] = self.acked

    def buffered(self):
        return len(self._buf) // _REC

    def add(self, value, t, synced, sensor=0):
        seq = self.next_seq
        self.next_seq += 1
        body = struct.pack(_BODY, seq, int(t), value, (_SYNCED if synced else 0) | (sensor << 8), 0)
        self._buf += body + struct.pack("<I", crc32(body) & 0xFFFFFFFF)
        return seq

    def flush(self):
        """Append the buffered readings to flash. After it returns they survive a power cut."""
        buf = self._buf
        firsts, counts = self._firsts, self._counts
        i = 0
        try:
            while i < len(buf):
                seq = struct.unpack_from("<I", buf, i)[0]
                if not (firsts and counts[-1] < _SEG and firsts[-1] + counts[-1] == seq):
                    firsts.append(seq)
                    counts.append(0)
                take = min(_SEG - counts[-1], (len(buf) - i) // _REC)
                with open(self._path(firsts[-1]), "ab") as f:
                    f.write(memoryview(buf)[i:i + take * _REC])
                counts[-1] += take
                i += take * _REC
        finally:
            # What reached flash leaves the batch even if the rest failed (flash full, no
            # heap): the next flush must not append it twice.
            if counts and not counts[-1]:
                firsts.pop()
                counts.pop()
            self._buf = buf[i:] if i < len(buf) else bytearray()
        self._enforce_capacity()

    def pending(self, sink, limit):
        """Up to `limit` stored readings the sink has not delivered, oldest first:
        [(seq, t, synced, sensor, value)]."""
        return list(self.readings(sink, limit))

    def readings(self, sink, limit):
        """pending() one reading at a time: a big batch never sits in the heap as a list.
        The outbox must not change until the iteration ends."""
        after = self.cursors[sink]
        buf = bytearray(_READ * _REC)   # small and fixed: no segment-sized block in the heap
        for k in range(len(self._firsts)):     # none is wholly done: _trim_acked removes those
            first, n = self._firsts[k], self._counts[k]
            if first + n - 1 <= after:
                continue
            skip = max(after + 1 - first, 0)     # records are in seq order, one per seq
            with open(self._path(first), "rb") as f:
                f.seek(skip * _REC)
                left = n - skip
                while left > 0:
                    got = f.readinto(buf) // _REC
                    if not got:
                        break
                    for off in range(0, min(got, left) * _REC, _REC):
                        seq, t, value, flags, _ = struct.unpack_from(_BODY, buf, off)
                        yield seq, t, bool(flags & _SYNCED), flags >> 8, value
                        limit -= 1
                        if limit <= 0:
                            return
                    left -= got

    def ack(self, sink, seq):
        """The sink's cloud has every reading up to seq: persist the cursors, drop spent segments."""
        if seq <= self.cursors[sink]:
            return
        self.cursors[sink] = seq
        self.acked = max(self.acked, min(self.cursors.values()))
        self._save()
        self._trim_acked()

    # -- internals --

    def _save(self):
        self.store.update("cursor", seq=self.acked, dropped=self.dropped, sinks=self.cursors)

    def _path(self, first):
        return "%s/%08x" % (self.dir, first)

    def _done(self, first, n):
        """How many of a segment's n readings are done (at or below the cursor)."""
        return min(max(self.acked - first + 1, 0), n)

    def _trim_acked(self):
        while self._firsts and self._done(self._firsts[0], self._counts[0]) == self._counts[0]:
            self._counts.pop(0)
            first = self._firsts.pop(0)
            os.remove(self._path(first))

    def _enforce_capacity(self):
        while sum(self._counts) > self.capacity and len(self._firsts) > 1:
            first, n = self._firsts[0], self._counts[0]
            lost = n - self._done(first, n)
            if lost:
                # Count the drop and move the cursors past the segment *before* deleting it.
                # The other order lost readings uncounted: a power cut between the delete
                # and the save left them gone and the stored cursor, `dropped` included, as
                # before (tests/faults/test_outbox_power_cut.py). This way a cut leaves a
                # segment the cursor has passed, which the next boot deletes (_trim_acked).
                self.dropped += lost
                self.acked = max(self.acked, first + n - 1)
                for name in self.cursors:
                    self.cursors[name] = max(self.cursors[name], self.acked)
                self._save()
                log.warning("outbox", "outbox full: dropped %d oldest readings (%d in all)" % (
                    lost, self.dropped))
            self._firsts.pop(0)
            self._counts.pop(0)
            os.remove(self._path(first))

    def _check(self, first):
        """Valid records at the start of a segment; a damaged tail is cut off (rewritten)."""
        # Read a few records at a time: a whole segment read per segment at boot would leave
        # the heap in 2.5 KB holes between the lists above, too small for the buffers the
        # cloud phase allocates next (seen with a full outbox).
        path = self._path(first)
        buf = bytearray(_READ * _REC)
        mv = memoryview(buf)
        n = size = 0
        good = True
        with open(path, "rb") as f:
            while True:
                got = f.readinto(buf)
                if not got:
                    break
                size += got
                for off in range(0, got - _REC + 1, _REC) if good else ():
                    ok = struct.unpack_from("<I", buf, off + 16)[0] == crc32(mv[off:off + 16]) & 0xFFFFFFFF
                    if not ok or struct.unpack_from("<I", buf, off)[0] != first + n:
                        good = False
                        break
                    n += 1
        if n * _REC != size:
            log.warning("outbox", "segment %08x: damaged after %d readings; cut there" % (first, n))
            if n:
                with open(path, "rb") as f, open(path + ".new", "wb") as out:
                    left = n * _REC
                    while left:
                        got = f.readinto(mv[:min(left, len(buf))])
                        out.write(mv[:got])
                        left -= got
                os.rename(path + ".new", path)
        if not n:
            os.remove(path)
        return n
