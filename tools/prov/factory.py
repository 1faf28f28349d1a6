"""Manufacture-time values for security 2: the device keeps the SRP salt and verifier, never
the password (spec esp-provisioning.md 5.2).

    prov = {"sec": 2, ...}
    prov.update(sec2_factory("abcd1234"))      # {"srp_salt": hex, "srp_verifier": hex}

The math is lib/srp6a.py's (the same group, hash and byte layouts the firmware checks the proof
with), loaded by file path so nothing is added to sys.path; under CPython it hashes with hashlib.
"""
import importlib.util
from pathlib import Path

from . import ProvError

_LIB = Path(__file__).resolve().parents[2] / "lib" / "srp6a.py"
_srp = None


def _srp6a():
    global _srp
    if _srp is None:
        spec = importlib.util.spec_from_file_location("roost_srp6a", _LIB)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _srp = mod
    return _srp


def sec2_factory(password, username="wifiprov", salt=None):
    """{"srp_salt": hex, "srp_verifier": hex} for the factory config's "prov" object.

    A fresh 16-byte salt whose first byte is non-zero each call (esp-rainmaker-cli passes the
    salt through an integer and drops a leading 0x00, which breaks its proof). `salt` is for
    reproducible output (tests) and must follow the same rule. Username and password are UTF-8;
    the username must be the one clients send (Espressif's default is "wifiprov")."""
    if not password:
        raise ProvError("security 2 needs a password (the PoP): an empty one cannot be proven")
    if not username:
        raise ProvError("security 2 needs a username (clients send \"wifiprov\" by default)")
    srp = _srp6a()
    if salt is None:
        salt = srp.make_salt(16)
    salt = bytes(salt)
    if not salt or salt[0] == 0:
        raise ProvError("the SRP salt must not start with a zero byte (esp-rainmaker-cli cannot use it)")
    return {"srp_salt": salt.hex(), "srp_verifier": srp.verifier(username, password, salt).hex()}
