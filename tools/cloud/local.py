"""The local cloud in one object: bootstrap, users, user-node mapping, claim codes, midPoint-style
self-registration and ThingSpeak channels on one HTTP port, a Mosquitto broker (TLS for devices)
whose accounts follow the bootstrap configs, and the cloud's own MQTT client that handles the
devices' mapping and claim messages and stores their readings (SenML on their data channel, once
each: readings.py). docs/cloud.md.

    with LocalCloud(tmp_path, mapping_timeout=2) as cloud:
        cfg = cloud.add_device("a1b2c3d4e5f6")
        factory = cloud.factory_for("a1b2c3d4e5f6")     # -> roost deploy --factory
        world = World(services=cloud.world_services())
        cloud.wait_message("node/a1b2c3d4e5f6/user/mapping")
        cloud.wait_readings("a1b2c3d4e5f6", 10)         # readings on cloud.data_channel(node_id)

State in `directory`: cloud.db (SQLite), the certificates, mosquitto's files and cloud.json (ports
and admin token: a new LocalCloud on the same directory comes back on the same ports).
"""
import hashlib
import json
import logging
import re
import secrets
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt

from . import db as dbmod
from .bootstrap import DEFAULT_ENCRYPT_KEY, BootstrapService
from .broker import Broker
from .claims import ClaimService
from .http import Faults, HTTPService, Router, bearer_ok, error, json_response
from .mapping import MappingService
from .ntp import SNTPServer
from .pki import PKI
from .readings import ReadingsService, channel_of
from .registration import RegistrationService
from .thingspeak import ThingSpeakService
from .users import Users, created, json_object

log = logging.getLogger("roost.cloud")

STATE_FILE = "cloud.json"
_TOPIC_SAFE = re.compile(r"^[^/+#\s]+$")     # an ID that can be one topic level (and an ACL line)


def acl_for(cfg):
    """Mosquitto ACL lines of a bootstrap config's thing (docs/cloud.md, "Who may use which topic")."""
    lines = []
    if _TOPIC_SAFE.match(cfg["external_id"]):
        lines.append("topic readwrite node/%s/#" % cfg["external_id"])
    if cfg["state"] == dbmod.ACTIVE:
        for ch in cfg["channels"]:
            if _TOPIC_SAFE.match(ch["id"]):
                lines += ["topic readwrite channels/%s/messages/#" % ch["id"],
                          "topic readwrite channels/%s/messages" % ch["id"]]
    return lines


def control_channel(cfg):
    """The agent's control channel: the one whose metadata type is "control", else the first."""
    channels = cfg["channels"]
    for ch in channels:
        if (ch.get("metadata") or {}).get("type") == "control":
            return ch["id"]
    return channels[0]["id"] if channels else None


def data_channel_of(cfg):
    """The agent's data channel: the one whose metadata type is "data", else the first channel that
    is not the control channel (cloud-contracts.md 1.6), else None."""
    channels = cfg["channels"]
    for ch in channels:
        if (ch.get("metadata") or {}).get("type") == "data":
            return ch["id"]
    control = control_channel(cfg)
    return next((ch["id"] for ch in channels if ch["id"] != control), None)


