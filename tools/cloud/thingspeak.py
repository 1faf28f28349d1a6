"""ThingSpeak-compatible channels on the local cloud (cloud-contracts.md 3): the write API a device
uses with the write key that self-registration gave it, bulk writes, and the feed read API.

Write one entry, with the channel's write key as `api_key` (query or body) or in the header
`THINGSPEAKAPIKEY` / `X-THINGSPEAKAPIKEY`; the body form-urlencoded or JSON:

    GET|POST /update        200 "<entry id>"    accepted
                            200 "0"             not accepted, nothing stored (header X-Roost-Reason says why)
                            400 "-1"            missing or unknown write key (and only then)
    GET|POST /update.json   the same, with the entry object instead of its ID

Parameters: field1..field8 and status (at most 255 bytes each; a write with none of them is not
accepted), lat (-90..90), long (-180..180), elevation, created_at (ISO 8601 such as
`2014-12-31T23:59:59Z` or `2014-12-31 23:59:59`, UTC unless it has an offset; default now). A
created_at the channel has already is not accepted, unless the write is the same as that entry (a
device sending again what it got no answer for): then it answers that entry and stores nothing. Writes of one channel closer together than `rate_limit_s`
(15 s, ThingSpeak's free licence; 0 = no limit) are not accepted. Every other problem with the
data answers "0" too, never 400: a device takes 400 to mean that its key was rotated.

    POST /channels/{id}/bulk_update.json  {"write_api_key", "updates": [{...}, ...]}
        202 {"success": true}; 400 {"error"} wrong key or bad body (all or nothing); 404 no such
        channel; 429 closer than rate_limit_s to the channel's last accepted bulk call.
        1 to 960 updates, each with created_at (ISO 8601, MySQL or epoch seconds) or delta_t
        (seconds after the previous update of the list; the first one's after the time of the
        request; only the first may be 0), plus field1..8, status, latitude, longitude, elevation.
        An update the same as the entry the channel has at its time is a replay: skipped.

    GET /channels/{id}/feeds.json?api_key=<read key>&results=N
        200 {"channel": {...}, "feeds": [the last N entries, oldest first]} (N: default 100, at most
        8000); a private channel without its read key: 200 "-1" (ThingSpeak's "no access");
        no such channel: 404 "-1".

Admin (`register_admin`): POST /admin/channels/{id}/rotate -> {"channel_id", "write_key"}; the old
key stops working at once. Channels are created from Python (`create_channel`; self-registration
does it for each new device). IDs start at 1000001; keys are 16 of [A-Z0-9]; times are UTC
`YYYY-MM-DDTHH:MM:SSZ`.
"""
import datetime
import json
import logging
import math
import secrets
import string
import time
from urllib.parse import parse_qs

from .http import Response, error, json_response

log = logging.getLogger("roost.cloud.thingspeak")

FIELDS = tuple("field%d" % i for i in range(1, 9))
EXTRAS = ("status", "latitude", "longitude", "elevation")
ENTRY_KEYS = ("channel_id", "created_at", "entry_id") + FIELDS + ("latitude", "longitude", "elevation", "status")

SCHEMA = """
CREATE TABLE IF NOT EXISTS ts_channels (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    owner       TEXT NOT NULL DEFAULT '',
    write_key   TEXT NOT NULL UNIQUE,
    read_key    TEXT NOT NULL UNIQUE,
    fields      TEXT NOT NULL DEFAULT '{}',
    public      INTEGER NOT NULL DEFAULT 0,
    created     REAL NOT NULL,
    last_entry  INTEGER NOT NULL DEFAULT 0,
    last_write  REAL,
    last_bulk   REAL
);
CREATE TABLE IF NOT EXISTS ts_entries (
    channel_id  INTEGER NOT NULL,
    entry_id    INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    %s,
    PRIMARY KEY (channel_id, entry_id)
);
CREATE INDEX IF NOT EXISTS ts_entries_time ON ts_entries (channel_id, created_at);
""" % ",\n    ".join("%s TEXT" % c for c in FIELDS + EXTRAS)

