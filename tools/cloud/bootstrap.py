"""Mainflux/Magistrala bootstrap service (cloud-contracts.md section 1) on the local cloud.

Management (Authorization: Bearer <token>):
    POST   /things/configs                 201, Location: /things/configs/<thing_id>
    GET    /things/configs                 200 {"total", "configs": [...]}
    GET    /things/configs/{id}            200 config view (id = thing_id, as in Mainflux)
    PUT    /things/state/{thing_id}        {"state": 0|1} -> 200
    DELETE /things/configs/{id}            204
Device:
    GET /things/bootstrap/{external_id}           Authorization: Thing <external_key>
    GET /things/bootstrap/secure/{external_id}    Authorization: Thing <hex(IV || AES-CFB128(external_key))>
        -> body IV || AES-CFB128(JSON without newline); key = raw bytes of `encrypt_key`.

Generations: `fields` = "thing" (Mainflux >= 2023-07, default), "mainflux" (2019-2023) or "client"
(Magistrala v0.20 names); `accept_raw_key=True` also accepts the 2019 raw header (no scheme).
The state of a config is never checked when bootstrapping (Mainflux doesn't either).

Sharing: pass `router=` to add the routes to another service's Router (then this service runs no
HTTP server of its own); `on_change(thing_id, config_or_None)` is called after every create, state
change and removal (None = removed), whether through HTTP or the Python methods.
"""
import binascii
import json
import os
import secrets
import uuid

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

try:                                # cryptography >= 47 moved CFB; the old name goes away in 49
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:                 # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB

from . import db as dbmod
from .http import HTTPService, Response, Router, bearer_ok, error, json_response

DEFAULT_ENCRYPT_KEY = "12345678910111213141516171819202"   # Mainflux code default (AES-256)

FIELD_NAMES = {
    "thing": ("thing_id", "thing_key", "channels"),
    "mainflux": ("mainflux_id", "mainflux_key", "mainflux_channels"),
    "client": ("client_id", "client_secret", "channels"),
}
BLOCK = 16


# --- crypto (cloud-contracts 1.5) ---------------------------------------------------------------

def _cfb(key, iv, encrypt):
    c = Cipher(algorithms.AES(key), CFB(iv))      # CFB = 128-bit segments, like Go's NewCFB*
    return c.encryptor() if encrypt else c.decryptor()


def cfb_encrypt(key, data, iv=None):
    """IV || AES-CFB128(key, IV, data); key raw bytes (16/24/32)."""
    iv = os.urandom(BLOCK) if iv is None else iv
    e = _cfb(key, iv, True)
    return iv + e.update(data) + e.finalize()


def cfb_decrypt(key, blob):
    """Inverse of cfb_encrypt. Like Mainflux `dec`, less than one IV of input decrypts to b""."""
    if len(blob) < BLOCK:
        return b""
    d = _cfb(key, blob[:BLOCK], False)
    return d.update(blob[BLOCK:]) + d.finalize()


def valid_key(key):
    return len(key) in (16, 24, 32)


# --- Go-compatible JSON --------------------------------------------------------------------------

