"""The host provisioning client (tools/prov): exact bytes of spec sections 5 and 8, the sec1/sec2
known-answer vectors, the SoftAP cookie rules, the QR payload, and the whole app flow against a
small in-test stand-in device over each transport (a Bumble GATT peripheral on a simulated air,
reached through bleak; HTTP).

The stand-in is not our firmware: it only answers as the spec says, so the client's side of the
conversation can be checked before (and independently of) the device side."""
import hashlib
import http.server
import json
import os
import socket
import threading
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tools.prov import ProvError, TransportError, proto
from tools.prov.client import Provisioner, WifiFailed
from tools.prov.qr import qr_payload
from tools.prov.security import WRONG_POP, Sec0, Sec1, Sec2
from tools.prov.transport import BleakTransport, HttpTransport
from tools.sim import radio

H = bytes.fromhex


def b(s):
    return H(s.replace(" ", ""))


# -- section 8: exact bytes ----------------------------------------------------------------------
SCAN, CFG, CTL, RM = proto.WiFiScanMsgType, proto.WiFiConfigMsgType, proto.WiFiCtrlMsgType, proto.RMakerConfigMsgType
REQUESTS = [
    ("sec0 session", lambda: Sec0().command0(), "52 03 a2 01 00"),
    ("ScanStart", lambda: proto.WiFiScanPayload(msg=SCAN.TypeCmdScanStart, cmd_scan_start=proto.CmdScanStart(
        blocking=True, group_channels=5, period_ms=120)), "52 06 08 01 18 05 20 78"),
    ("ScanStatus", lambda: proto.WiFiScanPayload(msg=SCAN.TypeCmdScanStatus), "08 02"),
    ("ScanResult", lambda: proto.WiFiScanPayload(msg=SCAN.TypeCmdScanResult, cmd_scan_result=proto.CmdScanResult(
        start_index=0, count=2)), "08 04 72 02 10 02"),
    ("cloud_user_assoc", lambda: proto.RMakerConfigPayload(
        msg=RM.TypeCmdSetUserMapping, cmd_set_user_mapping=proto.CmdSetUserMapping(
            UserID="user-abc", SecretKey="secret-123")),
     "52 16 0a 08 75 73 65 72 2d 61 62 63 12 0a 73 65 63 72 65 74 2d 31 32 33"),
    ("SetConfig", lambda: proto.WiFiConfigPayload(msg=CFG.TypeCmdSetConfig, cmd_set_config=proto.CmdSetConfig(
        ssid=b"HomeNet", passphrase=b"pa55word")),
     "08 02 62 13 0a 07 48 6f 6d 65 4e 65 74 12 08 70 61 35 35 77 6f 72 64"),
    ("ApplyConfig", lambda: proto.WiFiConfigPayload(msg=CFG.TypeCmdApplyConfig), "08 04"),
    ("GetStatus", lambda: proto.WiFiConfigPayload(msg=CFG.TypeCmdGetStatus,
                                                  cmd_get_status=proto.CmdGetStatus()), "52 00"),
    ("CtrlReset", lambda: proto.WiFiCtrlPayload(msg=CTL.TypeCmdCtrlReset, cmd_ctrl_reset=proto.CmdCtrlReset()),
     "08 01 5a 00"),
]
RESPONSES = [
    ("RespSetConfig", proto.WiFiConfigPayload(msg=CFG.TypeRespSetConfig, resp_set_config={}), "08 03 6a 00"),
    ("RespApplyConfig", proto.WiFiConfigPayload(msg=CFG.TypeRespApplyConfig, resp_apply_config={}), "08 05 7a 00"),
    ("connecting", proto.WiFiConfigPayload(msg=CFG.TypeRespGetStatus, resp_get_status=proto.RespGetStatus(
        sta_state=proto.WifiStationState.Connecting)), "08 01 5a 02 10 01"),
    ("wrong password", proto.WiFiConfigPayload(msg=CFG.TypeRespGetStatus, resp_get_status=proto.RespGetStatus(
        sta_state=proto.WifiStationState.ConnectionFailed, fail_reason=proto.WifiConnectFailedReason.AuthError)),
     "08 01 5a 04 10 03 50 00"),
    ("not found", proto.WiFiConfigPayload(msg=CFG.TypeRespGetStatus, resp_get_status=proto.RespGetStatus(
        sta_state=proto.WifiStationState.ConnectionFailed,
        fail_reason=proto.WifiConnectFailedReason.NetworkNotFound)), "08 01 5a 04 10 03 50 01"),
    ("RespCtrlReset", proto.WiFiCtrlPayload(msg=CTL.TypeRespCtrlReset, resp_ctrl_reset={}), "08 02 62 00"),
    ("RespSetUserMapping", proto.RMakerConfigPayload(msg=RM.TypeRespSetUserMapping,
                                                     resp_set_user_mapping=proto.RespSetUserMapping(NodeId="N1")),
     "08 01 5a 04 12 02 4e 31"),
    ("sec0 response", proto.SessionData(sec0=proto.Sec0Payload(
        msg=proto.Sec0MsgType.S0_Session_Response, sr=proto.S0SessionResp())), "52 05 08 01 aa 01 00"),
]


