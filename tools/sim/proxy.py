"""Per-board TCP proxies to cloud services: the board's route to "the internet".

A board resolves a cloud host name to one of these; connections pass only while the
board's Wi-Fi is up, and all of them are cut (RST) the moment its link drops.
"""
import socket
import struct
import threading

from .air import close_listener, listen_local


def _reset(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class Proxy:
    def __init__(self, target, link_up):
        self.target = target          # (host, port) of the real service
        self.link_up = link_up        # fn() -> bool: is the board on Wi-Fi now?
        self.sock = listen_local()
        self.port = self.sock.getsockname()[1]
        self.live = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="proxy").start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if not self.link_up():
                _reset(conn)
                continue
            try:
                up = socket.create_connection(self.target, timeout=5)
                up.settimeout(None)
            except OSError:
                _reset(conn)  # service down: the board sees a refused/reset connection
                continue
            with self.lock:
                self.live.add(conn)
                self.live.add(up)
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True, name="pump").start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(src)
            self._drop(dst)

    def _drop(self, s):
        with self.lock:
            self.live.discard(s)
        _reset(s)

    def cut(self):
        """The board's link went down: every open connection breaks."""
        with self.lock:
            live, self.live = self.live, set()
        for s in live:
            _reset(s)

    def close(self):
        close_listener(self.sock)
        self.cut()
