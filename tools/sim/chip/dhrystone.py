# Weicker's Dhrystone 1.1 (CACM 27:10, 1984) in Python: the program "pystone" measures, written
# here from the algorithm, so that the simulated chip can be calibrated against the published
# ESP32 figure (about 1,661 pystones/s at 240 MHz, MicroPython issue #5673). Frozen into the chip;
# tools/sim/pace.py runs it. One loop is one "stone": the figure is loops per second.
import time

_ID1, _ID2, _ID3, _ID4, _ID5 = 1, 2, 3, 4, 5


class _Rec:
    def __init__(self, ptr=None, discr=0, enum=0, num=0, text=""):
        self.ptr = ptr
        self.discr = discr
        self.enum = enum
        self.num = num
        self.text = text

    def copy(self):
        return _Rec(self.ptr, self.discr, self.enum, self.num, self.text)


class _State:
    def __init__(self):
        self.int_glob = 0
        self.bool_glob = False
        self.char1 = "\0"
        self.char2 = "\0"
        self.arr1 = [0] * 51
        self.arr2 = [[0] * 51 for _ in range(51)]
        self.glb = None


def _p7(a, b):
    return b + a + 2


def _f3(e):
    return e == _ID3


def _p6(s, e):
    out = e
    if not _f3(e):
        out = _ID4
    if e == _ID1:
        out = _ID1
    elif e == _ID2:
        out = _ID1 if s.int_glob > 100 else _ID4
    elif e == _ID3:
        out = _ID2
    elif e == _ID5:
        out = _ID3
    return out


def _f1(c1, c2):
    return _ID1 if c1 != c2 else _ID2


def _f2(s, s1, s2):
    i = 1
    c = "\0"
    while i <= 1:
        if _f1(s1[i], s2[i + 1]) == _ID1:
            c = "A"
            i += 1
    if "W" <= c <= "Z":
        i = 7
    if c == "X":
        return True
    if s1 > s2:
        s.int_glob = i + 7
        return True
    return False


def _p3(s, out):
    if s.glb is not None:
        out = s.glb.ptr
    else:
        s.int_glob = 100
    s.glb.num = _p7(10, s.int_glob)
    return out


def _p1(s, rec):
    nxt = rec.ptr = s.glb.copy()
    rec.num = 5
    nxt.num = rec.num
    nxt.ptr = rec.ptr
    nxt.ptr = _p3(s, nxt.ptr)
    if nxt.discr == _ID1:
        nxt.num = 6
        nxt.enum = _p6(s, rec.enum)
        nxt.ptr = s.glb.ptr
        nxt.num = _p7(nxt.num, 10)
    else:
        rec = nxt.copy()
    nxt.ptr = None
    return rec


def _p2(s, io):
    loc = io + 10
    while True:
        if s.char1 == "A":
            loc -= 1
            io = loc - s.int_glob
            return io


def _p8(s, a1, a2, i1, i2):
    loc = i1 + 5
    a1[loc] = i2
    a1[loc + 1] = a1[loc]
    a1[loc + 30] = loc
    for j in range(loc, loc + 2):
        a2[loc][j] = loc
    a2[loc][loc - 1] += 1
    a2[loc + 20][loc] = a1[loc]
    s.int_glob = 5


def _p4(s):
    flag = s.char1 == "A"
    flag = flag or s.bool_glob
    s.char2 = "B"


def _p5(s):
    s.char1 = "A"
    s.bool_glob = False


def _loops(s, n):
    s.glb = _Rec(_Rec(), _ID1, _ID3, 40, "DHRYSTONE PROGRAM, SOME STRING")
    str1 = "DHRYSTONE PROGRAM, 1'ST STRING"
    s.arr2[8][7] = 10
    for _ in range(n):
        _p5(s)
        _p4(s)
        i1, i2 = 2, 3
        str2 = "DHRYSTONE PROGRAM, 2'ND STRING"
        enum = _ID2
        s.bool_glob = not _f2(s, str1, str2)
        while i1 < i2:
            i3 = 5 * i1 - i2
            i3 = _p7(i1, i2)
            i1 += 1
        _p8(s, s.arr1, s.arr2, i1, i3)
        s.glb = _p1(s, s.glb)
        c = "A"
        while c <= s.char2:
            if enum == _f1(c, "C"):
                enum = _p6(s, _ID1)
            c = chr(ord(c) + 1)
        i3 = i2 * i1
        i2 = i3 // i1
        i2 = 7 * (i3 - i2) - i1
        i1 = _p2(s, i1)


def stones_per_second(loops=20000):
    """Loops per second of wall time, less the empty loop's time."""
    t0 = time.ticks_us()
    for _ in range(loops):
        pass
    empty = time.ticks_diff(time.ticks_us(), t0)
    t0 = time.ticks_us()
    _loops(_State(), loops)
    took = time.ticks_diff(time.ticks_us(), t0) - empty
    return loops * 1000000 // max(took, 1)