@pytest.mark.parametrize("name,make,expect", REQUESTS, ids=[r[0] for r in REQUESTS])
def test_section8_requests_encode_exactly(name, make, expect):
    msg = make()
    data = msg if isinstance(msg, bytes) else msg.SerializeToString()
    assert data == b(expect)


@pytest.mark.parametrize("name,msg,expect", RESPONSES, ids=[r[0] for r in RESPONSES])
def test_section8_responses_round_trip(name, msg, expect):
    assert msg.SerializeToString() == b(expect)
    assert type(msg).FromString(b(expect)) == msg


def test_negative_rssi_and_unknown_fields():
    assert proto.WiFiScanResult(rssi=-47).SerializeToString() == b("18 d1 ff ff ff ff ff ff ff ff 01")
    # a field this client does not know (99, varint) is skipped, as proto3 requires
    assert proto.RespSetConfig.FromString(b("08 04 98 06 01")).status == proto.Status.InvalidArgument


def test_claim_messages():
    assert proto.CmdClaim(code="AB12").SerializeToString() == b("0a 04 41 42 31 32")
    assert proto.RespClaim(status=0, node_id="N1").SerializeToString() == b("12 02 4e 31")
    assert proto.RespClaim.FromString(b("08 04")).status == proto.Status.InvalidArgument


# -- section 5: security 1 ------------------------------------------------------------------------
def test_sec1_vector(vector):
    v = vector("esp_prov_sec1.json")
    s = Sec1(v["inputs"]["pop"], H(v["inputs"]["client_private"]))
    m = v["session_messages"]
    assert s.command0() == H(m["SessionCmd0"])
    assert s.command1(H(m["SessionResp0"])) == H(m["SessionCmd1"])
    assert s.key == H(v["derived"]["aes256_key"])
    s.finish(H(m["SessionResp1"]))
    d = v["data_phase"]
    assert s.encrypt(H(d["request_plain"])) == H(d["request_encrypted"])
    assert s.decrypt(H(d["response_encrypted"])) == H(d["response_plain"])


def test_sec1_device_that_cannot_prove_the_key(vector):
    v = vector("esp_prov_sec1.json")
    s = Sec1(v["inputs"]["pop"], H(v["inputs"]["client_private"]))
    s.command1(H(v["session_messages"]["SessionResp0"]))
    bad = bytearray(H(v["session_messages"]["SessionResp1"]))
    bad[-1] ^= 1
    with pytest.raises(ProvError, match="could not prove"):
        s.finish(bytes(bad))


def test_sec1_answer_of_another_scheme_is_clear(vector):
    s = Sec1("abcd1234")
    with pytest.raises(ProvError, match="expected security 1"):
        s.command1(b("52 05 08 01 aa 01 00"))


# -- section 5: security 2 ------------------------------------------------------------------------
def _sec2_responses(v, hamk=None):
    i, dv, d = v["inputs"], v["derived"], v["data_phase"]
    r0 = proto.SessionData(sec_ver=2, sec2=proto.Sec2Payload(
        msg=proto.Sec2MsgType.S2Session_Response0,
        sr0=proto.S2SessionResp0(device_pubkey=H(dv["B"]), device_salt=H(i["salt"])))).SerializeToString()
    r1 = proto.SessionData(sec_ver=2, sec2=proto.Sec2Payload(
        msg=proto.Sec2MsgType.S2Session_Response1,
        sr1=proto.S2SessionResp1(device_proof=hamk or H(dv["HAMK"]),
                                 device_nonce=H(d["device_nonce"])))).SerializeToString()
    return r0, r1


