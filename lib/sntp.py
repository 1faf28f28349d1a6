# SNTP client (RFC 4330) for asyncio: one request, one answer, a deadline. UDP has no
# asyncio stream, so the socket is non-blocking and polled; the loop keeps running.
#
#   s, us = await query("pool.ntp.org")  # seconds since the port's epoch, and microseconds;
#                                         # raises OSError or SNTPError
#
# Integers, not a float: the ESP32's floats are single precision, and a float of today's
# epoch seconds is only good to 128 s.
#
# ntptime (frozen into ESP32 builds) blocks the whole loop for up to its timeout and takes
# any answer; this one checks that the answer is a server's reply to this very request
# (its originate timestamp echoes our random transmit timestamp) from a synchronised clock.
import asyncio
import os
import socket
import struct
import time

from epoch import UNIX_OFFSET

_NTP_TO_EPOCH = 2208988800 + UNIX_OFFSET    # seconds from 1900-01-01 (NTP era 0) to the port's epoch
_POLL_MS = 20


class SNTPError(Exception):
    pass


def request(nonce):
    """The 48-byte client request: LI 0, version 4, mode 3; transmit timestamp = nonce."""
    pkt = bytearray(48)
    pkt[0] = 0x23
    pkt[40:48] = nonce
    return pkt


def parse(data, nonce):
    """(seconds since the port's epoch, microseconds) from a server's answer to the request
    carrying nonce; SNTPError if it is not one (wrong size or mode, a kiss-o'-death, an
    unsynchronised server, not ours)."""
    if len(data) < 48:
        raise SNTPError("short answer")
    if data[0] & 7 not in (4, 5):                   # server or broadcast
        raise SNTPError("not a server answer")
    if data[0] >> 6 == 3:                           # leap indicator "alarm"
        raise SNTPError("server clock not synchronised")
    if not 1 <= data[1] <= 15:                      # 0: kiss-o'-death
        raise SNTPError("server clock not synchronised (stratum %d)" % data[1])
    if bytes(data[24:32]) != bytes(nonce):
        raise SNTPError("answer to another request")
    secs, frac = struct.unpack_from("!II", data, 40)
    if not secs:
        raise SNTPError("no transmit time")
    return secs - _NTP_TO_EPOCH, (frac >> 12) * 1000000 >> 20      # frac / 2**32 s, in us


async def query(host, port=123, timeout_ms=3000):
    addr = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0][-1]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setblocking(False)
        nonce = os.urandom(8)
        s.sendto(request(nonce), addr)
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        why = "no answer"
        while True:
            try:
                data = s.recv(64)
            except OSError:             # EAGAIN: nothing yet
                data = None
            if data:
                try:
                    return parse(data, nonce)
                except SNTPError as e:  # a stray or forged datagram: keep waiting for ours
                    why = str(e)
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                raise SNTPError(why)
            await asyncio.sleep_ms(_POLL_MS)
    finally:
        s.close()
