"""The devices' readings: SenML JSON (RFC 8428) on their bootstrap data channel, each stored once.

A device publishes (MQTT, QoS 1) on `channels/<data channel>/messages[/<anything>]` a JSON array
of records. Base fields apply to their record and the following ones: `bn` (base name, the device
sends "<node_id>:"; informational, the channel decides whose readings they are), `bt` (base time,
float seconds), `bu` (base unit), `bv` (base value, added to `v`), `bver` (1..10). A record with
only base fields (no n, u, t, seq, s, ut, v, vs, vb, vd) just sets them; every other record is
one reading:

    {"n": "temperature", "u": "Cel", "v": 21.5, "t": -30.0, "seq": 42}

- `n` name (non-empty string); `u` unit (string, else `bu`, else none);
- exactly one value: `v` (number), `vs` (string) or `vb` (bool); the JSON type is kept;
- `t` time, float seconds (default 0); the reading's time is bt + t, and a value below 2**28 is
  relative to the moment the cloud received the message (RFC 8428 4.5.3): received_at + bt + t;
- `seq` integer >= 1 (and < 2**63): the device's monotonic reading number, a plain (not
  must-understand) extension label. The key is (node_id, seq): a reading whose seq the node has
  already is a duplicate (the device re-sends what it saw no PUBACK for), not stored again, counted;
  the first one stays even if the repeat differs (logged). Readings may come in any order.

Other labels are ignored, except those ending in "_" (must-understand, RFC 8428 4.4): the whole
message is rejected. It is rejected too (nothing of it stored, counted per device, one warning
logged) when it is not UTF-8 JSON, not an array, has no reading, or a record is not an object, has
no name, no seq or a bad one, no value or two, a `v` that is not a finite number, a base field or
time of the wrong type, or a seq twice.

    svc = ReadingsService(db, clock)
    svc.ingest(node_id, payload_bytes)          -> (stored, duplicates); ValueError if rejected
    svc.readings(node_id, since_seq=0, limit=None)  [{"seq", "name", "unit", "value", "time",
                                                      "received_at"}], by seq
    svc.stats(node_id)                          {"count", "duplicates", "rejected", "first_seq",
                                                 "last_seq", "gaps"}   (gaps: seqs missing between)
    svc.drop(channel_id, why)                   a message on a channel that is no device's data
                                                channel; svc.dropped() -> {channel_id: messages}
    GET /admin/readings/{node_id}?since_seq=&limit=  (register_admin)
        -> {"node_id", "readings": [...], "stats": {...}}; 400 for a bad since_seq or limit
"""
import json
import logging
import math
import re
import time

from .http import error, json_response

