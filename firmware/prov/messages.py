# The provisioning protobuf messages (esp-idf protocomm / wifi_provisioning, RainMaker
# user mapping), encoded and decoded on lib/protobuf. Field numbers: docs/provisioning.md.
# Decoders return plain values and raise ValueError on anything malformed.
from micropython import const

import protobuf as pb
from firmware.prov.errors import ProvError

# constants.proto Status
SUCCESS = const(0)
INVALID_SEC_SCHEME = const(1)
INVALID_PROTO = const(2)
INVALID_ARGUMENT = const(4)
INTERNAL_ERROR = const(5)
CRYPTO_ERROR = const(6)
INVALID_SESSION = const(7)

# wifi_constants.proto
STA_CONNECTED = const(0)
STA_CONNECTING = const(1)
STA_FAILED = const(3)
FAIL_AUTH = const(0)
FAIL_NOT_FOUND = const(1)


def _sub(buf, f):
    """The sub-message in field f of buf, or None when absent."""
    return pb.decode(buf).get(f)


# -- session.proto / sec0 / sec1 -------------------------------------------------------------
def session_in(buf):
    """SessionData -> (sec_ver, scheme payload field number, payload bytes)."""
    d = pb.decode(buf)
    for f in (10, 11, 12):
        if f in d:
            return d.get(2, 0), f, d[f]
    raise ValueError("no security payload")


def scheme_in(buf, sec_ver, payload_field):
    """A handshake message of one scheme -> (msg type, its payload fields); ProvError if the
    SessionData is for another scheme."""
    ver, field, payload = session_in(buf)
    if ver != sec_ver or field != payload_field:
        raise ProvError("security scheme mismatch")
    d = pb.decode(payload)
    return d.get(1, 0), d


def session_out(sec_ver, payload_field, payload):
    return pb.field_varint(2, sec_ver) + pb.field_msg(payload_field, payload)


# -- wifi_config.proto (prov-config) --------------------------------------------------------
def config_in(buf):
    """WiFiConfigPayload -> (msg, {field: sub-message bytes})."""
    d = pb.decode(buf)
    return d.get(1, 0), d


def set_config_args(d):
    """CmdSetConfig (field 12) -> (ssid, passphrase, bssid, channel)."""
    sub = d.get(12)
    if sub is None:
        raise ValueError("no cmd_set_config")
    c = pb.decode(sub)
    return c.get(1, b""), c.get(2, b""), c.get(3, b""), pb.to_int32(c.get(4, 0))


def config_status_out(msg, payload_field, status):
    # RespSetConfig / RespApplyConfig: {status = 1}
    return pb.field_varint(1, msg) + pb.field_msg(payload_field, pb.field_varint(1, status))


def get_status_out(state, fail_reason=0, connected=None):
    """RespGetStatus. connected = (ip, auth_mode, ssid, bssid, channel) when state is Connected."""
    body = pb.field_varint(2, state)
    if state == STA_FAILED:
        body += pb.field_varint(10, fail_reason, True)  # oneof scalar: emitted even when 0
    elif state == STA_CONNECTED and connected:
        ip, auth, ssid, bssid, channel = connected
        body += pb.field_msg(11, pb.field_bytes(1, ip) + pb.field_varint(2, auth) + pb.field_bytes(3, ssid)
                             + pb.field_bytes(4, bssid) + pb.field_varint(5, channel))
    return pb.field_varint(1, 1) + pb.field_msg(11, body)


# -- wifi_scan.proto (prov-scan) ------------------------------------------------------------
def scan_in(buf):
    d = pb.decode(buf)
    return d.get(1, 0), d


def scan_result_args(d):
    """CmdScanResult (field 14) -> (start_index, count)."""
    c = pb.decode(d.get(14) or b"")
    return c.get(1, 0), c.get(2, 0)


def scan_start_out():
    return pb.field_varint(1, 1) + pb.field_msg(11)


def scan_status_out(finished, count):
    return pb.field_varint(1, 3) + pb.field_msg(13, pb.field_varint(1, 1 if finished else 0)
                                               + pb.field_varint(2, count))


def scan_result_out(entries, status=SUCCESS):
    """entries: (ssid, bssid, channel, rssi, auth) tuples."""
    body = b""
    for ssid, bssid, channel, rssi, auth in entries:
        body += pb.field_msg(1, pb.field_bytes(1, ssid) + pb.field_varint(2, channel) + pb.field_varint(3, rssi)
                             + pb.field_bytes(4, bssid) + pb.field_varint(5, auth))
    return pb.field_varint(1, 5) + pb.field_varint(2, status) + pb.field_msg(15, body)


def scan_error_out(msg, status):
    return pb.field_varint(1, msg + 1) + pb.field_varint(2, status)


# -- wifi_ctrl.proto (prov-ctrl) ------------------------------------------------------------
def ctrl_in(buf):
    return pb.decode(buf).get(1, 0)


def ctrl_out(msg, payload_field, status):
    return pb.field_varint(1, msg) + pb.field_varint(2, status) + pb.field_msg(payload_field)


# -- esp_rmaker_user_mapping.proto (cloud_user_assoc) ---------------------------------------
def user_mapping_in(buf):
    """RMakerConfigPayload -> (user_id, secret_key) or None if it is not a CmdSetUserMapping."""
    d = pb.decode(buf)
    if d.get(1, 0) != 0 or 10 not in d:
        return None
    c = pb.decode(d[10])
    return c.get(1, b""), c.get(2, b"")


def user_mapping_out(status, node_id=""):
    return pb.field_varint(1, 1) + pb.field_msg(11, pb.field_varint(1, status) + pb.field_bytes(2, node_id))


# -- roost-claim (this project's custom endpoint) --------------------------------------------
def claim_in(buf):
    return pb.decode(buf).get(1, b"")


def claim_out(status, node_id=""):
    return pb.field_varint(1, status) + pb.field_bytes(2, node_id)