def _sorted(obj):   # Go encodes maps (channel metadata) with sorted keys
    if isinstance(obj, dict):
        return {k: _sorted(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list):
        return [_sorted(v) for v in obj]
    return obj


def go_json(obj):
    """json.Marshal: compact, non-ASCII kept, HTML characters and U+2028/9 escaped."""
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        s = s.replace(ch, esc)
    return s.encode("utf-8")


def bootstrap_document(cfg, fields="thing"):
    """The bootstrap response object in Go struct field order (bootstrap/reader.go)."""
    id_name, key_name, ch_name = FIELD_NAMES[fields]
    channels = []
    for ch in cfg.get("channels") or []:
        c = {"id": ch["id"]}
        if ch.get("name"):
            c["name"] = ch["name"]
        if ch.get("metadata"):
            c["metadata"] = _sorted(ch["metadata"])
        channels.append(c)
    doc = {id_name: cfg["thing_id"], key_name: cfg["thing_key"], ch_name: channels or None}
    for k in ("content", "client_cert", "client_key", "ca_cert"):
        if cfg.get(k):
            doc[k] = cfg[k]
    return doc


def _normalize_channels(raw):
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError("channels must be a list")
    out = []
    for ch in raw:
        if isinstance(ch, str):
            ch = {"id": ch}
        if not isinstance(ch, dict) or not isinstance(ch.get("id"), str) or not ch["id"]:
            raise ValueError("bad channel")
        c = {"id": ch["id"]}
        if ch.get("name"):
            c["name"] = str(ch["name"])
        if ch.get("metadata"):
            if not isinstance(ch["metadata"], dict):
                raise ValueError("channel metadata must be an object")
            c["metadata"] = ch["metadata"]
        out.append(c)
    return out


# --- service -------------------------------------------------------------------------------------

class BootstrapService:
    def __init__(self, db, port=0, token="roost-admin-token", encrypt_key=DEFAULT_ENCRYPT_KEY,
                 fields="thing", key_prefix="Thing ", accept_raw_key=False,
                 secure_content_type="application/json", iv_source=None, host="127.0.0.1",
                 router=None, on_change=None):
        if fields not in FIELD_NAMES:
            raise ValueError(f"fields must be one of {sorted(FIELD_NAMES)}")
        self.db = db
        self.token = token
        self.encrypt_key = encrypt_key.encode() if isinstance(encrypt_key, str) else bytes(encrypt_key)
        self.fields = fields
        self.key_prefix = key_prefix
        self.accept_raw_key = accept_raw_key
        self.secure_content_type = secure_content_type
        self.iv_source = iv_source or (lambda: os.urandom(BLOCK))
        self.on_change = on_change
        self.router = router or Router()
        self.register(self.router)
        self.http = None if router else HTTPService(self.router, port=port, host=host)

    # lifecycle
    def start(self):
        if self.http:
            self.http.start()
        return self

    def stop(self):
        if self.http:
            self.http.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        return self.http.port if self.http else None

    @property
    def url(self):
        return self.http.url if self.http else None

    # --- Python API (the HTTP handlers use it too): every change is announced to on_change ---

    def _notify(self, thing_id):
        if self.on_change:
            self.on_change(thing_id, self.db.get_config(thing_id))

    def add(self, cfg):
        """Store a new config (see Database.add_config); raises db.Conflict. Returns its thing_id."""
        thing_id = self.db.add_config(cfg)
        self._notify(thing_id)
        return thing_id

    def set_state(self, thing_id, state):
        """False if there is no such config."""
        if not self.db.set_config_state(thing_id, state):
            return False
        self._notify(thing_id)
        return True

    def remove(self, thing_id):
        removed = self.db.remove_config(thing_id)
        if removed and self.on_change:
            self.on_change(thing_id, None)
        return removed

    def register(self, r):
        r.add("POST", "/things/configs", self.create_config)
        r.add("GET", "/things/configs", self.list_configs)
        r.add("GET", "/things/configs/{id}", self.view_config)
        r.add("DELETE", "/things/configs/{id}", self.remove_config)
        r.add("PUT", "/things/state/{id}", self.change_state)
        r.add("GET", "/things/bootstrap/secure/{external_id}", self.bootstrap_secure)
        r.add("GET", "/things/bootstrap/{external_id}", self.bootstrap)

    # --- management ---

    def _authorized(self, req):
        return bearer_ok(req, self.token)

    @staticmethod
    def _json_body(req):
        if "application/json" not in (req.header("Content-Type") or ""):
            return None, error(415, "unsupported content type")
        try:
            body = req.json()
        except ValueError:
            return None, error(400, "malformed entity")
        if not isinstance(body, dict):
            return None, error(400, "malformed entity")
        return body, None

    def create_config(self, req):
        if not self._authorized(req):
            return error(401, "missing or invalid credentials provided")
        body, err = self._json_body(req)
        if err:
            return err
        ext_id, ext_key = body.get("external_id"), body.get("external_key")
        if not isinstance(ext_id, str) or not ext_id or not isinstance(ext_key, str) or not ext_key:
            return error(400, "missing external_id or external_key")
        strs = ("thing_id", "thing_key", "content", "client_cert", "client_key", "ca_cert", "name")
        if any(body.get(k) is not None and not isinstance(body[k], str) for k in strs):
            return error(400, "malformed entity")
        try:
            channels = _normalize_channels(body.get("channels"))
        except ValueError as e:
            return error(400, f"malformed entity: {e}")
        cfg = {k: body.get(k) or "" for k in strs}
        cfg.update(external_id=ext_id, external_key=ext_key, channels=channels, state=dbmod.INACTIVE)
        cfg["thing_id"] = cfg["thing_id"] or str(uuid.uuid4())
        cfg["thing_key"] = cfg["thing_key"] or secrets.token_hex(16)
        try:
            self.add(cfg)
        except dbmod.Conflict:
            return error(409, "entity already exists")
        return Response(201, b"", headers={"Location": f"/things/configs/{cfg['thing_id']}"})

    @staticmethod
    def _view(cfg):
        return {"thing_id": cfg["thing_id"], "thing_key": cfg["thing_key"],
                "channels": [dict(c) for c in cfg["channels"]], "external_id": cfg["external_id"],
                "external_key": cfg["external_key"], "content": cfg["content"], "name": cfg["name"],
                "client_cert": cfg["client_cert"], "client_key": cfg["client_key"],
                "ca_cert": cfg["ca_cert"], "state": cfg["state"]}

    def view_config(self, req):
        if not self._authorized(req):
            return error(401, "missing or invalid credentials provided")
        cfg = self.db.get_config(req.params["id"])
        if cfg is None:
            return error(404, "entity not found")
        return json_response(self._view(cfg))

    def list_configs(self, req):
        if not self._authorized(req):
            return error(401, "missing or invalid credentials provided")
        configs = [self._view(c) for c in self.db.list_configs()]
        return json_response({"total": len(configs), "offset": 0, "limit": len(configs),
                              "configs": configs})

    def change_state(self, req):
        if not self._authorized(req):
            return error(401, "missing or invalid credentials provided")
        body, err = self._json_body(req)
        if err:
            return err
        state = body.get("state")
        if isinstance(state, bool) or state not in (dbmod.INACTIVE, dbmod.ACTIVE):
            return error(400, "invalid state")
        if not self.set_state(req.params["id"], state):
            return error(404, "entity not found")
        return Response(200, b"", "application/json")

    def remove_config(self, req):
        if not self._authorized(req):
            return error(401, "missing or invalid credentials provided")
        self.remove(req.params["id"])   # Mainflux answers 204 whether or not it existed
        return Response(204)

    # --- device side ---

    def _device_key(self, req):
        """apiutil.ExtractThingKey: the exact prefix, else "" (-> 401). accept_raw_key: 2019 raw value."""
        auth = req.header("Authorization") or ""
        if auth.startswith(self.key_prefix):
            return auth[len(self.key_prefix):]
        return auth if self.accept_raw_key else ""

    def _lookup(self, req):
        """Mainflux order: key required (401), then ID (400), then lookup (404)."""
        key = self._device_key(req)
        if not key:
            return None, None, error(401, "missing or invalid credentials provided")
        ext_id = req.params["external_id"]
        if not ext_id:
            return None, None, error(400, "missing entity id")
        cfg = self.db.get_config_by_external_id(ext_id)
        if cfg is None:
            return None, None, error(404, "entity not found")
        return key, cfg, None

    def bootstrap(self, req):
        key, cfg, err = self._lookup(req)
        if err:
            return err
        if not secrets.compare_digest(key.encode(), cfg["external_key"].encode()):
            return error(403, "external key invalid")
        return Response(200, go_json(bootstrap_document(cfg, self.fields)) + b"\n", "application/json")

    def bootstrap_secure(self, req):
        key, cfg, err = self._lookup(req)
        if err:
            return err
        if not valid_key(self.encrypt_key):       # e.g. Mainflux's 50-byte docker default
            return error(403, "external key invalid")
        try:
            plain = cfb_decrypt(self.encrypt_key, binascii.unhexlify(key))
        except (binascii.Error, ValueError):
            return error(403, "external key invalid")
        if not secrets.compare_digest(plain, cfg["external_key"].encode()):
            return error(403, "external key invalid")
        body = cfb_encrypt(self.encrypt_key, go_json(bootstrap_document(cfg, self.fields)),
                           iv=self.iv_source())
        return Response(200, body, self.secure_content_type)
