"""The provisioning app's steps, in the order and with the bytes Espressif's clients use.

    with BleakTransport(name, air=board.ble_air) as t:
        result = Provisioner(t, pop="abcd1234").provision("HomeNet", "pa55word", user_id="u1")
        result.node_id, result.ip

Each step is also a method (version, establish_session, scan_wifi, set_user_mapping,
send_claim_code, set_wifi, apply, get_status, wait_connected, reset) so tests can walk the flow
one message at a time; `call(endpoint, bytes)` sends any payload through the session cipher.
"""
import json
import time
import uuid
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from . import ProvError
from . import proto
from .security import for_version

CLAIM_ENDPOINT = "roost-claim"
FAIL_REASONS = {proto.WifiConnectFailedReason.AuthError: "auth",
                proto.WifiConnectFailedReason.NetworkNotFound: "not_found"}
FAIL_WORDS = {"auth": "wrong passphrase (authentication failed)", "not_found": "network not found",
              "disconnected": "disconnected"}


class WifiFailed(ProvError):
    """The device could not join the network; `.result` says why ("auth", "not_found", ...)."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


@dataclass
class WifiResult:
    state: str                     # "connected" or "failed"
    ip: str = None
    reason: str = None             # when failed: "auth", "not_found" or "disconnected"
    ssid: bytes = None
    bssid: bytes = None
    channel: int = None
    auth_mode: str = None

    @property
    def connected(self):
        return self.state == "connected"


@dataclass
class ScanEntry:
    ssid: str
    bssid: str
    channel: int
    rssi: int
    auth: str


@dataclass
class ProvisionResult:
    node_id: str
    ip: str
    wifi: WifiResult = field(repr=False, default=None)


class Provisioner:
    """One provisioning session over `transport`.

    security: 0, 1 or 2, or None to take it from the device's proto-ver (as esp_prov does);
    pop: the proof of possession (security 1; for security 2 the default password);
    username/password: security 2 (SRP6a) credentials."""

    def __init__(self, transport, security=None, pop=None, username="wifiprov", password=None,
                 on_progress=None):
        self.transport = transport
        self.security = security
        self.pop = pop
        self.username = username
        self.password = password
        self.on_progress = on_progress or (lambda line: None)
        self.info = None           # the parsed proto-ver JSON
        self.patch_ver = 0
        self.session = None

    # -- session -------------------------------------------------------------------------------
    def version(self):
        """proto-ver, then the security scheme as esp_prov decides it: prov.sec_ver, or, for
        firmware too old to say, 0 if "no_sec" is a capability and 1 otherwise."""
        raw = self.transport.send("proto-ver", b"---")       # esp_prov's filler; the body is ignored
        try:
            info = json.loads(raw.decode("utf-8"))
            prov = info["prov"]
        except (ValueError, KeyError, TypeError):
            raise ProvError("proto-ver: device answered %r, not the provisioning JSON" % raw[:60])
        caps = prov.get("cap") or []
        device_sec = prov.get("sec_ver")
        if device_sec is None:
            device_sec = 0 if "no_sec" in caps else 1
        if self.security is None:
            self.security = device_sec
        elif self.security != device_sec:
            raise ProvError("device uses security %s, not %s (drop --sec, or use --sec %s)"
                            % (device_sec, self.security, device_sec))
        if self.security == 1 and "no_pop" in caps:
            self.pop = ""                    # as the Android library: no_pop forces an empty PoP
        elif self.security == 1 and not self.pop:
            raise ProvError("device requires a proof of possession (PoP) for security 1")
        self.patch_ver = int(prov.get("sec_patch_ver", 0))
        self.info = info
        self.on_progress("proto-ver: %s sec%d" % (prov.get("ver", "?"), self.security))
        return info

    def capabilities(self):
        return (self.info or self.version())["prov"].get("cap") or []

    def establish_session(self):
        if self.info is None:
            self.version()
        password = self.password if self.password is not None else self.pop
        if self.security == 2 and not password:
            raise ProvError("security 2 needs a password (the PoP)")
        sec = for_version(self.security, pop=self.pop, username=self.username, password=password,
                          patch_ver=self.patch_ver)
        sec.handshake(lambda data: self.transport.send("prov-session", data))
        self.session = sec
        self.on_progress("session established (security %d)" % self.security)

    def call(self, endpoint, data):
        """Encrypt a request, send it, decrypt the response (bytes in, bytes out)."""
        if self.session is None:
            raise ProvError("no session: establish_session() first")
        return self.session.decrypt(self.transport.send(endpoint, self.session.encrypt(data)))

    def _call(self, endpoint, request, response_type, expect_msg=None):
        raw = self.call(endpoint, request.SerializeToString())
        try:
            resp = response_type.FromString(raw)
        except DecodeError:
            raise ProvError("%s: unreadable response (%d bytes; session cipher out of step?)"
                            % (endpoint, len(raw)))
        if expect_msg is not None and resp.msg != expect_msg:
            raise ProvError("%s: device answered message type %d, expected %d" % (endpoint, resp.msg, expect_msg))
        return resp

    # -- Wi-Fi scan ----------------------------------------------------------------------------
    def _scan(self, msg_type, expect, **payload):
        resp = self._call("prov-scan", proto.WiFiScanPayload(msg=msg_type, **payload),
                          proto.WiFiScanPayload, expect)
        if resp.status != proto.Status.Success:
            raise ProvError("prov-scan: device answered %s" % proto.Status.Name(resp.status))
        return resp

    def scan_wifi(self, timeout=15.0, passive=False, period_ms=120):
        """Start a blocking scan, wait for it, fetch the results: 4 per request over BLE to keep
        each response small, all at once over SoftAP (as esp-rainmaker-cli)."""
        T = proto.WiFiScanMsgType
        softap = self.transport.kind == "softap"
        self._scan(T.TypeCmdScanStart, T.TypeRespScanStart, cmd_scan_start=proto.CmdScanStart(
            blocking=True, passive=passive, group_channels=5 if softap else 0, period_ms=period_ms))
        deadline = time.monotonic() + timeout
        while True:
            st = self._scan(T.TypeCmdScanStatus, T.TypeRespScanStatus).resp_scan_status
            if st.scan_finished:
                break
            if time.monotonic() > deadline:
                raise ProvError("Wi-Fi scan did not finish within %.0f s" % timeout)
            time.sleep(0.5)
        count, page = st.result_count, st.result_count if softap else 4
        entries = []
        while len(entries) < count:
            n = min(page, count - len(entries))
            got = self._scan(T.TypeCmdScanResult, T.TypeRespScanResult, cmd_scan_result=proto.CmdScanResult(
                start_index=len(entries), count=n)).resp_scan_result.entries
            if not got:
                raise ProvError("prov-scan: device returned no entries from index %d of %d" % (len(entries), count))
            entries += [ScanEntry(e.ssid.decode("utf-8", "replace"), e.bssid.hex(":"), e.channel, e.rssi,
                                  proto.WifiAuthMode.Name(e.auth)) for e in got]
        return entries

    # -- custom endpoints ----------------------------------------------------------------------
    def set_user_mapping(self, user_id, secret):
        """RainMaker cloud_user_assoc: hands the node the user ID and secret; returns the node ID."""
        T = proto.RMakerConfigMsgType
        resp = self._call("cloud_user_assoc", proto.RMakerConfigPayload(
            msg=T.TypeCmdSetUserMapping,
            cmd_set_user_mapping=proto.CmdSetUserMapping(UserID=user_id, SecretKey=secret)),
            proto.RMakerConfigPayload, T.TypeRespSetUserMapping)
        r = resp.resp_set_user_mapping
        if r.Status != proto.RMakerConfigStatus.Success:
            raise ProvError("device refused the user mapping: %s" % proto.RMakerConfigStatus.Name(r.Status))
        if not r.NodeId:
            raise ProvError("device accepted the user mapping but sent no node ID")
        return r.NodeId

    def send_claim_code(self, code):
        """roost-claim: a Particle-style claim code; returns the node ID."""
        resp = self._call(CLAIM_ENDPOINT, proto.CmdClaim(code=code), proto.RespClaim)
        if resp.status != proto.Status.Success:
            raise ProvError("device refused the claim code: %s" % proto.Status.Name(resp.status))
        return resp.node_id

    # -- Wi-Fi credentials ---------------------------------------------------------------------
    def _config(self, msg_type, expect, **payload):
        return self._call("prov-config", proto.WiFiConfigPayload(msg=msg_type, **payload),
                          proto.WiFiConfigPayload, expect)

    def set_wifi(self, ssid, passphrase, bssid=b"", channel=0):
        T = proto.WiFiConfigMsgType
        enc = lambda s: s.encode("utf-8") if isinstance(s, str) else bytes(s)  # noqa: E731
        status = self._config(T.TypeCmdSetConfig, T.TypeRespSetConfig, cmd_set_config=proto.CmdSetConfig(
            ssid=enc(ssid), passphrase=enc(passphrase), bssid=bssid, channel=channel)).resp_set_config.status
        if status == proto.Status.InvalidArgument:
            raise ProvError("device rejected the Wi-Fi credentials (SSID at most 32 bytes, "
                            "passphrase at most 63, BSSID 6 bytes)")
        if status != proto.Status.Success:
            raise ProvError("device could not store the Wi-Fi credentials: %s" % proto.Status.Name(status))

    def apply(self):
        # Clients send `08 04` alone: ApplyConfig carries no payload.
        T = proto.WiFiConfigMsgType
        status = self._config(T.TypeCmdApplyConfig, T.TypeRespApplyConfig).resp_apply_config.status
        if status != proto.Status.Success:
            raise ProvError("device could not apply the Wi-Fi credentials: %s" % proto.Status.Name(status))

    def get_status(self):
        """One GetStatus: a WifiResult, or None while the device is still connecting."""
        T = proto.WiFiConfigMsgType
        r = self._config(T.TypeCmdGetStatus, T.TypeRespGetStatus,
                         cmd_get_status=proto.CmdGetStatus()).resp_get_status
        S = proto.WifiStationState
        if r.sta_state == S.Connected:
            c = r.connected
            return WifiResult("connected", ip=c.ip4_addr, ssid=c.ssid, bssid=c.bssid, channel=c.channel,
                              auth_mode=proto.WifiAuthMode.Name(c.auth_mode))
        if r.sta_state == S.ConnectionFailed:
            return WifiResult("failed", reason=FAIL_REASONS.get(r.fail_reason, "unknown"))
        if r.sta_state == S.Disconnected:   # IDF never sends it; esp_prov counts it as a failure
            return WifiResult("failed", reason="disconnected")
        if r.WhichOneof("state") == "attempt_failed":
            self.on_progress("Wi-Fi: attempt failed, %d left" % r.attempt_failed.attempts_remaining)
        return None

    def wait_connected(self, timeout=60.0, poll=1.0):
        deadline = time.monotonic() + timeout
        while True:
            result = self.get_status()
            if result is not None:
                return result
            if time.monotonic() + poll > deadline:
                raise ProvError("Wi-Fi: still connecting after %.0f s" % timeout)
            time.sleep(poll)

    def reset(self):
        """prov-ctrl Reset: after a failed attempt, back to waiting for credentials."""
        T = proto.WiFiCtrlMsgType
        resp = self._call("prov-ctrl", proto.WiFiCtrlPayload(msg=T.TypeCmdCtrlReset,
                                                             cmd_ctrl_reset=proto.CmdCtrlReset()),
                          proto.WiFiCtrlPayload, T.TypeRespCtrlReset)
        if resp.status != proto.Status.Success:
            raise ProvError("device refused the reset: %s" % proto.Status.Name(resp.status))

    # -- the whole app flow --------------------------------------------------------------------
    def provision(self, ssid, passphrase, user_id=None, secret=None, claim=None, on_progress=print,
                  timeout=60.0, poll=1.0, reset_on_failure=True):
        """What the RainMaker app does: version, session, user mapping (before Wi-Fi), claim,
        credentials, apply, poll. Returns ProvisionResult(node_id, ip); a failed connection
        raises WifiFailed after resetting the device so it takes new credentials."""
        self.on_progress = on_progress or (lambda line: None)
        if self.info is None:
            self.version()
        if self.session is None:
            self.establish_session()
        node_id = None
        if user_id:
            node_id = self.set_user_mapping(user_id, secret or str(uuid.uuid4()))
            self.on_progress("user mapping sent, node ID %s" % node_id)
        if claim:
            node_id = self.send_claim_code(claim)
            self.on_progress("claim code accepted, node ID %s" % node_id)
        self.set_wifi(ssid, passphrase)
        self.on_progress("Wi-Fi: credentials sent for %r" % ssid)
        self.apply()
        self.on_progress("Wi-Fi: connecting")
        result = self.wait_connected(timeout, poll)
        if not result.connected:
            words = FAIL_WORDS.get(result.reason, result.reason)
            self.on_progress("Wi-Fi: failed (%s)" % words)
            if reset_on_failure:
                self.reset()
                self.on_progress("device reset: it takes new credentials")
            raise WifiFailed("Wi-Fi: connection to %r failed: %s" % (ssid, words), result)
        self.on_progress("Wi-Fi: connected, IP %s" % result.ip)
        return ProvisionResult(node_id, result.ip, result)
