"""Minimal proto3 wire codec for the Espressif provisioning messages.

Only the two wire types those messages use: varint (0) and length-delimited (2). There is no schema
here: callers know their field numbers and types (see docs of esp-provisioning, sections 4 and 6).

Decoding never raises anything but ValueError on bad input: "truncated", "bad varint" (longer than
10 bytes), "bad wire type", "bad field number". Unknown fields are returned like any other; skipping
them is the caller's choice.

Encoding follows protobuf-c as used by esp-idf: proto3 scalars equal to 0/empty are omitted unless
`always` is set (a oneof member is emitted even when 0), sub-messages are always emitted (an empty but
present one is tag + length 0), negative int32/int64 become 10-byte two's-complement varints.
"""
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

VARINT = const(0)
LEN = const(2)
_M64 = const(2**64 - 1)
_MAX_FIELD = const(2**29 - 1)


def _varint_at(buf, i, n):
    """Read a varint from buf[i:n]; return (value, next index). Values are unsigned 64-bit."""
    v = 0
    shift = 0
    while True:
        if i >= n:
            raise ValueError("truncated")
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        if b < 0x80:
            # Like Google's decoders: bits past 64 in the 10th byte are dropped, not an error.
            return v & _M64, i
        shift += 7
        if shift >= 70:
            raise ValueError("bad varint")


def fields(buf):
    """Yield (field_number, wire_type, value) for each field of a message, in wire order.

    value is an int (unsigned 64-bit) for VARINT and a memoryview slice of buf for LEN (no copy;
    take bytes() of it if buf is going to be reused).
    """
    mv = memoryview(buf)
    n = len(mv)
    i = 0
    while i < n:
        key, i = _varint_at(mv, i, n)
        f = key >> 3
        wt = key & 7
        if f == 0 or f > _MAX_FIELD:
            raise ValueError("bad field number")
        if wt == VARINT:
            v, i = _varint_at(mv, i, n)
        elif wt == LEN:
            ln, i = _varint_at(mv, i, n)
            if ln > n - i:
                raise ValueError("truncated")
            v = mv[i:i + ln]
            i += ln
        else:
            raise ValueError("bad wire type")
        yield f, wt, v


def decode(buf, repeated=()):
    """Decode one message level into {field_number: value}.

    VARINT values are ints, LEN values are bytes (copies, safe to keep). A field listed in `repeated`
    always gives a list of its values in wire order; for any other field that occurs more than once
    the last occurrence wins (the proto3 rule for scalars). Sub-messages are bytes: decode them again.
    """
    out = {}
    for f, wt, v in fields(buf):
        if wt == LEN:
            v = bytes(v)
        if f in repeated:
            lst = out.get(f)
            if lst is None:
                out[f] = [v]
            else:
                lst.append(v)
        else:
            out[f] = v
    return out


def to_int32(v):
    """The int32 value of a decoded varint (int32 fields carry negatives as 64-bit two's complement)."""
    v &= 0xFFFFFFFF
    return v - 0x100000000 if v & 0x80000000 else v


def to_int64(v):
    """The int64 value of a decoded varint."""
    return v - 0x10000000000000000 if v & 0x8000000000000000 else v


def varint(n):
    """Encode an integer as a varint. Negative values (int32/int64) take 10 bytes, as protobuf does."""
    n = int(n)
    if n < 0:
        if n < -0x8000000000000000:
            raise ValueError("varint out of range")
        n &= _M64
    elif n > _M64:
        raise ValueError("varint out of range")
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def tag(f, wt):
    """The key of field f with wire type wt."""
    if f < 1 or f > _MAX_FIELD:
        raise ValueError("bad field number")
    return varint((f << 3) | wt)


def field_varint(f, n, always=False):
    """A varint field (int32, uint32, bool, enum). Omitted when 0 unless `always` (oneof members)."""
    if not n and not always:
        return b""
    return tag(f, VARINT) + varint(n)


def field_bytes(f, data, always=False):
    """A bytes or string field (str is UTF-8 encoded). Omitted when empty unless `always`."""
    if isinstance(data, str):
        data = data.encode()
    if not data and not always:
        return b""
    return tag(f, LEN) + varint(len(data)) + bytes(data)


def field_msg(f, body=b""):
    """A sub-message field, always emitted: an empty but present message is tag + 00 (e.g. 5a 00)."""
    return tag(f, LEN) + varint(len(body)) + bytes(body)


def message(*parts):
    """Concatenate encoded fields into one message."""
    return b"".join(parts)
