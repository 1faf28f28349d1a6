"""Particle-style claim codes (cloud-contracts.md 4.5) on the local cloud.

    POST /v1/device_claims (user token) -> {"claim_code": <63 chars of [A-Za-z0-9]>, "device_ids": [...]}
    GET  /v1/devices       (user token) -> {"devices": [{"id", "claimed_at"}]}

The device, once connected, publishes (QoS 1) on node/<node_id>/claim {"claim_code": "..."}; the
cloud marks the device claimed by the code's user (the code is then used up) and answers on
node/<node_id>/claim/result (QoS 1) {"status": "claimed", "user_id": ...}, or {"status": "invalid"}
for an unknown, used or malformed code. The same device repeating its used code (a QoS 1
duplicate, or a result it never saw) gets "claimed" again.
"""
import datetime
import json
import logging
import secrets
import string
import time

from .http import json_response
from .users import failure

log = logging.getLogger("roost.cloud.claims")

SCHEMA = """
CREATE TABLE IF NOT EXISTS claim_codes (
    code     TEXT PRIMARY KEY,
    user_id  TEXT NOT NULL,
    created  REAL NOT NULL,
    used_by  TEXT,
    used_at  REAL
);
CREATE TABLE IF NOT EXISTS claimed_devices (
    node_id    TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    claimed_at TEXT NOT NULL
);
"""

ALPHABET = string.ascii_letters + string.digits
CODE_LENGTH = 63


def new_claim_code():
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def _iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class ClaimService:
    def __init__(self, db, users, publish=None, clock=time.time):
        """publish(topic, payload_bytes, qos) sends the claim result (the cloud's MQTT client)."""
        self.db = db
        self.users = users
        self.publish = publish
        self.clock = clock
        db.add_schema(SCHEMA)

    # --- Python API ---

    def new_code(self, user_id):
        code = new_claim_code()
        with self.db.tx() as c:
            c.execute("INSERT INTO claim_codes (code, user_id, created) VALUES (?, ?, ?)",
                      (code, user_id, self.clock()))
        return code

    def devices_of(self, user_id):
        return [{"id": r["node_id"], "claimed_at": r["claimed_at"]} for r in self.db.query(
            "SELECT node_id, claimed_at FROM claimed_devices WHERE user_id = ? ORDER BY claimed_at, node_id",
            (user_id,))]

    def claimant(self, node_id):
        rows = self.db.query("SELECT user_id FROM claimed_devices WHERE node_id = ?", (node_id,))
        return rows[0]["user_id"] if rows else None

    def claim(self, node_id, code):
        """Use a code for a device; returns the claiming user_id, or None if the code is not valid."""
        now = self.clock()
        with self.db.tx() as c:
            row = c.execute("SELECT user_id, used_by FROM claim_codes WHERE code = ?", (code,)).fetchone()
            if row is None or (row["used_by"] is not None and row["used_by"] != node_id):
                return None
            if row["used_by"] is None:
                c.execute("UPDATE claim_codes SET used_by = ?, used_at = ? WHERE code = ?", (node_id, now, code))
                c.execute("INSERT OR REPLACE INTO claimed_devices VALUES (?, ?, ?)",
                          (node_id, row["user_id"], _iso(now)))
            return row["user_id"]

    def node_claim(self, node_id, payload):
        """A device's message on node/<node_id>/claim: claim, answer on .../claim/result. Returns the
        result object."""
        code = None
        try:
            msg = json.loads(payload)
            if isinstance(msg, dict) and isinstance(msg.get("claim_code"), str):
                code = msg["claim_code"]
        except (ValueError, UnicodeDecodeError):
            pass
        user_id = self.claim(node_id, code) if code else None
        if user_id:
            result = {"status": "claimed", "user_id": user_id}
            log.info("device %s claimed by user %s", node_id, user_id)
        else:
            result = {"status": "invalid"}
            log.warning("device %s sent an invalid claim code", node_id)
        if self.publish:
            self.publish("node/%s/claim/result" % node_id, json.dumps(result, separators=(",", ":")).encode(), 1)
        return result

    # --- HTTP ---

    def register(self, r):
        r.add("POST", "/v1/device_claims", self.http_new_code)
        r.add("GET", "/v1/devices", self.http_devices)

    def http_new_code(self, req):
        user_id = self.users.session_user(req)
        if not user_id:
            return failure(401, "login required")
        code = self.new_code(user_id)
        return json_response({"claim_code": code, "device_ids": [d["id"] for d in self.devices_of(user_id)]})

    def http_devices(self, req):
        user_id = self.users.session_user(req)
        if not user_id:
            return failure(401, "login required")
        return json_response({"devices": self.devices_of(user_id)})
