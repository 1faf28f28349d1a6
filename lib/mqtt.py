# Small asyncio MQTT 3.1.1 client for MicroPython (QoS 0 and 1).
#
# Why not umqtt / mqtt_as: see docs spec section 9 - blocking sockets, no pings, no bounded
# retransmission, no backoff. This client puts a timeout on every network step (TCP connect,
# TLS handshake, CONNACK, SUBACK, PUBACK, every write), pings on its own, and declares the
# link dead after a bounded silence. It does NOT reconnect by itself: the caller owns the
# policy (re-resolve DNS, check WLAN.status(), wait backoff.backoff(attempt), connect() again,
# re-subscribe, re-publish unacknowledged QoS 1 messages under a new packet id).
#
#   c = MQTTClient("node-1", "broker.lan", keepalive=30, callback=on_msg)
#   await c.connect()
#   await c.subscribe("roost/cmd/#", qos=1)
#   await c.publish("roost/t", b"21.5", qos=1)
#   err = await c.wait_dead()       # returns the exception that killed the link
#
# Incoming messages go to callback(topic, msg, retained, dup) if given (a plain function: it
# runs in the reader task, so it must not block and must not await a QoS 1 publish), else to a
# bounded queue read with `async for topic, msg, retained, dup in client`.
from micropython import const
import asyncio
import time

_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)  # the low nibble 0b0010 is mandatory for SUBSCRIBE (3.1.1 s3.8.1)
_SUBACK = const(0x90)
_PINGREQ = const(0xC0)
_PINGRESP = const(0xD0)
_DISCONNECT = const(0xE0)
_MAX_LEN = const(268435455)  # largest value 4 remaining-length bytes can hold

_CONNACK_CODES = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


class MQTTError(Exception):
    """Protocol-level failure. .code is the CONNACK return code (1-5) or None."""

    def __init__(self, msg, code=None):
        if code is not None:
            msg = "%s (code %d: %s)" % (msg, code, _CONNACK_CODES.get(code, "unknown"))
        super().__init__(msg)
        self.code = code


def encode_len(n):
    """MQTT remaining length: 7 bits per byte, LSB first, high bit = more bytes follow."""
    if n < 0 or n > _MAX_LEN:
        raise ValueError("remaining length out of range")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def decode_len(buf, offset=0):
    """Inverse of encode_len: returns (value, bytes used). A 5th byte is malformed (spec s2.2.3)."""
    n = 0
    for i in range(4):
        if offset + i >= len(buf):
            raise ValueError("truncated remaining length")
        b = buf[offset + i]
        n |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return n, i + 1
    raise ValueError("remaining length longer than 4 bytes")


def _str(s):
    if isinstance(s, str):
        s = s.encode()
    return len(s).to_bytes(2, "big") + s


