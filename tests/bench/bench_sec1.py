# Device CPU time of the security 1 handshake (runs on the MicroPython unix port, the
# simulated chip): Session_Command0 (X25519 key pair + shared secret) and Session_Command1
# (CTR verify), as firmware/prov/security.py does them for a phone.
import os
import sys

# Run by path (make bench does: micropython tests/bench/bench_x.py), so __file__ locates the
# repository whatever the working directory.
_root = ("/".join(__file__.split("/")[:-1]) or ".") + "/../.."
sys.path[:0] = [_root + "/lib", _root]

import time  # noqa: E402
import protobuf as pb  # noqa: E402
import x25519  # noqa: E402
from aes import CTR  # noqa: E402
from firmware.prov.security import Sec1  # noqa: E402

POP = b"abcd1234"
RUNS = int(os.getenv("ROOST_BENCH_RUNS") or 10)    # tests/bench/pace.py asks for fewer at ESP32 pace


def client_cmd0(pub):
    return pb.field_varint(2, 1) + pb.field_msg(11, pb.field_varint(1, 0) + pb.field_msg(20, pb.field_bytes(1, pub)))


def handshake():
    import hashlib
    cpriv = bytes(range(1, 33))
    cpub = x25519.public_key(cpriv)
    dev = Sec1(POP)
    t0 = time.ticks_us()
    resp0 = dev.handshake(client_cmd0(cpub))
    t1 = time.ticks_us()
    sr0 = pb.decode(pb.decode(pb.decode(resp0)[11])[21])
    dpub, rnd = sr0[2], sr0[3]
    key = bytearray(x25519.x25519(cpriv, dpub))
    h = hashlib.sha256(POP).digest()
    for i in range(32):
        key[i] ^= h[i]
    ctr = CTR(bytes(key), rnd)
    cmd1 = pb.field_varint(2, 1) + pb.field_msg(11, pb.field_varint(1, 2) + pb.field_msg(22, pb.field_bytes(2, ctr.crypt(dpub))))
    t2 = time.ticks_us()
    dev.handshake(cmd1)
    t3 = time.ticks_us()
    assert dev.ready
    return time.ticks_diff(t1, t0), time.ticks_diff(t3, t2)


best0 = best1 = 1 << 30
for _ in range(RUNS):
    a, b = handshake()
    best0, best1 = min(best0, a), min(best1, b)
print("sec1 Session_Command0 (X25519 keygen + shared): %.2f ms" % (best0 / 1000))
print("sec1 Session_Command1 (verify): %.2f ms" % (best1 / 1000))
print("sec1 handshake device CPU: %.2f ms" % ((best0 + best1) / 1000))
