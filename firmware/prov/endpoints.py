# The provisioning endpoints' handlers: Wi-Fi config, scan, control, user mapping and
# claim code. Each takes the decrypted request and returns the plaintext response.
# Every handler validates its whole input before it changes anything, so a refused or
# malformed request leaves the device's state as it was.
#
# Over BLE a handler runs inside the NimBLE task's IRQ handler (firmware/prov/ble.py): a
# 4 KB C stack, the GIL held, and nothing that gives the GIL up (printing, scanning, a
# flash write's driver). So a handler only decides and answers; the slow or blocking part
# (the Wi-Fi scan, the flash writes, joining, the log lines) is queued with _defer() and
# done by the main task (run_deferred(), woken by `wake`) a moment later. The answer is
# what the device has decided: ScanStatus says "not finished" until the scan is done, and
# GetStatus says "connected" only after the credentials are stored and joined.
from micropython import const

import log
from firmware import wifi
from firmware.prov import messages as m
from firmware.prov.errors import ProvError

_MAX_SCAN = const(16)       # IDF keeps at most 16 scan results
_MAX_ID = const(128)
_MAX_CLAIM = const(63)      # Particle claim codes are 63 characters


def _text(b, limit):
    """A printable ASCII string of 1..limit characters, or None."""
    if not 0 < len(b) <= limit:
        return None
    for c in b:
        if c < 0x20 or c > 0x7E:
            return None
    return b.decode()