def test_sec2_vector(vector):
    v = vector("esp_prov_sec2.json")
    i, dv, d = v["inputs"], v["derived"], v["data_phase"]
    s = Sec2(i["username"], i["password"], patch_ver=1, client_a=H(i["client_a"]))
    assert s.A == H(dv["A"])
    cmd0 = proto.SessionData.FromString(s.command0())
    assert cmd0.sec_ver == 2 and cmd0.sec2.sc0.client_username == b"wifiprov"
    assert len(s.command0()) == 406                                  # spec 2.4 message sizes
    r0, r1 = _sec2_responses(v)
    cmd1 = proto.SessionData.FromString(s.command1(r0))
    assert s.K == H(dv["K"])
    assert cmd1.sec2.sc1.client_proof == s.M == H(dv["M"])
    s.finish(r1)
    assert s.encrypt(H(d["request_plain"])) == H(d["request_encrypted"])      # counter 1
    assert s.decrypt(H(d["response_encrypted"])) == H(d["response_plain"])    # counter 2
    assert s._nonce == H("c1c2c3c4c5c6c7c800000003")


def test_sec2_wrong_device_proof(vector):
    v = vector("esp_prov_sec2.json")
    s = Sec2("wifiprov", "abcd1234", client_a=H(v["inputs"]["client_a"]))
    r0, r1 = _sec2_responses(v, hamk=bytes(64))
    s.command1(r0)
    with pytest.raises(ProvError, match="HAMK"):
        s.finish(r1)


def test_sec2_patch0_keeps_the_nonce(vector):
    v = vector("esp_prov_sec2.json")
    s = Sec2("wifiprov", "abcd1234", patch_ver=0, client_a=H(v["inputs"]["client_a"]))
    r0, r1 = _sec2_responses(v)
    s.command1(r0)
    s.finish(r1)
    first = s.encrypt(H(v["data_phase"]["request_plain"]))
    assert first == H(v["data_phase"]["request_encrypted"])
    assert s.encrypt(H(v["data_phase"]["request_plain"])) == first            # same nonce again


def test_sec2_short_A_is_never_sent(monkeypatch):
    # The device takes only a 384-byte A: an `a` whose A is shorter is replaced, not sent.
    from tools.prov import security
    draws = [(2).to_bytes(32, "big")]           # 5^2 = 25: a one-byte A
    real = security.secrets.token_bytes
    monkeypatch.setattr(security.secrets, "token_bytes", lambda n: draws.pop() if draws else real(n))
    s = Sec2("wifiprov", "x")
    assert s.a != 2 and len(s.A) == 384
    with pytest.raises(ValueError):
        Sec2("wifiprov", "x", client_a=(2).to_bytes(32, "big"))


# -- a stand-in device (spec sections 1, 5, 7), sec 0 and 1 ----------------------------------------
DEVICE_PRIVATE = bytes(range(1, 33))
NODE_ID = "240AC4A1B2C3"
NETWORKS = {"HomeNet": "pa55word"}
SVC = "021a9004-0382-4aea-bff4-6b3f1c5adfb4"
ENDPOINTS = ("prov-ctrl", "prov-scan", "prov-session", "prov-config", "proto-ver", "cloud_user_assoc",
             "roost-claim")


class DeviceFailure(Exception):
    """A handler failed: BLE answers with an ATT error, HTTP closes the socket."""


