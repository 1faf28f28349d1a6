# The Wi-Fi station: joining a network and telling how it went, in the terms the
# provisioning protocol reports (connecting / connected / failed: auth or not found).
#
# Two ESP32 port quirks shape this (docs/simulator.md, micropython-esp32 spec 3.1):
# the last disconnect reason survives a new connect() until an IP or a new reason
# replaces it, and a wrong WPA2 password may show as CONNECTING forever. So a failure
# status seen at connect time is trusted only after _STALE_MS, and an attempt that is
# still connecting after _ATTEMPT_MS counts as a wrong password, as IDF reports it.
import asyncio
import time

from micropython import const

import log
from firmware import board

_ATTEMPT_MS = const(20000)
_STALE_MS = const(3000)
_AUTH_CODES = (202, 15, 204, 205)          # wrong password, 4-way/handshake timeout
_NOT_FOUND_CODES = (201, 210, 211, 212)

CONNECTING = "connecting"
CONNECTED = "connected"
FAILED = "failed"
IDLE = "idle"


class Station:
    def __init__(self):
        self.ssid = None
        self._started = 0
        self._stale = None
        self._scan = {}   # ssid -> (bssid, channel, rssi, auth) of the last scan
        self.result = None

    def connect(self, ssid, password):
        """Start joining ssid (returns at once; poll state())."""
        w = board.sta()
        self._stale = w.status()
        if isinstance(ssid, bytes):
            ssid = ssid.decode()
        self.ssid = ssid
        self._started = time.ticks_ms()
        self.result = None
        w.connect(ssid, password)
        log.info("wifi", "joining %r" % ssid)

    def disconnect(self):
        self.ssid = None
        board.sta().disconnect()

    def state(self):
        """(CONNECTING, None) | (CONNECTED, ip) | (FAILED, "auth"|"not_found") | (IDLE, None)."""
        if self.ssid is None:
            return IDLE, None
        if self.result:
            return self.result
        w = board.sta()
        st = w.status()
        age = time.ticks_diff(time.ticks_ms(), self._started)
        if st == board.STAT_GOT_IP:
            return CONNECTED, w.ifconfig()[0]
        fresh = st != self._stale or age >= _STALE_MS
        if fresh and st in _AUTH_CODES:
            return self._fail("auth", st)
        if fresh and st in _NOT_FOUND_CODES:
            return self._fail("not_found", st)
        if age >= _ATTEMPT_MS:
            return self._fail("auth", st)
        return CONNECTING, None

    def _fail(self, reason, status):
        log.warning("wifi", "joining %r failed: %s (status %d)" % (self.ssid, reason, status))
        # Stop the port's endless retries: the user must send new credentials.
        board.sta().disconnect()
        self.result = (FAILED, reason)
        return self.result

    def connected_info(self):
        """(ip, auth_mode, ssid, bssid, channel) of the current network, for RespGetStatus."""
        w = board.sta()
        bssid, channel, _, auth = self._scan.get(self.ssid, (b"", 0, 0, 0))
        return (w.ifconfig()[0], auth, self.ssid.encode(), bssid, channel)

    def scan(self):
        """Nearby networks, strongest first: [(ssid bytes, bssid, channel, rssi, auth)]."""
        found = {}
        for ssid, bssid, channel, rssi, auth, _ in board.sta().scan():
            if ssid and (ssid not in found or found[ssid][3] < rssi):
                found[ssid] = (ssid, bytes(bssid), channel, rssi, auth)
        out = sorted(found.values(), key=lambda e: -e[3])
        self._scan = {e[0].decode(): (e[1], e[2], e[3], e[4]) for e in out}
        return out

    async def join_known(self, networks):
        """Join the strongest reachable network among the stored ones; True when connected."""
        known = {n["ssid"]: n["password"] for n in networks}
        try:
            seen = [e[0].decode() for e in self.scan() if e[0].decode() in known]
        except OSError as e:
            log.warning("wifi", "scan failed: %r" % (e,))
            seen = []
        # Strongest seen first, then the rest (a hidden or momentarily silent AP) by recency.
        order = seen + [n["ssid"] for n in networks if n["ssid"] not in seen]
        for ssid in order:
            self.connect(ssid, known[ssid])
            while True:
                st, info = self.state()
                if st == CONNECTED:
                    log.info("wifi", "connected to %r, IP %s" % (ssid, info))
                    return True
                if st == FAILED:
                    break
                await asyncio.sleep_ms(200)
        return False