class Endpoints:
    def __init__(self, store, station, node_id, apply_fn, wake=None):
        self.store = store
        self.station = station
        self.node_id = node_id
        self._apply = apply_fn      # fn(ssid, password), main task: persist and start joining
        self._wake = wake           # fn(): tell the main task there is work (ThreadSafeFlag.set)
        self._work = []             # [(fn, args)] for the main task, in order
        self.pending = None         # (ssid, passphrase) from SetConfig
        self.applied = False
        self.apply_failed = False   # the credentials could not be stored
        self.reported_connected = False
        self.scan_results = []
        self.scanning = False
        self._joined = None         # GetStatus's answer once joining, made by refresh()

    def _defer(self, fn, *args):
        self._work.append((fn, args))
        if self._wake:
            self._wake()

    def run_deferred(self):
        """The queued work, on the main task; True if there was any."""
        if not self._work:
            return False
        while self._work:
            fn, args = self._work.pop(0)
            try:
                fn(*args)
            except Exception as e:     # one failed step must not stop the window
                log.error("prov", "%s failed: %s" % (getattr(fn, "__name__", "step"), log.why(e)))
        return True

    def table(self):
        return {"prov-ctrl": self.ctrl, "prov-scan": self.scan, "prov-config": self.config,
                "cloud_user_assoc": self.user_assoc, "roost-claim": self.claim}

    # -- prov-config --------------------------------------------------------------------------
    def config(self, req):
        msg, d = m.config_in(req)
        if msg == 0:     # GetStatus
            return self._status()
        if msg == 2:     # SetConfig
            ssid, passphrase, bssid, _channel = m.set_config_args(d)
            if not ssid or len(ssid) >= 33 or len(passphrase) >= 64 or len(bssid) not in (0, 6):
                return m.config_status_out(3, 13, m.INVALID_ARGUMENT)
            self.pending = (ssid.decode(), passphrase.decode())
            log.later(log.INFO, "prov", "Wi-Fi credentials received for %r" % self.pending[0],
                      passphrase=passphrase)
            return m.config_status_out(3, 13, m.SUCCESS)
        if msg == 4:     # ApplyConfig
            if self.pending is None or self.applied:
                return m.config_status_out(5, 15, m.INTERNAL_ERROR)
            self.applied = True
            self.apply_failed = False
            self._defer(self._store_and_join, self.pending)
            return m.config_status_out(5, 15, m.SUCCESS)
        raise ProvError("unknown prov-config message")

    def _store_and_join(self, creds):
        try:
            self._apply(*creds)
        except Exception:
            self.apply_failed = True
            raise

    def _status(self):
        if self.apply_failed:
            return m.get_status_out(m.STA_FAILED, m.FAIL_NOT_FOUND)
        if not self.applied or self._joined is None:
            return m.get_status_out(m.STA_CONNECTING)
        st, answer = self._joined
        if st == wifi.CONNECTED:
            self.reported_connected = True
        return answer

    def _station(self):
        """The station's state as refresh() last saw it (IDLE before it has)."""
        return self._joined[0] if self._joined else wifi.IDLE

    def refresh(self):
        """On the main task, often: GetStatus's answer while joining. Asking the station and
        encoding its connection (nested messages) is more stack than a BLE handler has."""
        if not self.applied:
            self._joined = None
            return
        st, info = self.station.state()
        if st == wifi.CONNECTED:
            answer = m.get_status_out(m.STA_CONNECTED, connected=self.station.connected_info())
        elif st == wifi.FAILED:
            answer = m.get_status_out(m.STA_FAILED, m.FAIL_AUTH if info == "auth" else m.FAIL_NOT_FOUND)
        else:
            answer = m.get_status_out(m.STA_CONNECTING)
        self._joined = st, answer

    # -- prov-scan ----------------------------------------------------------------------------
    def scan(self, req):
        msg, d = m.scan_in(req)
        if msg == 0:     # ScanStart: the main task scans; ScanStatus says when it has
            if 10 not in d:
                return m.scan_error_out(0, m.INVALID_ARGUMENT)
            if not self.scanning:
                self.scanning = True
                self._defer(self._scan)
            return m.scan_start_out()
        if msg == 2:     # ScanStatus
            return m.scan_status_out(not self.scanning, 0 if self.scanning else len(self.scan_results))
        if msg == 4:     # ScanResult
            start, count = m.scan_result_args(d)
            n = len(self.scan_results)
            if start >= _MAX_SCAN or count > _MAX_SCAN - start or start + count > n:
                return m.scan_error_out(4, m.INVALID_ARGUMENT)
            return m.scan_result_out(self.scan_results[start:start + count])
        raise ProvError("unknown prov-scan message")

    def _scan(self):
        # The port's scan blocks the caller for its whole length (and gives up the GIL).
        try:
            self.scan_results = self.station.scan()[:_MAX_SCAN]
        except OSError as e:
            self.scan_results = []
            log.warning("prov", "scan failed: %s" % log.why(e))
        finally:
            self.scanning = False

    # -- prov-ctrl ----------------------------------------------------------------------------
    def ctrl(self, req):
        msg = m.ctrl_in(req)
        if msg == 1:     # Reset: only after a failed attempt, so new credentials can follow
            if not (self.applied and self._station() == wifi.FAILED):
                return m.ctrl_out(2, 12, m.INTERNAL_ERROR)
            self._defer(self._forget, self.pending[0])
            self.pending = None
            self.applied = False
            self._joined = None
            return m.ctrl_out(2, 12, m.SUCCESS)
        if msg == 3:     # Reprov: back to waiting for credentials after a success
            if not (self.applied and self._station() == wifi.CONNECTED):
                return m.ctrl_out(4, 14, m.INTERNAL_ERROR)
            self.pending = None
            self.applied = False
            self._joined = None
            self.reported_connected = False
            return m.ctrl_out(4, 14, m.SUCCESS)
        raise ProvError("unknown prov-ctrl message")

    def _forget(self, ssid):
        self.store.forget_wifi(ssid)
        self.station.disconnect()
        log.info("prov", "reset: waiting for new credentials")

    # -- cloud_user_assoc ---------------------------------------------------------------------
    def user_assoc(self, req):
        args = m.user_mapping_in(req)
        user_id = secret = None
        if args:
            user_id, secret = _text(args[0], _MAX_ID), _text(args[1], _MAX_ID)
        if not user_id or not secret:
            return m.user_mapping_out(1)   # InvalidParam
        # Answer from local state at once; the cloud report is retried until acknowledged.
        # A new owner (or the first since a factory reset) makes the cloud drop old links.
        self._defer(self._store_user, user_id, secret)
        return m.user_mapping_out(0, self.node_id)

    def _store_user(self, user_id, secret):
        reset = self.store.get("user")["user_id"] != user_id
        self.store.set("user", {"user_id": user_id, "secret": secret, "status": "pending",
                                "reset": reset})
        log.info("prov", "user mapping stored for user %s" % user_id, secret=secret)

    # -- roost-claim --------------------------------------------------------------------------
    def claim(self, req):
        code = _text(m.claim_in(req), _MAX_CLAIM)
        if not code:
            return m.claim_out(m.INVALID_ARGUMENT)
        self._defer(self._store_claim, code)
        return m.claim_out(m.SUCCESS, self.node_id)

    def _store_claim(self, code):
        self.store.set("claim", {"code": code, "claimed": False})
        log.info("prov", "claim code stored (%d characters)" % len(code))