class FakeDevice:
    def __init__(self, sec=1, pop="abcd1234", proto_ver=None):
        self.sec, self.pop = sec, pop
        prov = {"ver": "v1.1", "sec_ver": sec, "sec_patch_ver": 0, "cap": ["wifi_scan"]}
        self.proto_ver = proto_ver or {"prov": prov}
        self.log = []              # (endpoint, plaintext request)
        self.creds = self.user = None
        self.state, self.polls = "idle", 0
        self.new_session()

    def new_session(self):
        self.ctr = None
        self.ready = self.sec == 0 and None

    def handle(self, endpoint, data):
        if endpoint == "proto-ver":
            return json.dumps(self.proto_ver).encode()
        if endpoint == "prov-session":
            return self.session(proto.SessionData.FromString(data)).SerializeToString()
        if not self.ready:
            raise DeviceFailure("no session")
        plain = self.crypt(data)
        self.log.append((endpoint, plain))
        return self.crypt(getattr(self, "ep_" + endpoint.replace("-", "_"))(plain).SerializeToString())

    def crypt(self, data):
        return self.ctr.update(data) if self.ctr else data

    def session(self, s):
        if s.sec_ver != self.sec:
            raise DeviceFailure("wrong scheme")
        if self.sec == 0:
            self.ready = True
            return proto.SessionData(sec0=proto.Sec0Payload(msg=1, sr=proto.S0SessionResp()))
        if s.sec1.msg == proto.Sec1MsgType.Session_Command0:
            key = X25519PrivateKey.from_private_bytes(DEVICE_PRIVATE)
            self.dev_pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            self.cli_pub = s.sec1.sc0.client_pubkey
            shared = key.exchange(X25519PublicKey.from_public_bytes(self.cli_pub))
            if self.pop:
                shared = bytes(x ^ y for x, y in zip(shared, hashlib.sha256(self.pop.encode()).digest()))
            rnd = os.urandom(16)
            self.ctr, self.ready = Cipher(algorithms.AES(shared), modes.CTR(rnd)).encryptor(), False
            return proto.SessionData(sec_ver=1, sec1=proto.Sec1Payload(msg=1, sr0=proto.SessionResp0(
                device_pubkey=self.dev_pub, device_random=rnd)))
        if self.ctr.update(s.sec1.sc1.client_verify_data) != self.dev_pub:
            self.ctr = None
            raise DeviceFailure("Key mismatch")
        self.ready = True
        return proto.SessionData(sec_ver=1, sec1=proto.Sec1Payload(msg=3, sr1=proto.SessionResp1(
            device_verify_data=self.ctr.update(self.cli_pub))))

    def ep_proto_ver(self, req):
        raise DeviceFailure("never encrypted")

    def ep_prov_config(self, req):
        r = proto.WiFiConfigPayload.FromString(req)
        out = proto.WiFiConfigPayload(msg=r.msg + 1)
        if r.msg == CFG.TypeCmdSetConfig:
            self.creds = (r.cmd_set_config.ssid.decode(), r.cmd_set_config.passphrase.decode())
            out.resp_set_config.SetInParent()
        elif r.msg == CFG.TypeCmdApplyConfig:
            self.state, self.polls = "connecting", 0
            out.resp_apply_config.SetInParent()
        elif r.msg == CFG.TypeCmdGetStatus:
            st = out.resp_get_status
            self.polls += 1
            ssid, key = self.creds
            if self.state == "connecting" and self.polls < 2:
                st.sta_state = proto.WifiStationState.Connecting
            elif NETWORKS.get(ssid) == key:
                st.connected.ip4_addr, st.connected.ssid, st.connected.channel = "192.168.1.7", ssid.encode(), 6
            else:
                self.state = "failed"
                st.sta_state = proto.WifiStationState.ConnectionFailed
                st.fail_reason = 1 if ssid not in NETWORKS else 0
        return out

    def ep_prov_ctrl(self, req):
        assert proto.WiFiCtrlPayload.FromString(req).msg == CTL.TypeCmdCtrlReset and self.state == "failed"
        self.state, self.creds = "idle", None
        return proto.WiFiCtrlPayload(msg=CTL.TypeRespCtrlReset, resp_ctrl_reset={})

    def ep_prov_scan(self, req):
        r = proto.WiFiScanPayload.FromString(req)
        out = proto.WiFiScanPayload(msg=r.msg + 1)
        if r.msg == SCAN.TypeCmdScanStart:
            out.resp_scan_start.SetInParent()
        elif r.msg == SCAN.TypeCmdScanStatus:
            out.resp_scan_status.scan_finished, out.resp_scan_status.result_count = True, 6
        else:
            c = r.cmd_scan_result
            for n in range(c.start_index, c.start_index + c.count):
                out.resp_scan_result.entries.add(ssid=b"net%d" % n, channel=n + 1, rssi=-40 - n,
                                                 bssid=bytes([0xAA] * 5 + [n]), auth=3)
        return out

    def ep_cloud_user_assoc(self, req):
        r = proto.RMakerConfigPayload.FromString(req)
        self.user = (r.cmd_set_user_mapping.UserID, r.cmd_set_user_mapping.SecretKey)
        return proto.RMakerConfigPayload(msg=1, resp_set_user_mapping=proto.RespSetUserMapping(NodeId=NODE_ID))

    def ep_roost_claim(self, req):
        ok = proto.CmdClaim.FromString(req).code == "CLAIM-OK"
        return proto.RespClaim(status=0 if ok else proto.Status.InvalidArgument, node_id=NODE_ID if ok else "")


