"""The world around simulated boards: Wi-Fi access points, the temperature in the room,
the user's finger on the button, and which host names are cloud services.

One World can be shared by many boards (a fleet in one room); each board has its own Radio.
"""
import json
import threading
import time

# ESP32 port status codes (ports/esp32/modnetwork_globals.h) and IDF disconnect reasons.
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
REASON_ASSOC_LEAVE = 8
REASON_BEACON_TIMEOUT = 200
REASON_NO_AP_FOUND = 201
REASON_AUTH_FAIL = 202
REASON_CONNECTION_FAIL = 205
_NO_AP_REASONS = (201, 210, 211, 212)


class DriverError(OSError):
    """An error of the ESP32's Wi-Fi driver, as the port raises it: OSError with the message of
    ports/esp32/network_common.c esp_exceptions_helper() (the chip sees OSError(message))."""


class AccessPoint:
    def __init__(self, ssid, password="", rssi=-50, channel=6, auth=None, bssid=None, up=True):
        self.ssid = ssid
        self.password = password
        self.rssi = rssi
        self.channel = channel
        self.auth = (3 if password else 0) if auth is None else auth  # WPA2-PSK or open
        self.bssid = bssid or "24:0a:c4:%02x:%02x:%02x" % tuple(ssid.encode().ljust(3, b"_")[:3])
        self.up = up

    def bssid_bytes(self):
        return bytes(int(x, 16) for x in self.bssid.split(":"))


class World:
    """What the boards can sense. Mutate it from tests: ap.up = False, world.temperature = 30."""

    def __init__(self, aps=(), temperature=21.5, services=None, connect_time=0.3, scan_time=0.2,
                 wrong_password_reason=REASON_AUTH_FAIL, dns_time=0.02):
        self.lock = threading.RLock()
        self.aps = [a if isinstance(a, AccessPoint) else AccessPoint(**a) for a in aps]
        self.temperature = temperature
        self.button_pressed = False
        self.services = dict(services or {})  # host name -> (host, port) of a local service
        self.connect_time = connect_time
        self.scan_time = scan_time
        # getaddrinfo blocks the caller on an ESP32 (lwIP's DNS query; asyncio's stream module
        # says "TODO this is blocking"): this long per lookup of a name.
        self.dns_time = dns_time
        # Real APs often report a wrong WPA2 password as reason 15 (4-way handshake timeout).
        self.wrong_password_reason = wrong_password_reason
        self._air = None               # the room's Bluetooth air (tools/sim/radio.py), on first use
        self._phones = None

    def air(self):
        """The room's Bluetooth LE air: every board's controller and every phone's share it."""
        with self.lock:
            if self._air is None:
                from . import radio
                self._air = radio.AirLink()
            return self._air

    def phone_port(self):
        """A TCP port where each connection is a new phone on this room's air (HCI over TCP):
        what the bleak backend (tools/ble) joins, from this process or another."""
        with self.lock:
            if self._phones is None:
                from . import radio
                self._phones = radio.serve_phones(self.air())
            return self._phones.port

    @classmethod
    def load(cls, path):
        with open(path) as f:
            spec = json.load(f)
        services = {h: tuple(a.rsplit(":", 1)) for h, a in spec.pop("services", {}).items()}
        services = {h: (a[0], int(a[1])) for h, a in services.items()}
        return cls(services=services, **spec)

    def ap(self, ssid):
        for a in self.aps:
            if a.ssid == ssid:
                return a
        return None

    def add_ap(self, ssid, password="", **kw):
        ap = AccessPoint(ssid, password, **kw)
        with self.lock:
            self.aps.append(ap)
        return ap


