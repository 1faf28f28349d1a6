"""RainMaker-style user-node mapping (esp-provisioning.md 9.4).

Two sides must tell the cloud the same (node_id, user_id, secret_key), in either order:

- the user's client: PUT /v1/user/nodes/mapping {"node_id", "secret_key", "operation": "add"}
  (optional "user_id", which must be the session's user) -> {"status": "success", "request_id"};
- the node: MQTT node/<node_id>/user/mapping {"node_id", "user_id", "secret_key"[, "reset": true]}.

A request is "requested" until a matching node report arrives (-> "confirmed": the node is then
associated with the user) or `timeout` seconds pass since it was made (-> "timedout"). A node
report stays usable for matching for `timeout` seconds after it arrived. "reset": true first removes
all of the node's associations; the dummy reset notice (user_id "esp-rmaker", secret "failed") only
removes. Times come from `clock` (injectable).

    GET /v1/user/nodes/mapping?request_id=ID -> {"request_id", "request_status", "node_id"}
    PUT /v1/user/nodes/mapping {"node_id", "operation": "remove"} -> removes the user's association
    GET /v1/user/nodes -> {"nodes": [node ids the user owns]}
"""
import json
import logging
import secrets
import time

from .http import json_response
from .users import failure, json_object

log = logging.getLogger("roost.cloud.mapping")

SCHEMA = """
CREATE TABLE IF NOT EXISTS mapping_requests (
    request_id  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    node_id     TEXT NOT NULL,
    secret_key  TEXT NOT NULL,
    created     REAL NOT NULL,
    status      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS mapping_reports (
    node_id     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    secret_key  TEXT NOT NULL,
    received    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS node_users (
    node_id     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    since       REAL NOT NULL,
    PRIMARY KEY (node_id, user_id)
);
"""

REQUESTED, CONFIRMED, TIMEDOUT = "requested", "confirmed", "timedout"
RESET_USER, RESET_SECRET = "esp-rmaker", "failed"


def _nonempty(*values):
    return all(isinstance(v, str) and v for v in values)