class LocalCloud:
    def __init__(self, directory, http_port=0, mqtt_tls_port=0, mapping_timeout=60.0,
                 encrypt_key=DEFAULT_ENCRYPT_KEY, fields="thing", key_prefix="Thing ",
                 http_name="cloud.roost.local", mqtt_name="mqtt.roost.local", ntp_name="ntp.roost.local",
                 bind="127.0.0.1",
                 extra_cert_names=(), mqtt_advertised_port=8883, http_advertised_port=80,
                 admin_token=None, clock=time.time, registration_iterations=20000, thingspeak_rate_limit=15.0):
        """Advertised ports are what devices are told (bootstrap content, factory config); None
        means the real port (a board on the LAN), the defaults suit the simulator's name mapping.
        registration_iterations: PBKDF2 count of sealed registration answers; thingspeak_rate_limit:
        seconds between accepted writes of one channel (0: none)."""
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        saved = self._load_state()
        self.http_name, self.mqtt_name, self.ntp_name, self.bind = http_name, mqtt_name, ntp_name, bind
        self.mqtt_advertised_port = mqtt_advertised_port
        self.http_advertised_port = http_advertised_port
        self.encrypt_key = encrypt_key if isinstance(encrypt_key, str) else bytes(encrypt_key).decode()
        self.key_prefix = key_prefix
        self.admin_token = admin_token or saved.get("admin_token") or secrets.token_urlsafe(24)
        self._http_port = http_port or saved.get("http_port", 0)

        self.db = dbmod.Database(self.dir / "cloud.db")
        self.pki = PKI(self.dir, names=[mqtt_name, http_name, *extra_cert_names])
        self.broker = Broker(self.dir, self.pki, tls_port=mqtt_tls_port or saved.get("mqtt_tls_port", 0),
                             bind=bind, plain_port=saved.get("mqtt_plain_port", 0))
        self.users = Users(self.db, clock)
        self.mapping = MappingService(self.db, self.users, timeout=mapping_timeout, clock=clock)
        self.claims = ClaimService(self.db, self.users, publish=self.publish, clock=clock)
        self.thingspeak = ThingSpeakService(self.db, rate_limit_s=thingspeak_rate_limit, clock=clock)
        self.registration = RegistrationService(self.db, self.thingspeak, iterations=registration_iterations,
                                                clock=clock)
        self.readings_service = ReadingsService(self.db, clock)
        self.router = Router()
        self.bootstrap = BootstrapService(self.db, token=self.admin_token, encrypt_key=encrypt_key,
                                          fields=fields, key_prefix=key_prefix, router=self.router,
                                          on_change=self._config_changed)
        for service in (self.users, self.mapping, self.claims, self.thingspeak, self.registration):
            service.register(self.router)
        for service in (self.thingspeak, self.registration, self.readings_service):
            service.register_admin(self.router, self._admin_only)
        self.router.add("POST", "/admin/users", self._admin_only(self._admin_add_user))
        self.router.add("POST", "/admin/devices", self._admin_only(self._admin_add_device))
        self.router.add("GET", "/admin/nodes/{node_id}", self._admin_only(self._admin_node))
        self.http = None
        self.http_faults = Faults()     # injected HTTP failures (tests): http.Faults
        self.ntp = SNTPServer(host=bind)

        self._messages = []                       # (topic, payload) seen by the cloud's client
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._client = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self):
        self.pki.ensure()
        self.broker.update({c["thing_id"]: (c["thing_key"], acl_for(c)) for c in self.db.list_configs()})
        self.broker.start()
        self.start_http()
        self._start_client()
        self._save_state()
        log.info("local cloud up: http %s, mqtt tls port %d", self.http_url, self.mqtt_tls_port)
        return self

    def stop(self):
        if self._client:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        self.stop_http()
        self.ntp.stop()
        self.broker.stop()
        self.db.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def start_http(self):
        """(Re)start the HTTP services on the same port, and the time service if it is not running."""
        if self.http is None:
            self.http = HTTPService(self.router, port=self._http_port, host=self.bind, faults=self.http_faults).start()
            self._http_port = self.http.port
        if self.ntp.sock is None:
            self.ntp.start()

    def stop_http(self):
        """Stop the HTTP services only: the time server stays up, as pool.ntp.org does when a
        cloud's web server is down (a board waiting for time would never reach the dead server)."""
        if self.http is not None:
            self.http.stop()
            self.http = None

    def _load_state(self):
        try:
            return json.loads((self.dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def _save_state(self):
        state = {"http_url": self.http_url, "http_port": self.http_port, "mqtt_tls_port": self.mqtt_tls_port,
                 "mqtt_plain_port": self.broker.plain_port, "admin_token": self.admin_token,
                 "ca": str(self.pki.ca_path), "http_name": self.http_name, "mqtt_name": self.mqtt_name}
        path = self.dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1) + "\n")
        tmp.chmod(0o600)
        tmp.replace(path)
        return state

    # --- where things are ------------------------------------------------------------------

    @property
    def http_port(self):
        return self._http_port

    @property
    def http_url(self):
        return "http://127.0.0.1:%d" % self._http_port

    @property
    def mqtt_tls_port(self):
        return self.broker.tls_port

    @property
    def ca_pem(self):
        return self.pki.ca_pem

    @property
    def ca_path(self):
        return self.pki.ca_path

    def world_services(self):
        """Host name -> (address, port) (("udp", address, port) for NTP), for the simulator's
        World(services=...)."""
        return {self.http_name: ("127.0.0.1", self.http_port), self.mqtt_name: ("127.0.0.1", self.mqtt_tls_port),
                self.ntp_name: ("udp", "127.0.0.1", self.ntp.port)}

    # --- devices ---------------------------------------------------------------------------

    def add_device(self, node_id, external_key=None, active=True, channels=("control", "data")):
        """A bootstrap config for a node (external ID = node ID) with one channel per type; its
        thing gets an MQTT account at once. Returns the config dict. Raises db.Conflict."""
        cfg = {
            "thing_id": str(uuid.uuid4()), "thing_key": secrets.token_hex(16),
            "external_id": node_id, "external_key": external_key or secrets.token_hex(16),
            "name": node_id,
            "channels": [{"id": str(uuid.uuid4()), "name": "%s-%s" % (node_id, kind), "metadata": {"type": kind}}
                         for kind in channels],
            "content": json.dumps({"agent": {"mqtt": {"url": "mqtts://%s:%d" % (
                self.mqtt_name, self.mqtt_advertised_port or self.mqtt_tls_port)}}}, separators=(",", ":")),
            "state": dbmod.ACTIVE if active else dbmod.INACTIVE,
        }
        return self.db.get_config(self.bootstrap.add(cfg))

    def device(self, node_id):
        """The node's bootstrap config, or None."""
        return self.db.get_config_by_external_id(node_id)

    def _device(self, node_id):
        cfg = self.device(node_id)
        if cfg is None:
            raise KeyError("no device %r" % node_id)
        return cfg

    def set_state(self, node_id, active):
        self.bootstrap.set_state(self._device(node_id)["thing_id"], dbmod.ACTIVE if active else dbmod.INACTIVE)

    def remove_device(self, node_id):
        self.bootstrap.remove(self._device(node_id)["thing_id"])

    def endpoints(self):
        """The URLs a board is told: http://<http_name>[:<advertised port, unless 80>]/..."""
        port = self.http_advertised_port or self.http_port
        base = "http://" + (self.http_name if port == 80 else "%s:%d" % (self.http_name, port))
        return {"bootstrap": base + "/things/bootstrap", "mqtt": "",
                "registration": base + "/midpoint/ws/iot/devices", "thingspeak": base, "ntp": self.ntp_name}

    def factory_for(self, node_id, secure=False):
        """The cloud part of the node's factory config (for `roost deploy --factory`)."""
        cfg = self._device(node_id)
        return {"node_id": node_id, "external_id": node_id, "external_key": cfg["external_key"],
                "bootstrap_enc_key": self.encrypt_key, "bootstrap_secure": bool(secure),
                "auth_prefix": self.key_prefix, "endpoints": self.endpoints(), "ca_cert": self.ca_pem}

    def registration_factory(self):
        """The factory endpoints of a board that only registers itself (no bootstrap config)."""
        return {"endpoints": dict(self.endpoints(), bootstrap="")}

    def _config_changed(self, thing_id, cfg):
        if cfg is None:
            self.broker.remove_account(thing_id)
            log.info("thing %s removed from the broker", thing_id)
        else:
            self.broker.set_account(thing_id, cfg["thing_key"], acl_for(cfg))
            log.info("thing %s (node %s) on the broker, %s", thing_id, cfg["external_id"],
                     "active" if cfg["state"] == dbmod.ACTIVE else "inactive")

    # --- users -----------------------------------------------------------------------------

    def add_user(self, name, password):
        return self.users.add_user(name, password)

    def login(self, name, password):
        """An access token, or None for bad credentials."""
        return self.users.login(name, password)[1]

    def node_owner(self, node_id):
        return self.mapping.node_owner(node_id)

    def node_users(self, node_id):
        return self.mapping.users_of(node_id)

    def claimant(self, node_id):
        return self.claims.claimant(node_id)

    # --- self-registration and ThingSpeak ------------------------------------------------------

    def add_org(self, name, registration_key=None):
        """A midPoint organisation: {"id", "name", "registration_key", ...}; the key is generated
        unless given. Raises ValueError, db.Conflict."""
        return self.registration.add_org(name, registration_key)

    def registered(self, serial):
        """The self-registered device with its channel (and keys), or None."""
        return self.registration.registered(serial)

    def rotate_write_key(self, channel_id):
        return self.thingspeak.rotate_write_key(channel_id)

    def channel_entries(self, channel_id):
        return self.thingspeak.entries(channel_id)

    # --- MQTT --------------------------------------------------------------------------------

    def _start_client(self):
        # A persistent session under a name stable for this cloud's folder: while the client
        # reconnects, the broker queues the readings it has already acknowledged to devices.
        name = hashlib.sha256(self.admin_token.encode()).hexdigest()[:12]
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="roost-cloud-" + name,
                        clean_session=False)
        c.username_pw_set(self.broker.superuser, self.broker.superuser_password)
        c.reconnect_delay_set(min_delay=0.1, max_delay=1)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self._client = c
        c.connect_async("127.0.0.1", self.broker.plain_port, keepalive=30)
        c.loop_start()
        self.wait_connected()

    def wait_connected(self, timeout=10.0):
        """Until the cloud's own client is connected and subscribed (after a broker restart, say)."""
        if not self._connected.wait(timeout):
            raise TimeoutError("the cloud's MQTT client did not connect to the broker")

    def _on_connect(self, client, userdata, flags, reason, properties):
        if reason.is_failure:
            log.warning("cloud MQTT client refused: %s", reason)
            return
        # "#" at QoS 1 includes the readings' channels/+/messages and channels/+/messages/#. No
        # overlapping filters next to it: Mosquitto 2.1 (allow_duplicate_messages true by default)
        # would deliver each message once per matching filter, counted as device duplicates.
        client.subscribe("#", qos=1)

    def _on_subscribe(self, client, userdata, mid, reasons, properties):
        if any(r.is_failure for r in reasons):
            log.error("the broker refused the cloud's subscription: %s", reasons)
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason, properties):
        self._connected.clear()

    def _on_message(self, client, userdata, msg):
        parts, channel = msg.topic.split("/"), channel_of(msg.topic)
        try:
            if len(parts) == 4 and parts[0] == "node" and parts[2:] == ["user", "mapping"]:
                self.mapping.node_report(parts[1], msg.payload)
            elif len(parts) == 3 and parts[0] == "node" and parts[2] == "claim":
                self.claims.node_claim(parts[1], msg.payload)
            elif channel is not None:
                self._channel_message(channel, msg.payload)
        except Exception:                        # one bad message must not stop the client
            log.exception("handling %s failed", msg.topic)
        with self._cond:                         # recorded once handled: wait_message implies done
            self._messages.append((msg.topic, bytes(msg.payload)))
            self._cond.notify_all()

    def _channel_message(self, channel, payload):
        """A message on channels/<channel>/messages[/...]: readings if it is a device's data channel
        (commands and replies on control channels only go to the message log)."""
        owners = self.db.configs_with_channel(channel)
        if len(owners) != 1:
            self.readings_service.drop(channel, "no device owns the channel" if not owners else
                                       "%d devices list the channel" % len(owners))
        elif channel == data_channel_of(owners[0]):
            try:
                self.readings_service.ingest(owners[0]["external_id"], payload)
            except ValueError:
                pass                              # counted and logged as rejected

    def publish(self, topic, payload, qos=1):
        """Publish as the cloud (superuser); returns paho's MQTTMessageInfo."""
        if isinstance(payload, str):
            payload = payload.encode()
        return self._client.publish(topic, payload, qos=qos)

    def send_command(self, node_id, command):
        """A Mainflux-agent request on the node's control channel; returns its uuid."""
        cfg = self._device(node_id)
        channel = control_channel(cfg)
        if channel is None:
            raise ValueError("node %s has no channels" % node_id)
        req_id = str(uuid.uuid4())
        payload = json.dumps([{"bn": req_id + ":", "n": "control", "vs": command}], separators=(",", ":"))
        self.publish("channels/%s/messages/req" % channel, payload, qos=1)
        return req_id

    def command(self, node_id, command, timeout=10.0):
        """Send a control command and wait for the node's answer (the "vs" of its SenML
        response on .../res); TimeoutError if none comes."""
        with self._cond:
            seen = len(self._messages)
        rid = self.send_command(node_id, command)
        try:
            _, payload = self.wait_message("channels/+/messages/res", timeout, since=seen,
                                           match=lambda p: json.loads(p)[0].get("bn") == rid)
        except TimeoutError:
            raise TimeoutError("node %s did not answer %r" % (node_id, command)) from None
        return json.loads(payload)[0]["vs"]

    def messages(self, topic_filter="#"):
        """[(topic, payload bytes)] the cloud's client has seen, filter with MQTT wildcards."""
        with self._cond:
            return [(t, p) for t, p in self._messages if mqtt.topic_matches_sub(topic_filter, t)]

    def wait_message(self, topic_filter, timeout=10.0, match=None, since=0):
        """The first message seen on topic_filter (for which match(payload) is true, if given),
        from the since-th message on (a count of messages seen earlier); raises TimeoutError.
        Woken by each message, it looks only at the new ones: rescanning the whole log at every
        wake made 50 boards' commands at once starve the thread that receives their answers
        (tests/bench/fleet.py)."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, p in self._messages[since:]:
                    if mqtt.topic_matches_sub(topic_filter, t) and (match is None or match(p)):
                        return t, p
                since = len(self._messages)
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no message on %s within %.1f s" % (topic_filter, timeout))
                self._cond.wait(left)

    # --- readings ------------------------------------------------------------------------------

    def data_channel(self, node_id):
        """The ID of the node's data channel (where it publishes readings), or None."""
        return data_channel_of(self._device(node_id))

    def readings(self, node_id, since_seq=0, limit=None):
        """The node's stored readings with seq > since_seq, by seq: [{"seq", "name", "unit",
        "value", "time", "received_at"}]."""
        return self.readings_service.readings(node_id, since_seq, limit)

    def reading_stats(self, node_id):
        """{"count", "duplicates", "rejected", "first_seq", "last_seq", "gaps"}."""
        return self.readings_service.stats(node_id)

    def wait_readings(self, node_id, count, timeout=10.0):
        """Until the node has at least `count` distinct readings stored; returns its readings.
        Raises TimeoutError (with the stats)."""
        end = time.monotonic() + timeout
        with self._cond:                          # notified after each message was handled
            while True:
                stats = self.reading_stats(node_id)
                if stats["count"] >= count:
                    return self.readings(node_id)
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError("%d of %d readings of node %s within %.1f s: %s" % (
                        stats["count"], count, node_id, timeout, stats))
                self._cond.wait(left)

    # --- admin HTTP (Authorization: Bearer <admin token>) -------------------------------------

    def _admin_only(self, handler):
        def guarded(req):
            if not bearer_ok(req, self.admin_token):
                return error(401, "admin token required")
            return handler(req)
        return guarded

    def _admin_add_user(self, req):
        return created(req, lambda body: {"user_id": self.add_user(body.get("name"), body.get("password")),
                                          "name": body["name"]})

    def _admin_add_device(self, req):
        body, err = json_object(req)
        if err:
            return err
        node_id = body.get("node_id")
        if not isinstance(node_id, str) or not _TOPIC_SAFE.match(node_id):
            return error(400, "node_id must be a non-empty string without / + # or spaces")
        try:
            self.add_device(node_id, external_key=body.get("external_key") or None,
                            active=body.get("active", True) is not False)
        except dbmod.Conflict:
            return error(409, "device %s exists" % node_id)
        return json_response(self.factory_for(node_id, secure=bool(body.get("secure"))), 201)

    def _admin_node(self, req):
        node_id = req.params["node_id"]
        cfg = self.device(node_id)
        if cfg is None:
            return error(404, "no such device")
        return json_response({"node_id": node_id, "thing_id": cfg["thing_id"], "state": cfg["state"],
                              "channels": cfg["channels"], "users": self.node_users(node_id),
                              "claimed_by": self.claimant(node_id)})
