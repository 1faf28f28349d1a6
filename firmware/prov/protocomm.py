# Protocomm: the endpoint table and the session rules shared by every transport.
#
# Each transport session (a BLE connection, a SoftAP cookie) gets a Session. Only the
# newest one is alive: opening a session closes the previous one, as IDF does.
# prov-session carries the handshake in clear, proto-ver is always clear, every other
# endpoint is decrypt -> handler -> encrypt and refused before the handshake is done.
import time

from micropython import const

from firmware.prov.errors import AuthFailed, ProvError

SESSION = "prov-session"
VERSION = "proto-ver"

# (name, BLE 16-bit id) in the order IDF creates them; custom endpoints follow from 0xFF54.
_STANDARD = (("prov-ctrl", 0xFF4F), ("prov-scan", 0xFF50), (SESSION, 0xFF51),
             ("prov-config", 0xFF52), (VERSION, 0xFF53))

# Proof-of-possession guessing: after _FREE_TRIES wrong PoPs in a row, handshakes are
# refused for _LOCK_S seconds, doubling per further failure up to _LOCK_MAX_S.
_FREE_TRIES = const(5)
_LOCK_S = const(30)
_LOCK_MAX_S = const(600)
# Handshake messages cost real CPU (a security-2 Command0 takes seconds on an ESP32), so
# prov-session requests draw from a bucket of _BURST tokens refilled one per _REFILL_MS,
# whoever sends them: a flood cannot keep the chip busy. A handshake takes two.
_BURST = const(10)
_REFILL_MS = const(6000)


class Protocomm:
    def __init__(self, make_security, version_json, handlers):
        self._make_security = make_security   # fn() -> a fresh Sec0/Sec1/Sec2 object
        self.version_json = version_json
        self.handlers = handlers              # custom and standard endpoint name -> fn(bytes) -> bytes
        self._current = None
        self.failures = 0
        self._locked_until = 0
        self._tokens = _BURST
        self._refilled = time.ticks_ms()

    def endpoints(self):
        """[(name, ble_id)] for the transports: the standard five, then the custom ones."""
        out = list(_STANDARD)
        uid = 0xFF54
        for name in self.handlers:
            if name not in ("prov-ctrl", "prov-scan", "prov-config"):
                out.append((name, uid))
                uid += 1
        return out

    def open_session(self):
        s = Session(self)
        self._current = s
        return s

    def _handshake_failed(self):
        self.failures += 1
        if self.failures >= _FREE_TRIES:
            lock = min(_LOCK_S << (self.failures - _FREE_TRIES), _LOCK_MAX_S)
            self._locked_until = time.ticks_add(time.ticks_ms(), lock * 1000)

    def _take_token(self):
        now = time.ticks_ms()
        earned = time.ticks_diff(now, self._refilled) // _REFILL_MS
        if earned:
            self._tokens = min(_BURST, self._tokens + earned)
            self._refilled = time.ticks_add(self._refilled, earned * _REFILL_MS)
        if self._tokens == 0:
            return False
        if self._tokens == _BURST:
            self._refilled = now     # a full bucket earns nothing while it waits
        self._tokens -= 1
        return True

    def locked(self):
        return self.failures >= _FREE_TRIES and time.ticks_diff(self._locked_until, time.ticks_ms()) > 0


class Session:
    def __init__(self, pc):
        self._pc = pc
        self.security = pc._make_security()

    def alive(self):
        return self._pc._current is self

    def close(self):
        if self._pc._current is self:
            self._pc._current = None

    def handle(self, endpoint, data):
        """One request on one endpoint -> the response bytes. Raises ProvError to refuse it."""
        pc = self._pc
        if endpoint == VERSION:
            return pc.version_json
        if not self.alive():
            raise ProvError("session closed by a newer one")
        if endpoint == SESSION:
            if pc.locked():
                raise ProvError("too many failed attempts; try again later")
            if not pc._take_token():
                raise ProvError("too many handshake messages; try again later")
            # The handshake's big-integer work needs room: collect first (a few ms, and the
            # token bucket above bounds how often), instead of failing on a fragmented heap.
            import gc
            gc.collect()
            try:
                out = self.security.handshake(data)
            except MemoryError:
                raise ProvError("out of memory")
            except AuthFailed:
                pc._handshake_failed()
                raise
            except ProvError:
                raise
            except Exception:  # a field of the wrong type or shape: malformed, never a crash
                raise ProvError("malformed session message")
            if self.security.ready:
                pc.failures = 0
            return out
        handler = pc.handlers.get(endpoint)
        if handler is None:
            raise ProvError("unknown endpoint")
        sec = self.security
        if not sec.ready:
            raise ProvError("no session: handshake first")
        request = sec.decrypt(data)  # raises ProvError on a failed GCM tag
        try:
            response = handler(request)
        except ProvError:
            raise
        except MemoryError:
            # Not the phone's fault: say so (the phone may retry once the heap recovers).
            raise ProvError("out of memory")
        except Exception:
            # Garbage after decryption (wrong key, desynchronised stream, not protobuf): refuse.
            # Handlers validate before they change any state, so nothing is left half done.
            raise ProvError("malformed request")
        return sec.encrypt(response)