class ProvPeripheral:
    """The stand-in device behind a Bumble GATT server on a simulated air, laid out as Espressif's
    protocomm_ble: one service, one READ|WRITE characteristic per endpoint named by a 0x2901
    descriptor, the service UUID in the advertisement and the name in the scan response. A write
    is handled at once and its response stored for the next read; a failed request answers the
    write with ATT error 0x04, as NimBLE does for a refused access."""

    def __init__(self, device, name="PROV_A1B2C3", advertise_uuid=True, labels=ENDPOINTS):
        self.device, self.name, self.advertise_uuid, self.labels = device, name, advertise_uuid, labels
        self.link = radio.AirLink()
        self.phones = radio.serve_phones(self.link)
        self.air = "127.0.0.1:%d" % self.phones.port
        radio.call(self._start())

    async def _start(self):
        from bumble import att, gatt, hci
        from bumble.core import AdvertisingData, UUID
        from bumble.device import Device
        from bumble.transport import open_transport
        self.transport = await open_transport("tcp-client:" + self.air)
        dev = Device.with_hci(self.name, hci.Address.generate_static_address(),
                              self.transport.source, self.transport.sink)
        values = {}

        def characteristic(n, label):
            def write(connection, value):
                try:
                    values[label] = self.device.handle(label, bytes(value))
                except DeviceFailure:
                    values[label] = b""
                    raise att.ATT_Error(0x04)
            P = gatt.Characteristic.Properties
            return gatt.Characteristic(
                "021a%04x-0382-4aea-bff4-6b3f1c5adfb4" % (0xFF4F + n), P.READ | P.WRITE,
                gatt.Characteristic.READABLE | gatt.Characteristic.WRITEABLE,
                gatt.CharacteristicValue(read=lambda connection: values.get(label, b""), write=write),
                descriptors=[gatt.Descriptor(gatt.GATT_CHARACTERISTIC_USER_DESCRIPTION_DESCRIPTOR,
                                             gatt.Descriptor.READABLE, label.encode())])
        dev.add_service(gatt.Service(SVC, [characteristic(n, label) for n, label in enumerate(self.labels)]))
        # One protocomm session per BLE connection.
        dev.on("connection", lambda connection: (values.clear(), self.device.new_session()))
        await dev.power_on()
        adv = [(AdvertisingData.FLAGS, bytes([0x06]))]
        if self.advertise_uuid:
            adv.append((AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS, bytes(UUID(SVC))))
        await dev.start_advertising(
            own_address_type=hci.OwnAddressType.RANDOM, auto_restart=True,
            advertising_data=bytes(AdvertisingData(adv)),
            scan_response_data=bytes(AdvertisingData([(AdvertisingData.COMPLETE_LOCAL_NAME, self.name.encode())])),
            advertising_interval_min=20, advertising_interval_max=20)
        self.ble = dev

    def transport_to(self):
        return BleakTransport(air=self.air, scan_timeout=5)

    def close(self):
        radio.call(self.transport.close())
        self.phones.close()


@pytest.fixture
def peripheral():
    made = []

    def make(device, **kw):
        p = ProvPeripheral(device, **kw)
        made.append(p)
        return p
    yield make
    for p in made:
        p.close()


