"""lib/mqtt.py under the MicroPython unix port, against a real Mosquitto broker."""
import os
import signal
import socket
import subprocess
import time

import pytest

from mpy import run_mpy
from tools.cloud.broker import find_mosquitto, free_port, password_hash


# ---------------------------------------------------------------- broker fixture

def _wait_port(port, proc, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("mosquitto exited with %s: %s" % (proc.returncode, proc.stderr.read()))
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mosquitto did not open port %d" % port)


class Broker:
    def __init__(self, tmp):
        exe = find_mosquitto()
        assert exe, "mosquitto not installed (`make setup` installs it)"
        self.port = free_port()
        self.auth_port = None
        self.log = tmp / "mosquitto.log"
        # As root, mosquitto would drop to user "mosquitto", which cannot read our temp files.
        import pwd
        conf = ["user %s" % pwd.getpwuid(os.getuid()).pw_name, "per_listener_settings true", "log_dest file %s" % self.log, "log_type all",
                "listener %d 127.0.0.1" % self.port, "allow_anonymous true"]
        # The password file as the local cloud writes it (tools/cloud/broker.py), without
        # mosquitto_passwd.
        pwfile = tmp / "passwd"
        pwfile.write_text("node:%s\n" % password_hash("s3cret"))
        os.chmod(pwfile, 0o600)
        self.auth_port = free_port(avoid=(self.port,))
        conf += ["listener %d 127.0.0.1" % self.auth_port, "allow_anonymous false",
                 "password_file %s" % pwfile]
        cfg = tmp / "mosquitto.conf"
        cfg.write_text("\n".join(conf) + "\n")
        self.proc = subprocess.Popen([exe, "-c", str(cfg)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        _wait_port(self.port, self.proc)
        _wait_port(self.auth_port, self.proc)

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path)
    yield b
    b.stop()


# ---------------------------------------------------------------- CPython-side raw MQTT peer

def _rl(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _s(b):
    return len(b).to_bytes(2, "big") + b


class Peer:
    """Just enough MQTT 3.1.1 for the test side: connect, subscribe, publish, read publishes."""

    def __init__(self, port, cid=b"peer"):
        self.sock = socket.create_connection(("127.0.0.1", port), 5)
        self.sock.settimeout(5)
        self.send(0x10, b"\x00\x04MQTT\x04\x02\x00\x3c" + _s(cid))
        typ, body = self.read()
        assert typ == 0x20 and body[1] == 0, body

    def send(self, hdr, body):
        self.sock.sendall(bytes((hdr,)) + _rl(len(body)) + body)

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def read(self):
        hdr = self._exact(1)[0]
        n, shift = 0, 0
        while True:
            b = self._exact(1)[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        return hdr, self._exact(n)

    def subscribe(self, topic, qos=1):
        self.send(0x82, b"\x00\x01" + _s(topic) + bytes((qos,)))
        typ, body = self.read()
        assert typ == 0x90 and body[2] != 0x80

    def publish(self, topic, msg, qos=1, retain=False):
        hdr = 0x30 | (qos << 1) | int(retain)
        self.send(hdr, _s(topic) + (b"\x00\x07" if qos else b"") + msg)
        if qos:
            typ, body = self.read()
            assert typ == 0x40 and body == b"\x00\x07"

    def next_publish(self):
        typ, body = self.read()
        assert typ & 0xF0 == 0x30, hex(typ)
        qos = (typ >> 1) & 3
        tl = int.from_bytes(body[:2], "big")
        pos = 2 + tl + (2 if qos else 0)
        if qos:
            self.send(0x40, body[2 + tl:pos])
        return body[2:2 + tl], body[pos:], qos

    def close(self):
        try:
            self.send(0xE0, b"")
        finally:
            self.sock.close()


def device(code, timeout=20, heap="100K"):
    """Run `code` (the body of `async def main()`) on the unix port with mqtt imported."""
    body = "\n".join("    " + line for line in code.strip("\n").splitlines())
    prog = ("import asyncio, gc, time\nfrom mqtt import *\n"
            "async def main():\n%s\nasyncio.run(main())\n" % body)
    return run_mpy(prog, heap=heap, path=("lib", "."), timeout=timeout)


# ---------------------------------------------------------------- pure functions

def test_remaining_length_edges():
    out = run_mpy("""
from mqtt import encode_len, decode_len
for n in (0, 127, 128, 16383, 16384, 2097151, 2097152, 268435455):
    e = encode_len(n)
    print(n, e.hex(), decode_len(e), decode_len(b'\\x00' + e + b'\\xff', 1))
for bad in (-1, 268435456):
    try:
        encode_len(bad); print('no error', bad)
    except ValueError:
        print('range', bad)
for bad in (b'\\xff\\xff\\xff\\xff\\x7f', b'\\x80'):
    try:
        decode_len(bad); print('no error')
    except ValueError as e:
        print('bad', e)
""", path=("lib", "."))
    lines = out.splitlines()
    want = {0: "00", 127: "7f", 128: "8001", 16383: "ff7f", 16384: "808001", 2097151: "ffff7f",
            2097152: "80808001", 268435455: "ffffff7f"}
    for line, (n, hx) in zip(lines, want.items()):
        assert line == "%d %s (%d, %d) (%d, %d)" % (n, hx, n, len(hx) // 2, n, len(hx) // 2), line
    assert lines[8:10] == ["range -1", "range 268435456"]
    assert lines[10] == "bad remaining length longer than 4 bytes"
    assert lines[11] == "bad truncated remaining length"


def test_backoff_grows_with_jitter_and_cap():
    out = run_mpy("""
from backoff import backoff
for a in range(10):
    v = [backoff(a, 1, 60) for _ in range(50)]
    print(a, min(v), max(v), len(set(v)) > 1)
print(backoff(1000, 1, 60) <= 60)
""", path=("lib", "."))
    lines = out.splitlines()
    for a, line in enumerate(lines[:10]):
        _, lo, hi, varied = line.split()
        d = min(60, 2 ** a)
        assert d / 2 <= float(lo) <= float(hi) <= d and varied == "True", line
    assert lines[10] == "True"


# ---------------------------------------------------------------- against the broker

def test_qos1_publish_reaches_subscriber(broker):
    peer = Peer(broker.port)
    peer.subscribe(b"roost/t", 1)
    out = device("""
c = MQTTClient("dev-pub", "127.0.0.1", %d, keepalive=10, timeout=3)
c.set_last_will("roost/will", "gone", qos=1)
await c.connect()
print("pid", await c.publish("roost/t", b"21.5", qos=1))
await c.publish("roost/t", "qos0")
await c.close()
print("closed", repr(await c.wait_dead()))
""" % broker.port)
    assert "pid 1" in out
    assert peer.next_publish() == (b"roost/t", b"21.5", 1)
    assert peer.next_publish() == (b"roost/t", b"qos0", 0)
    peer.close()
    assert "Received PUBLISH from dev-pub" in broker.log_text()


def test_qos1_subscribe_round_trip(broker):
    peer = Peer(broker.port)
    peer.publish(b"roost/cmd", b"from-test", qos=1, retain=True)
    out = device("""
c = MQTTClient("dev-sub", "127.0.0.1", %d, keepalive=10, timeout=3)
await c.connect()
print("granted", await c.subscribe("roost/cmd", qos=1))
print(await c.__anext__())
await c.publish("roost/cmd", b"echo", qos=1)
print(await c.__anext__())
await asyncio.sleep_ms(200)
await c.close()
""" % broker.port)
    peer.close()
    assert "granted 1" in out
    assert "(b'roost/cmd', b'from-test', True, False)" in out
    assert "(b'roost/cmd', b'echo', False, False)" in out
    log = broker.log_text()
    # The broker delivered with QoS 1 and got our PUBACKs back.
    assert log.count("Received PUBACK from dev-sub") >= 2, log


def test_callback_delivery(broker):
    out = device("""
got = []
c = MQTTClient("dev-cb", "127.0.0.1", %d, keepalive=10, timeout=3,
               callback=lambda t, m, r, d: got.append((t, m)))
await c.connect()
await c.subscribe("a/#", qos=0)
await c.publish("a/b", b"x", qos=1)
for _ in range(50):
    if got: break
    await asyncio.sleep_ms(20)
print(got)
await c.close()
""" % broker.port)
    assert "[(b'a/b', b'x')]" in out


def test_keepalive_pings_keep_idle_link_alive(broker):
    # keepalive 1 s: the broker would drop us after 1.5 s of silence; stay idle 3.5 s.
    out = device("""
c = MQTTClient("dev-ka", "127.0.0.1", %d, keepalive=1, timeout=3)
await c.connect()
await asyncio.sleep_ms(3500)
print("alive", c.isconnected(), "pings", c.pings)
print("pid", await c.publish("roost/ka", b"still here", qos=1))
await c.close()
""" % broker.port)
    assert "alive True" in out
    pings = int(out.split("pings ")[1].split()[0])
    assert pings >= 5, out
    assert "pid 1" in out


def test_bad_password_is_connack_error(broker):
    out = device("""
for pw in ("wrong", "s3cret"):
    c = MQTTClient("dev-auth", "127.0.0.1", %d, user="node", password=pw, timeout=3)
    try:
        await c.connect()
        print("connected")
        await c.close()
    except MQTTError as e:
        print("code", e.code, e)
""" % broker.auth_port)
    lines = out.splitlines()
    code = int(lines[0].split()[1])
    assert code in (4, 5), out
    assert "connection refused (code %d:" % code in lines[0]
    assert lines[1] == "connected"


def test_broker_killed_is_noticed(broker):
    import threading
    threading.Timer(1.0, broker.proc.kill).start()
    out = device("""
c = MQTTClient("dev-kill", "127.0.0.1", %d, keepalive=10, timeout=2)
await c.connect()
t0 = time.ticks_ms()
err = await asyncio.wait_for(c.wait_dead(), 5)
print("dead", time.ticks_diff(time.ticks_ms(), t0) < 3000, repr(err))
try:
    await c.publish("x", b"y", qos=1)
except MQTTError as e:
    print("publish", e)
""" % broker.port)
    assert "dead True MQTTError('connection closed by broker'" in out, out
    assert "publish connection closed by broker" in out


def test_silent_broker_declared_dead(broker):
    # SIGSTOP: TCP stays up but nothing answers (a half-open link). Keepalive 1 s -> dead after 1.5 s.
    import threading
    threading.Timer(1.0, broker.proc.send_signal, (signal.SIGSTOP,)).start()
    out = device("""
c = MQTTClient("dev-stop", "127.0.0.1", %d, keepalive=1, timeout=2)
await c.connect()
t0 = time.ticks_ms()
err = await asyncio.wait_for(c.wait_dead(), 6)
print("dead", time.ticks_diff(time.ticks_ms(), t0), repr(err))
""" % broker.port)
    broker.proc.send_signal(signal.SIGCONT)
    assert "no traffic from broker" in out, out
    ms = int(out.split("dead ")[1].split()[0])
    assert 1500 <= ms <= 4000, out


def test_oversized_incoming_packet_refused(broker):
    peer = Peer(broker.port)
    peer.publish(b"big", b"z" * 1000, qos=1, retain=True)
    peer.close()
    out = device("""
c = MQTTClient("dev-big", "127.0.0.1", %d, keepalive=10, timeout=3, max_packet=256)
await c.connect()
try:
    await c.subscribe("big", qos=1)
    print(await c.__anext__())
except MQTTError as e:
    print("refused", e)
print("dead", repr(await asyncio.wait_for(c.wait_dead(), 2)))
""" % broker.port)
    assert "exceeds max_packet 256" in out, out


def test_heap_cost(broker):
    out = device("""
gc.collect(); a0 = gc.mem_alloc()
c = MQTTClient("dev-heap", "127.0.0.1", %d, keepalive=10, timeout=3)
await c.connect()
await c.publish("h", b"1", qos=1)
gc.collect(); a1 = gc.mem_alloc()
await c.close()
print("conn", a1 - a0)
""" % broker.port)
    imp = run_mpy("import gc\ngc.collect()\na=gc.mem_alloc()\nimport mqtt\ngc.collect()\n"
                  "print('import', gc.mem_alloc()-a)", path=("lib", "."))
    print(imp, out)
    assert int(out.split("conn ")[1]) < 12000
    assert int(imp.split("import ")[1]) < 16000


# ---------------------------------------------------------------- scripted fake broker (misbehaviour)

class FakeBroker:
    """One-connection broker in a thread, for behaviour Mosquitto will not show on demand
    (lost PUBACKs, refused subscriptions, silence before CONNACK). Records every packet."""

    def __init__(self, handler):
        import threading
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.port = self.srv.getsockname()[1]
        self.packets = []
        self.handler = handler
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.srv.settimeout(10)
        conn, _ = self.srv.accept()
        peer = Peer.__new__(Peer)
        peer.sock = conn
        conn.settimeout(10)
        try:
            while True:
                typ, body = peer.read()
                self.packets.append((typ, body))
                self.handler(peer, typ, body)
        except (EOFError, OSError):
            pass
        finally:
            conn.close()
            self.srv.close()


def test_qos1_retransmits_with_dup_then_gives_up():
    def handler(peer, typ, body):
        if typ == 0x10:
            peer.send(0x20, b"\x00\x00")
        elif typ & 0xF0 == 0x30 and b"ack-2nd" in body and typ & 0x08:
            peer.send(0x40, body[2 + int.from_bytes(body[:2], "big"):][:2])  # ack only the DUP
    fb = FakeBroker(handler)
    out = device("""
c = MQTTClient("dev-dup", "127.0.0.1", %d, keepalive=0, timeout=0.3, max_repubs=2)
await c.connect()
print("pid", await c.publish("t", b"ack-2nd", qos=1))
t0 = time.ticks_ms()
try:
    await c.publish("t", b"never", qos=1)
except MQTTError as e:
    print("gave up", time.ticks_diff(time.ticks_ms(), t0) < 1500, e)
print("pending", len(c._acks))
await c.close()
""" % fb.port)
    fb.thread.join(5)
    assert "pid 1" in out
    assert "gave up True no PUBACK for packet 2 after 3 sends" in out, out
    assert "pending 0" in out
    pubs = [(t, b) for t, b in fb.packets if t & 0xF0 == 0x30]
    # packet 1: original + DUP resend (acked); packet 2: original + 2 DUP resends
    assert [t & 0x08 for t, _ in pubs] == [0, 8, 0, 8, 8], pubs
    assert [b[3:5] for _, b in pubs] == [b"\x00\x01"] * 2 + [b"\x00\x02"] * 3


def test_suback_failure_and_connack_timeout():
    def handler(peer, typ, body):
        if typ == 0x10:
            peer.send(0x20, b"\x00\x00")
        elif typ == 0x82:
            peer.send(0x90, body[:2] + b"\x80")
    fb = FakeBroker(handler)
    silent = FakeBroker(lambda peer, typ, body: None)  # accepts TCP, never sends CONNACK
    out = device("""
c = MQTTClient("dev-suback", "127.0.0.1", %d, keepalive=0, timeout=1)
await c.connect()
try:
    await c.subscribe("forbidden/#", qos=1)
except MQTTError as e:
    print("suback", e)
await c.close()
c = MQTTClient("dev-silent", "127.0.0.1", %d, timeout=0.5)
t0 = time.ticks_ms()
try:
    await c.connect()
except asyncio.TimeoutError:
    print("connack timeout", time.ticks_diff(time.ticks_ms(), t0) < 1500, c.isconnected())
""" % (fb.port, silent.port))
    assert "suback subscription to forbidden/# refused" in out, out
    assert "connack timeout True False" in out, out


# ---------------------------------------------------------------- TLS

def _make_certs(tmp):
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(subject, issuer, pub, key, ca, san=None):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(pub)
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "roost test CA")])
    ca = cert(ca_name, ca_name, ca_key.public_key(), ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    srv = cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]), ca_name,
               key.public_key(), ca_key, False,
               [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    pem = serialization.Encoding.PEM
    (tmp / "ca.pem").write_bytes(ca.public_bytes(pem))
    (tmp / "srv.pem").write_bytes(srv.public_bytes(pem))
    (tmp / "srv.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = cert(ca_name, ca_name, other_key.public_key(), other_key, True)
    return ca.public_bytes(serialization.Encoding.DER), other.public_bytes(serialization.Encoding.DER)


def test_tls_verified_connection(tmp_path):
    exe = find_mosquitto()
    assert exe, "mosquitto not installed (`make setup` installs it)"
    import pwd
    ca_der, wrong_der = _make_certs(tmp_path)
    port = free_port()
    cfg = tmp_path / "tls.conf"
    cfg.write_text("user %s\nlistener %d 127.0.0.1\nallow_anonymous true\ncafile %s\n"
                   "certfile %s\nkeyfile %s\n" % (pwd.getpwuid(os.getuid()).pw_name, port,
                                                  tmp_path / "ca.pem", tmp_path / "srv.pem",
                                                  tmp_path / "srv.key"))
    proc = subprocess.Popen([exe, "-c", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_port(port, proc)
        out = device("""
import ssl
for name, der in (("good", %r), ("wrong", %r)):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=der)
    c = MQTTClient("dev-tls", "127.0.0.1", %d, ssl=ctx, server_hostname="localhost",
                   keepalive=10, timeout=5)
    try:
        await c.connect()
        print(name, "pid", await c.publish("tls/t", b"secure", qos=1))
        print(name, "granted", await c.subscribe("tls/t", qos=1))
        await c.publish("tls/t", b"loop", qos=1)
        print(name, await c.__anext__())
        await c.close()
    except Exception as e:
        print(name, "failed", type(e).__name__, e)
""" % (ca_der, wrong_der, port), heap="200K")
    finally:
        proc.kill()
        proc.wait(5)
    assert "good pid 1" in out, out
    assert "good (b'tls/t', b'loop', False, False)" in out, out
    assert "wrong failed" in out and "wrong pid" not in out, out