log = logging.getLogger("roost.cloud.readings")

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    node_id     TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    name        TEXT NOT NULL,
    unit        TEXT,
    value,                                  -- no type: each value keeps its own (INTEGER, REAL, TEXT)
    kind        TEXT NOT NULL CHECK (kind IN ('v', 'vs', 'vb')),
    time        REAL NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (node_id, seq)
);
CREATE TABLE IF NOT EXISTS reading_counters (
    node_id     TEXT PRIMARY KEY,
    duplicates  INTEGER NOT NULL DEFAULT 0,
    rejected    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS reading_drops (
    channel_id  TEXT PRIMARY KEY,
    messages    INTEGER NOT NULL DEFAULT 0
);
"""

RELATIVE_LIMIT = 2 ** 28          # RFC 8428 4.5.3: smaller times are relative to now
MAX_SEQ = 2 ** 63 - 1             # SQLite INTEGER
SENML_VERSION = 10
BASE_TYPES = {"bn": str, "bt": float, "bu": str, "bv": float, "bver": int}
VALUE_KINDS = ("v", "vs", "vb")
READING_LABELS = {"n", "u", "t", "seq", "s", "ut", "vd"} | set(VALUE_KINDS)   # a record with none: base only
_TOPIC = re.compile(r"^channels/([^/]+)/messages(?:/.*)?$")


def channel_of(topic):
    """The channel ID of a Mainflux message topic `channels/<id>/messages[/...]`, else None."""
    m = _TOPIC.match(topic)
    return m.group(1) if m else None


def _is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _number(x, what):
    """A finite JSON number (ints beyond SQLite's INTEGER as floats); ValueError otherwise."""
    if not _is_number(x):
        raise ValueError("%s is not a number" % what)
    if isinstance(x, int) and -MAX_SEQ - 1 <= x <= MAX_SEQ:
        return x
    try:
        x = float(x)
    except OverflowError:
        x = math.inf
    if not math.isfinite(x):
        raise ValueError("%s is not a finite number" % what)
    return x


def _base(record, base, where):
    for label, kind in BASE_TYPES.items():
        if label not in record:
            continue
        x = record[label]
        if kind is float:
            x = _number(x, where + label)
        elif not isinstance(x, kind) or isinstance(x, bool):
            raise ValueError("%s%s is not %s" % (where, label, "a string" if kind is str else "an integer"))
        if label == "bver" and not 1 <= x <= SENML_VERSION:
            raise ValueError("%sbver %d is not supported (up to %d)" % (where, x, SENML_VERSION))
        base[label] = x


def _value(record, base, where):
    """(kind, value) of the record's one value field."""
    kinds = [k for k in VALUE_KINDS if k in record]
    if len(kinds) != 1:
        raise ValueError(where + ("no value (v, vs or vb)" if not kinds else "more than one value"))
    kind, x = kinds[0], record[kinds[0]]
    if kind == "v":
        x = _number(x, where + "v")
        if "bv" in base:
            x = _number(base["bv"] + x, where + "bv + v")
    elif kind == "vs" and not isinstance(x, str):
        raise ValueError(where + "vs is not a string")
    elif kind == "vb" and not isinstance(x, bool):
        raise ValueError(where + "vb is not true or false")
    return kind, x


def _parse(payload, received_at):
    """(readings with their "kind", the base names seen); ValueError."""
    try:
        text = payload if isinstance(payload, str) else bytes(payload).decode("utf-8")
        pack = json.loads(text)
    except (ValueError, RecursionError) as e:       # UnicodeDecodeError, JSONDecodeError, too deep
        raise ValueError("not UTF-8 JSON (%s)" % e) from None
    if not isinstance(pack, list):
        raise ValueError("not a JSON array of SenML records")
    base, names, readings, seqs = {}, set(), [], set()
    for i, record in enumerate(pack):
        where = "record %d: " % i
        if not isinstance(record, dict):
            raise ValueError(where + "not an object")
        unknown = sorted(label for label in record if label.endswith("_"))
        if unknown:
            raise ValueError(where + "unknown must-understand label %s" % ", ".join(map(repr, unknown)))
        _base(record, base, where)
        if "bn" in record:
            names.add(base["bn"])
        if not READING_LABELS & set(record):
            continue                                  # base fields (and ignored labels) only
        name, unit, seq = record.get("n"), record.get("u", base.get("bu")), record.get("seq")
        if not isinstance(name, str) or not name:
            raise ValueError(where + "no name (n)")
        if "u" in record and not isinstance(record["u"], str):
            raise ValueError(where + "u is not a string")
        if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= MAX_SEQ:
            raise ValueError(where + ("seq must be an integer >= 1 (and < 2**63)" if seq is not None else "no seq"))
        if seq in seqs:
            raise ValueError(where + "seq %d appears twice" % seq)
        seqs.add(seq)
        kind, value = _value(record, base, where)
        when = _number(base.get("bt", 0) + _number(record.get("t", 0), where + "t"), where + "bt + t")
        if when < RELATIVE_LIMIT:
            when = received_at + when
        readings.append({"seq": seq, "name": name, "unit": unit, "value": value, "time": float(when),
                         "kind": kind})
    if not readings:
        raise ValueError("no readings")
    return readings, names


def parse_senml(payload, received_at):
    """[{"seq", "name", "unit", "value", "time"}] of a SenML message (bytes or str) received at
    `received_at` (epoch seconds); ValueError saying what is wrong with it."""
    readings, _ = _parse(payload, received_at)
    for r in readings:
        del r["kind"]
    return readings


def _reading(row):
    value = bool(row["value"]) if row["kind"] == "vb" else row["value"]
    return {"seq": row["seq"], "name": row["name"], "unit": row["unit"], "value": value,
            "time": row["time"], "received_at": row["received_at"]}


def _count(c, node_id, duplicates=0, rejected=0):
    c.execute("INSERT INTO reading_counters (node_id, duplicates, rejected) VALUES (?, ?, ?) "
              "ON CONFLICT (node_id) DO UPDATE SET duplicates = duplicates + excluded.duplicates, "
              "rejected = rejected + excluded.rejected", (node_id, duplicates, rejected))


class ReadingsService:
    def __init__(self, db, clock=time.time):
        self.db = db
        self.clock = clock
        db.add_schema(SCHEMA)

    # --- Python API -----------------------------------------------------------------------------

    def ingest(self, node_id, payload, received_at=None):
        """Store one message's readings in one transaction; returns (stored, duplicates). A
        rejected message raises ValueError after it was counted and logged (nothing stored)."""
        received_at = self.clock() if received_at is None else received_at
        try:
            readings, names = _parse(payload, received_at)
        except ValueError as e:
            with self.db.tx() as c:
                _count(c, node_id, rejected=1)
            log.warning("node %s: message rejected: %s", node_id, e)
            raise
        for bn in sorted(names):
            if bn.rstrip(":") != node_id:
                log.warning("node %s: readings with base name %r (stored as node %s's: the channel decides)",
                            node_id, bn, node_id)
        stored, differing = 0, []
        with self.db.tx() as c:
            for r in readings:
                if c.execute("INSERT OR IGNORE INTO readings (node_id, seq, name, unit, value, kind, time, "
                             "received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (node_id, r["seq"], r["name"], r["unit"], r["value"], r["kind"], r["time"],
                              received_at)).rowcount:
                    stored += 1
                    continue
                old = c.execute("SELECT name, unit, value, kind FROM readings WHERE node_id = ? AND seq = ?",
                                (node_id, r["seq"])).fetchone()
                if tuple(old) != (r["name"], r["unit"], r["value"], r["kind"]):
                    differing.append(r["seq"])
            duplicates = len(readings) - stored
            if duplicates:
                _count(c, node_id, duplicates=duplicates)
        if differing:
            log.warning("node %s: seq %s sent again with other content; the first one is kept (a seq reused?)",
                        node_id, ", ".join(map(str, differing)))
        log.debug("node %s: %d readings stored, %d duplicates", node_id, stored, duplicates)
        return stored, duplicates

    def readings(self, node_id, since_seq=0, limit=None):
        """The node's readings with seq > since_seq, by seq (the first `limit` of them, if given)."""
        return [_reading(r) for r in self.db.query(
            "SELECT * FROM readings WHERE node_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (node_id, since_seq, -1 if limit is None else limit))]

    def stats(self, node_id):
        """{"count", "duplicates", "rejected", "first_seq", "last_seq", "gaps"}; gaps = how many
        seqs between the first and the last are missing (first/last None without readings)."""
        row = self.db.query("SELECT COUNT(*) AS count, MIN(seq) AS first_seq, MAX(seq) AS last_seq "
                            "FROM readings WHERE node_id = ?", (node_id,))[0]
        counters = self.db.query("SELECT duplicates, rejected FROM reading_counters WHERE node_id = ?",
                                 (node_id,))
        row.update(counters[0] if counters else {"duplicates": 0, "rejected": 0})
        row["gaps"] = row["last_seq"] - row["first_seq"] + 1 - row["count"] if row["count"] else 0
        return row

    def drop(self, channel_id, why):
        """Count (and log) a message on a channel whose readings nobody stores."""
        with self.db.tx() as c:
            c.execute("INSERT INTO reading_drops (channel_id, messages) VALUES (?, 1) "
                      "ON CONFLICT (channel_id) DO UPDATE SET messages = messages + 1", (channel_id,))
        log.warning("message on channel %s dropped: %s", channel_id, why)

    def dropped(self):
        """{channel_id: messages dropped}."""
        return {r["channel_id"]: r["messages"] for r in self.db.query("SELECT * FROM reading_drops")}

    # --- HTTP -----------------------------------------------------------------------------------

    def register_admin(self, r, guard):
        """Admin routes; guard(handler) -> handler that checks the admin token."""
        r.add("GET", "/admin/readings/{node_id}", guard(self.http_readings))

    def http_readings(self, req):
        node_id = req.params["node_id"]
        if not node_id:
            return error(400, "node_id is empty")
        try:
            since_seq, limit = (int(req.query[k][0]) if k in req.query else None for k in ("since_seq", "limit"))
        except ValueError:
            return error(400, "since_seq and limit must be integers")
        if (since_seq or 0) < 0 or (limit is not None and limit < 0):
            return error(400, "since_seq and limit must be >= 0")
        since_seq, limit = min(since_seq or 0, MAX_SEQ), None if limit is None else min(limit, MAX_SEQ)
        return json_response({"node_id": node_id, "readings": self.readings(node_id, since_seq, limit),
                              "stats": self.stats(node_id)})