# -- the whole flow over each transport -----------------------------------------------------------
def run_flow(transport, device, **kw):
    lines = []
    p = Provisioner(transport, pop=kw.pop("pop", "abcd1234"))
    result = p.provision("HomeNet", "pa55word", user_id="user-abc", secret="secret-123",
                         on_progress=lines.append, poll=0.01, **kw)
    assert (result.node_id, result.ip) == (NODE_ID, "192.168.1.7")
    assert device.user == ("user-abc", "secret-123")
    # user mapping before Wi-Fi, as the RainMaker app; exact plaintext bytes of section 8
    log = [(e, d) for e, d in device.log if e != "roost-claim"]
    assert log[:4] == [
        ("cloud_user_assoc", b("52 16 0a 08 75 73 65 72 2d 61 62 63 12 0a 73 65 63 72 65 74 2d 31 32 33")),
        ("prov-config", b("08 02 62 13 0a 07 48 6f 6d 65 4e 65 74 12 08 70 61 35 35 77 6f 72 64")),
        ("prov-config", b("08 04")),
        ("prov-config", b("52 00"))]
    return lines


def test_provision_over_ble(peripheral):
    device = FakeDevice()
    with peripheral(device).transport_to() as t:
        assert t.mtu == 517 and t.peer == "PROV_A1B2C3"
        lines = run_flow(t, device)
        # A request the device fails is an ATT error on the write: a dead session for the phone.
        with pytest.raises(TransportError, match="BLE error during prov-session"):
            t.send("prov-session", b("10 01 5a 27 08 02 b2 01 22 12 20") + bytes(32))
    assert lines == ["proto-ver: v1.1 sec1", "session established (security 1)",
                     "user mapping sent, node ID " + NODE_ID, "Wi-Fi: credentials sent for 'HomeNet'",
                     "Wi-Fi: connecting", "Wi-Fi: connected, IP 192.168.1.7"]


def test_provision_sec0_and_claim(peripheral):
    device = FakeDevice(sec=0, pop=None, proto_ver={"prov": {"ver": "v1.1", "cap": ["no_sec", "wifi_scan"]}})
    with peripheral(device).transport_to() as t:
        lines = run_flow(t, device, pop=None, claim="CLAIM-OK")
    assert lines[0] == "proto-ver: v1.1 sec0"
    assert ("roost-claim", b("0a 08") + b"CLAIM-OK") in device.log


def test_bad_claim_code_is_refused(peripheral):
    device = FakeDevice()
    with peripheral(device).transport_to() as t:
        p = Provisioner(t, pop="abcd1234")
        p.establish_session()
        with pytest.raises(ProvError, match="refused the claim code: InvalidArgument"):
            p.send_claim_code("nope")


def test_wrong_pop_is_reported_as_such(peripheral):
    with peripheral(FakeDevice()).transport_to() as t:
        with pytest.raises(ProvError, match=WRONG_POP):
            Provisioner(t, pop="wrong").establish_session()


def test_ble_discovery_rules(peripheral):
    with pytest.raises(ProvError, match="advertises no service UUID"):
        peripheral(FakeDevice(), advertise_uuid=False).transport_to()
    # Android matches 0x2901 names exactly: upper-case names are not endpoints
    with pytest.raises(ProvError, match="lacks the endpoint"):
        peripheral(FakeDevice(), labels=[e.upper() for e in ENDPOINTS]).transport_to()
    with peripheral(FakeDevice(), labels=ENDPOINTS[:5]).transport_to() as t:
        p = Provisioner(t, pop="abcd1234")
        p.establish_session()
        with pytest.raises(ProvError, match="no 'cloud_user_assoc' endpoint"):
            p.set_user_mapping("u", "s")
    with peripheral(FakeDevice()).transport_to() as t:
        with pytest.raises(ProvError, match="does not fit one GATT value"):
            t.send("prov-config", bytes(513))


def test_wifi_failure_resets_the_device(peripheral):
    device = FakeDevice()
    with peripheral(device).transport_to() as t:
        p = Provisioner(t, pop="abcd1234")
        with pytest.raises(WifiFailed, match="wrong passphrase") as e:
            p.provision("HomeNet", "nope", on_progress=None, poll=0.01)
        assert e.value.result.reason == "auth" and device.state == "idle"
        assert device.log[-1] == ("prov-ctrl", b("08 01 5a 00"))
        # R4: new credentials in the same session, no reboot
        assert p.provision("HomeNet", "pa55word", on_progress=None, poll=0.01).ip == "192.168.1.7"
        p.set_wifi("Elsewhere", "x")
        p.apply()
        assert p.wait_connected(poll=0.01).reason == "not_found"


