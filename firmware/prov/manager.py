# The provisioning window: what is offered (security scheme, transports), for how long,
# and when it is done. It opens while the device has no Wi-Fi network or after a
# reprovision request, and closes once the client has seen "connected" (after a short
# grace so that answer can leave), once the device has been connected for a while
# without the client asking, or at the timeout.
import asyncio
import gc
import json
import time

from micropython import const

import log
from firmware import wifi
from firmware.prov.endpoints import Endpoints
from firmware.prov.protocomm import Protocomm

PROTO_VER = "v1.1"
_GRACE_MS = const(1000)          # IDF's cleanup delay after Connected was reported
_UNASKED_MS = const(30000)       # connected, but the client never polled: close anyway
_TICK_MS = const(200)
_APPLY_DELAY_MS = const(200)     # let the ApplyConfig response leave before joining


def _security(factory):
    """(scheme version, fn making a fresh session object) from the factory config."""
    prov = factory["prov"]
    sec = prov.get("sec", 1)
    if sec == 0:
        from firmware.prov.security import Sec0
        return 0, Sec0
    if sec == 2:
        from firmware.prov.sec2 import Sec2
        salt, verifier = bytes.fromhex(prov["srp_salt"]), bytes.fromhex(prov["srp_verifier"])
        return 2, lambda: Sec2(salt, verifier)
    from firmware.prov.security import Sec1
    pop = factory.get("pop", "").encode() or None
    return 1, lambda: Sec1(pop)


def version_json(sec, has_pop, app_version):
    cap = []
    if sec == 0:
        cap.append("no_sec")
    elif sec == 1 and not has_pop:
        cap.append("no_pop")
    cap.append("wifi_scan")
    info = {"ver": PROTO_VER, "sec_ver": sec, "sec_patch_ver": 1 if sec == 2 else 0, "cap": cap}
    # Application entries first, then "prov" (as IDF emits them). No "rmaker" claim caps:
    # clients then use cloud_user_assoc for the user mapping.
    return ('{"roost":%s,"prov":%s}' % (json.dumps({"ver": app_version, "cap": ["claim_code"]}),
                                        json.dumps(info))).encode()


class Provisioning:
    def __init__(self, store, station, node_id, app_version):
        self.store = store
        self.station = station
        factory = store.factory
        self.prov = factory["prov"]
        sec, make = _security(factory)
        if sec == 1 and not factory.get("pop"):
            log.warning("prov", "no PoP in the factory config: provisioning without proof of possession")
        self.name = "PROV_" + node_id[-6:]
        # Set by a transport's request (from a BLE IRQ handler too): the main task has work.
        self._wake = asyncio.ThreadSafeFlag()
        self.endpoints = Endpoints(store, station, node_id, self._apply, self._wake.set)
        self.pc = Protocomm(make, version_json(sec, bool(factory.get("pop")), app_version),
                            self.endpoints.table())
        self._transports = []
        self.sec = sec

    def _apply(self, ssid, password):
        # On the main task, right after ApplyConfig's answer (firmware/prov/endpoints.py):
        # stored before joining, so the client can see "connected" only for credentials that
        # survive a power cut.
        # Collect first: with BLE and SoftAP both up the heap is at its lowest here, and the
        # record write needs a few contiguous blocks that only a collection frees.
        import gc
        gc.collect()
        self.store.add_wifi(ssid, password)
        asyncio.create_task(self._join(ssid, password))

    async def _join(self, ssid, password):
        await asyncio.sleep_ms(_APPLY_DELAY_MS)
        self.station.connect(ssid, password)

    async def _start(self):
        # The Wi-Fi driver first, as IDF's provisioning manager does: its memory (about 44 KB
        # of the IDF heap on an ESP32) is taken before BLE's and before the GC heap grows into
        # the rest during a handshake; started later it may find none ("WiFi Out of Memory").
        from firmware import board
        board.sta()
        transports = self.prov.get("transports", ("ble",))
        if "ble" in transports:
            from firmware.prov.ble import BleTransport
            t = BleTransport(self.pc, self.name)
            t.start()
            self._transports.append(t)
        if "softap" in transports:
            from firmware.prov.http import HttpTransport
            board.softap(self.name, self.prov.get("softap_key") or None)
            t = HttpTransport(self.pc)
            await t.start()
            self._transports.append(t)

    def _stop(self):
        for t in self._transports:
            t.stop()
        self._transports = []
        if "softap" in self.prov.get("transports", ()):
            from firmware import board
            board.softap(None)

    async def run(self):
        """Serve provisioning until done (True) or the window times out (False)."""
        await self._start()
        log.info("prov", "provisioning open for %d s (security %d)" % (self.prov["timeout_s"], self.sec))
        deadline = time.ticks_add(time.ticks_ms(), self.prov["timeout_s"] * 1000)
        connected_at = None
        ep = self.endpoints
        # Lowest free heap after a collection, sampled each tick: what the window really holds.
        gc.collect()
        low = gc.mem_free()
        try:
            while time.ticks_diff(deadline, time.ticks_ms()) > 0:
                try:
                    await asyncio.wait_for_ms(self._wake.wait(), _TICK_MS)
                except asyncio.TimeoutError:
                    pass
                log.flush()
                if ep.run_deferred():
                    log.flush()
                ep.refresh()
                gc.collect()
                low = min(low, gc.mem_free())
                if ep.reported_connected:
                    await asyncio.sleep_ms(_GRACE_MS)
                    log.info("prov", "provisioning done; lowest free heap %d" % low)
                    return True
                if ep.applied and self.station.state()[0] == wifi.CONNECTED:
                    if connected_at is None:
                        connected_at = time.ticks_ms()
                    elif time.ticks_diff(time.ticks_ms(), connected_at) > _UNASKED_MS:
                        log.info("prov", "connected; client never asked, closing provisioning")
                        return True
                else:
                    connected_at = None
            self._stop()       # before saying so: whoever reads the log finds the radio quiet
            log.warning("prov", "provisioning window timed out")
            return False
        finally:
            ep.run_deferred()     # what the last requests asked for is done, window or not
            log.flush()
            self._stop()
