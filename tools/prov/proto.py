"""The provisioning protobuf messages, built in code with the real `protobuf` package (no protoc).

Field numbers, types and oneofs are those of Espressif's .proto files (spec section 6). This
module deliberately shares nothing with the device's codec (lib/protobuf.py): encoding with
Google's implementation is what makes the host client a cross-check of the firmware.

Every message and enum becomes a module attribute: `proto.SessionData`, `proto.Status.Success`,
`proto.Status.Name(4)`. Messages of the `rainmaker` and `roost` packages are exported by their
short names too (all short names are unique).
"""
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"bytes": _F.TYPE_BYTES, "string": _F.TYPE_STRING, "bool": _F.TYPE_BOOL,
            "uint32": _F.TYPE_UINT32, "int32": _F.TYPE_INT32}

# One row per .proto file: (file name, package, dependencies, enums, messages).
#   enums:    {name: "Value0 Value1 ..."}   every enum here numbers its values 0, 1, 2, ...
#   messages: {name: ((field, number, type[, oneof]), ...)}; a type "repeated X" is repeated.
_FILES = (
    ("constants.proto", "", (), {
        "Status": "Success InvalidSecScheme InvalidProto TooManySessions InvalidArgument "
                  "InternalError CryptoError InvalidSession"}, {}),

    ("sec0.proto", "", ("constants.proto",), {
        "Sec0MsgType": "S0_Session_Command S0_Session_Response"}, {
        "S0SessionCmd": (),
        "S0SessionResp": (("status", 1, "Status"),),
        "Sec0Payload": (("msg", 1, "Sec0MsgType"),
                        ("sc", 20, "S0SessionCmd", "payload"), ("sr", 21, "S0SessionResp", "payload"))}),

    ("sec1.proto", "", ("constants.proto",), {
        "Sec1MsgType": "Session_Command0 Session_Response0 Session_Command1 Session_Response1"}, {
        "SessionCmd1": (("client_verify_data", 2, "bytes"),),
        "SessionResp1": (("status", 1, "Status"), ("device_verify_data", 3, "bytes")),
        "SessionCmd0": (("client_pubkey", 1, "bytes"),),
        "SessionResp0": (("status", 1, "Status"), ("device_pubkey", 2, "bytes"),
                         ("device_random", 3, "bytes")),
        "Sec1Payload": (("msg", 1, "Sec1MsgType"),
                        ("sc0", 20, "SessionCmd0", "payload"), ("sr0", 21, "SessionResp0", "payload"),
                        ("sc1", 22, "SessionCmd1", "payload"), ("sr1", 23, "SessionResp1", "payload"))}),

    ("sec2.proto", "", ("constants.proto",), {
        "Sec2MsgType": "S2Session_Command0 S2Session_Response0 S2Session_Command1 S2Session_Response1"}, {
        "S2SessionCmd0": (("client_username", 1, "bytes"), ("client_pubkey", 2, "bytes")),
        "S2SessionResp0": (("status", 1, "Status"), ("device_pubkey", 2, "bytes"),
                           ("device_salt", 3, "bytes")),
        "S2SessionCmd1": (("client_proof", 1, "bytes"),),
        "S2SessionResp1": (("status", 1, "Status"), ("device_proof", 2, "bytes"),
                           ("device_nonce", 3, "bytes")),
        "Sec2Payload": (("msg", 1, "Sec2MsgType"),
                        ("sc0", 20, "S2SessionCmd0", "payload"), ("sr0", 21, "S2SessionResp0", "payload"),
                        ("sc1", 22, "S2SessionCmd1", "payload"), ("sr1", 23, "S2SessionResp1", "payload"))}),

    ("session.proto", "", ("sec0.proto", "sec1.proto", "sec2.proto"), {
        "SecSchemeVersion": "SecScheme0 SecScheme1 SecScheme2"}, {
        "SessionData": (("sec_ver", 2, "SecSchemeVersion"), ("sec0", 10, "Sec0Payload", "proto"),
                        ("sec1", 11, "Sec1Payload", "proto"), ("sec2", 12, "Sec2Payload", "proto"))}),

    ("wifi_constants.proto", "", (), {
        "WifiStationState": "Connected Connecting Disconnected ConnectionFailed",
        "WifiConnectFailedReason": "AuthError NetworkNotFound",
        "WifiAuthMode": "Open WEP WPA_PSK WPA2_PSK WPA_WPA2_PSK WPA2_ENTERPRISE WPA3_PSK WPA2_WPA3_PSK"}, {
        "WifiAttemptFailed": (("attempts_remaining", 1, "uint32"),),
        "WifiConnectedState": (("ip4_addr", 1, "string"), ("auth_mode", 2, "WifiAuthMode"),
                               ("ssid", 3, "bytes"), ("bssid", 4, "bytes"), ("channel", 5, "int32"))}),

    ("wifi_config.proto", "", ("constants.proto", "wifi_constants.proto"), {
        "WiFiConfigMsgType": "TypeCmdGetStatus TypeRespGetStatus TypeCmdSetConfig TypeRespSetConfig "
                             "TypeCmdApplyConfig TypeRespApplyConfig"}, {
        "CmdGetStatus": (),
        "RespGetStatus": (("status", 1, "Status"), ("sta_state", 2, "WifiStationState"),
                          ("fail_reason", 10, "WifiConnectFailedReason", "state"),
                          ("connected", 11, "WifiConnectedState", "state"),
                          ("attempt_failed", 12, "WifiAttemptFailed", "state")),
        "CmdSetConfig": (("ssid", 1, "bytes"), ("passphrase", 2, "bytes"), ("bssid", 3, "bytes"),
                         ("channel", 4, "int32")),
        "RespSetConfig": (("status", 1, "Status"),),
        "CmdApplyConfig": (),
        "RespApplyConfig": (("status", 1, "Status"),),
        "WiFiConfigPayload": (("msg", 1, "WiFiConfigMsgType"),
                              ("cmd_get_status", 10, "CmdGetStatus", "payload"),
                              ("resp_get_status", 11, "RespGetStatus", "payload"),
                              ("cmd_set_config", 12, "CmdSetConfig", "payload"),
                              ("resp_set_config", 13, "RespSetConfig", "payload"),
                              ("cmd_apply_config", 14, "CmdApplyConfig", "payload"),
                              ("resp_apply_config", 15, "RespApplyConfig", "payload"))}),

    ("wifi_scan.proto", "", ("constants.proto", "wifi_constants.proto"), {
        "WiFiScanMsgType": "TypeCmdScanStart TypeRespScanStart TypeCmdScanStatus TypeRespScanStatus "
                           "TypeCmdScanResult TypeRespScanResult"}, {
        "CmdScanStart": (("blocking", 1, "bool"), ("passive", 2, "bool"), ("group_channels", 3, "uint32"),
                         ("period_ms", 4, "uint32")),
        "RespScanStart": (),
        "CmdScanStatus": (),
        "RespScanStatus": (("scan_finished", 1, "bool"), ("result_count", 2, "uint32")),
        "CmdScanResult": (("start_index", 1, "uint32"), ("count", 2, "uint32")),
        "WiFiScanResult": (("ssid", 1, "bytes"), ("channel", 2, "uint32"), ("rssi", 3, "int32"),
                           ("bssid", 4, "bytes"), ("auth", 5, "WifiAuthMode")),
        "RespScanResult": (("entries", 1, "repeated WiFiScanResult"),),
        "WiFiScanPayload": (("msg", 1, "WiFiScanMsgType"), ("status", 2, "Status"),
                            ("cmd_scan_start", 10, "CmdScanStart", "payload"),
                            ("resp_scan_start", 11, "RespScanStart", "payload"),
                            ("cmd_scan_status", 12, "CmdScanStatus", "payload"),
                            ("resp_scan_status", 13, "RespScanStatus", "payload"),
                            ("cmd_scan_result", 14, "CmdScanResult", "payload"),
                            ("resp_scan_result", 15, "RespScanResult", "payload"))}),

    ("wifi_ctrl.proto", "", ("constants.proto",), {
        "WiFiCtrlMsgType": "TypeCtrlReserved TypeCmdCtrlReset TypeRespCtrlReset TypeCmdCtrlReprov "
                           "TypeRespCtrlReprov"}, {
        "CmdCtrlReset": (), "RespCtrlReset": (), "CmdCtrlReprov": (), "RespCtrlReprov": (),
        "WiFiCtrlPayload": (("msg", 1, "WiFiCtrlMsgType"), ("status", 2, "Status"),
                            ("cmd_ctrl_reset", 11, "CmdCtrlReset", "payload"),
                            ("resp_ctrl_reset", 12, "RespCtrlReset", "payload"),
                            ("cmd_ctrl_reprov", 13, "CmdCtrlReprov", "payload"),
                            ("resp_ctrl_reprov", 14, "RespCtrlReprov", "payload"))}),

    ("esp_rmaker_user_mapping.proto", "rainmaker", (), {
        "RMakerConfigStatus": "Success InvalidParam InvalidState",
        "RMakerConfigMsgType": "TypeCmdSetUserMapping TypeRespSetUserMapping"}, {
        "CmdSetUserMapping": (("UserID", 1, "string"), ("SecretKey", 2, "string")),
        "RespSetUserMapping": (("Status", 1, "RMakerConfigStatus"), ("NodeId", 2, "string")),
        "RMakerConfigPayload": (("msg", 1, "RMakerConfigMsgType"),
                                ("cmd_set_user_mapping", 10, "CmdSetUserMapping", "payload"),
                                ("resp_set_user_mapping", 11, "RespSetUserMapping", "payload"))}),

    # Our own custom endpoint "roost-claim" (Particle-style claim code); the device side in
    # firmware/prov implements exactly these two messages.
    ("roost_claim.proto", "roost", ("constants.proto",), {}, {
        "CmdClaim": (("code", 1, "string"),),
        "RespClaim": (("status", 1, "Status"), ("node_id", 2, "string"))}),
)


