# Small asyncio HTTP/1.1 client for MicroPython: one request per connection.
#
# Why not `requests`: it blocks the whole asyncio loop (LED, button, MQTT pings) for as
# long as a server takes to answer, and a half-open connection can hold it far longer
# than its socket timeout. Here every step (connect, TLS, write, each read) is bounded by
# `timeout`, the body is bounded by `max_body` (the heap is small), and the caller gets
# the status and the body: what a status means is the caller's business.
#
#   status, body = await request("GET", "http://cloud.lan/things/bootstrap/n1",
#                                headers={"Authorization": "Thing k"}, timeout=10)
import asyncio


class HTTPError(Exception):
    """The exchange failed (bad URL, malformed or oversized response); not an HTTP status."""


def split_url(url):
    """(tls, host, port, path) of an http:// or https:// URL."""
    if url.startswith("http://"):
        tls, rest, port = False, url[7:], 80
    elif url.startswith("https://"):
        tls, rest, port = True, url[8:], 443
    else:
        raise HTTPError("unsupported URL scheme: %s" % url)
    host, _, path = rest.partition("/")
    if ":" in host:
        host, _, p = host.rpartition(":")
        try:
            port = int(p)
        except ValueError:
            raise HTTPError("bad port in URL")
    if not host:
        raise HTTPError("no host in URL")
    return tls, host, port, "/" + path


async def request(method, url, headers=None, body=None, timeout=10, max_body=4096, ssl=None, buf=None):
    """Send one request; return (status, body bytes). Raises HTTPError, OSError or
    asyncio.TimeoutError. For https:// pass `ssl` (an SSLContext with the CA loaded).
    body: bytes, str, or a function returning an iterator of bytes chunks, called twice
    (once to count, once to send), so a big body never sits in the heap whole; they are
    gathered in `buf` (a bytearray the caller allocated once, while the heap had room for
    it) and sent a buffer at a time, so each TLS record carries more than one chunk."""
    tls, host, port, path = split_url(url)
    if tls and ssl is None:
        raise HTTPError("https needs an SSL context")
    r, w = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=ssl if tls else None,
                                server_hostname=host if tls else None), timeout)
    try:
        if isinstance(body, str):
            body = body.encode()
        head = "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n" % (method, path, host)
        for k in headers or ():
            head += "%s: %s\r\n" % (k, headers[k])
        streamed = callable(body)
        if body is not None:
            head += "Content-Length: %d\r\n" % (sum(len(c) for c in body()) if streamed else len(body))
        w.write(head.encode() + b"\r\n")
        if streamed:
            # A fixed buffer, filled and sent: a growing one would leave holes in the heap.
            size = len(buf)
            n = 0
            for chunk in body():
                if n + len(chunk) > size:
                    w.write(memoryview(buf)[:n])
                    await asyncio.wait_for(w.drain(), timeout)
                    n = 0
                if len(chunk) > size:
                    w.write(chunk)
                    continue
                buf[n:n + len(chunk)] = chunk
                n += len(chunk)
            body = memoryview(buf)[:n]
        if body is not None and len(body):
            w.write(body)
        await asyncio.wait_for(w.drain(), timeout)
        line = await asyncio.wait_for(r.readline(), timeout)
        if not line:
            raise OSError("connection closed without an answer")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise HTTPError("malformed status line")
        try:
            status = int(parts[1])
        except ValueError:
            raise HTTPError("malformed status line")
        length, chunked = None, False
        while True:
            line = await asyncio.wait_for(r.readline(), timeout)
            if not line:
                raise HTTPError("connection closed in headers")
            if line in (b"\r\n", b"\n"):
                break
            k, _, v = line.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    raise HTTPError("bad Content-Length")
            elif k == b"transfer-encoding" and b"chunked" in v.lower():
                chunked = True
        if chunked:
            data = await _chunks(r, timeout, max_body)
        elif length is not None:
            if length > max_body:
                raise HTTPError("response body too large (%d bytes)" % length)
            data = await asyncio.wait_for(r.readexactly(length), timeout) if length else b""
        else:
            data = await _until_close(r, timeout, max_body)
        return status, data
    finally:
        w.close()
        try:
            await w.wait_closed()
        except Exception:
            pass


async def _until_close(r, timeout, max_body):
    data = b""
    while True:
        part = await asyncio.wait_for(r.read(512), timeout)
        if not part:
            return data
        data += part
        if len(data) > max_body:
            raise HTTPError("response body too large")


async def _chunks(r, timeout, max_body):
    data = b""
    while True:
        line = await asyncio.wait_for(r.readline(), timeout)
        try:
            n = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            raise HTTPError("bad chunk size")
        if n == 0:
            return data
        if len(data) + n > max_body:
            raise HTTPError("response body too large")
        data += await asyncio.wait_for(r.readexactly(n + 2), timeout)
        data = data[:-2]