FIRST_CHANNEL = 1000001
KEY_ALPHABET = string.ascii_uppercase + string.digits
KEY_LENGTH = 16
MAX_VALUE_BYTES = 255
MAX_BULK = 960
DEFAULT_RESULTS, MAX_RESULTS = 100, 8000
LAST_TIME = 253402300799          # 9999-12-31T23:59:59Z
KEY_HEADERS = ("THINGSPEAKAPIKEY", "X-THINGSPEAKAPIKEY")
# parameter name -> (column, (low, high) or None for any finite number, or "text")
PARAMS = dict({f: (f, "text") for f in FIELDS}, status=("status", "text"),
              lat=("latitude", (-90, 90)), latitude=("latitude", (-90, 90)),
              long=("longitude", (-180, 180)), longitude=("longitude", (-180, 180)),
              elevation=("elevation", None))


class KeyRejected(Exception):
    """Missing or unknown write key (or read key)."""


class NotAccepted(Exception):
    """The write was not stored; the message says why (it never holds a key or a value)."""


class TooSoon(NotAccepted):
    """Closer than rate_limit_s to the channel's previous accepted (bulk) write."""


def iso(t):
    return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def in_range(t):
    """t if it is a time iso() can write (1970 to 9999), else ValueError."""
    if not 0 <= t <= LAST_TIME:
        raise ValueError("time out of range")
    return t


