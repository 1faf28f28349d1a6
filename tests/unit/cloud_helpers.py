"""Test helpers for the local cloud: a started LocalCloud, HTTP calls, and a paho client acting as
a device's thing over TLS (real Mosquitto, real HTTP); ThingSpeak and self-registration on their
own HTTP port without a broker (Services)."""
import http.client
import threading
import time

import paho.mqtt.client as mqtt

from tools.cloud import client
from tools.cloud.broker import find_mosquitto


def need_mosquitto():
    assert find_mosquitto(), "mosquitto not installed (`make setup` installs it)"


def start_cloud(directory, **kw):
    from tools.cloud.local import LocalCloud
    need_mosquitto()
    kw.setdefault("mapping_timeout", 1.5)
    return LocalCloud(directory, **kw).start()


def call(cloud, method, path, body=None, token=None, raw=None, headers=None):
    """(status, decoded JSON or raw bytes) from this cloud's HTTP port."""
    return client.call(cloud.http_url, method, path, body, token, raw, headers, timeout=5)


def raw_call(base_url, method, path, body=b"", headers=None):
    """(status, headers, body bytes): for answers that are not JSON, or whose headers matter."""
    host, port = base_url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request(method, path, body=body or None, headers=dict(headers or {}))
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


class Clock:
    """An injectable clock: clock() is .now, moved by hand."""

    def __init__(self, now=1767225600.0):          # 2026-01-01T00:00:00Z
        self.now = now

    def __call__(self):
        return self.now


class Services:
    """ThingSpeak (rate limit `rate_limit_s`, `clock`) and midPoint registration (PBKDF2
    `iterations`) on an in-memory database, served on their own HTTP port."""

    def __init__(self, rate_limit_s=0, iterations=10000, clock=None):
        from tools.cloud.db import Database
        from tools.cloud.http import HTTPService, Router
        from tools.cloud.registration import RegistrationService
        from tools.cloud.thingspeak import ThingSpeakService
        self.clock = clock or Clock()
        self.db = Database()
        self.ts = ThingSpeakService(self.db, rate_limit_s=rate_limit_s, clock=self.clock)
        self.reg = RegistrationService(self.db, self.ts, iterations=iterations, clock=self.clock)
        router = Router()
        self.ts.register(router)
        self.reg.register(router)
        self.http = HTTPService(router).start()
        self.url = self.http.url

    def call(self, method, path, body=b"", headers=None):
        """(status, headers, body text)."""
        status, hdrs, data = raw_call(self.url, method, path, body, headers)
        return status, hdrs, data.decode()

    def close(self):
        self.http.stop()
        self.db.close()


class Thing:
    """A device's MQTT session: username thing_id, password thing_key, client id node_id, TLS
    verified with the cloud's CA."""

    def __init__(self, cloud, cfg=None, username=None, password=None, client_id=None, host="localhost"):
        self.node_id = client_id or (cfg["external_id"] if cfg else "t")
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.node_id)
        self.client.username_pw_set(username or cfg["thing_id"], password or cfg["thing_key"])
        self.client.tls_set(ca_certs=str(cloud.ca_path))
        self.connack = None
        self.suback = {}
        self.received = []
        self.cond = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect_async(host, cloud.mqtt_tls_port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason, properties):
        with self.cond:
            self.connack = reason
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reasons, properties):
        with self.cond:
            self.suback[mid] = [r.value for r in reasons]
            self.cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.received.append((msg.topic, bytes(msg.payload)))
            self.cond.notify_all()

    def _wait(self, predicate, timeout=5.0, what="condition"):
        end = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(what)
                self.cond.wait(left)

    def connected(self, timeout=5.0):
        """The CONNACK reason code value (0 = accepted)."""
        self._wait(lambda: self.connack is not None, timeout, "CONNACK")
        return self.connack.value

    def subscribe(self, topic, qos=1):
        """SUBACK return code (0/1 granted QoS, 0x80 refused)."""
        rc, mid = self.client.subscribe(topic, qos)
        assert rc == 0
        self._wait(lambda: mid in self.suback, 5.0, "SUBACK")
        return self.suback[mid][0]

    def publish(self, topic, payload, qos=1):
        info = self.client.publish(topic, payload, qos)
        info.wait_for_publish(5)
        return info

    def wait_message(self, topic, timeout=5.0):
        self._wait(lambda: any(t == topic for t, _ in self.received), timeout, "message on " + topic)
        return next(p for t, p in self.received if t == topic)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def published_or_dropped(cloud, thing, topic, payload=b"x"):
    """Publish as the thing, then a marker on the thing's own node topic; once the cloud sees the
    marker (same connection, in order), it would have seen the first. True if it arrived."""
    marker = ("marker-%f" % time.monotonic()).encode()
    thing.publish(topic, payload)
    thing.publish("node/%s/marker" % thing.node_id, marker)
    cloud.wait_message("node/+/marker", match=lambda p: p == marker)
    return (topic, payload) in cloud.messages(topic)