class MQTTClient:
    def __init__(self, client_id, server, port=None, user=None, password=None, keepalive=60,
                 clean=True, ssl=None, server_hostname=None, timeout=10, max_packet=4096,
                 max_repubs=3, callback=None, queue_len=8):
        self.client_id = client_id
        self.server = server
        self.port = port or (8883 if ssl else 1883)
        self.user = user
        self.password = password
        self.keepalive = keepalive
        self.clean = clean
        self.ssl = ssl
        self.server_hostname = server_hostname
        self.timeout = timeout  # seconds, for every single network step
        self.max_packet = max_packet  # refuse incoming packets larger than this (heap is small)
        self.max_repubs = max_repubs
        self.callback = callback
        self.queue_len = queue_len
        self.pings = 0  # PINGRESPs received (diagnostics / tests)
        self._will = None
        self._pid = 0
        self.last_topic = None      # of the last PUBLISH or SUBSCRIBE sent, as given (str or bytes)
        self._reader = self._writer = None
        self._tasks = []
        self._err = None
        self._wlock = asyncio.Lock()  # one packet on the wire at a time
        self._dead = asyncio.Event()
        self._acks = {}  # packet id -> [Event, payload]
        self._queue = []
        self._qev = asyncio.Event()
        self._last_rx = 0
        self._rx = b""  # received bytes not yet parsed

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self._will = (topic, msg, retain, qos)

    def isconnected(self):
        return self._writer is not None and self._err is None

    # ---- lifecycle ----

    async def connect(self):
        """Open TCP (+TLS), send CONNECT, await CONNACK; raises MQTTError / OSError / TimeoutError.
        Each step is bounded by `timeout`, so a whole attempt takes at most about 3 * timeout."""
        if self._writer is not None:
            await self.close()  # never leave an old reader/pinger task running
        self._err = None
        self._dead = asyncio.Event()
        self._acks = {}
        self._qev.clear()
        self._rx = b""
        t = self.timeout
        # open_connection resolves the name every call (spec 9.3 item 6). DNS itself is blocking.
        # With TLS the handshake happens on the first write/read below, inside those timeouts.
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.server, self.port, ssl=self.ssl,
                                    server_hostname=self.server_hostname), t)
        try:
            flags = 0x02 if self.clean else 0
            body = bytearray(b"\x00\x04MQTT\x04")
            payload = _str(self.client_id)
            if self._will:
                wt, wm, wr, wq = self._will
                flags |= 0x04 | (wq << 3) | (0x20 if wr else 0)
                payload += _str(wt) + _str(wm)
            if self.user is not None:
                flags |= 0x80
                payload += _str(self.user)
                if self.password is not None:
                    flags |= 0x40
                    payload += _str(self.password)
            body.append(flags)
            body += self.keepalive.to_bytes(2, "big")
            await self._send(_CONNECT, body + payload)
            typ, data = await asyncio.wait_for(self._read_packet(), t)
            if typ & 0xF0 != _CONNACK or len(data) != 2:
                raise MQTTError("expected CONNACK, got 0x%02x" % typ)
            if data[1]:
                raise MQTTError("connection refused", data[1])
        except BaseException:
            await self._close_stream()
            raise
        self._last_rx = time.ticks_ms()
        self._tasks = [asyncio.create_task(self._read_loop())]
        if self.keepalive:
            self._tasks.append(asyncio.create_task(self._ping_loop()))

    async def close(self):
        """Polite DISCONNECT (the broker then drops the last will), then close the socket."""
        if self._writer is not None and self._err is None:
            try:
                await self._send(_DISCONNECT, b"")
            except Exception:
                pass
        self._die(MQTTError("closed"))
        await self._close_stream()

    async def wait_dead(self):
        """Wait until the link is gone; return the exception saying why."""
        await self._dead.wait()
        return self._err

    # ---- publishing / subscribing ----

    def _next_pid(self):
        self._pid = self._pid % 65535 + 1  # 0 is not a valid packet id
        return self._pid

    async def publish(self, topic, msg, retain=False, qos=0):
        """QoS 0: fire and forget. QoS 1: wait `timeout` for PUBACK, resend with DUP up to
        max_repubs times, then raise MQTTError. Returns the packet id (0 for QoS 0)."""
        if isinstance(msg, str):
            msg = msg.encode()
        self.last_topic = topic     # a broker that closes the session on a topic: say which
        hdr = _PUBLISH | (qos << 1) | (1 if retain else 0)
        if not qos:
            await self._send(hdr, _str(topic), msg)
            return 0
        pid = self._next_pid()
        head = _str(topic) + pid.to_bytes(2, "big")
        self._expect(pid)
        for attempt in range(self.max_repubs + 1):
            await self._send(hdr | (0x08 if attempt else 0), head, msg)  # DUP on resends
            if await self._wait_ack(pid) is not None:
                return pid
        self._acks.pop(pid, None)
        raise MQTTError("no PUBACK for packet %d after %d sends" % (pid, self.max_repubs + 1))

    async def subscribe(self, topic, qos=0):
        """Returns the granted QoS; a SUBACK of 0x80 (refused) raises MQTTError."""
        self.last_topic = topic
        pid = self._next_pid()
        self._expect(pid)
        await self._send(_SUBSCRIBE, pid.to_bytes(2, "big") + _str(topic) + bytes((qos,)))
        rc = await self._wait_ack(pid)
        if rc is None:
            self._acks.pop(pid, None)
            raise MQTTError("no SUBACK for %s" % topic)
        if rc[0] & 0x80:
            raise MQTTError("subscription to %s refused" % topic)
        return rc[0]

    def _expect(self, pid):
        # Register the waiter BEFORE sending: the reader task may see the ack before the
        # sender gets scheduled again, and an ack nobody waits for is dropped.
        self._acks[pid] = [asyncio.Event(), None]

    async def _wait_ack(self, pid):
        # The reader task fills in the payload and sets the event.
        w = self._acks[pid]
        try:
            await asyncio.wait_for(w[0].wait(), self.timeout)
        except asyncio.TimeoutError:
            self._check()
            return None
        self._check()
        del self._acks[pid]
        return w[1]

    # ---- incoming ----

    def __aiter__(self):
        return self

    async def __anext__(self):
        while not self._queue:
            self._check()
            self._qev.clear()
            await self._qev.wait()
        return self._queue.pop(0)

    # ---- internals ----

    def _check(self):
        if self._err is not None:
            raise self._err
        if self._writer is None:
            raise MQTTError("not connected")

    def _die(self, err):
        # First cause wins. Wake everyone who waits so nothing hangs on a dead link.
        if self._err is None:
            self._err = err
        for w in self._acks.values():
            w[0].set()
        self._qev.set()
        self._dead.set()
        for t in self._tasks:
            if t is not asyncio.current_task():
                t.cancel()
        self._tasks = []

    async def _close_stream(self):
        w, self._writer = self._writer, None
        if w is not None:
            try:
                w.close()
                await asyncio.wait_for(w.wait_closed(), 1)
            except Exception:
                pass

    async def _send(self, hdr, body, payload=b""):
        # The payload (a batch of readings) is written as it is, not joined to the header:
        # a copy of a few KB is what a full heap cannot spare.
        self._check()
        async with self._wlock:
            self._writer.write(bytes((hdr,)) + encode_len(len(body) + len(payload)) + body)
            if payload:
                self._writer.write(payload)
            try:
                await asyncio.wait_for(self._writer.drain(), self.timeout)
            except Exception as e:
                self._die(MQTTError("write failed: %r" % (e,)))
                raise self._err

    async def _recv(self, n):
        # Exactly n bytes. Reads in chunks and buffers the surplus, and first tries the socket
        # directly (non-blocking): with TLS, mbedTLS decrypts a whole record at once, and the
        # plaintext it holds back is invisible to the poller, so a small read followed by an
        # await on the stream could wait for the *next* record (seen: a lost SUBACK).
        buf = self._rx
        while len(buf) < n:
            want = max(n - len(buf), 256)
            chunk = self._reader.s.read(want)
            if chunk is None:
                chunk = await self._reader.read(want)
            if not chunk:
                raise MQTTError("connection closed by broker")
            buf += chunk
        self._rx = buf[n:]
        return buf[:n]

    async def _read_packet(self):
        h = (await self._recv(1))[0]
        n = 0
        for i in range(4):
            b = (await self._recv(1))[0]
            n |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                break
        else:
            raise MQTTError("malformed remaining length")
        if n > self.max_packet:
            # Refuse before reading the body: one oversized message must not exhaust the heap.
            raise MQTTError("incoming packet of %d bytes exceeds max_packet %d" % (n, self.max_packet))
        return h, (await self._recv(n) if n else b"")

    async def _read_loop(self):
        try:
            while True:
                typ, data = await self._read_packet()
                self._last_rx = time.ticks_ms()
                kind = typ & 0xF0
                if kind == _PUBLISH:
                    await self._on_publish(typ, data)
                elif kind == _PUBACK or kind == _SUBACK:
                    w = self._acks.get(int.from_bytes(data[:2], "big"))
                    if w is not None:  # a late ack for a packet we gave up on is ignored
                        w[1] = data[2:] if kind == _SUBACK else b""
                        w[0].set()
                elif kind == _PINGRESP:
                    self.pings += 1
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._die(e)
            await self._close_stream()

    async def _on_publish(self, typ, data):
        qos = (typ >> 1) & 3
        tlen = int.from_bytes(data[:2], "big")
        topic = bytes(data[2:2 + tlen])
        pos = 2 + tlen
        pid = 0
        if qos:
            pid = int.from_bytes(data[pos:pos + 2], "big")
            pos += 2
        msg = bytes(data[pos:])
        item = (topic, msg, bool(typ & 1), bool(typ & 8))
        if self.callback:
            self.callback(*item)
        elif len(self._queue) < self.queue_len:
            self._queue.append(item)
            self._qev.set()
        elif qos:
            return  # queue full: withhold PUBACK so the broker redelivers later instead of losing it
        # PUBACK only after delivery: at-least-once (a crash in between means a redelivery).
        if qos == 1:
            await self._send(_PUBACK, pid.to_bytes(2, "big"))

    async def _ping_loop(self):
        # Ping every keepalive/2; if nothing at all arrived for 1.5 * keepalive (the broker's
        # own limit for us), the link is dead even though TCP has not noticed (half-open socket).
        ka = self.keepalive * 1000
        step = ka // 4
        since_ping = ka
        try:
            while True:
                if since_ping >= ka // 2:
                    await self._send(_PINGREQ, b"")
                    since_ping = 0
                await asyncio.sleep_ms(step)
                since_ping += step
                if time.ticks_diff(time.ticks_ms(), self._last_rx) > ka * 3 // 2:
                    self._die(MQTTError("no traffic from broker for %d s" % (ka * 3 // 2000)))
                    await self._close_stream()
                    return
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._die(e)
            await self._close_stream()
