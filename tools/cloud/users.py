"""Users of the local cloud and their sessions (RainMaker-style login).

    POST /v1/login {"user_name", "password"} -> 200 {"status": "success", "user_id", "accesstoken"}
                                                401 {"status": "failure", "description"} on bad credentials

Requests of a logged-in user carry `Authorization: Bearer <accesstoken>`; the raw token without
"Bearer " is accepted too, as RainMaker does. Tokens do not expire (a local test cloud).
"""
import hashlib
import hmac
import os
import secrets
import sqlite3
import time
import uuid

from .db import Conflict
from .http import error, json_response

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id  TEXT PRIMARY KEY,
    name     TEXT NOT NULL UNIQUE,
    salt     BLOB NOT NULL,
    pw_hash  BLOB NOT NULL,
    created  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS user_tokens (
    token    TEXT PRIMARY KEY,
    user_id  TEXT NOT NULL,
    created  REAL NOT NULL
);
"""

ITERATIONS = 20000


def failure(status, description):
    """RainMaker-style error body."""
    return json_response({"status": "failure", "description": description}, status)


def json_object(req):
    """The request's JSON object body, or (None, 400 response)."""
    try:
        body = req.json()
    except ValueError:
        return None, failure(400, "body is not JSON")
    if not isinstance(body, dict):
        return None, failure(400, "body is not a JSON object")
    return body, None


def created(req, make):
    """An admin "create": 201 with make(the JSON object body); 400 for a bad body or a ValueError,
    409 for a db.Conflict (with its message, as {"error": ...})."""
    body, err = json_object(req)
    if err:
        return err
    try:
        return json_response(make(body), 201)
    except ValueError as e:
        return error(400, str(e))
    except Conflict as e:
        return error(409, str(e))


def _hash(password, salt):
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS)


class Users:
    def __init__(self, db, clock=time.time):
        self.db = db
        self.clock = clock
        db.add_schema(SCHEMA)

    def add_user(self, name, password):
        """New user; returns its user_id. Raises Conflict if the name is taken, ValueError if empty."""
        if not isinstance(name, str) or not name or not isinstance(password, str) or not password:
            raise ValueError("user name and password must be non-empty strings")
        user_id = str(uuid.uuid4())
        salt = os.urandom(16)
        try:
            with self.db.tx() as c:
                c.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?)",
                          (user_id, name, salt, _hash(password, salt), self.clock()))
        except sqlite3.IntegrityError:
            raise Conflict("user %s exists" % name) from None
        return user_id

    def user_id(self, name):
        rows = self.db.query("SELECT user_id FROM users WHERE name = ?", (name,))
        return rows[0]["user_id"] if rows else None

    def check(self, name, password):
        """user_id if the credentials are right, else None."""
        rows = self.db.query("SELECT user_id, salt, pw_hash FROM users WHERE name = ?", (name,))
        if not rows:
            _hash(password, b"x" * 16)      # same work either way
            return None
        r = rows[0]
        return r["user_id"] if hmac.compare_digest(_hash(password, r["salt"]), r["pw_hash"]) else None

    def login(self, name, password):
        """(user_id, access token), or (None, None) for bad credentials."""
        user_id = self.check(name, password)
        if user_id is None:
            return None, None
        token = secrets.token_urlsafe(32)
        with self.db.tx() as c:
            c.execute("INSERT INTO user_tokens VALUES (?, ?, ?)", (token, user_id, self.clock()))
        return user_id, token

    def user_for_token(self, token):
        rows = self.db.query("SELECT user_id FROM user_tokens WHERE token = ?", (token,))
        return rows[0]["user_id"] if rows else None

    def session_user(self, req):
        """The logged-in user of a request (Bearer token or the raw token), or None."""
        auth = (req.header("Authorization") or "").strip()
        if auth[:7].lower() == "bearer ":
            auth = auth[7:].strip()
        return self.user_for_token(auth) if auth else None

    # --- HTTP ---

    def register(self, r):
        r.add("POST", "/v1/login", self.http_login)

    def http_login(self, req):
        body, err = json_object(req)
        if err:
            return err
        name, password = body.get("user_name"), body.get("password")
        if not isinstance(name, str) or not name or not isinstance(password, str):
            return failure(400, "user_name and password are required")
        user_id, token = self.login(name, password)
        if user_id is None:
            return failure(401, "incorrect user name or password")
        return json_response({"status": "success", "user_id": user_id, "accesstoken": token})
