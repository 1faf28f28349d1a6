# The provisioning endpoints' handlers: Wi-Fi config, scan, control, user mapping and
# claim code. Each takes the decrypted request and returns the plaintext response.
# Every handler validates its whole input before it changes anything, so a refused or
# malformed request leaves the device's state as it was.
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
    def __init__(self, store, station, node_id, apply_fn):
        self.store = store
        self.station = station
        self.node_id = node_id
        self._apply = apply_fn      # fn(ssid, password): persist and start joining
        self.pending = None         # (ssid, passphrase) from SetConfig
        self.applied = False
        self.reported_connected = False
        self.scan_results = []

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
            log.info("prov", "Wi-Fi credentials received for %r" % self.pending[0], passphrase=passphrase)
            return m.config_status_out(3, 13, m.SUCCESS)
        if msg == 4:     # ApplyConfig
            if self.pending is None or self.applied:
                return m.config_status_out(5, 15, m.INTERNAL_ERROR)
            self._apply(*self.pending)      # raises (state unchanged) if it cannot persist
            self.applied = True
            return m.config_status_out(5, 15, m.SUCCESS)
        raise ProvError("unknown prov-config message")

    def _status(self):
        if not self.applied:
            return m.get_status_out(m.STA_CONNECTING)
        st, info = self.station.state()
        if st == wifi.CONNECTED:
            self.reported_connected = True
            return m.get_status_out(m.STA_CONNECTED, connected=self.station.connected_info())
        if st == wifi.FAILED:
            return m.get_status_out(m.STA_FAILED, m.FAIL_AUTH if info == "auth" else m.FAIL_NOT_FOUND)
        return m.get_status_out(m.STA_CONNECTING)

    # -- prov-scan ----------------------------------------------------------------------------
    def scan(self, req):
        msg, d = m.scan_in(req)
        if msg == 0:     # ScanStart: the port's scan is blocking, so it is finished on return
            if 10 not in d:
                return m.scan_error_out(0, m.INVALID_ARGUMENT)
            try:
                self.scan_results = self.station.scan()[:_MAX_SCAN]
            except OSError as e:
                log.warning("prov", "scan failed: %r" % (e,))
                return m.scan_error_out(0, m.INTERNAL_ERROR)
            return m.scan_start_out()
        if msg == 2:     # ScanStatus
            return m.scan_status_out(True, len(self.scan_results))
        if msg == 4:     # ScanResult
            start, count = m.scan_result_args(d)
            n = len(self.scan_results)
            if start >= _MAX_SCAN or count > _MAX_SCAN - start or start + count > n:
                return m.scan_error_out(4, m.INVALID_ARGUMENT)
            return m.scan_result_out(self.scan_results[start:start + count])
        raise ProvError("unknown prov-scan message")

    # -- prov-ctrl ----------------------------------------------------------------------------
    def ctrl(self, req):
        msg = m.ctrl_in(req)
        if msg == 1:     # Reset: only after a failed attempt, so new credentials can follow
            if not (self.applied and self.station.state()[0] == wifi.FAILED):
                return m.ctrl_out(2, 12, m.INTERNAL_ERROR)
            self.store.forget_wifi(self.pending[0])
            self.station.disconnect()
            self.pending = None
            self.applied = False
            log.info("prov", "reset: waiting for new credentials")
            return m.ctrl_out(2, 12, m.SUCCESS)
        if msg == 3:     # Reprov: back to waiting for credentials after a success
            if not (self.applied and self.station.state()[0] == wifi.CONNECTED):
                return m.ctrl_out(4, 14, m.INTERNAL_ERROR)
            self.pending = None
            self.applied = False
            self.reported_connected = False
            return m.ctrl_out(4, 14, m.SUCCESS)
        raise ProvError("unknown prov-ctrl message")

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
        reset = self.store.get("user")["user_id"] != user_id
        self.store.set("user", {"user_id": user_id, "secret": secret, "status": "pending",
                                "reset": reset})
        log.info("prov", "user mapping stored for user %s" % user_id, secret=secret)
        return m.user_mapping_out(0, self.node_id)

    # -- roost-claim --------------------------------------------------------------------------
    def claim(self, req):
        code = _text(m.claim_in(req), _MAX_CLAIM)
        if not code:
            return m.claim_out(m.INVALID_ARGUMENT)
        self.store.set("claim", {"code": code, "claimed": False})
        log.info("prov", "claim code stored (%d characters)" % len(code))
        return m.claim_out(m.SUCCESS, self.node_id)
