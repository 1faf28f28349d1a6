# Delivers the outbox to the device's ThingSpeak channel with the write key self-registration
# stored (docs/telemetry.md, "ThingSpeak"): field1 the reading, field2 its seq, created_at its
# time. One reading waiting: a single update; more: one bulk update of up to _BULK.
#
# ThingSpeak takes one write per channel per 15 s (free licence): the sink waits _GAP_S after
# every write, and again after an update answered "0" (not inserted) or a bulk answered 429.
# Server errors and timeouts back off (5 s doubling to 5 min, with jitter). A batch leaves the
# outbox only once the server accepted it; a batch whose answer was lost is sent again with
# the same times, which the server takes as a replay of entries it has.
#
# created_at is unique per channel. Readings of one boot are at least 1 s apart, but one taken
# just before a reset and one just after can share a second; so can a reading and another
# writer's entry. Since the sink itself keeps 15 s between writes, an update answered "0" is
# such a clash far more often than a rate limit: that reading is sent again 1 s later each
# time, rather than holding up every reading after it.
import asyncio

from micropython import const

import log
from backoff import backoff
from firmware.telemetry.thingspeak import KeyRejected, ThingSpeakError, bulk_update, iso, update

_SINK = "thingspeak"
_BULK = const(480)          # readings per bulk update: ~33 KB of JSON, streamed, never in the heap
_SEND = const(512)          # bytes of it per write
_GAP_S = const(15)
_CLOCK_WAIT_S = const(10)
_BACKOFF_BASE_S = 5
_BACKOFF_CAP_S = 300
_UNKNOWN = ',"status":"time unknown"'


def _when(seq, t, synced, boot, first_this_boot):
    """(epoch seconds, known) of a reading: its network time; boot time + uptime for one of
    this boot taken before the clock was set; for one of an earlier boot that never had
    network time, one second apart just before this boot (not known: its status says so)."""
    if synced:
        return t, True
    if seq >= first_this_boot:
        return boot + t, True
    return boot - (first_this_boot - seq), False


def _number(v):
    return ("%.3f" % v).rstrip("0").rstrip(".")


class ThingSpeakSink:
    def __init__(self, store, outbox, sampler, ssl=None):
        self.base = store.factory["endpoints"]["thingspeak"]
        rec = store.get("registration")
        self.channel, self.key = rec["channel"], rec["write_key"]
        self.outbox = outbox
        self.sampler = sampler
        self.ssl = ssl
        self.buf = bytearray(_SEND)     # for the life of the sink: see httpc.request
        self.gap_s = _GAP_S                         # attributes, not constants: tests shorten them
        self.backoff_s = (_BACKOFF_BASE_S, _BACKOFF_CAP_S)
        outbox.attach(_SINK)

    def _updates(self, n, boot):
        """The JSON text of the next n readings' update objects, one at a time."""
        first_this_boot = self.outbox.first_seq_this_boot
        last = None
        for seq, t, synced, _, value in self.outbox.readings(_SINK, n):
            when, known = _when(seq, t, synced, boot, first_this_boot)
            if last is not None and when <= last:     # created_at is unique per channel
                when = last + 1
            last = when
            yield '{"created_at":"%s","field1":"%s","field2":"%d"%s}' % (
                iso(when), _number(value), seq, "" if known else _UNKNOWN)

    async def run(self, registrar):
        """While registrar.ready is set (the key it holds is current); raises KeyRejected when
        the server refuses the write key."""
        attempt = 0
        waiting_clock = False
        one_by_one = 0      # up to this seq, single updates: a bulk of them was refused
        shift = 0           # seconds added to the next single update's time (see the top)
        while registrar.ready.is_set():
            n = last = 0
            unsynced = False
            for seq, _, synced, _, _ in self.outbox.readings(_SINK, 1 if one_by_one else _BULK):
                n, last, unsynced = n + 1, seq, unsynced or not synced
            if not n:
                self.sampler.stored.clear()
                await self.sampler.stored.wait()
                continue
            boot = self.sampler.boot_time()
            if unsynced and boot is None:
                # A reading's time is its uptime until the clock is set; ThingSpeak needs dates.
                if not waiting_clock:
                    log.info("thingspeak", "waiting for network time")
                    waiting_clock = True
                await asyncio.sleep(_CLOCK_WAIT_S)
                continue
            waiting_clock = False
            try:
                if n == 1:
                    entry = await self._single(boot, shift)
                    if not entry:
                        shift += 1
                        log.warning("thingspeak", "reading %d not inserted (its time taken?); again %d s later in %d s" % (
                            last, shift, self.gap_s))
                        await asyncio.sleep(self.gap_s)
                        continue
                    shift = 0
                else:
                    await bulk_update(self.base, self.channel, self.key, lambda: self._updates(n, boot),
                                      self.buf, self.ssl)
            except KeyRejected as e:
                if n == 1:
                    raise
                # Bulk writes answer 400 for a body the server refuses as well as for a bad
                # key; single updates tell them apart (400: the key; "0": that entry).
                log.warning("thingspeak", "bulk update refused (%s): one at a time up to %d" % (e, last))
                one_by_one = last
                continue
            except ThingSpeakError as e:
                if e.status == 429:
                    log.info("thingspeak", "too soon for a bulk update; again in %d s" % self.gap_s)
                    await asyncio.sleep(self.gap_s)
                    continue
                attempt = await self._pause(attempt, e)
                continue
            except Exception as e:      # timeouts, lost links, no heap
                attempt = await self._pause(attempt, e)
                continue
            self.outbox.ack(_SINK, last)
            registrar.key_accepted(entry if n == 1 else None)
            attempt = 0
            if last >= one_by_one:
                one_by_one = 0
            log.debug("thingspeak", "delivered readings up to %d (%d)" % (last, n))
            await asyncio.sleep(self.gap_s)

    async def _single(self, boot, shift):
        seq, t, synced, _, value = next(self.outbox.readings(_SINK, 1))
        when, known = _when(seq, t, synced, boot, self.outbox.first_seq_this_boot)
        fields = [("created_at", iso(when + shift)), ("field1", _number(value)), ("field2", seq)]
        if not known:
            fields.append(("status", "time unknown"))
        return await update(self.base, self.key, fields, self.ssl)

    async def _pause(self, attempt, e):
        s = backoff(attempt, *self.backoff_s)
        log.warning("thingspeak", "cannot deliver (%s); again in %d s" % (log.why(e), s))
        await asyncio.sleep(s)
        return attempt + 1
