# The online phase: Wi-Fi is up. Makes the TLS context (first, while the heap still has a
# contiguous block for it), sets the clock, starts telemetry, self-registration (when there is
# a key) with its ThingSpeak sink, and the cloud manager, and ends them all when the link is
# lost. firmware/app.py owns the order of phases; this module is loaded only while online.
import asyncio
import time

from micropython import const

import log
from backoff import backoff
from epoch import clock_set
from firmware import board
from firmware.unload import unload

_RESYNC_S = const(6 * 3600)    # an ESP32's RTC drifts by seconds a day
_RETRY_S = 5                   # the clock's and the ThingSpeak sink's retries: 5 s to 10 min
_RETRY_CAP_S = 600
_REJOIN_WAIT_MS = const(15000)  # the port's own reconnect after a link loss, before a new join


class Online:
    def __init__(self, app):
        self.app = app
        self.store = app.store
        self.registrar = None
        self.tasks = []
        self._clock = asyncio.Event()   # set by the first good network time
        self._cloud_started = False
        # One memory-hungry exchange at a time (bootstrap and the broker's TLS handshake,
        # registering, checking a write key): an ESP32 without PSRAM has heap for one. Two at
        # once grew the GC heap into the IDF's RAM, where it stays while any object lives in
        # the new area, and TLS failed with ENOMEM from then on (docs/budgets.md).
        self.exchange = asyncio.Lock()

    def key_changed(self):
        if self.registrar is not None:
            self.registrar.new_key()
        elif self._cloud_started:       # else _start_cloud() finds the key when it runs
            self._register()

    def _register(self):
        # Self-registration's code is loaded only once there is a key to register with.
        f = self.store.factory
        if f["endpoints"]["registration"] and self.store.get("regkey")["key"]:
            from firmware.cloud.registration import Registrar
            from firmware.telemetry.outbox import sinks
            streams = self.app.telemetry is not None and "thingspeak" in sinks(self.store)
            self.registrar = Registrar(self.store, f["serial"] or self.app.node_id, self.app.tls, streams,
                                       self.exchange)
            self.tasks.append(asyncio.create_task(self.registrar.run()))
            if streams:
                self.tasks.append(asyncio.create_task(self._thingspeak()))

    async def _thingspeak(self):
        """Readings to the registered ThingSpeak channel, whenever the registrar holds a write
        key the server accepted; a rejected key sends the registrar back to register."""
        reg = self.registrar
        box, sampler = self.app.telemetry
        failures = 0
        while True:
            await reg.ready.wait()
            rejected = thingspeak_sink = None
            try:
                # Loaded only while it runs: registering (KDF, AES) must not share the heap with it.
                from firmware.telemetry import thingspeak_sink
                await thingspeak_sink.ThingSpeakSink(self.store, box, sampler, self.app.tls).run(reg)
            except Exception as e:      # KeyRejected; or no heap, a flash error: never the task
                if thingspeak_sink is not None and isinstance(e, thingspeak_sink.KeyRejected):
                    rejected = e
                else:
                    failures += 1
                    log.error("thingspeak", "sink stopped (%s); again soon" % log.why(e))
            else:
                failures = 0
            thingspeak_sink = None
            unload("firmware.telemetry.thingspeak_sink", "firmware.telemetry.thingspeak", "httpc")
            if rejected is not None:
                reg.key_rejected(rejected)
            elif failures:
                await asyncio.sleep(backoff(failures - 1, _RETRY_S, _RETRY_CAP_S))

    async def _sync_clock(self, host):
        from firmware import netclock
        ok = await netclock.sync(host)
        netclock = None
        unload("firmware.netclock", "sntp")
        return ok

    async def _keep_clock(self, host, ok):
        attempt = 0
        while True:
            if ok:
                self._clock.set()
            attempt = 0 if ok else attempt + 1
            await asyncio.sleep(_RESYNC_S if ok else backoff(attempt - 1, _RETRY_S, _RETRY_CAP_S))
            ok = await self._sync_clock(host)

    async def _start_cloud(self, ntp):
        # TLS only on a set clock: mbedTLS checks certificate dates, and before network time
        # an ESP32's clock reads 2000-01-01, when every certificate is "not yet valid".
        if not clock_set():
            if ntp:
                log.warning("app", "TLS waits for network time from %s: certificates cannot be "
                            "checked on a clock that reads %d" % (ntp, time.gmtime()[0]))
                await self._clock.wait()
            else:
                log.warning("app", "the clock is not set and the factory config names no NTP "
                            "server: TLS will find every certificate not yet valid")
        self._cloud_started = True
        if self.store.factory["endpoints"]["bootstrap"]:
            # The cloud before registering: it asks for the exchange lock first, and a TLS
            # session, once up, keeps the IDF memory it was made with.
            from firmware.cloud.manager import Cloud
            app = self.app
            self.tasks.append(asyncio.create_task(
                Cloud(self.store, app.node_id, app.tls, app.telemetry, self.exchange).run()))
        self._register()

    async def run(self):
        app = self.app
        app.state = "online"
        log.info("app", "online, heap free %d" % board.heap()[0])
        factory = self.store.factory
        endpoints = factory["endpoints"]
        if app.tls is None and (endpoints["bootstrap"] or endpoints["registration"]):
            # The TLS context first: it needs one contiguous ~3 KB block, which the heap still
            # has now but may not once the cloud code is loaded around the holes provisioning left.
            # Made once and kept by the app: a later online phase (after a Wi-Fi loss) finds
            # the heap fragmented by this one.
            from firmware.cloud.tls import context
            try:
                app.tls = context(factory["ca_cert"])
            except Exception as e:      # a damaged CA (or no heap) must not take the device down
                log.error("app", "%s: no TLS this time" % (
                    "no heap for the TLS context" if isinstance(e, MemoryError) else
                    "factory CA unusable (%r)" % (e,)))
            context = None
            unload("firmware.cloud.tls")
        ntp = endpoints.get("ntp")     # (a factory record older than the field has none)
        if ntp:
            # The clock first: readings are stamped with it; a failure costs at most the
            # query's timeout, and a later try sets it.
            self.tasks.append(asyncio.create_task(self._keep_clock(ntp, await self._sync_clock(ntp))))
        app.start_telemetry()           # after the TLS context: see above
        if endpoints["bootstrap"] or endpoints["registration"]:
            self.tasks.append(asyncio.create_task(self._start_cloud(ntp)))
        else:
            log.info("app", "no cloud in the factory config: staying local")
        try:
            while True:
                await asyncio.sleep_ms(1000)
                if board.sta().isconnected():
                    continue
                # The port rejoins by itself; a join started now would only fight it (and the
                # cloud's sockets survive a short loss). The tasks go on meanwhile.
                log.warning("app", "Wi-Fi lost; waiting for the driver to rejoin")
                if await self.app.station.rejoined(_REJOIN_WAIT_MS):
                    log.info("app", "Wi-Fi back")
                    continue
                log.warning("app", "Wi-Fi still lost after %d s; rejoining" % (_REJOIN_WAIT_MS // 1000))
                return
        finally:
            for t in self.tasks:
                t.cancel()      # their sockets are dead anyway; they close them on the way out
