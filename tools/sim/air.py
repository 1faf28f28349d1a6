"""The air between the simulated chip and the world: a local TCP server speaking JSON lines.

The chip's shims (tools/sim/shims) send one request per line and wait for one reply line.
(Bluetooth does not go this way: the chip's NimBLE speaks HCI to tools/sim/radio.py.)
"""
import json
import socket
import threading


def listen_local(port=0, backlog=16):
    """A TCP listener on the loopback (port 0: any free one)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(backlog)
    return sock


def close_listener(sock):
    """Close a listening socket so that the thread blocked in accept() wakes up (close alone
    does not wake it on Linux) and ends."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class AirServer:
    def __init__(self, handler):
        self.handler = handler      # fn(msg: dict) -> reply dict
        self.sock = listen_local()
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True, name="air-accept").start()

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True, name="air").start()

    def _serve(self, conn):
        rfile = conn.makefile("rb")
        try:
            for line in rfile:
                msg = json.loads(line)
                try:
                    reply = dict(self.handler(msg))
                except OSError as e:
                    # OSError(errno) or, as the ESP32 port raises its driver errors, OSError(message)
                    if e.errno is None and e.args and isinstance(e.args[0], str):
                        reply = {"error": e.args[0]}
                    else:
                        reply = {"errno": e.errno or 5}
                reply["seq"] = msg.get("seq")
                conn.sendall(json.dumps(reply).encode() + b"\n")
        except (OSError, ValueError):
            pass  # the chip died (power cut) mid-line: nothing to answer
        finally:
            conn.close()

    def close(self):
        self.closed = True
        close_listener(self.sock)
