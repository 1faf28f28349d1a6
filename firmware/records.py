# Schema of the device's durable records (used by store.py): for each record its
# current schema version and defaults, the migrations from older versions, and
# which fields are secret. Pure data and small functions, no I/O.
#
# Migration rule: a record's version only grows. Bumping it means adding
# _MIGRATE[(name, old)] = fn(dict) -> dict for the previous version, so a reader
# can always lift any older copy (primary or backup) to the current shape.
# Writers always write the current version. A copy newer than this firmware
# knows is refused (the store falls back), never guessed at.
import json

FACTORY = "factory"

# name -> (version, defaults as JSON). Kept as text so every call to defaults()
# returns a fresh dict the caller may mutate, and the table costs no heap
# objects beyond one string per record.
_SCHEMA = {
    # Written once at manufacturing; kept by a factory reset.
    # Cloud: the bootstrap base URL, external ID (defaults to the node ID) and key, whether
    # to use the encrypted variant (with bootstrap_enc_key, the server's shared AES key),
    # the Authorization prefix ("Thing ", "Client " or "" by server generation), and the
    # CA (PEM) that signs the broker's certificate.
    # Self-registration (docs/registration.md): the serial it registers as (the node ID if
    # empty), and whether the original midPoint's plain-text answer is acceptable.
    # endpoints.ntp: the SNTP server that sets the clock ("" = never ask).
    FACTORY: (1, '{"node_id":"","pop":"","serial":"","endpoints":{"bootstrap":"",'
                 '"registration":"","mqtt":"","thingspeak":"","ntp":"pool.ntp.org"},"external_id":"",'
                 '"external_key":"","bootstrap_enc_key":"","bootstrap_secure":false,'
                 '"auth_prefix":"Thing ","ca_cert":"","registration_plaintext":false,'
                 '"sensors":[],"sinks":[],'
                 # Local provisioning: security scheme (0 only for development), the
                 # transports, how long the window stays open, the SoftAP passphrase
                 # (open AP if empty) and, for security 2, the SRP salt and verifier (hex).
                 '"prov":{"sec":1,"transports":["ble"],"timeout_s":900,'
                 '"softap_key":"","srp_salt":"","srp_verifier":""}}'),
    # Up to MAX_WIFI networks, most recent first: [{"ssid":..,"password":..}].
    "wifi": (2, '{"networks":[]}'),
    # RainMaker-style user-node mapping. status: none (never given one) -> pending (set by
    # provisioning) -> mapped (PUBACK from the cloud); none -> cleared once the reset notice
    # went out. reset: the user differs from the previous owner (docs/cloud.md).
    "user": (1, '{"user_id":"","secret":"","status":"none","reset":false}'),
    # Particle-style claim code, cleared once the cloud acknowledged it.
    "claim": (1, '{"code":"","claimed":false}'),
    # midPoint registration key typed over the serial console.
    "regkey": (1, '{"key":""}'),
    # Mainflux bootstrap result (the parts the device needs to stream).
    "bootstrap": (1, '{"done":false,"thing_id":"","thing_key":"","channels":[],'
                     '"content":"","client_cert":"","client_key":"","ca_cert":""}'),
    # midPoint self-registration result (ThingSpeak channel and write key).
    "registration": (1, '{"done":false,"channel":"","write_key":""}'),
    "telemetry": (1, '{"enabled":true,"interval_s":60}'),
    # Outbox cursors: every reading up to sinks[name] reached that cloud; every reading up to
    # seq is done (delivered to every sink, or dropped when the outbox was full; dropped
    # counts those). Kept tiny on purpose: it is the hot record (see docs/storage.md).
    "cursor": (1, '{"seq":0,"dropped":0,"sinks":{}}'),
}

NAMES = tuple(sorted(_SCHEMA))
RUNTIME = tuple(n for n in NAMES if n != FACTORY)
# A factory reset keeps the outbox cursor: the cloud keeps each (node, seq) once, so a
# sequence starting again at 1 would have the new owner's readings taken for old ones.
RESET_KEEPS = ("cursor",)
MAX_WIFI = 5

# Secret fields per record ("a[].b" = field b of every element of list a).
# dump() and anything else that shows a record masks these, plus any field whose
# name looks secret (_WORDS), at any depth.
SECRET_FIELDS = {
    FACTORY: ("pop", "external_key", "bootstrap_enc_key", "prov.softap_key", "prov.srp_verifier"),
    "wifi": ("networks[].password",),
    "user": ("secret",),
    "claim": ("code",),
    "regkey": ("key",),
    "bootstrap": ("thing_key", "client_key"),
    "registration": ("write_key",),
}
_NAMES_SECRET = ("pop", "external_key", "bootstrap_enc_key", "password", "secret",
                 "code", "key", "thing_key", "client_key", "write_key", "psk", "srp_verifier")
_WORDS = ("pass", "secret", "key", "pop", "token", "psk")


def version(name):
    return _SCHEMA[name][0]


def defaults(name):
    return json.loads(_SCHEMA[name][1])


def normalize(name, d):
    """Enforce record invariants on a (defaults-filled) dict before it is stored."""
    if name == FACTORY:
        # A factory file may give only some provisioning settings or endpoints: the rest
        # keep their defaults.
        full = defaults(FACTORY)
        for part in ("prov", "endpoints"):
            if type(d.get(part)) is dict:
                full[part].update(d[part])
                d[part] = full[part]
    if name == "wifi":
        nets = d["networks"]
        if type(nets) is not list:
            raise ValueError("wifi.networks must be a list")
        d["networks"] = nets[:MAX_WIFI]
    return d


# -- migrations: (name, from_version) -> fn(dict) -> dict of from_version + 1 --

def _wifi_1to2(d):
    # v1 (first firmware) kept one network as {"ssid", "psk"}; v2 keeps a list of
    # up to MAX_WIFI {"ssid", "password"}, most recent first.
    ssid = d.get("ssid") or ""
    nets = [{"ssid": ssid, "password": d.get("psk") or ""}] if ssid else []
    return {"networks": nets}


_MIGRATE = {("wifi", 1): _wifi_1to2}


def migrate(name, ver, d):
    """Lift d from schema version ver to the current one; raises ValueError if no path."""
    cur = _SCHEMA[name][0]
    while ver < cur:
        fn = _MIGRATE.get((name, ver))
        if fn is None:
            raise ValueError("no migration")
        d = fn(d)
        ver += 1
    return d


# -- secrets --

def is_secret(field):
    if field in _NAMES_SECRET:
        return True
    field = field.lower()
    for w in _WORDS:
        if w in field:
            return True
    return False


def redact(v, secret=False):
    """A copy of v safe to show: secret strings become "<n bytes>"."""
    t = type(v)
    if t is dict:
        return {k: redact(v[k], secret or is_secret(k)) for k in v}
    if t is list:
        return [redact(x, secret) for x in v]
    if not secret or v is None:
        return v
    if t is str:
        return "<%d bytes>" % len(v.encode())
    return "<secret>"
