# The chip's line to the simulated world ("the air"): one blocking socket to the
# board supervisor, JSON lines, one request and one reply at a time. Every shim
# that needs the outside world (Wi-Fi, sensors, reset, NVS) goes through call().
import json
import os
import socket

_sock = None
_seq = 0
HOOK = None     # fn() run before every call: heapwatch.py samples the heap there


def _line():
    global _sock
    if _sock is None:
        host, port = os.getenv("ROOST_AIR").rsplit(":", 1)
        s = socket.socket()
        s.connect(socket.getaddrinfo(host, int(port))[0][-1])
        _sock = s
    return _sock


def call(op, **kw):
    """Ask the supervisor; returns the reply dict. Raises OSError(errno) if it says so.

    Requests carry a sequence number: a call cut short by Ctrl-C (KeyboardInterrupt between
    the request and its reply) leaves a stale reply behind, which the next call skips.
    """
    global _seq
    if HOOK:
        HOOK()
    _seq += 1
    kw["op"] = op
    kw["seq"] = _seq
    s = _line()
    s.write(json.dumps(kw).encode() + b"\n")
    while True:
        reply = s.readline()
        if not reply:
            raise OSError(5)  # EIO: the supervisor went away
        reply = json.loads(reply)
        if reply.get("seq") == _seq:
            break
    if "intr" in reply:
        raise KeyboardInterrupt  # Ctrl-C on the UART (see Board.interrupt)
    if "errno" in reply:
        raise OSError(reply["errno"])
    return reply


def connect_events(channel):
    """A second socket on which the supervisor pushes requests to the chip (BLE central ops)."""
    host, port = os.getenv("ROOST_AIR").rsplit(":", 1)
    s = socket.socket()
    s.connect(socket.getaddrinfo(host, int(port))[0][-1])
    s.write(json.dumps({"op": "attach", "channel": channel}).encode() + b"\n")
    return s
