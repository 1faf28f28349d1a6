# The chip's line to the simulated world ("the air"): one blocking socket to the
# board supervisor, JSON lines, one request and one reply at a time. Every shim
# that needs the outside world (Wi-Fi, sensors, reset, NVS) goes through call().
import json
import os
import select
import socket

import _simchip

_sock = None
_poller = None
_WAIT_MS = 50
_DONTWAIT = 0x40    # MSG_DONTWAIT (Linux): reads never block; writes on the socket still do
_seq = 0
_early = {}     # seq -> a reply read by a call other than its own (see call())
_buf = bytearray()
HOOK = None     # fn() run before every call: heapwatch.py samples the heap there
ROM = None      # the romfs partition's bytes, if the board has one (rom.py reads it at boot)


def _line():
    global _sock, _poller
    if _sock is None:
        host, port = os.getenv("ROOST_AIR").rsplit(":", 1)
        s = socket.socket()
        s.connect(socket.getaddrinfo(host, int(port))[0][-1])
        _poller = select.poll()
        _poller.register(s, select.POLLIN)
        _sock = s
    return _sock


def call(op, **kw):
    """Ask the supervisor; returns the reply dict. Raises OSError(errno) if it says so.

    Requests carry a sequence number. A call can be entered again while it waits for its reply:
    the BLE host and its IRQ handlers run as scheduled callbacks, which the port runs inside a
    blocking read. The inner call may then read the outer call's reply, which it keeps in
    _early for the outer one. A call cut short by Ctrl-C (KeyboardInterrupt between the request
    and its reply) leaves a stale reply behind, which nobody claims.
    """
    global _seq
    if HOOK:
        HOOK()
    _seq += 1
    seq = _seq
    kw["op"] = op
    kw["seq"] = seq
    # The line is the simulator's wiring, not one of the ESP32's blocking calls: waiting on it
    # inside a BLE handler is no GIL release (esp32_rules.c). A handler that runs inside this wait
    # gets the rule back (the chip clears the flag on entry).
    busy = _simchip.line(True)
    try:
        s = _line()
        s.write(json.dumps(kw).encode() + b"\n")
        _wait(s, seq)
    finally:
        _simchip.line(busy)
    reply = _early.pop(seq)
    if "intr" in reply:
        raise KeyboardInterrupt  # Ctrl-C on the UART (see Board.interrupt)
    if "errno" in reply:
        raise OSError(reply["errno"])
    if "error" in reply:
        raise OSError(reply["error"])  # a driver error as the port words it: OSError("Wifi ...")
    return reply


def _wait(s, seq):
    while seq not in _early:
        # Lines are cut from one shared buffer, so a nested call takes its bytes in order and
        # leaves the rest here. A nested call may run inside this wait (the port runs pending
        # callbacks when a signal interrupts it) and take this call's reply: so wait at most
        # _WAIT_MS before looking at _early again, and never block in recv() itself.
        if not _poller.poll(_WAIT_MS):
            continue
        try:
            data = s.recv(256, _DONTWAIT)
        except OSError as e:
            if e.errno == 11:   # EAGAIN: a nested call took the bytes between poll and recv
                continue
            raise
        if not data:
            raise OSError(5)  # EIO: the supervisor went away
        _buf.extend(data)
        while True:
            end = _buf.find(b"\n")
            if end < 0:
                break
            reply = json.loads(_buf[:end])
            _buf[:end + 1] = b""
            if reply.get("seq", 0) > _seq - 8:   # not a stale one
                _early[reply.get("seq")] = reply
