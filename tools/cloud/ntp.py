"""An SNTP server (RFC 4330) for boards on the local cloud: each client request (mode 3) gets
the host's clock as a stratum-2 server (mode 4), its transmit timestamp echoed as the answer's
originate timestamp, so the board can tell the answer is to its request.

    ntp = SNTPServer().start(); ntp.port; ntp.requests; ntp.stop()
"""
import logging
import socket
import struct
import threading
import time

log = logging.getLogger("roost.cloud.ntp")

NTP_TO_UNIX = 2208988800


def ntp_time(t):
    """An NTP timestamp (8 bytes) of epoch seconds t."""
    secs = int(t)
    return struct.pack("!II", secs + NTP_TO_UNIX, int((t - secs) * 4294967296) & 0xFFFFFFFF)


def answer(request, clock=time.time):
    """The server's answer to a client request, or None if it is not one."""
    if len(request) < 48 or request[0] & 7 != 3:
        return None
    now = ntp_time(clock())
    head = struct.pack("!BBbbII4s", 0x24, 2, 6, -20, 0, 0, b"LOCL")    # LI 0, v4, mode 4, stratum 2
    return head + now + request[40:48] + now + now


class SNTPServer:
    def __init__(self, host="127.0.0.1", port=0, clock=time.time):
        self.host, self._want_port, self.clock = host, port, clock
        self.sock = None
        self.requests = 0

    @property
    def port(self):
        """The port it serves on; while stopped, the one it will serve on again (None before the
        first start): a stopped time server is a silent port, not a missing one."""
        return self.sock.getsockname()[1] if self.sock else (self._want_port or None)

    def start(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.host, self._want_port))
        self.sock.settimeout(0.1)            # so stop() is seen, and the port freed, at once
        self._want_port = self.port          # the same port after a restart
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(self.sock, self._stop), daemon=True,
                                        name="cloud-ntp")
        self._thread.start()
        return self

    def _serve(self, sock, stop):
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(512)
            except socket.timeout:
                continue
            reply = answer(data, self.clock)
            if reply is None:
                log.info("not an SNTP request from %s:%d (%d bytes): ignored", *peer, len(data))
                continue
            self.requests += 1
            sock.sendto(reply, peer)

    def stop(self):
        if self.sock:
            self._stop.set()
            self._thread.join(2)
            self.sock.close()
            self.sock = None
