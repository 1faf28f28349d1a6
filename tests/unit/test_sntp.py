"""Network time: the device's SNTP client (lib/sntp.py) under the MicroPython unix port, against
the local cloud's SNTP server (tools/cloud/ntp.py) and servers that answer wrongly or not at
all. Only an answer from a synchronised server to this very request sets the time."""
import json
import socket
import struct
import threading
import time

import pytest

from mpy import CHIP_EPOCH, run_mpy
from tools.cloud.ntp import SNTPServer, answer

QUERY = """
import asyncio, json, time, sntp
async def main():
    t0 = time.ticks_ms()
    try:
        t, us = await sntp.query("127.0.0.1", %d, timeout_ms=%d)
        out = {"t": t, "us": us, "epoch": time.gmtime(0)[0]}
    except Exception as e:
        out = {"error": "%%s: %%s" %% (type(e).__name__, e)}
    out["ms"] = time.ticks_diff(time.ticks_ms(), t0)
    print(json.dumps(out))
asyncio.run(main())
"""


def query(port, timeout_ms=1500):
    out = run_mpy(QUERY % (port, timeout_ms), path=("lib",))
    return json.loads(out.strip().splitlines()[-1])


def test_the_time_of_the_local_cloud_server():
    server = SNTPServer(clock=lambda: 1767225600.25).start()
    try:
        got = query(server.port)
    finally:
        server.stop()
    # Whole seconds since the chip's epoch (2000-01-01, as an ESP32's) and microseconds:
    # a single-precision float would be 128 s out.
    assert got["epoch"] == 2000 and server.requests == 1
    assert (got["t"], got["us"]) == (1767225600 - CHIP_EPOCH, 250000)


class BadServer:
    """Answers each request with tamper(answer) (None: silence)."""

    def __init__(self, tamper):
        self.tamper = tamper
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(512)
            except OSError:
                return
            reply = self.tamper(bytearray(answer(data, time.time)))
            if reply is not None:
                self.sock.sendto(bytes(reply), peer)


def replace(data, offset, value):
    data[offset:offset + len(value)] = value
    return data


@pytest.mark.parametrize("tamper,why", [
    (lambda a: None, "no answer"),
    (lambda a: a[:40], "short answer"),
    (lambda a: replace(a, 24, b"\x00" * 8), "answer to another request"),       # not our nonce
    (lambda a: replace(a, 1, b"\x00"), "server clock not synchronised (stratum 0)"),   # kiss-o'-death
    (lambda a: replace(a, 0, b"\xe4"), "server clock not synchronised"),             # LI 3: alarm
    (lambda a: replace(a, 0, b"\x23"), "not a server answer"),                       # mode 3
])
def test_bad_answers_and_silence_set_nothing(tamper, why):
    s = BadServer(tamper)
    try:
        got = query(s.port, timeout_ms=600)
    finally:
        s.sock.close()
    assert got["error"] == "SNTPError: " + why and 550 <= got["ms"] < 1500


def test_a_stray_datagram_before_the_answer_is_ignored():
    def two(a):
        return a

    class Both(BadServer):
        def _serve(self):
            data, peer = self.sock.recvfrom(512)
            self.sock.sendto(b"\x24" + b"\x00" * 47, peer)              # junk first
            self.sock.sendto(answer(data, lambda: 1767225600.0), peer)

    s = Both(two)
    try:
        got = query(s.port)
    finally:
        s.sock.close()
    assert got["t"] == 1767225600 - CHIP_EPOCH


def test_the_server_answers_only_client_requests():
    req = bytearray(48)
    req[0] = 0x23
    req[40:48] = b"12345678"
    a = answer(bytes(req), lambda: 0.5)
    assert a[0] == 0x24 and a[1] == 2 and a[24:32] == b"12345678"
    assert struct.unpack("!II", a[40:48]) == (2208988800, 2147483648)
    assert answer(bytes(47), time.time) is None and answer(b"\x24" + bytes(47), time.time) is None