class Radio:
    """One board's Wi-Fi: STA and AP interfaces, following the ESP32 port's status rules."""

    def __init__(self, world, mac, on_link_down=None):
        self.world = world
        self.mac = mac
        self.on_link_down = on_link_down or (lambda: None)
        self.sta_active = False
        self.ap_active = False
        self.ap_config = {"essid": "ESP_%02X%02X%02X" % tuple(mac[3:]), "password": "", "authmode": 0}
        self.hostname = "espressif"
        self.requested = None          # (ssid, key, bssid) while a connection is wanted
        self.attempt_at = 0.0
        self.reason = None             # last disconnect reason; cleared on GOT_IP
        self.ap = None                 # the AP we are associated with
        self.ip = None
        # config(reconnects=n): the port's conf_wifi_sta_reconnects (n + 1; 0 = for ever) and
        # its count of automatic reconnections since connect() (network_wlan.c:156).
        self.reconnects = 0
        self.attempts = 0
        self.sta_config = {}
        self.lock = threading.RLock()

    # -- the state machine, advanced lazily whenever the chip asks --------------------------
    def _gave_up(self):
        return bool(self.reconnects) and self.attempts >= self.reconnects

    def _connecting(self):
        """The driver is joining, or rejoining by itself after a loss (the port calls
        esp_wifi_connect() again on every disconnection while a connection is requested)."""
        return self.requested is not None and self.ap is None and not self._gave_up()

    def _advance(self):
        now = time.monotonic()
        if self.ap is not None and not self.ap.up:
            self._drop(REASON_BEACON_TIMEOUT)
            self.attempts += 1
            self.attempt_at = now + self.world.connect_time
        # Every attempt due since the chip last looked (the state advances lazily).
        while self._connecting() and now >= self.attempt_at:
            ssid, key, bssid = self.requested
            ap = self.world.ap(ssid)
            if ap is None or not ap.up or (bssid and ap.bssid_bytes() != bssid):
                self.reason = REASON_NO_AP_FOUND
            elif ap.auth != 0 and key != ap.password:
                self.reason = self.world.wrong_password_reason
            else:
                self.ap = ap
                self.reason = None
                self.ip = "192.168.1.%d" % (100 + self.mac[5] % 100)
            if self.ap is None:
                self.attempts += 1
            # The port retries while a connection is requested (for ever unless reconnects= says).
            step = max(self.world.connect_time, 0.001)
            self.attempt_at = max(self.attempt_at + step, now - 10 * step)

    def _drop(self, reason):
        self.ap = None
        self.ip = None
        self.reason = reason
        self.on_link_down()

    def connected(self):
        with self.lock:
            self._advance()
            return self.ap is not None

    def status(self):
        with self.lock:
            self._advance()
            if self.ap is not None:
                return STAT_GOT_IP
            r = self.reason
            if r in _NO_AP_REASONS:
                return r
            if r in (REASON_AUTH_FAIL, REASON_CONNECTION_FAIL):
                return REASON_AUTH_FAIL
            if r == REASON_ASSOC_LEAVE:
                return STAT_IDLE
            if self.requested and not self._gave_up():
                return STAT_CONNECTING
            return STAT_IDLE if r is None else r

    def connect(self, ssid, key, bssid=None):
        with self.lock:
            self._advance()
            if self._connecting():
                # esp_wifi_connect() while the station is connecting: ESP_ERR_WIFI_CONN, logged by
                # the driver as "sta is connecting, return error" (MicroPython issue #17661).
                raise DriverError("Wifi Internal Error")
            if self.ap is not None:
                self._drop(REASON_ASSOC_LEAVE)
            self.requested = (ssid, key or "", bssid)
            self.attempts = 0
            self.attempt_at = time.monotonic() + self.world.connect_time

    def disconnect(self):
        with self.lock:
            self.requested = None
            if self.ap is not None:
                self._drop(REASON_ASSOC_LEAVE)
            else:
                self.reason = REASON_ASSOC_LEAVE

    def set_active(self, iface, on):
        with self.lock:
            if iface == 0:
                if not on:
                    self.disconnect()
                    self.reason = None
                self.sta_active = on
            else:
                self.ap_active = on

    def scan(self):
        with self.lock:
            self._advance()
            if self._connecting():
                # esp_wifi_scan_start() fails while the station connects; the port then returns
                # an empty list without a word (network_wlan.c:448-452).
                return []
        time.sleep(self.world.scan_time)  # a real scan blocks the caller for a while
        with self.world.lock:
            return [(a.ssid, a.bssid_bytes().hex(), a.channel, a.rssi, a.auth, False)
                    for a in self.world.aps if a.up]

    def ifconfig(self, iface):
        if iface == 1:
            return ["192.168.4.1", "255.255.255.0", "192.168.4.1", "0.0.0.0"] if self.ap_active \
                else ["0.0.0.0"] * 4
        with self.lock:
            self._advance()
            if self.ip:
                return [self.ip, "255.255.255.0", "192.168.1.1", "192.168.1.1"]
            return ["0.0.0.0"] * 4

    def rssi(self):
        with self.lock:
            self._advance()
            if self.ap is None:
                raise DriverError("Wifi Not Connected")      # ESP_ERR_WIFI_NOT_CONNECT
            return self.ap.rssi

    def channel(self, iface):
        """The radio has one channel: in AP+STA mode the AP moves to the station's AP's channel
        when the station joins (IDF)."""
        with self.lock:
            self._advance()
            if self.ap is not None:
                return self.ap.channel
            return self.ap_config.get("channel", 1) if iface == 1 else 1

    def configure_ap(self, values):
        """ap.config(...): applied whole or not at all, as esp_wifi_set_config() is."""
        conf = dict(self.ap_config, **values)
        if conf.get("authmode", 0) != 0 and len(conf.get("password", "")) < 8:
            raise DriverError("Wifi Invalid Password")    # ESP_ERR_WIFI_PASSWORD: WPA2 needs 8+
        self.ap_config = conf

    def configure_sta(self, values):
        for k, v in values.items():
            if k == "reconnects":
                # -1: for ever (0 here); n: n reconnections after the first attempt (network_wlan.c:608)
                self.reconnects = 0 if v == -1 else v + 1
            else:
                self.sta_config[k] = v      # pm, txpower, ...: kept, read back by config(k)

    def iface_mac(self, iface):
        mac = bytearray(self.mac)
        mac[5] = (mac[5] + iface) & 0xFF  # SoftAP MAC = base + 1 (IDF convention)
        return bytes(mac)
