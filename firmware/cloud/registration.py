# Self-registration's task (docs/registration.md): registers whenever a registration key is
# stored without a result, retries with capped backoff and jitter (slowly for answers only a
# person can change: unknown key, serial of another organisation), has the stored write key
# checked once per online phase (by the ThingSpeak sink's first write, or by a status update
# when no readings go to ThingSpeak), and registers again when that key was rotated
# (key_rejected). The exchange itself (firmware/cloud/midpoint.py) is loaded per attempt.
import asyncio

import log
from backoff import backoff
from firmware.unload import unload

_BACKOFF_BASE_S = 5
_BACKOFF_CAP_S = 1800


class Registrar:
    def __init__(self, store, serial, tls=None, streams=False, exchange=None):
        """streams: a ThingSpeak sink writes readings with the key (firmware/online.py): its
        writes check the key, so no status update is sent (its time could take a reading's),
        and the HTTP client it shares stays loaded. exchange: the online phase's lock for
        memory-hungry exchanges, held while registering and checking the key."""
        self.store = store
        self.serial = serial
        self.tls = tls
        self.streams = streams
        self.keep = ("httpc", "firmware.telemetry.thingspeak") if streams else ()
        self._accepted = False
        self.wake = asyncio.Event()     # set by the console when a new key is stored
        self.ready = asyncio.Event()    # set while the stored write key is registered and accepted
        self._checked = False
        self._rejected = 0              # write-key rejections since a write last got through
        self._hold = 0                  # seconds to wait before registering again
        self.exchange = exchange or asyncio.Lock()

    def pending(self):
        return bool(self.store.get("regkey")["key"]) and not self.store.get("registration")["done"]

    async def run(self):
        attempt = 0
        while True:
            delay = None
            if self.pending() and self._hold:
                # A fresh key refused again: the cloud is inconsistent; do not spin on it.
                log.info("registration", "registering again in %d s" % self._hold)
                try:
                    await asyncio.wait_for(self.wake.wait(), self._hold)   # a new key cuts it short
                except asyncio.TimeoutError:
                    pass
                self.wake.clear()
                self._hold = 0
            if self.pending():
                async with self.exchange:
                    delay, attempt = await self._register(attempt)
            if delay is None and not self._checked and self.store.get("registration")["done"]:
                if self.streams:
                    self._checked = True
                    self.ready.set()
                else:
                    async with self.exchange:
                        delay = await self._check_key()
            if delay is None and self.pending():
                continue
            try:
                await asyncio.wait_for(self.wake.wait(), delay)
                attempt = 0
            except asyncio.TimeoutError:
                pass
            self.wake.clear()

    async def _register(self, attempt):
        """One registration attempt; returns (delay before the next or None, attempts failed)."""
        delay = None
        midpoint = None
        try:
            from firmware.cloud import midpoint     # (no heap for it is a failed attempt too)
            channel, _ = await midpoint.register(self.store, self.serial, self.tls)
            log.info("registration", "registered: channel %s" % channel)
            attempt = 0
            self._checked = False
        except Exception as e:      # nothing ends the task: log, back off, retry
            if midpoint is not None and isinstance(e, midpoint.RegistrationError):
                log.error("registration", "registration refused: %s" % e)
                slow = e.status in midpoint.SLOW
            else:
                import gc
                log.error("registration", "unexpected %s (heap free %d); retrying" % (
                    log.why(e), gc.mem_free()))
                slow = False
            delay = backoff(attempt + (4 if slow else 0), _BACKOFF_BASE_S, _BACKOFF_CAP_S)
            attempt += 1
        del midpoint
        # The exchange's code (and its KDF and AES) is needed again only for the next one.
        self._unload("firmware.cloud.midpoint", "httpc", "pbkdf2", "aes")
        return delay, attempt

    def _unload(self, *names):
        unload(*[n for n in names if n not in self.keep])

    def new_key(self):
        """The console stored a new key (and cleared the registration): register now."""
        log.info("registration", "new registration key: registering")
        self.ready.clear()
        self._checked = self._accepted = False
        self._hold = 0
        self.wake.set()

    def key_rejected(self, e):
        """ThingSpeak refused the stored write key (rotated, or the channel is gone): forget the
        registration and register again (after a pause if this keeps happening)."""
        log.warning("registration", "%s: registering again" % e)
        self.store.set("registration", {})
        self.ready.clear()
        self._checked = self._accepted = False
        self._rejected += 1
        if self._rejected > 1:
            self._hold = backoff(self._rejected - 2, _BACKOFF_BASE_S, _BACKOFF_CAP_S)
        self.wake.set()

    def key_accepted(self, entry=None):
        """A write with the stored key got through (said once per registration and phase)."""
        self._rejected = 0
        if not self._accepted:
            self._accepted = True
            import gc
            gc.collect()
            log.info("registration", "write key accepted by ThingSpeak%s, heap free %d" % (
                "" if entry is None else " (entry %d)" % entry, gc.mem_free()))

    async def _check_key(self):
        """Once per online phase: a status update with the stored write key. A rejected key was
        rotated: forget the result, so the next round registers again. Returns a delay or None."""
        endpoint = self.store.factory["endpoints"]["thingspeak"]
        if not endpoint:
            self._checked = True
            return None
        from firmware.telemetry.thingspeak import KeyRejected, update
        rec = self.store.get("registration")
        try:
            entry = await update(endpoint, rec["write_key"], (("status", "online"),), ssl=self.tls)
        except KeyRejected as e:
            self.key_rejected(e)
            self.wake.clear()       # the loop registers next anyway
            return None
        except Exception as e:      # asyncio's CancelledError is not an Exception: it passes
            log.warning("registration", "cannot check the write key (%s)" % log.why(e))
            return backoff(0, 30, 60)
        finally:
            self._unload("firmware.telemetry.thingspeak", "httpc")    # whatever the answer was
        self._checked = True
        self.key_accepted(entry)
        self.ready.set()
        return None
