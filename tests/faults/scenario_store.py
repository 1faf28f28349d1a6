# Chip-side power-cut scenario for firmware/store.py (MicroPython).
#
# At boot it loads every record and reports what it found, then writes records
# forever until the power is cut. Each written value is derived from a counter n
# and carries n in the field "n", so the checker can tell which write a stored
# value came from and whether it is whole (a mix or garbage decodes as BAD).
#
# Output, one line each:
#   STATE <record> <n|NONE|BAD> <primary|backup|default>   every record, at boot
#   READY <next n>
#   WRITE <record|reset> <n>          about to write
#   ACK <record|reset> <n> <us>       the store call returned after <us> microseconds
#
# It runs on the simulated board as its main.py (tests/faults/powercut.py deploys it
# beside the firmware): `scenario_store.run("/", start)` or `scenario_store.check("/")`.
import gc
import time
from firmware import records
from firmware.store import Store

_CERT = "MIIBszCCAVmgAwIBAgIU"  # repeated to make the factory record a block-sized file


def value(name, n):
    """The whole record (defaults filled in) that write n of record name stores."""
    if name == "factory":
        v = {"node_id": "node-%d" % n, "pop": "pop-%d" % n, "serial": "SN%06d" % n,
             "external_id": "ext-%d" % n, "external_key": "xk-%d" % n,
             "bootstrap_enc_key": "%032d" % n, "ca_cert": _CERT * 60,
             "sensors": ["sim"], "sinks": ["mqtt"]}
    elif name == "wifi":
        v = {"networks": [{"ssid": "net%d-%d" % (n, i), "password": "pw%d-%d-" % (n, i) * (1 + n % 3)}
                          for i in range(1 + n % 5)]}
    elif name == "user":
        v = {"user_id": "user-%d" % n, "secret": "s%d" % n * (1 + n % 4),
             "status": ("pending", "mapped")[n % 2]}
    elif name == "claim":
        v = {"code": ("cc%d" % n) * 6, "claimed": n % 3 == 0}
    elif name == "regkey":
        v = {"key": "%08d-K%07d" % (n, n)}
    elif name == "bootstrap":
        v = {"done": True, "thing_id": "t-%d" % n, "thing_key": "k-%d" % n,
             "channels": [{"id": "ch-%d" % n}, {"id": "ch2-%d" % n}],
             "content": ("c%d;" % n) * (n % 400)}
    elif name == "registration":
        v = {"done": n % 2 == 1, "channel": str(n), "write_key": "WK%014d" % n}
    elif name == "telemetry":
        v = {"enabled": n % 2 == 0, "interval_s": n}
    else:  # cursor
        v = {"seq": n}
    d = records.defaults(name)
    d.update(v)
    d["n"] = n
    return d


def decode(name, d):
    """n if d is exactly write n's value, NONE if it is the defaults, else BAD."""
    n = d.get("n")
    if n is None:
        return "NONE" if d == records.defaults(name) else "BAD"
    if type(n) is int and d == value(name, n):
        return str(n)
    return "BAD"


def check(root):
    """Load every record as at boot; print its STATE; return (store, next n)."""
    s = Store(root)
    top = 0
    for name in records.NAMES:
        try:
            d = s.factory if name == "factory" else s.get(name)
            got = decode(name, d)
        except Exception as e:  # noqa: the checker must report, not die
            got = "BAD"
            print("EXC", name, repr(e))
        src = s.sources().get(name, "?")
        print("STATE", name, got, src)
        if got not in ("NONE", "BAD"):
            top = max(top, int(got))
    return s, top + 1


def _pick(n):
    # Deterministic, hash-spread choice: the cursor (the hot record) half the
    # time, a factory reset now and then, the other records evenly otherwise.
    h = (n * 2654435761 >> 7) % 100
    if h < 50:
        return "cursor"
    if h < 52:
        return "reset"
    rt = records.RUNTIME
    return rt[h % len(rt)]


def run(root, start=0):
    s, n = check(root)
    n = max(n, start)
    gc.collect()
    print("READY", n)
    if s.sources().get("factory") == "default":
        print("WRITE factory 0")
        t = time.ticks_us()
        s.set_factory(value("factory", 0))
        print("ACK factory 0", time.ticks_diff(time.ticks_us(), t))
    while True:
        name = _pick(n)
        print("WRITE", name, n)
        t = time.ticks_us()
        if name == "reset":
            s.factory_reset()
        else:
            s.set(name, value(name, n))
        print("ACK", name, n, time.ticks_diff(time.ticks_us(), t))
        n += 1
