# `socket` for the simulated board: the unix port's sockets, with name lookup
# routed through the air. While Wi-Fi is down every lookup fails as on the ESP32
# (OSError -202); cloud host names resolve to the supervisor's per-board proxy,
# which also cuts open connections when the board's Wi-Fi drops. Binding a server
# to a privileged port (the SoftAP HTTP server on 80) gets a free local port that
# the supervisor publishes, so several boards can run side by side.
import socket as _socket

import _air
import _simchip

for _name in dir(_socket):
    if not _name.startswith("__"):
        globals()[_name] = getattr(_socket, _name)

_ANY = ("0.0.0.0", "")


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    _simchip.gil_release("socket.getaddrinfo()")     # esp32/modsocket.c:239
    if host in _ANY and port < 1024:
        r = _air.call("listen", port=port)
        return _socket.getaddrinfo("127.0.0.1", r["port"], af, type, proto, flags)
    r = _air.call("resolve", host=host, port=port)
    return _socket.getaddrinfo(r["host"], r["port"], af, type, proto, flags)