def test_scan_pages_of_four_over_ble(peripheral):
    device = FakeDevice()
    with peripheral(device).transport_to() as t:
        p = Provisioner(t, pop="abcd1234")
        p.establish_session()
        nets = p.scan_wifi()
    assert [n.ssid for n in nets] == ["net%d" % i for i in range(6)]
    assert nets[5].bssid == "aa:aa:aa:aa:aa:05" and nets[5].rssi == -45 and nets[5].auth == "WPA2_PSK"
    sent = [proto.WiFiScanPayload.FromString(d) for e, d in device.log]
    assert sent[0].cmd_scan_start == proto.CmdScanStart(blocking=True, period_ms=120)
    assert [(m.cmd_scan_result.start_index, m.cmd_scan_result.count) for m in sent[2:]] == [(0, 4), (4, 2)]


# -- SoftAP HTTP ----------------------------------------------------------------------------------
class DeviceHttp(http.server.BaseHTTPRequestHandler):
    """POST /<endpoint> in front of a FakeDevice, with the cookie rule of spec section 3."""
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        srv = self.server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        srv.seen.append((self.path, dict(self.headers), body))
        endpoint = self.path[1:]
        if endpoint == "missing":
            return self._answer(404, b"")
        extra = []
        if self.headers.get("Cookie") != "session=%d" % srv.sid:
            srv.sid = int.from_bytes(os.urandom(4), "big")
            srv.device.new_session()
            extra.append((srv.cookie_name, srv.cookie_format % srv.sid))
        try:
            if endpoint == "hang-up":
                raise DeviceFailure("as IDF on a failed request")
            out = srv.device.handle(endpoint, body)
        except DeviceFailure:
            self.close_connection = True   # no response at all
            return
        self._answer(200, out, extra)

    def _answer(self, code, body, headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_device():
    servers = []

    def make(device=None, cookie_name="Set-Cookie", cookie_format="session=%d"):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), DeviceHttp)
        srv.daemon_threads = True
        srv.device, srv.sid, srv.seen = device or FakeDevice(), -1, []
        srv.cookie_name, srv.cookie_format = cookie_name, cookie_format
        threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(srv)
        return srv
    yield make
    for s in servers:
        s.shutdown()
        s.server_close()


def test_http_cookie_is_echoed(http_device):
    srv = http_device()
    t = HttpTransport("127.0.0.1", srv.server_address[1])
    run_flow(t, srv.device)
    first, later = srv.seen[0][1], [h for _, h, _ in srv.seen[1:]]
    assert srv.seen[0][0] == "/proto-ver" and srv.seen[0][2] == b"---"
    assert "Cookie" not in first
    assert first["Content-type"] == "application/x-www-form-urlencoded" and first["Accept"] == "text/plain"
    assert {h["Cookie"] for h in later} == {"session=%d" % srv.sid}
    t.close()


def test_http_cookie_only_from_exact_set_cookie(http_device):
    srv = http_device(cookie_name="set-cookie")
    t = HttpTransport("127.0.0.1", srv.server_address[1])
    t.send("proto-ver", b"---")
    t.send("proto-ver", b"---")
    assert t.cookie is None and "Cookie" not in srv.seen[1][1]
    t.close()


def test_http_malformed_cookie(http_device):
    srv = http_device(cookie_format="session=%d; Path=/")
    with pytest.raises(ProvError, match="malformed session cookie"):
        HttpTransport("127.0.0.1", srv.server_address[1]).send("proto-ver", b"---")


def test_http_errors_are_transport_errors(http_device):
    srv = http_device()
    t = HttpTransport("127.0.0.1", srv.server_address[1], timeout=5)
    with pytest.raises(TransportError, match="error code 404"):
        t.send("missing", b"x")
    with pytest.raises(TransportError, match="connection failure"):
        t.send("hang-up", b"x")
    assert t.send("proto-ver", b"---").startswith(b"{")   # reconnects; the cookie still names the session
    with pytest.raises(ProvError, match="body limit"):
        t.send("prov-config", b"")
    t.close()


