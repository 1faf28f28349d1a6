"""A hand-made HTTP server for the device's clients: answers every connection with whatever
respond(request bytes) returns (a fixed reply, garbage, silence, or a tampered real answer)."""
import re
import socket
import threading


class RawServer:
    def __init__(self, respond):
        self.respond = respond
        self.requests = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                req = b""
                while b"\r\n\r\n" not in req:
                    part = c.recv(4096)
                    if not part:
                        break
                    req += part
                head, _, body = req.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                while length and len(body) < int(length.group(1)):
                    part = c.recv(65536)
                    if not part:
                        break
                    body += part
                req = head + b"\r\n\r\n" + body
                self.requests.append(req)
                data = self.respond(req)
                if data:
                    c.sendall(data)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def reply(body, status="200 OK", extra=""):
    return ("HTTP/1.1 %s\r\nContent-Length: %d\r\n%s\r\n" % (status, len(body), extra)).encode() + body


def closed_port():
    """A local port nothing listens on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
