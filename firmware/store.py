# Durable device state on LittleFS: one small file per record (schema in
# records.py), so a write touches one small file. docs/storage.md has the
# format, the crash reasoning and the flash-wear budget.
#
# File <root>/store/<name>: a 10-byte header then a canonical JSON body.
#   "<2sBBHI": magic b"rS", format 1, schema version, body length, CRC-32
#   The CRC (binascii.crc32, IEEE) covers header bytes 0..5 and the body, so a
#   flipped version or length byte is caught too. CRC-32 rather than a SHA-256
#   prefix: the threat is accidental damage (torn pages, bit flips), which a
#   CRC-32 catches exactly (every burst up to 32 bits, every 1-3 bit error at
#   these sizes, garbage with probability 1 - 2^-32), with no hash object to
#   allocate. It is no defence against someone who can write the flash; nothing
#   stored beside the data could be.
#
# Update of record R (files R, R.bak, R.new), in this order:
#   1. write R.new completely and close it (LittleFS commits on close);
#   2. rename R -> R.bak   (only if R was a valid copy: never bury a good backup
#                           under a corrupt primary);
#   3. rename R.new -> R.
# LittleFS renames are atomic replaces, so each crash point leaves:
#   during 1   R = old (valid), R.new torn: ignored, truncated by the next write.
#   after 1    R = old, R.new = new: R wins (R.new is never read).
#   after 2    no R; R.bak = old: the loader takes R.bak (old) and restores R.
#   after 3    R = new, R.bak = old.
# So at every instant a valid copy holding the old or the new value exists, and
# once set() has returned, R holds the new value. Loading takes R if valid, else
# R.bak if valid (logs, and rewrites R from R.bak by the same steps without
# step 2), else the defaults (logs if anything was there). Loading never raises.
#
# Factory reset: create the marker store/RESET, remove the runtime records, then
# the marker. A Store finding the marker at boot finishes the erase, so a cut
# never leaves half of the user data behind.
import os
import json
import struct
import log
from firmware import records
from micropython import const


def _crc32_py(data, crc=0):
    # binascii.crc32 in Python, for a port built without MICROPY_PY_BINASCII_CRC32
    # (the ESP32 build has it): same values, much slower.
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


try:
    from binascii import crc32
except ImportError:
    crc32 = _crc32_py

_HDR = "<2sBBHI"
_HDR_LEN = const(10)
_MAGIC = b"rS"
_FORMAT = const(1)
_MAX_BODY = const(8192)
_S_IFDIR = const(0x4000)
_ENOENT = const(2)
_EISDIR = const(21)
FACTORY = records.FACTORY


def encode(ver, body):
    """Header for a record file holding body (bytes) at schema version ver."""
    hdr = bytearray(struct.pack(_HDR, _MAGIC, _FORMAT, ver, len(body), 0))
    struct.pack_into("<I", hdr, 6, crc32(body, crc32(memoryview(hdr)[:6])))
    return hdr


def _check(data):
    """(reason, ver): reason is None if data is a whole, intact record file."""
    if len(data) < _HDR_LEN:
        return "truncated", 0
    magic, fmt, ver, n, crc = struct.unpack_from(_HDR, data)
    if magic != _MAGIC or fmt != _FORMAT:
        return "bad header", 0
    if len(data) != _HDR_LEN + n:
        return ("truncated" if len(data) < _HDR_LEN + n else "length mismatch"), 0
    mv = memoryview(data)
    if crc32(mv[_HDR_LEN:], crc32(mv[:6])) != crc:
        return "bad checksum", 0
    return None, ver


def _canon(v, out):
    # Canonical JSON (sorted keys, no spaces): equal values give equal bytes,
    # which is how set() knows nothing changed.
    t = type(v)
    if t is dict:
        out.append("{")
        sep = ""
        for k in sorted(v):
            if type(k) is not str:  # JSON would not read it back
                raise TypeError("record keys must be str")
            out.append(sep)
            out.append(json.dumps(k))
            out.append(":")
            _canon(v[k], out)
            sep = ","
        out.append("}")
    elif t is list or t is tuple:
        out.append("[")
        sep = ""
        for x in v:
            out.append(sep)
            _canon(x, out)
            sep = ","
        out.append("]")
    else:
        out.append(json.dumps(v))


