# Readings from the outbox as SenML JSON (RFC 8428), the payload of the MQTT data channel
# (docs/cloud.md, "Readings"):
#
#   [{"bn":"<node>:","n":"temperature","u":"Cel","v":21.5,"t":1764540000,"seq":41},
#    {"n":"temperature","u":"Cel","v":21.6,"t":1764540060,"seq":42}]
#
# `seq` (the outbox sequence number) lets the cloud keep each reading once however often it
# is sent. Time: epoch seconds when the reading was taken with network time (no base time:
# it would shift the relative times of the records after it); otherwise its
# age as a negative time relative to "now" (RFC 8428 4.5.3), which the device can compute for
# readings of this boot. A reading from an earlier boot that never had network time has no
# knowable time: it carries "uptime" (seconds since that boot; not a SenML label, so
# receivers ignore it) and no "t", which SenML receivers read as "now".
#
# The text goes into a buffer the caller allocated once, record by record: a batch is ~2.5 KB,
# and after hours of streaming the heap may have no free block that big (seen on the 128K sim
# board with a backlog: json.dumps of a batch failed with 19 KB free in pieces of 1.5 KB).
# Each record is one bytes % format: no str to encode, no pieces to join (261 B of garbage a
# record on the 64-bit sim, against 356 when it was a str encoded; tests/bench/telemetry.py).

# Names and units per sensor index (outbox flags); SenML units from RFC 8428's registry.
from epoch import UNIX_OFFSET

SENSORS = ((b"temperature", b"Cel"),)
_RECORD = b'%s{%s"n":"%s","u":"%s","v":%r,"%s":%d,"seq":%d}'


def encode_into(buf, node_id, readings, uptime_now, first_seq_this_boot):
    """Write as many of readings [(seq, t, synced, sensor, value)] as fit into buf (a
    bytearray) as a SenML array; returns (bytes written, seq of the last one written or 0).
    t: seconds since the port's epoch if synced, else uptime seconds; SenML gets Unix time."""
    n = last = 0
    for seq, t, synced, sensor, value in readings:
        name, unit = SENSORS[sensor] if sensor < len(SENSORS) else (b"sensor%d" % sensor, b"")
        key = b"t"
        if synced:
            t += UNIX_OFFSET
        else:
            if seq >= first_seq_this_boot:
                t = -max(uptime_now - t, 0)
            else:
                key = b"uptime"
        rec = _RECORD % (b"," if n else b"[", b"" if n else b'"bn":"%s:",' % node_id.encode(),
                         name, unit, round(value, 3), key, t, seq)
        if n + len(rec) + 1 > len(buf):     # and room for the closing "]"
            break
        buf[n:n + len(rec)] = rec
        n += len(rec)
        last = seq
    if n:
        buf[n] = 0x5D       # "]"
        n += 1
    return n, last
