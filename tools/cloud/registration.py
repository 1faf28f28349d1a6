"""midPoint-style self-registration (cloud-contracts.md 2, docs/registration.md) on the local cloud.

An organisation has a registration key `XXXXXXXX-XXXXXXXX` over [A-Z0-9]; its first half is the
lookup key, which need not be unique (an ambiguous one is midPoint's illegal state). A device
registers itself with the lookup half:

    GET /midpoint/ws/iot/devices/{serial}?key=<lookup half>[&nonce=<32 hex digits>]
        200 "channel=<id>\\nwriteKey=<key>\\n"     without nonce: midPoint's plain answer
        200 the sealed answer (tools/cloud/seal.py) with nonce
        400 malformed serial, key or nonce (the body says which)
        404 "no organisation has this registration key"
        409 "serial <s> belongs to another organisation"
        500 "registration key is ambiguous (more than one organisation)"
    All answers are text/plain, one line ending in a newline unless 200.

The first request of a serial creates its ThingSpeak channel ("Thermometer <serial>", field1
"temperature") and records the device, in one transaction (concurrent requests get one channel).
Later requests of the same organisation get the same channel with its current write key, so a
device whose key was rotated gets the new one by registering again.

Admin (`register_admin`): POST /admin/orgs {"name", "registration_key"?} -> 201 {"id", "name",
"registration_key"} (400 malformed key, 409 key taken); GET /admin/orgs -> {"orgs": [...]};
GET /admin/registrations/{serial} -> the device with its channel and keys (404 unknown).
"""
import functools
import logging
import re
import secrets
import sqlite3
import time

from . import seal
from .db import Conflict
from .http import Response, error, json_response
from .thingspeak import KEY_ALPHABET, new_key
from .users import created

log = logging.getLogger("roost.cloud.registration")

SCHEMA = """
CREATE TABLE IF NOT EXISTS mp_orgs (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    name               TEXT NOT NULL,
    registration_key   TEXT NOT NULL UNIQUE,
    lookup_key         TEXT NOT NULL,
    thingspeak_api_key TEXT NOT NULL,
    created            REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS mp_orgs_lookup ON mp_orgs (lookup_key);
CREATE TABLE IF NOT EXISTS mp_devices (
    serial     TEXT PRIMARY KEY,
    org_id     INTEGER NOT NULL REFERENCES mp_orgs (id),
    channel_id INTEGER NOT NULL,
    created    REAL NOT NULL
);
"""

SERIAL_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
LOOKUP_RE = re.compile(r"^[A-Z0-9]{8}$")
ORG_FIELDS = ("id", "name", "registration_key", "lookup_key", "thingspeak_api_key")