class Store:
    def __init__(self, root="/", factory_defaults=None):
        self._dir = root.rstrip("/") + "/store"
        self._fdef = factory_defaults or {}
        self._body = {}     # name -> canonical body (bytes) of the current value
        self._ok = {}       # name -> the primary file holds a valid copy
        self._src = {}      # name -> "primary" | "backup" | "default"
        self._factory = None
        self._dir_ok = False
        self.errors = 0
        try:
            os.stat(self._dir + "/RESET")
        except OSError:
            return
        log.warning("store", "finishing an interrupted factory reset")
        try:
            self._erase()
        except Exception as e:
            self._err("factory reset could not finish (%s)" % type(e).__name__)

    def __repr__(self):
        return "<Store %s>" % self._dir

    # -- reading --

    @property
    def factory(self):
        """The factory record (decoded once; treat as read-only)."""
        if self._factory is None:
            self._load(FACTORY)
            self._factory = json.loads(self._body.pop(FACTORY))
            # Only the decoded copy stays: with a CA certificate the body is ~2 KB the heap
            # needs more. A later write (manufacturing only) reads the file again to compare.
        return self._factory

    def get(self, name):
        """A fresh dict of record name (its defaults if never written)."""
        self._load(name)
        return json.loads(self._body[name])

    def load_all(self):
        for name in records.NAMES:
            self._load(name)
        return self.sources()

    def sources(self):
        """Where each loaded record came from: primary, backup or default."""
        return dict(self._src)

    def dump(self):
        """Every record with secrets shown as "<n bytes>": safe for a console."""
        return {name: records.redact(self.get(name)) for name in records.NAMES}

    def wifi_networks(self):
        return self.get("wifi")["networks"]

    # -- writing --

    def set(self, name, value):
        """Replace record name by value (missing fields take their defaults).

        Writes only if the stored value changes; returns whether it wrote.
        Raises ValueError/TypeError on a bad value, OSError if the flash fails.
        """
        if name == FACTORY:
            raise ValueError("factory record is read-only")
        return self._put(name, value)

    def update(self, name, **changes):
        d = self.get(name)
        d.update(changes)
        return self.set(name, d)

    def set_factory(self, value):
        """Manufacturing only: write the factory record."""
        return self._put(FACTORY, value)

    def add_wifi(self, ssid, password):
        """Remember a network as the most recent; the oldest beyond MAX_WIFI is dropped."""
        nets = [n for n in self.wifi_networks() if n.get("ssid") != ssid]
        nets.insert(0, {"ssid": ssid, "password": password})
        return self.set("wifi", {"networks": nets})

    def forget_wifi(self, ssid):
        nets = [n for n in self.wifi_networks() if n.get("ssid") != ssid]
        return self.set("wifi", {"networks": nets})

    def factory_reset(self):
        """Erase every runtime record (user data); keep the factory record and the outbox
        cursor (records.RESET_KEEPS)."""
        self._mkdir()
        open(self._dir + "/RESET", "wb").close()
        self._erase()
        log.info("store", "factory reset: user data erased")

    # -- internals --

    def _path(self, name):
        return self._dir + "/" + name

    def _err(self, msg):
        self.errors += 1
        log.error("store", msg)

    def _fill(self, name, d):
        full = records.defaults(name)
        if name == FACTORY:
            full.update(self._fdef)
        full.update(d)
        return records.normalize(name, full)

    def _put(self, name, value):
        if type(value) is not dict:
            raise TypeError("record value must be a dict")
        self._load(name)
        out = []
        _canon(self._fill(name, value), out)
        if sum(len(x) for x in out) > _MAX_BODY:  # characters <= bytes: refuse before joining
            raise ValueError("record too large: " + name)
        body = "".join(out).encode()
        out = None
        if body == self._body[name]:
            return False
        if len(body) > _MAX_BODY:
            raise ValueError("record too large: " + name)
        self._commit(name, encode(records.version(name), body), body)
        self._body[name] = body
        if name == FACTORY:
            self._factory = None
        return True

    def _mkdir(self):
        if not self._dir_ok:
            try:
                os.mkdir(self._dir)
            except OSError:
                pass  # exists
            self._dir_ok = True

    def _commit(self, name, hdr, body):
        # Steps 1-3 of the update described at the top of this file.
        p = self._path(name)
        self._mkdir()
        with open(p + ".new", "wb") as f:
            f.write(hdr)
            if body:
                f.write(body)
        if self._ok.get(name):
            self._ok[name] = False
            try:
                os.rename(p, p + ".bak")
            except OSError as e:
                if e.args[0] != _ENOENT:
                    raise
        try:
            os.rename(p + ".new", p)
        except OSError as e:
            if e.args[0] != _EISDIR:
                raise
            os.rmdir(p)  # an (empty) directory where the record belongs: damaged metadata
            os.rename(p + ".new", p)
        self._ok[name] = True

    def _read(self, name, path):
        """(reason, file bytes, dict lifted to the current version); reason None if usable."""
        try:
            st = os.stat(path)
        except OSError:
            return "missing", None, None
        if st[0] & _S_IFDIR:
            return "not a file", None, None
        if st[6] > _HDR_LEN + _MAX_BODY:
            return "too large", None, None
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return "unreadable", None, None
        why, ver = _check(data)
        if why:
            return why, None, None
        if ver > records.version(name):
            return "schema v%d is newer than this firmware" % ver, None, None
        try:
            d = json.loads(memoryview(data)[_HDR_LEN:])
            if type(d) is not dict:
                raise ValueError
        except ValueError:
            return "bad json", None, None
        if ver == records.version(name):
            return None, data, d
        try:
            return None, data, records.migrate(name, ver, d)
        except Exception:
            return "no migration from schema v%d" % ver, None, None

    def _load(self, name):
        if name in self._body:
            return
        records.version(name)  # KeyError for an unknown record: a bug, not bad data
        try:
            d, data = self._load_copies(name)
        except Exception as e:  # never out of boot: MemoryError, a bug in a migration...
            self._err("%s: load failed (%s), using defaults" % (name, type(e).__name__))
            d, data = {}, None
            self._src[name] = "default"
        try:
            full = self._fill(name, d)
        except Exception:
            self._err("%s: stored value has a bad shape, using defaults" % name)
            full, data = self._fill(name, {}), None
            self._src[name] = "default"
        if data and data[3] == records.version(name) and full == d:
            # The file body is already the canonical form (we wrote it): keep one
            # copy of it instead of re-encoding, which litters the heap at boot.
            self._body[name] = bytes(memoryview(data)[_HDR_LEN:])
        else:
            out = []
            _canon(full, out)
            self._body[name] = "".join(out).encode()

    def _load_copies(self, name):
        p = self._path(name)
        why, data, d = self._read(name, p)
        if why is None:
            self._ok[name] = True
            self._src[name] = "primary"
            return d, data
        self._ok[name] = False
        why2, data, d = self._read(name, p + ".bak")
        if why2 is None:
            self._src[name] = "backup"
            if why == "missing" and self._exists(p + ".new"):
                log.warning("store", "%s: write was interrupted, using the previous value" % name)
            else:
                self._err("%s: primary copy %s, using backup copy" % (name, why))
            try:  # restore the primary from the backup (the update without step 2)
                self._commit(name, data, None)
            except OSError as e:
                self._err("%s: could not restore primary (errno %s)" % (name, e.args[0]))
            return d, data
        self._src[name] = "default"
        if why != "missing" or why2 != "missing":
            self._err("%s: no valid copy (primary %s, backup %s), using %sdefaults"
                      % (name, why, why2, "factory " if name == FACTORY else ""))
        return {}, None

    def _exists(self, path):
        try:
            os.stat(path)
            return True
        except OSError:
            return False

    def _erase(self):
        for name in records.RUNTIME:
            if name in records.RESET_KEEPS:
                continue
            p = self._path(name)
            for suffix in (".new", "", ".bak"):
                try:
                    os.remove(p + suffix)
                except OSError:
                    pass  # absent
            self._body.pop(name, None)
            self._ok.pop(name, None)
            self._src.pop(name, None)
        os.remove(self._dir + "/RESET")