class MappingService:
    def __init__(self, db, users, timeout=60.0, clock=time.time):
        self.db = db
        self.users = users
        self.timeout = float(timeout)
        self.clock = clock
        db.add_schema(SCHEMA)

    # --- Python API ---

    def request(self, user_id, node_id, secret_key):
        """The client's side; returns the request_id (already confirmed if the node came first)."""
        request_id = secrets.token_hex(12)
        now = self.clock()
        with self.db.tx() as c:
            c.execute("INSERT INTO mapping_requests VALUES (?, ?, ?, ?, ?, ?)",
                      (request_id, user_id, node_id, secret_key, now, REQUESTED))
            match = c.execute("SELECT rowid FROM mapping_reports WHERE node_id = ? AND user_id = ? AND "
                              "secret_key = ? AND received > ?",
                              (node_id, user_id, secret_key, now - self.timeout)).fetchone()
            if match:
                c.execute("DELETE FROM mapping_reports WHERE rowid = ?", (match[0],))
                self._confirm(c, [request_id], node_id, user_id, now)
        log.info("mapping request %s: user %s node %s -> %s", request_id, user_id, node_id,
                 CONFIRMED if match else REQUESTED)
        return request_id

    def status(self, request_id):
        """{"request_id", "request_status", "node_id", "user_id"} or None."""
        with self.db.tx() as c:
            row = c.execute("SELECT * FROM mapping_requests WHERE request_id = ?", (request_id,)).fetchone()
            if row is None:
                return None
            status = row["status"]
            if status == REQUESTED and self.clock() - row["created"] >= self.timeout:
                status = TIMEDOUT
                c.execute("UPDATE mapping_requests SET status = ? WHERE request_id = ?", (status, request_id))
                log.info("mapping request %s: timed out (node %s)", request_id, row["node_id"])
        return {"request_id": request_id, "request_status": status, "node_id": row["node_id"],
                "user_id": row["user_id"]}

    def node_report(self, node_id, payload):
        """The node's side, as published on node/<node_id>/user/mapping (bytes or str). Returns what
        happened: "confirmed", "stored", "reset" or "ignored" (a bad payload is logged, never raised)."""
        try:
            msg = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            log.warning("mapping report from %s ignored: not JSON: %r", node_id, bytes(payload[:80]))
            return "ignored"
        if not isinstance(msg, dict):
            log.warning("mapping report from %s ignored: not a JSON object", node_id)
            return "ignored"
        user_id, secret = msg.get("user_id"), msg.get("secret_key")
        if msg.get("node_id") != node_id:
            log.warning("mapping report on node %s's topic names node %r: ignored", node_id, msg.get("node_id"))
            return "ignored"
        if not _nonempty(user_id, secret):
            log.warning("mapping report from %s ignored: user_id and secret_key must be strings", node_id)
            return "ignored"
        now = self.clock()
        with self.db.tx() as c:
            if msg.get("reset") is True:
                n = c.execute("DELETE FROM node_users WHERE node_id = ?", (node_id,)).rowcount
                log.info("mapping reset by node %s: %d association(s) removed", node_id, n)
                if user_id == RESET_USER and secret == RESET_SECRET:
                    return "reset"
            rows = c.execute("SELECT request_id, created FROM mapping_requests WHERE node_id = ? AND "
                             "user_id = ? AND secret_key = ? AND status = ?",
                             (node_id, user_id, secret, REQUESTED)).fetchall()
            live = [r["request_id"] for r in rows if now - r["created"] < self.timeout]
            if live:
                self._confirm(c, live, node_id, user_id, now)
            else:
                c.execute("DELETE FROM mapping_reports WHERE received <= ?", (now - self.timeout,))
                c.execute("INSERT INTO mapping_reports VALUES (?, ?, ?, ?)", (node_id, user_id, secret, now))
        log.info("mapping report from node %s for user %s: %s", node_id, user_id,
                 CONFIRMED if live else "waiting for the user's request")
        return CONFIRMED if live else "stored"

    def _confirm(self, c, request_ids, node_id, user_id, now):
        c.executemany("UPDATE mapping_requests SET status = ? WHERE request_id = ?",
                      [(CONFIRMED, r) for r in request_ids])
        c.execute("INSERT OR IGNORE INTO node_users VALUES (?, ?, ?)", (node_id, user_id, now))
        log.info("node %s mapped to user %s", node_id, user_id)

    def remove(self, user_id, node_id):
        with self.db.tx() as c:
            return c.execute("DELETE FROM node_users WHERE node_id = ? AND user_id = ?",
                             (node_id, user_id)).rowcount > 0

    def nodes_of(self, user_id):
        return [r["node_id"] for r in self.db.query(
            "SELECT node_id FROM node_users WHERE user_id = ? ORDER BY since, node_id", (user_id,))]

    def users_of(self, node_id):
        return [r["user_id"] for r in self.db.query(
            "SELECT user_id FROM node_users WHERE node_id = ? ORDER BY since, user_id", (node_id,))]

    def node_owner(self, node_id):
        """The node's first (primary) user, or None."""
        users = self.users_of(node_id)
        return users[0] if users else None

    # --- HTTP ---

    def register(self, r):
        r.add("PUT", "/v1/user/nodes/mapping", self.http_map)
        r.add("GET", "/v1/user/nodes/mapping", self.http_status)
        r.add("GET", "/v1/user/nodes", self.http_nodes)

    def _session(self, req):
        user_id = self.users.session_user(req)
        return user_id, (None if user_id else failure(401, "login required"))

    def http_map(self, req):
        user_id, err = self._session(req)
        if err:
            return err
        body, err = json_object(req)
        if err:
            return err
        node_id, op = body.get("node_id"), body.get("operation")
        if not _nonempty(node_id):
            return failure(400, "node_id is required")
        if op not in ("add", "remove"):
            return failure(400, "operation must be \"add\" or \"remove\"")
        if "user_id" in body and body["user_id"] != user_id:
            return failure(403, "user_id is not the logged-in user")
        if op == "remove":
            if not self.remove(user_id, node_id):
                return failure(404, "node %s is not mapped to this user" % node_id)
            return json_response({"status": "success", "description": "node removed"})
        secret = body.get("secret_key")
        if not _nonempty(secret):
            return failure(400, "secret_key is required")
        return json_response({"status": "success", "request_id": self.request(user_id, node_id, secret)})

    def http_status(self, req):
        user_id, err = self._session(req)
        if err:
            return err
        request_id = (req.query.get("request_id") or [""])[0]
        if not request_id:
            return failure(400, "request_id is required")
        st = self.status(request_id)
        if st is None or st["user_id"] != user_id:
            return failure(404, "no such request")
        return json_response({k: st[k] for k in ("request_id", "request_status", "node_id")})

    def http_nodes(self, req):
        user_id, err = self._session(req)
        if err:
            return err
        return json_response({"nodes": self.nodes_of(user_id)})
