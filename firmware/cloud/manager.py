# The cloud phase, while Wi-Fi is up (docs/cloud.md):
#
#   bootstrap (if no credentials, or asked to) -> MQTT over TLS as the bootstrapped thing
#     -> user mapping / reset notice, claim code -> serve control commands
#     -> link dies: reconnect after a capped exponential backoff with jitter.
#
# Re-bootstrap when there are no credentials, when the broker refuses them (CONNACK 4/5),
# when the cloud asks (control command "rebootstrap"), or after _REBOOTSTRAP_AFTER failed
# connections in a row (the broker may have moved). Stored credentials are replaced only
# by a successful bootstrap, so a broken server never costs the device what it had.
import asyncio
import json
import sys
import time

from micropython import const

import log
from backoff import backoff
from firmware.cloud.commands import Commands
from firmware.unload import unload

_KEEPALIVE_S = const(60)
_STEP_TIMEOUT_S = const(10)        # every MQTT step: TCP, TLS, CONNACK, PUBACK, SUBACK
_REBOOTSTRAP_AFTER = const(5)
_BACKOFF_BASE_S = 2
_BACKOFF_CAP_S = 300
_INBOX = const(4)                  # control requests waiting; more are dropped (and logged)
# A session that ends sooner counts as a failed connect (the backoff grows): a broker that
# accepts CONNECT and then closes the session, as Mainflux's MQTT adapter does on a topic it
# does not allow, must not be reconnected to every second or two forever.
_STABLE_S = const(60)


class CloudError(Exception):
    """The stored or factory configuration cannot reach a broker."""


def broker(rec, factory):
    """(tls, host, port) of the MQTT broker: content.agent.mqtt.url as the Mainflux agent
    reads it, else the factory's endpoints.mqtt. Raises CloudError if there is none."""
    url = ""
    try:
        content = json.loads(rec.get("content") or "{}")
        url = content["agent"]["mqtt"]["url"]
    except (ValueError, KeyError, TypeError):
        pass
    url = url if type(url) is str and url else factory["endpoints"]["mqtt"]
    if not url:
        raise CloudError("no MQTT broker URL (content.agent.mqtt.url or endpoints.mqtt)")
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "tcp", url
    tls = scheme in ("mqtts", "ssl", "tls", "tcps")
    if not tls and scheme not in ("tcp", "mqtt"):
        raise CloudError("unsupported broker URL scheme %s" % scheme)
    host, _, port = rest.partition("/")[0].rpartition(":")
    if not host:
        host, port = port, ""
    try:
        port = int(port) if port else (8883 if tls else 1883)
    except ValueError:
        raise CloudError("bad broker port")
    return tls, host, port


def _refused(e):
    """The broker refused our credentials (CONNACK 4 or 5)."""
    mqtt = sys.modules.get("mqtt")
    return mqtt is not None and isinstance(e, mqtt.MQTTError) and e.code in (4, 5)


