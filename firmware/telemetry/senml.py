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
import json

# Names and units per sensor index (outbox flags); SenML units from RFC 8428's registry.
SENSORS = (("temperature", "Cel"),)


def encode(node_id, readings, uptime_now, first_seq_this_boot):
    """readings: [(seq, t, synced, sensor, value)] as Outbox.pending() gives them."""
    out = []
    for seq, t, synced, sensor, value in readings:
        name, unit = SENSORS[sensor] if sensor < len(SENSORS) else ("sensor%d" % sensor, "")
        rec = {"n": name, "u": unit, "v": round(value, 3), "seq": seq}
        if synced:
            rec["t"] = t
        elif seq >= first_seq_this_boot:
            rec["t"] = -max(uptime_now - t, 0)
        else:
            rec["uptime"] = t
        out.append(rec)
    if out:
        out[0]["bn"] = node_id + ":"
    return json.dumps(out)
