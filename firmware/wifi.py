# The Wi-Fi station: joining a network and telling how it went, in the terms the
# provisioning protocol reports (connecting / connected / failed: auth or not found).
#
# Two ESP32 port quirks shape this (docs/simulator.md, micropython-esp32 spec 3.1):
# the last disconnect reason survives a new connect() until an IP or a new reason
# replaces it, and a wrong WPA2 password may show as CONNECTING forever. So a failure
# status seen at connect time is trusted only after _STALE_MS, and an attempt that is
# still connecting after _ATTEMPT_MS counts as a wrong password, as IDF reports it.
#
# The driver's own errors (docs/simulator.md, "Wi-Fi"): connect() while it is joining or
# rejoining by itself raises "Wifi Internal Error" (ESP_ERR_WIFI_CONN, MicroPython #17661),
# and status() does not tell (it shows the last loss's reason), so a join always stops the
# driver's attempt first; after a link loss the port rejoins by itself,
# so rejoined() gives it time before anyone starts a join; and any OSError from the driver
# ("WiFi Out of Memory" too) fails the attempt, never the board.
import asyncio
import time

from micropython import const

import log
from firmware import board

_ATTEMPT_MS = const(20000)
_POLL_MS = const(200)
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
        if isinstance(ssid, bytes):
            ssid = ssid.decode()
        self.ssid = ssid
        self._started = time.ticks_ms()
        self.result = None
        try:
            w = board.sta()
            # Stop whatever the driver is doing first: after a loss it rejoins by itself while
            # status() still shows the loss's reason, and connect() during that would raise.
            try:
                w.disconnect()
            except OSError:
                pass
            self._stale = w.status()
            w.connect(ssid, password)
        except OSError as e:
            log.warning("wifi", "the driver refused to join %r: %s" % (ssid, log.why(e)))
            self.result = (FAILED, "not_found")
            return
        log.info("wifi", "joining %r" % ssid)

    def disconnect(self):
        self.ssid = None
        board.sta().disconnect()

    async def rejoined(self, timeout_ms):
        """After a link loss: True if the port's own reconnect brings the link back within
        timeout_ms (it retries while a connection is requested, network_wlan.c:156)."""
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while time.ticks_diff(deadline, time.ticks_ms()) > 0:
            await asyncio.sleep_ms(_POLL_MS)
            if board.sta().isconnected():
                return True
        return False

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
                await asyncio.sleep_ms(_POLL_MS)
        return False