class Cloud:
    def __init__(self, store, node_id, tls=None, telemetry=None, exchange=None):
        """tls: an SSLContext trusting the factory CA (firmware/cloud/tls.py), or None.
        telemetry: (outbox, sampler) to stream on the data channel, or None.
        exchange: the online phase's lock for memory-hungry exchanges (firmware/online.py),
        held from bootstrap to a connected broker."""
        self.store = store
        self.tls = tls
        self.node_id = node_id
        self.factory = store.factory
        self.external_id = self.factory["external_id"] or node_id
        self.want_bootstrap = False
        self.client = None
        self.claim = None               # a Claim while its code is being presented
        self.telemetry = telemetry
        self.exchange = exchange or asyncio.Lock()
        self.commands = Commands(store, telemetry)
        self._request_topic = None      # bytes: channels/<control>/messages/req, once connected
        self._control = None
        self._inbox = []
        self._wake = asyncio.Event()
        self._payload = None            # the readings' SenML buffer, for the whole phase:
        if telemetry is not None:       # made before TLS connects, while a block that big is free
            from firmware.telemetry.mqtt_sink import BUFFER
            self._payload = bytearray(BUFFER)

    async def run(self):
        """Until cancelled (the app cancels it when Wi-Fi drops). Nothing in one round,
        not even a MemoryError, ends the cloud phase: it is logged and the round retried."""
        self._attempt = self._failures = 0
        try:
            while True:
                try:
                    await self._round()
                except Exception as e:
                    log.error("cloud", "unexpected %s; retrying" % log.why(e))
                    await self._pause(self._attempt)
                    self._attempt += 1
        finally:
            if self.client is not None:
                await self.client.close()
                self.client = None

    async def _round(self):
        """Bootstrap if needed, connect, serve until the link dies; waits before returning."""
        async with self.exchange:       # the heap's peak: nothing else memory-hungry meanwhile
            client = await self._link()
        if client is None:
            await self._pause(self._attempt)
            self._attempt += 1
            return
        self._failures = 0
        started = time.ticks_ms()
        err = await self._session(client, self.store.get("bootstrap"))
        if self.want_bootstrap:
            return
        lived = time.ticks_diff(time.ticks_ms(), started) // 1000
        if lived < _STABLE_S:
            t = client.last_topic       # decoded here, not on every publish
            log.warning("cloud", "the broker closed the session %d s after accepting it (%s; last topic %s)" % (
                lived, log.why(err), t if isinstance(t, str) else bytes(t or b"").decode()))
            self._attempt += 1
        else:
            log.warning("cloud", "MQTT link lost (%s)" % log.why(err))
            self._attempt = 0
        await self._pause(max(self._attempt - 1, 0))

    async def _link(self):
        """A connected MQTT client, bootstrapping first if needed; None (logged) if not."""
        rec = self.store.get("bootstrap")
        if not rec["done"] or self.want_bootstrap:
            rec = await self._bootstrap(rec)
            if rec is None:
                return None
        try:
            return await self._connect(rec)
        except Exception as e:
            from firmware import board  # loaded by the app already; not needed to import this module
            refused = _refused(e)
            self._failures += 1
            if refused:
                log.error("cloud", "broker refused the credentials (%s): bootstrapping again" % log.why(e))
            else:               # out of memory: say where the RAM is
                log.warning("cloud", "cannot reach the broker (%s)%s" % (
                    log.why(e), "; " + board.memory() if board.out_of_memory(e) else ""))
            if refused or self._failures >= _REBOOTSTRAP_AFTER:
                self.want_bootstrap = True
                self._failures = 0
            return None

    async def _pause(self, attempt):
        s = backoff(attempt, _BACKOFF_BASE_S, _BACKOFF_CAP_S)
        log.info("cloud", "retrying in %d ms" % int(s * 1000))
        await asyncio.sleep_ms(int(s * 1000))

    async def _bootstrap(self, rec):
        """The new record, the old one if asking failed but there is one, else None."""
        log.info("cloud", "bootstrapping as %s%s" % (
            self.external_id, " (secure)" if self.factory["bootstrap_secure"] else ""))
        # Bootstrap code (HTTP client, AES) is loaded for the exchange only: the heap it takes
        # is the heap the TLS connection needs next.
        from firmware.cloud.bootstrap import BootstrapError, fetch
        try:
            new = await fetch(self.factory, self.external_id)
            broker(new, self.factory)     # refuse a config we could not use
        except Exception as e:      # also MemoryError, a bug: the device keeps serving
            known = isinstance(e, (BootstrapError, CloudError))
            log.error("cloud", "bootstrap failed: %s" % (e if known else log.why(e)))
            return rec if rec["done"] else None
        finally:
            fetch = BootstrapError = None
            unload("firmware.cloud.bootstrap", "httpc", "aes")
        self.store.set("bootstrap", new)
        self.want_bootstrap = False
        log.info("cloud", "bootstrapped: thing %s, %d channels" % (new["thing_id"], len(new["channels"])))
        return new

    async def _connect(self, rec):
        tls, host, port = broker(rec, self.factory)
        if tls and self.tls is None:
            raise CloudError("TLS broker but no CA in the factory config")
        # The MQTT client is loaded here, not with this module: the first bootstrap (HTTP
        # client, AES) is the heap's peak, and it does not need MQTT.
        from mqtt import MQTTClient
        c = MQTTClient(self.node_id, host, port, user=rec["thing_id"], password=rec["thing_key"],
                       keepalive=_KEEPALIVE_S, ssl=self.tls if tls else None, server_hostname=host if tls else None,
                       timeout=_STEP_TIMEOUT_S, callback=self._on_message)
        await c.connect()
        from firmware import board      # loaded by the app already; not needed to import this module
        log.info("cloud", "MQTT connected to %s:%d%s as %s, heap free %d" % (
            host, port, " (TLS)" if tls else "", rec["thing_id"], board.heap()[0]))
        return c

    def _channel(self, rec, kind):
        """The channel of metadata type kind ("control" or "data"), else the first (control)
        or the first that is not the control channel (data)."""
        chans = rec["channels"]
        for ch in chans:
            if ch["type"] == kind:
                return ch["id"]
        if kind == "control":
            return chans[0]["id"] if chans else None
        for ch in chans:
            if ch["type"] != "control" and ch["id"] != self._control:
                return ch["id"]
        return None

    async def _session(self, client, rec):
        """Onboarding steps, then commands, until the link dies; returns why it died."""
        from mqtt import MQTTError      # loaded by _connect
        self.client = client
        self._control = self._channel(rec, "control")
        self._request_topic = ("channels/%s/messages/req" % self._control).encode() if self._control else None
        self._inbox = []
        watch = asyncio.create_task(self._watch(client))
        streamer = None
        try:
            if self._control:
                try:
                    await client.subscribe(self._request_topic, qos=1)
                    # From here on a command reaches us (the session is clean: one sent
                    # before the SUBACK is lost), so say it: people and tests wait for it.
                    log.info("cloud", "listening for commands on channel %s" % self._control)
                except MQTTError as e:   # an inactive config: channels are closed to us
                    if not client.isconnected():
                        raise           # no: the broker closed the session on it
                    log.warning("cloud", "no control channel: %s" % e)
                    self._control = self._request_topic = None
            await self._onboard(client)
            data = self._channel(rec, "data")
            if self.telemetry is not None and data:
                streamer = asyncio.create_task(self._stream(client, "channels/%s/messages" % data))
            while client.isconnected():
                await self._wake.wait()
                self._wake.clear()
                while self._inbox and client.isconnected():
                    await self._handle(client, self._inbox.pop(0))
            return await client.wait_dead()
        except Exception as e:
            return e
        finally:
            watch.cancel()
            if streamer is not None:
                streamer.cancel()
            self.client = None
            await client.close()

    async def _onboard(self, client):
        """The user mapping and the claim code, once each; their code is loaded for this only
        (a mapped, claimed device streams without it)."""
        from firmware.cloud.onboard import Claim, report_mapping
        try:
            await report_mapping(client, self.store, self.node_id)
            claim = Claim(self.store, self.node_id)
            if claim.pending():
                self.claim = claim
                await claim.present(client)
        finally:
            self.claim = claim = Claim = report_mapping = None
            unload("firmware.cloud.onboard")

    async def _stream(self, client, topic):
        from firmware.telemetry.mqtt_sink import stream
        box, sampler = self.telemetry
        try:
            await stream(client, topic, self.node_id, box, sampler, self._payload)
        except Exception as e:      # no PUBACK in time: the link is not usable, start over
            log.warning("cloud", "streaming stopped (%s)" % log.why(e))
            await client.close()

    async def _watch(self, client):
        await client.wait_dead()
        self._wake.set()

    def _on_message(self, topic, msg, retained, dup):
        # Runs in the MQTT reader task: decide, queue, return.
        if self.claim is not None and topic == self.claim.result_topic:
            self.claim.on_message(msg)
        elif topic == self._request_topic:
            if len(self._inbox) < _INBOX:
                self._inbox.append(msg)
                self._wake.set()
            else:
                log.warning("cloud", "control request dropped: inbox full")

    async def _handle(self, client, msg):
        await client.publish("channels/%s/messages/res" % self._control, self.commands.answer(msg), qos=1)
        after = self.commands.after
        if after == "rebootstrap":
            self.want_bootstrap = True
            await client.close()        # the run loop bootstraps before it connects again
        elif after:
            from firmware import board
            if after == "reset":
                self.store.factory_reset()
            log.warning("cloud", "%s asked by the cloud" % ("factory reset" if after == "reset" else "reboot"))
            await client.close()
            board.reset()