def test_http_wrong_pop_and_scan_all_at_once(http_device):
    srv = http_device()
    with pytest.raises(ProvError, match=WRONG_POP):
        Provisioner(HttpTransport("127.0.0.1", srv.server_address[1]), pop="nope").establish_session()
    p = Provisioner(HttpTransport("127.0.0.1", srv.server_address[1]), pop="abcd1234")
    p.establish_session()
    assert len(p.scan_wifi()) == 6
    start, _, result = [proto.WiFiScanPayload.FromString(d) for _, d in srv.device.log]
    assert start.cmd_scan_start.group_channels == 5                    # SoftAP, as esp-rainmaker-cli
    assert (result.cmd_scan_result.start_index, result.cmd_scan_result.count) == (0, 6)


def test_cli_provision_softap(http_device, capsys):
    from tools.cli import main
    srv = http_device()
    main(["provision", "--transport", "softap", "--host", "127.0.0.1", "--port", str(srv.server_address[1]),
          "--pop", "abcd1234", "--ssid", "HomeNet", "--passphrase", "pa55word", "--user-id", "u1"])
    out = capsys.readouterr().out
    assert "Wi-Fi: connected, IP 192.168.1.7" in out and out.rstrip().endswith("node ID: " + NODE_ID)
    assert "pa55word" not in out and srv.device.user[0] == "u1"


def test_cli_provision_errors_are_one_line(http_device, capsys):
    from tools.cli import main
    srv = http_device()
    with pytest.raises(SystemExit) as e:
        main(["provision", "--transport", "softap", "--host", "127.0.0.1", "--port", str(srv.server_address[1]),
              "--ssid", "HomeNet", "--passphrase", "pa55word"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "proof of possession" in err


# -- version decisions and QR ---------------------------------------------------------------------
class CannedTransport:
    kind = "ble"

    def __init__(self, info):
        self.info = info

    def send(self, endpoint, data):
        assert endpoint == "proto-ver" and data == b"---"
        return json.dumps(self.info).encode()


@pytest.mark.parametrize("prov,pop,sec,expect_pop", [
    ({"ver": "v1.1", "cap": ["no_sec"]}, None, 0, None),              # old firmware, no sec_ver
    ({"ver": "v1.1", "cap": []}, "p", 1, "p"),
    ({"ver": "v1.1", "sec_ver": 1, "cap": ["no_pop", "wifi_scan"]}, "p", 1, ""),
    ({"ver": "netprov-v1.2", "sec_ver": 2, "sec_patch_ver": 1, "cap": []}, "p", 2, "p"),
])
def test_version_picks_the_scheme(prov, pop, sec, expect_pop):
    p = Provisioner(CannedTransport({"rmaker": {"ver": "1", "cap": []}, "prov": prov}), pop=pop)
    p.version()
    assert (p.security, p.pop) == (sec, expect_pop)
    assert p.patch_ver == prov.get("sec_patch_ver", 0)


def test_version_mismatch_and_missing_pop():
    with pytest.raises(ProvError, match="device uses security 2, not 1"):
        Provisioner(CannedTransport({"prov": {"ver": "v1.1", "sec_ver": 2}}), security=1, pop="p").version()
    with pytest.raises(ProvError, match="proof of possession"):
        Provisioner(CannedTransport({"prov": {"ver": "v1.1", "sec_ver": 1, "cap": []}})).version()
    with pytest.raises(ProvError, match="not the provisioning JSON"):
        Provisioner(CannedTransport(["nope"])).version()


def test_qr_payload():
    assert qr_payload("PROV_a1b2c3", "abcd1234", "ble") == \
        '{"ver":"v1","name":"PROV_a1b2c3","pop":"abcd1234","transport":"ble"}'
    assert qr_payload("PROV_a1b2c3", "abcd1234", "softap", username="wifiprov") == \
        '{"ver":"v1","name":"PROV_a1b2c3","username":"wifiprov","pop":"abcd1234","transport":"softap"}'
    assert qr_payload("PROV_a1b2c3", None, "ble") == '{"ver":"v1","name":"PROV_a1b2c3","transport":"ble"}'
    with pytest.raises(ValueError):
        qr_payload("PROV_a1b2c3", "p", "usb")


def test_cli_qr(capsys):
    from tools.cli import main
    main(["provision", "qr", "--name", "PROV_a1b2c3", "--pop", "abcd1234"])
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == '{"ver":"v1","name":"PROV_a1b2c3","pop":"abcd1234","transport":"ble"}'
