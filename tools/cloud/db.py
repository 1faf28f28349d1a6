"""SQLite storage for the local cloud: one file path or ":memory:", shared by all service threads.

All access goes through one connection guarded by a lock (check_same_thread=False). Other
services add their own tables with `Database.add_schema(sql)` and use `Database.tx()`.
"""
import json
import sqlite3
import threading
from contextlib import contextmanager

SCHEMA = """
CREATE TABLE IF NOT EXISTS bootstrap_configs (
    thing_id     TEXT PRIMARY KEY,
    external_id  TEXT NOT NULL UNIQUE,
    external_key TEXT NOT NULL,
    thing_key    TEXT NOT NULL,
    channels     TEXT NOT NULL DEFAULT '[]',
    content      TEXT NOT NULL DEFAULT '',
    client_cert  TEXT NOT NULL DEFAULT '',
    client_key   TEXT NOT NULL DEFAULT '',
    ca_cert      TEXT NOT NULL DEFAULT '',
    state        INTEGER NOT NULL DEFAULT 0 CHECK (state IN (0, 1)),
    name         TEXT NOT NULL DEFAULT ''
);
"""

CONFIG_FIELDS = ("thing_id", "external_id", "external_key", "thing_key", "channels", "content",
                 "client_cert", "client_key", "ca_cert", "state", "name")

INACTIVE, ACTIVE = 0, 1


class Conflict(Exception):
    """A unique value (external_id, thing_id) is already taken."""


class Database:
    def __init__(self, path=":memory:"):
        self.path = str(path)
        self.lock = threading.RLock()
        self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        if self.path != ":memory:":
            self.conn.execute("PRAGMA journal_mode=WAL")
        self.add_schema(SCHEMA)

    def add_schema(self, sql):
        with self.lock:
            self.conn.executescript(sql)

    @contextmanager
    def tx(self):
        """Hold the lock for one transaction; yields the connection. Rolls back on error."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def query(self, sql, args=()):
        with self.lock:
            return [dict(r) for r in self.conn.execute(sql, args).fetchall()]

    def close(self):
        with self.lock:
            self.conn.close()

    # --- bootstrap configs -------------------------------------------------------------------

    @staticmethod
    def _config(row):
        if row is None:
            return None
        cfg = dict(row)
        cfg["channels"] = json.loads(cfg["channels"])
        return cfg

    def add_config(self, cfg):
        """Insert a config dict (thing_id, external_id, external_key, thing_key required; channels a
        list of {"id", "name"?, "metadata"?}). Raises Conflict if external_id or thing_id exists."""
        row = {k: cfg.get(k, "") for k in CONFIG_FIELDS}
        row["channels"] = json.dumps(cfg.get("channels") or [])
        row["state"] = int(cfg.get("state", INACTIVE))
        for k in ("content", "client_cert", "client_key", "ca_cert", "name"):
            row[k] = row[k] or ""
        cols = ", ".join(CONFIG_FIELDS)
        marks = ", ".join("?" for _ in CONFIG_FIELDS)
        try:
            with self.tx() as c:
                c.execute(f"INSERT INTO bootstrap_configs ({cols}) VALUES ({marks})",
                          [row[k] for k in CONFIG_FIELDS])
        except sqlite3.IntegrityError as e:
            raise Conflict(str(e)) from None
        return row["thing_id"]

    def get_config(self, thing_id):
        with self.lock:
            return self._config(self.conn.execute(
                "SELECT * FROM bootstrap_configs WHERE thing_id = ?", (thing_id,)).fetchone())

    def get_config_by_external_id(self, external_id):
        with self.lock:
            return self._config(self.conn.execute(
                "SELECT * FROM bootstrap_configs WHERE external_id = ?", (external_id,)).fetchone())

    def configs_with_channel(self, channel_id):
        """The configs that list a channel with this ID (normally one)."""
        with self.lock:
            return [self._config(r) for r in self.conn.execute(
                "SELECT * FROM bootstrap_configs WHERE EXISTS (SELECT 1 FROM json_each(channels) "
                "WHERE json_extract(value, '$.id') = ?) ORDER BY rowid", (channel_id,)).fetchall()]

    def list_configs(self):
        with self.lock:
            return [self._config(r) for r in self.conn.execute(
                "SELECT * FROM bootstrap_configs ORDER BY rowid").fetchall()]

    def set_config_state(self, thing_id, state):
        """Returns False if there is no such config."""
        with self.tx() as c:
            return c.execute("UPDATE bootstrap_configs SET state = ? WHERE thing_id = ?",
                             (int(state), thing_id)).rowcount > 0

    def remove_config(self, thing_id):
        with self.tx() as c:
            return c.execute("DELETE FROM bootstrap_configs WHERE thing_id = ?",
                             (thing_id,)).rowcount > 0
