# `network` for the simulated board. The Wi-Fi radio lives in the supervisor's
# world model (access points that can be up or down, passwords, RSSI); this shim
# only forwards, so status codes follow the ESP32 port's evaluation order there.
import _air
import _simchip

from micropython import const

STA_IF = const(0)
AP_IF = const(1)

STAT_IDLE = const(1000)
STAT_CONNECTING = const(1001)
STAT_GOT_IP = const(1010)
STAT_BEACON_TIMEOUT = const(200)
STAT_NO_AP_FOUND = const(201)
STAT_WRONG_PASSWORD = const(202)
STAT_ASSOC_FAIL = const(203)
STAT_CONNECT_FAIL = const(203)
STAT_HANDSHAKE_TIMEOUT = const(204)

AUTH_OPEN = const(0)
AUTH_WEP = const(1)
AUTH_WPA_PSK = const(2)
AUTH_WPA2_PSK = const(3)
AUTH_WPA_WPA2_PSK = const(4)


# The Wi-Fi driver's memory in the IDF heap (tools/sim/chip/esp32/esp32_ram.c; the spec's section
# 5): esp_wifi_init() takes about 28 KB the first time a WLAN is made (network_wlan.c:249) and
# keeps it, as MicroPython never deinitialises the driver; esp_wifi_start() takes its buffers
# while any interface is active, to about 44 KB in all (a station in use 35-55 KB, a SoftAP
# about 44 KB). Short of memory, the driver's ESP_ERR_NO_MEM is "WiFi Out of Memory"
# (network_common.c:81).
_WIFI_INIT_BYTES = const(28 * 1024)
_WIFI_RUNNING_BYTES = const(16 * 1024)
_wifi = {"init": 0, "running": 0, "modes": 0}   # IDF heap handles; active interfaces (bit per if)


def _idf_take(key, n):
    if not _wifi[key]:
        h = _simchip.idf_take(n)
        if not h:
            raise OSError("WiFi Out of Memory")
        _wifi[key] = h


def _idf_give(key):
    _simchip.idf_give(_wifi[key])
    _wifi[key] = 0


def hostname(name=None):
    if name is None:
        return _air.call("wlan", iface=0, fn="hostname")["value"]
    _air.call("wlan", iface=0, fn="hostname", value=name)


class WLAN:
    IF_STA = const(0)
    IF_AP = const(1)

    def __init__(self, interface_id=0):
        _idf_take("init", _WIFI_INIT_BYTES)
        self._if = interface_id

    def _call(self, fn, **kw):
        return _air.call("wlan", iface=self._if, fn=fn, **kw).get("value")

    def active(self, is_active=None):
        if is_active is None:
            return self._call("active")
        bit = 1 << self._if
        modes = _wifi["modes"] | bit if is_active else _wifi["modes"] & ~bit
        if modes:
            _idf_take("running", _WIFI_RUNNING_BYTES)
        self._call("active", value=bool(is_active))
        _wifi["modes"] = modes
        if not modes:
            _idf_give("running")

    def connect(self, ssid=None, key=None, *, bssid=None):
        if not self.active():
            raise OSError("STA must be active")  # the port's message
        _simchip.gil_release("WLAN.connect()")     # network_wlan.c:351
        if isinstance(ssid, bytes):
            ssid = ssid.decode()
        if isinstance(key, bytes):
            key = key.decode()
        self._call("connect", ssid=ssid, key=key, bssid=bssid.hex() if bssid else None)

    def disconnect(self):
        self._call("disconnect")

    def isconnected(self):
        return self._call("isconnected")

    def status(self, param=None):
        if param is None:
            return self._call("status")
        if param == "rssi":
            return self._call("rssi")
        raise ValueError("unknown status param")

    def scan(self):
        if not self.active():
            raise OSError("STA must be active")
        _simchip.gil_release("WLAN.scan()")        # network_wlan.c:448
        out = []
        for ssid, bssid, ch, rssi, sec, hidden in self._call("scan"):
            out.append((ssid.encode(), bytes.fromhex(bssid), ch, rssi, sec, hidden))
        return out

    def ifconfig(self, conf=None):
        if conf is not None:
            raise OSError("static IP not simulated")
        return tuple(self._call("ifconfig"))

    def ipconfig(self, key):
        if key == "addr4":
            ip, mask = self.ifconfig()[:2]
            return (ip, mask)
        raise ValueError(key)

    def config(self, *args, **kw):
        if args:
            v = self._call("config_get", key=args[0])
            return bytes.fromhex(v) if args[0] == "mac" else v
        self._call("config_set", values=kw)