def parse_time(value):
    """Epoch seconds from ISO 8601 ("2014-12-31T23:59:59Z", "2014-12-31 23:59:59", naive = UTC),
    or from epoch seconds (a number or a string of digits). ValueError otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return in_range(float(value))
    if not isinstance(value, str):
        raise ValueError("not a time")
    if value.isdigit():
        return in_range(float(value))
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    t = datetime.datetime.fromisoformat(text)
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return in_range(t.timestamp())


def _text(name, value):
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return json.dumps(value)
    raise NotAccepted("%s is not a string or a number" % name)


def entry_values(params, where=""):
    """(column -> text for the entry, created_at epoch or None) from write parameters; unknown
    parameters are ignored. Raises NotAccepted."""
    values = {}
    for name, value in params.items():
        if name not in PARAMS or value is None or value == "":
            continue
        column, check = PARAMS[name]
        text = _text(where + name, value)
        if check == "text":
            if len(text.encode("utf-8")) > MAX_VALUE_BYTES:
                raise NotAccepted("%s%s is longer than %d bytes" % (where, name, MAX_VALUE_BYTES))
        else:
            try:
                number = float(text)
            except ValueError:
                number = math.nan
            if not math.isfinite(number) or (check and not check[0] <= number <= check[1]):
                raise NotAccepted("%s%s must be a number%s" % (where, name, " in %d..%d" % check if check else ""))
        values[column] = text
    if not any(k in values for k in FIELDS + ("status",)):
        raise NotAccepted("%sno field and no status" % where)
    when = params.get("created_at")
    if when in (None, ""):
        return values, None
    try:
        return values, parse_time(when)
    except ValueError:
        raise NotAccepted("%screated_at is not an ISO 8601 time" % where) from None


def new_key():
    return "".join(secrets.choice(KEY_ALPHABET) for _ in range(KEY_LENGTH))


def _entry(row):
    return {k: row[k] for k in ENTRY_KEYS}


def _channel(row):
    if row is None:
        return None
    ch = {k: row[k] for k in ("id", "name", "owner", "write_key", "read_key")}
    ch.update(fields=json.loads(row["fields"]), public=bool(row["public"]), created_at=iso(row["created"]),
              updated_at=iso(row["last_write"] or row["created"]), last_entry_id=row["last_entry"])
    return ch


def channel_id_of(text):
    return int(text) if text.isdigit() and len(text) < 19 else None


class ThingSpeakService:
    def __init__(self, db, rate_limit_s=15.0, clock=time.time):
        self.db = db
        self.rate_limit_s = rate_limit_s
        self.clock = clock
        db.add_schema(SCHEMA)

    # --- Python API -----------------------------------------------------------------------------

    def create_channel(self, name, fields=(), owner="", public=False, tx=None):
        """A new channel; fields: names of field1, field2... (or a dict {"field1": name}).
        Returns channel(id) (with both keys). tx: a transaction to join (db.tx()'s connection)."""
        if tx is None:
            with self.db.tx() as c:
                return self.create_channel(name, fields, owner, public, tx=c)
        names = dict(fields) if isinstance(fields, dict) else {"field%d" % i: n for i, n in enumerate(fields, 1)}
        if not set(names) <= set(FIELDS):
            raise ValueError("channel fields are field1..field8")
        channel_id = tx.execute("SELECT COALESCE(MAX(id) + 1, ?) FROM ts_channels", (FIRST_CHANNEL,)).fetchone()[0]
        write_key, read_key = self._unused_key(tx), None
        while read_key in (None, write_key):
            read_key = self._unused_key(tx)
        tx.execute("INSERT INTO ts_channels (id, name, owner, write_key, read_key, fields, public, created) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (channel_id, name, str(owner), write_key, read_key, json.dumps(names), int(public), self.clock()))
        log.info("channel %d created: %s", channel_id, name)
        return _channel(tx.execute("SELECT * FROM ts_channels WHERE id = ?", (channel_id,)).fetchone())

    @staticmethod
    def _unused_key(c):
        while True:
            key = new_key()
            if not c.execute("SELECT 1 FROM ts_channels WHERE write_key = ? OR read_key = ?", (key, key)).fetchone():
                return key

    def channel(self, channel_id):
        """{"id", "name", "owner", "write_key", "read_key", "fields", "public", "created_at",
        "updated_at", "last_entry_id"} or None."""
        rows = self.db.query("SELECT * FROM ts_channels WHERE id = ?", (channel_id,))
        return _channel(rows[0]) if rows else None

    def rotate_write_key(self, channel_id):
        """A new write key for the channel (the old one is refused from now on); KeyError if none."""
        with self.db.tx() as c:
            key = self._unused_key(c)
            if not c.execute("UPDATE ts_channels SET write_key = ? WHERE id = ?", (key, channel_id)).rowcount:
                raise KeyError("no channel %r" % channel_id)
        log.info("channel %s: write key rotated", channel_id)
        return key

    def entries(self, channel_id, results=None):
        """The channel's entries, oldest first (the last `results` of them, if given)."""
        rows = self.db.query("SELECT * FROM ts_entries WHERE channel_id = ? ORDER BY entry_id DESC LIMIT ?",
                             (channel_id, -1 if results is None else results))
        return [_entry(r) for r in reversed(rows)]

    def update(self, write_key, params, problem=None):
        """Store one entry (the /update parameters as a dict); returns it. Raises KeyRejected,
        NotAccepted (problem: a reason found before, e.g. an unreadable body)."""
        now = self.clock()
        with self.db.tx() as c:
            ch = c.execute("SELECT * FROM ts_channels WHERE write_key = ?", (write_key,)).fetchone() \
                if write_key else None
            if ch is None:
                raise KeyRejected()
            if problem:
                raise NotAccepted(problem)
            values, when = entry_values(params)
            since = None if ch["last_write"] is None else now - ch["last_write"]
            if self.rate_limit_s and since is not None and since < self.rate_limit_s:
                raise TooSoon("rate limit: %.1f s since the last write, %g s needed" % (since, self.rate_limit_s))
            created_at = iso(now if when is None else when)
            if when is not None:
                taken = self._taken(c, ch["id"], created_at, values)
                if taken:
                    log.info("channel %d: entry %d written again (a replay): kept once", ch["id"], taken["entry_id"])
                    return taken
                if taken is False:
                    raise NotAccepted("the channel has another entry at created_at already")
            entry = self._insert(c, ch["id"], ch["last_entry"] + 1, created_at, values)
            c.execute("UPDATE ts_channels SET last_entry = ?, last_write = ? WHERE id = ?",
                      (entry["entry_id"], now, ch["id"]))
        return entry

    def bulk_update(self, channel_id, write_key, updates):
        """Store a list of updates, all or none; returns how many. Raises LookupError (no such
        channel), KeyRejected, TooSoon, NotAccepted (bad body)."""
        now = self.clock()
        with self.db.tx() as c:
            ch = c.execute("SELECT * FROM ts_channels WHERE id = ?", (channel_id,)).fetchone()
            if ch is None:
                raise LookupError(channel_id)
            if not isinstance(write_key, str) or not secrets.compare_digest(write_key, ch["write_key"]):
                raise KeyRejected()
            since = None if ch["last_bulk"] is None else now - ch["last_bulk"]
            if self.rate_limit_s and since is not None and since < self.rate_limit_s:
                raise TooSoon("%.1f s since the last bulk update, %g s needed" % (since, self.rate_limit_s))
            if not isinstance(updates, list) or not 1 <= len(updates) <= MAX_BULK:
                raise NotAccepted("updates must be a list of 1 to %d objects" % MAX_BULK)
            t, seen, entry_id, replays = now, set(), ch["last_entry"], 0
            for i, u in enumerate(updates):
                t = self._bulk_time(i, u, t)
                values, _ = entry_values(dict(u, created_at=None), "update %d: " % i)
                created_at = iso(t)
                taken = None if created_at in seen else self._taken(c, ch["id"], created_at, values)
                if taken:
                    replays += 1
                    continue
                if created_at in seen:
                    raise NotAccepted("update %d: an earlier update of the list is at %s too" % (i, created_at))
                if taken is False:
                    raise NotAccepted("update %d: the channel has another entry at %s already" % (i, created_at))
                seen.add(created_at)
                entry_id += 1
                self._insert(c, ch["id"], entry_id, created_at, values)
            c.execute("UPDATE ts_channels SET last_entry = ?, last_bulk = ? WHERE id = ?", (entry_id, now, ch["id"]))
        log.info("channel %d: bulk update of %d entries%s", channel_id, len(updates),
                 " (%d written again: kept once)" % replays if replays else "")
        return len(updates) - replays

    @staticmethod
    def _bulk_time(i, update, previous):
        where = "update %d: " % i
        if not isinstance(update, dict):
            raise NotAccepted(where + "not an object")
        if ("created_at" in update) == ("delta_t" in update):
            raise NotAccepted(where + "needs created_at or delta_t (one of them)")
        try:
            if "created_at" in update:
                return parse_time(update["created_at"])
            delta = float(_text("delta_t", update["delta_t"]))
            if not math.isfinite(delta) or delta < 0 or (delta == 0 and i > 0):
                raise NotAccepted(where + "delta_t must be > 0 (only the first update's may be 0)")
            return in_range(previous + delta)
        except ValueError:
            raise NotAccepted(where + "bad created_at or delta_t") from None

    @staticmethod
    def _taken(c, channel_id, created_at, values=None):
        """None if the channel has no entry at created_at; the entry if it holds exactly
        `values` (a replay: a device sending again what it got no answer for); else False."""
        row = c.execute("SELECT * FROM ts_entries WHERE channel_id = ? AND created_at = ?",
                        (channel_id, created_at)).fetchone()
        if row is None:
            return None
        same = values is not None and all(row[k] == values.get(k) for k in FIELDS + EXTRAS)
        return _entry(row) if same else False

    @staticmethod
    def _insert(c, channel_id, entry_id, created_at, values):
        row = dict({k: None for k in FIELDS + EXTRAS}, channel_id=channel_id, entry_id=entry_id,
                   created_at=created_at, **values)
        c.execute("INSERT INTO ts_entries (%s) VALUES (%s)" % (", ".join(row), ", ".join("?" * len(row))),
                  list(row.values()))
        return _entry(row)

    def feeds(self, channel_id, read_key=None, results=DEFAULT_RESULTS):
        """{"channel", "feeds"}; raises LookupError (no channel), KeyRejected (private, no read key)."""
        ch = self.channel(channel_id)
        if ch is None:
            raise LookupError(channel_id)
        if not ch["public"] and not (read_key and secrets.compare_digest(read_key, ch["read_key"])):
            raise KeyRejected()
        view = {k: ch[k] for k in ("id", "name", "created_at", "updated_at", "last_entry_id")}
        view.update(ch["fields"])
        return {"channel": view, "feeds": self.entries(channel_id, results)}

    # --- HTTP -----------------------------------------------------------------------------------

    def register(self, r):
        for method in ("GET", "POST"):
            r.add(method, "/update", self.http_update)
            r.add(method, "/update.json", self.http_update)
        r.add("POST", "/channels/{id}/bulk_update.json", self.http_bulk)
        r.add("GET", "/channels/{id}/feeds.json", self.http_feeds)

    def register_admin(self, r, guard):
        """Admin routes; guard(handler) -> handler that checks the admin token."""
        r.add("POST", "/admin/channels/{id}/rotate", guard(self.http_rotate))

    def http_update(self, req):
        as_json = req.path.endswith(".json")
        ctype = "application/json" if as_json else "text/plain"
        params, problem = {k: v[0] for k, v in req.query.items()}, None
        try:
            params.update(_body_params(req))
        except ValueError as e:
            problem = "body: %s" % e
        key = params.get("api_key") or next(filter(None, map(req.header, KEY_HEADERS)), None)
        try:
            entry = self.update(key if isinstance(key, str) else None, params, problem)
        except KeyRejected:
            return Response(400, "-1", ctype)
        except NotAccepted as e:
            log.info("write not accepted: %s", e)
            return Response(200, "0", ctype, {"X-Roost-Reason": str(e)})
        return json_response(entry) if as_json else Response(200, str(entry["entry_id"]), ctype)

    def http_bulk(self, req):
        channel_id = channel_id_of(req.params["id"])
        try:
            body = req.json()
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return error(400, "body is not a JSON object")
        key = body.get("write_api_key") or next(filter(None, map(req.header, KEY_HEADERS)), None)
        try:
            self.bulk_update(channel_id, key, body.get("updates"))
        except LookupError:
            return error(404, "no such channel")
        except KeyRejected:
            return error(400, "write_api_key is missing or wrong")
        except TooSoon as e:
            return error(429, str(e))
        except NotAccepted as e:
            return error(400, str(e))
        return json_response({"success": True}, 202)

    def http_feeds(self, req):
        channel_id = channel_id_of(req.params["id"])
        try:
            results = max(0, min(MAX_RESULTS, int(req.query.get("results", [DEFAULT_RESULTS])[0])))
        except ValueError:
            results = DEFAULT_RESULTS
        try:
            return json_response(self.feeds(channel_id, req.query.get("api_key", [None])[0], results))
        except LookupError:
            return Response(404, "-1", "application/json")
        except KeyRejected:
            return Response(200, "-1", "application/json")

    def http_rotate(self, req):
        channel_id = channel_id_of(req.params["id"])
        try:
            return json_response({"channel_id": channel_id, "write_key": self.rotate_write_key(channel_id)})
        except KeyError:
            return error(404, "no such channel")


def _body_params(req):
    """The POST body's parameters: JSON object or form; ValueError if unreadable."""
    if req.method != "POST" or not req.body:
        return {}
    text = req.body.decode("utf-8")                          # UnicodeDecodeError is a ValueError
    if (req.header("Content-Type") or "").split(";")[0].strip().lower() == "application/json":
        body = json.loads(text)
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        return body
    return {k: v[0] for k, v in parse_qs(text, strict_parsing=False).items()}
