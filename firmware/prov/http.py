# Protocomm over HTTP for SoftAP provisioning, as IDF's protocomm_httpd: POST /<endpoint>,
# raw bytes in and out, and the session cookie rules esp_prov and the phone apps rely on:
# the first request of a new session gets "Set-Cookie: session=<id>"; a later request
# belongs to it iff it sends exactly that cookie, or sends no cookie on the same socket.
# Anything else starts a new session. A refused request closes the socket with no
# response, which clients report as a failed session.
import asyncio
import os

from micropython import const

import log
from firmware.prov.protocomm import VERSION
from firmware.prov.errors import ProvError

_PORT = const(80)
_MAX_BODY = const(4096)
_MAX_HEADERS = const(32)
_IDLE_S = const(30)


class HttpError(Exception):
    pass


class HttpTransport:
    def __init__(self, pc):
        self._pc = pc
        self._names = set(name for name, _ in pc.endpoints())
        self._cookie = None       # "session=<id>" of the current cookie session
        self._session = None
        self._server = None

    async def start(self):
        self._server = await asyncio.start_server(self._client, "0.0.0.0", _PORT)
        log.info("prov", "SoftAP: HTTP provisioning on port %d" % _PORT)

    def stop(self):
        if self._server:
            self._server.close()
            self._server = None

    def _new_session(self):
        self._cookie = "session=%d" % int.from_bytes(os.urandom(4), "big")
        self._session = self._pc.open_session()
        return self._session

    def _session_for(self, cookie, socket_session):
        if cookie is not None:
            if cookie == self._cookie and self._session and self._session.alive():
                return self._session, False
            return self._new_session(), True
        if socket_session is not None and socket_session.alive():
            return socket_session, False
        return self._new_session(), True

    async def _client(self, reader, writer):
        socket_session = None
        try:
            while True:
                method, endpoint, length, cookie = await asyncio.wait_for(_read_head(reader), _IDLE_S)
                if method is None:
                    break
                if endpoint not in self._names:
                    await _respond(writer, b"404 Not Found", b"")
                    continue
                if method != b"POST" or not 0 < length <= _MAX_BODY:
                    raise HttpError("bad request")
                body = await asyncio.wait_for(reader.readexactly(length), _IDLE_S)
                set_cookie = None
                if endpoint == VERSION:   # always in clear; must not disturb any session
                    response = self._pc.version_json
                else:
                    session, fresh = self._session_for(cookie, socket_session)
                    socket_session = session
                    if fresh:
                        set_cookie = self._cookie
                    response = session.handle(endpoint, body)
                await _respond(writer, b"200 OK", response, set_cookie)
        except ProvError as e:
            log.warning("prov", "SoftAP: request refused: %s" % e)
        except (HttpError, ValueError, OSError, asyncio.TimeoutError, EOFError) as e:
            log.debug("prov", "SoftAP: connection dropped: %r" % (e,))
        finally:
            writer.close()
            await writer.wait_closed()


async def _read_head(reader):
    """(method, endpoint, content length, cookie) of the next request, or (None,)*4 at EOF."""
    line = await reader.readline()
    if not line:
        return None, None, 0, None
    parts = line.split()
    if len(parts) != 3 or not parts[1].startswith(b"/"):
        raise HttpError("bad request line")
    length = 0
    cookie = None
    for _ in range(_MAX_HEADERS):
        h = await reader.readline()
        if h in (b"\r\n", b"\n"):
            break
        if not h:
            raise HttpError("truncated headers")
        name, _, value = h.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"cookie":
            cookie = value.strip().decode()
    else:
        raise HttpError("too many headers")
    return parts[0], parts[1][1:].decode(), length, cookie


async def _respond(writer, status, body, set_cookie=None):
    head = b"HTTP/1.1 " + status + b"\r\nContent-Type: text/html\r\nContent-Length: %d\r\n" % len(body)
    if set_cookie:
        head += b"Set-Cookie: " + set_cookie.encode() + b"\r\n"
    writer.write(head + b"\r\n" + body)
    await writer.drain()