class Refused(Exception):
    """A registration the server refuses: .status (HTTP) and the message of the answer."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def new_registration_key():
    half = lambda: "".join(secrets.choice(KEY_ALPHABET) for _ in range(8))  # noqa: E731
    return half() + "-" + half()


def _text(status, line):
    return Response(status, line + "\n", "text/plain; charset=utf-8")


class RegistrationService:
    def __init__(self, db, thingspeak, iterations=seal.DEFAULT_ITERATIONS, clock=time.time):
        """thingspeak: the ThingSpeakService that makes the devices' channels (same db)."""
        self.db = db
        self.thingspeak = thingspeak
        self.iterations = iterations
        self.clock = clock
        # DK per (secret half, serial, lookup half, iterations), i.e. per (organisation, serial, iter)
        self._derive = functools.lru_cache(maxsize=4096)(seal.derive_key)
        db.add_schema(SCHEMA)

    # --- Python API -----------------------------------------------------------------------------

    def add_org(self, name, registration_key=None):
        """A new organisation; returns {"id", "name", "registration_key", "lookup_key",
        "thingspeak_api_key"}. A generated key gets a lookup half no other organisation has.
        Raises ValueError (empty name, malformed key), db.Conflict (key taken)."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError("an organisation needs a name")
        if registration_key is not None:
            seal.split_key(registration_key)
        try:
            with self.db.tx() as c:
                key = registration_key
                while key is None or (registration_key is None and c.execute(
                        "SELECT 1 FROM mp_orgs WHERE lookup_key = ?", (key[:8],)).fetchone()):
                    key = new_registration_key()
                org_id = c.execute("INSERT INTO mp_orgs (name, registration_key, lookup_key, thingspeak_api_key, "
                                   "created) VALUES (?, ?, ?, ?, ?)",
                                   (name, key, key[:8], new_key(), self.clock())).lastrowid
        except sqlite3.IntegrityError:
            raise Conflict("an organisation has this registration key") from None
        log.info("organisation %d (%s) added", org_id, name)
        return self.org(org_id)

    def org(self, org_id):
        rows = self.db.query("SELECT %s FROM mp_orgs WHERE id = ?" % ", ".join(ORG_FIELDS), (org_id,))
        return rows[0] if rows else None

    def orgs(self):
        return self.db.query("SELECT %s FROM mp_orgs ORDER BY id" % ", ".join(ORG_FIELDS))

    def device(self, serial):
        """{"serial", "org_id", "org" (name), "channel_id", "created"} or None."""
        rows = self.db.query("SELECT d.serial, d.org_id, o.name AS org, d.channel_id, d.created FROM mp_devices d "
                             "JOIN mp_orgs o ON o.id = d.org_id WHERE d.serial = ?", (serial,))
        return rows[0] if rows else None

    def registered(self, serial):
        """device(serial) with "channel": the channel (keys included), or None."""
        dev = self.device(serial)
        return dev and dict(dev, channel=self.thingspeak.channel(dev["channel_id"]))

    def register_device(self, serial, lookup_key):
        """The registration of `serial` with a lookup key: {"org", "channel", "write_key", "new"}
        (org: the organisation's row). Raises Refused."""
        with self.db.tx() as c:
            orgs = c.execute("SELECT * FROM mp_orgs WHERE lookup_key = ?", (lookup_key,)).fetchall()
            if not orgs:
                raise Refused(404, "no organisation has this registration key")
            if len(orgs) > 1:
                raise Refused(500, "registration key is ambiguous (more than one organisation)")
            org = dict(orgs[0])
            dev = c.execute("SELECT org_id, channel_id FROM mp_devices WHERE serial = ?", (serial,)).fetchone()
            if dev is not None and dev["org_id"] != org["id"]:
                raise Refused(409, "serial %s belongs to another organisation" % serial)
            if dev is None:
                channel_id = self.thingspeak.create_channel("Thermometer " + serial, ["temperature", "seq"],
                                                            owner=org["id"], tx=c)["id"]
                c.execute("INSERT INTO mp_devices VALUES (?, ?, ?, ?)", (serial, org["id"], channel_id, self.clock()))
            else:
                channel_id = dev["channel_id"]
            write_key = self.thingspeak.channel(channel_id)["write_key"]
        return {"org": org, "channel": channel_id, "write_key": write_key, "new": dev is None}

    def answer(self, registration, serial, nonce_hex=None):
        """The body for a registration: plain text, or sealed for nonce_hex."""
        plain = seal.answer_text(registration["channel"], registration["write_key"])
        if nonce_hex is None:
            return plain
        lookup, secret = seal.split_key(registration["org"]["registration_key"])
        dk = self._derive(secret, serial, lookup, self.iterations)
        return seal.seal_with(dk, plain.encode(), serial, nonce_hex, self.iterations)

    # --- HTTP -----------------------------------------------------------------------------------

    def register(self, r):
        r.add("GET", "/midpoint/ws/iot/devices/{serial}", self.http_register)

    def register_admin(self, r, guard):
        """Admin routes; guard(handler) -> handler that checks the admin token."""
        r.add("POST", "/admin/orgs", guard(self.http_add_org))
        r.add("GET", "/admin/orgs", guard(lambda req: json_response({"orgs": self.orgs()})))
        r.add("GET", "/admin/registrations/{serial}", guard(self.http_registration))

    def http_register(self, req):
        serial = req.params["serial"]
        key = req.query.get("key", [""])[0]
        nonce = req.query.get("nonce", [None])[0]
        if not SERIAL_RE.match(serial):
            return _text(400, "serial must be 1 to 64 of [A-Za-z0-9_.-]")
        if not LOOKUP_RE.match(key):
            return _text(400, "key must be the first 8 characters of the registration key ([A-Z0-9])")
        if nonce is not None and not seal.NONCE_RE.match(nonce):
            return _text(400, "nonce must be 32 hex digits")
        try:
            reg = self.register_device(serial, key)
        except Refused as e:
            log.warning("registration of serial %s refused: %s", serial, e)
            return _text(e.status, str(e))
        log.info("serial %s %s organisation %d (%s): channel %d, %s answer", serial,
                 "registered in" if reg["new"] else "registered again in", reg["org"]["id"],
                 reg["org"]["name"], reg["channel"], "plain" if nonce is None else "sealed")
        return Response(200, self.answer(reg, serial, nonce), "text/plain; charset=utf-8")

    def http_add_org(self, req):
        def make(body):
            org = self.add_org(body.get("name"), body.get("registration_key"))
            return {k: org[k] for k in ("id", "name", "registration_key")}
        return created(req, make)

    def http_registration(self, req):
        reg = self.registered(req.params["serial"])
        return json_response(reg) if reg else error(404, "no device with this serial")