def _build():
    pool = descriptor_pool.DescriptorPool()   # private: no clash with other users of the default pool
    kinds = {}                                  # short name -> (full name, TYPE_ENUM / TYPE_MESSAGE)
    out = {}
    for fname, package, deps, enums, messages in _FILES:
        f = descriptor_pb2.FileDescriptorProto(name=fname, package=package, syntax="proto3",
                                               dependency=deps)
        prefix = "." + package + "." if package else "."
        for name, values in enums.items():
            e = f.enum_type.add(name=name)
            for number, value in enumerate(values.split()):
                e.value.add(name=value, number=number)
            kinds[name] = (prefix + name, _F.TYPE_ENUM)
        for name in messages:
            kinds[name] = (prefix + name, _F.TYPE_MESSAGE)
        for name, fields in messages.items():
            m = f.message_type.add(name=name)
            oneofs = []
            for field, number, ftype, *oneof in fields:
                repeated = ftype.startswith("repeated ")
                ftype = ftype.split()[-1]
                fd = m.field.add(name=field, number=number, json_name=field,
                                 label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
                if ftype in _SCALARS:
                    fd.type = _SCALARS[ftype]
                else:
                    fd.type_name, fd.type = kinds[ftype]
                if oneof:
                    if oneof[0] not in oneofs:
                        oneofs.append(oneof[0])
                        m.oneof_decl.add(name=oneof[0])
                    fd.oneof_index = oneofs.index(oneof[0])
        pool.Add(f)
        for name, (full, kind) in kinds.items():
            if name in out:
                continue
            if kind == _F.TYPE_ENUM:
                out[name] = EnumTypeWrapper(pool.FindEnumTypeByName(full[1:]))
            else:
                out[name] = message_factory.GetMessageClass(pool.FindMessageTypeByName(full[1:]))
    return out


globals().update(_build())
