"""A provisioned board onboards to the local cloud: bootstrap (plain or secure), TLS MQTT as its
thing, the user-node mapping confirmed by the owner's status poll, the claim code; and what it
does when the cloud misbehaves (refusals, outages, rotated credentials)."""
import re
import socket
import ssl
import threading
import time

import pytest

from tools.cloud.client import call

from tests.sim.conftest import POP, PROV, WIFI, home_world
from tests.sim.phone import provision, stored
from tests.sim.test_registration import set_key

MAPPED = re.compile(rb"user mapping delivered")


def api(cloud, method, path, token, body=None):
    """The phone app's calls to the cloud (plain HTTP on the local cloud); must succeed."""
    status, answer = call(cloud.http_url, method, path, body, token, timeout=5)
    assert status == 200, (status, answer)
    return answer


def map_request(cloud, token, node_id, secret):
    r = api(cloud, "PUT", "/v1/user/nodes/mapping", token=token,
                  body={"node_id": node_id, "secret_key": secret, "operation": "add"})
    return r["request_id"]


def mapping_status(cloud, token, request_id, until=("confirmed", "timedout"), timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        s = api(cloud, "GET", "/v1/user/nodes/mapping?request_id=" + request_id, token=token)["request_status"]
        if s in until or time.monotonic() > deadline:
            return s
        time.sleep(0.1)


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "secure"])
def test_owner_provisions_and_the_cloud_confirms_the_mapping(cloud, owner, onboard, secure):
    uid, token = owner
    board = onboard(secure=secure, user=uid, secret="s3cret-1")
    request_id = map_request(cloud, token, board.node_id, "s3cret-1")   # the app, right after
    assert mapping_status(cloud, token, request_id) == "confirmed"
    assert cloud.node_owner(board.node_id) == uid
    board.wait_for(MAPPED, timeout=10)
    assert board.wait_for(re.compile(rb"MQTT connected to mqtt\.roost\.local:8883 \(TLS\)"), timeout=1)
    log = bytes(board.out)          # before the test reads records over the console
    boot = stored(board, "bootstrap")
    assert boot["done"] and boot["thing_id"] and [c["type"] for c in boot["channels"]] == ["control", "data"]
    assert stored(board, "user")["status"] == "mapped"
    assert b"s3cret-1" not in log and boot["thing_key"].encode() not in log


def test_node_reports_first_then_the_app_asks(cloud, owner, onboard):
    uid, token = owner
    board = onboard(user=uid, secret="s3cret-2")
    board.wait_for(MAPPED, timeout=20)          # the node's half is in the cloud already
    request_id = map_request(cloud, token, board.node_id, "s3cret-2")
    assert mapping_status(cloud, token, request_id) == "confirmed"


def test_a_mapping_with_the_wrong_secret_times_out(cloud, owner, onboard):
    uid, token = owner
    board = onboard(user=uid, secret="s3cret-3")
    board.wait_for(MAPPED, timeout=20)
    request_id = map_request(cloud, token, board.node_id, "not-the-secret")
    assert mapping_status(cloud, token, request_id, until=("confirmed",), timeout=1) == "requested"
    assert mapping_status(cloud, token, request_id, timeout=10) == "timedout"   # 3 s in this cloud
    assert cloud.node_owner(board.node_id) is None


def test_board_provisioned_without_a_user_sends_the_reset_notice(cloud, onboard):
    board = onboard(user=None)
    board.wait_for(rb"reset notice delivered", timeout=20)
    topic = "node/%s/user/mapping" % board.node_id
    msg = cloud.wait_message(topic, timeout=5)
    assert b'"reset":true' in msg[1] and b'"user_id":"esp-rmaker"' in msg[1]
    assert stored(board, "user")["status"] == "cleared"


def test_claim_code_is_presented_once_and_cleared(cloud, owner, onboard):
    uid, token = owner
    code = api(cloud, "POST", "/v1/device_claims", token=token, body={})["claim_code"]
    board = onboard(claim=code)
    board.wait_for(rb"device claimed; claim code cleared", timeout=20)
    assert stored(board, "claim") == {"code": "", "claimed": True}
    devices = api(cloud, "GET", "/v1/devices", token=token)["devices"]
    assert [d["id"] for d in devices] == [board.node_id]


def test_unknown_device_retries_with_backoff_until_the_cloud_knows_it(cloud, onboard):
    board = onboard(add_device=False)
    board.wait_for(rb"bootstrap failed: HTTP 404", timeout=20)
    # The operator registers the device under the key its factory config holds.
    cfg = cloud.add_device(board.node_id, external_key=board.external_key)
    board.wait_for(rb"bootstrapped: thing", timeout=30)
    board.wait_for(re.compile(rb"reset notice delivered"), timeout=20)
    assert stored(board, "bootstrap")["thing_id"] == cfg["thing_id"]


def test_wrong_external_key_is_refused_and_nothing_is_stored(cloud, onboard):
    board = onboard(add_device=False)
    cloud.add_device(board.node_id)          # now known, but under another key
    board.wait_for(rb"bootstrap failed: HTTP 403: external key rejected", timeout=30)
    assert board.boots == 1                  # a refusal is no reason to reboot
    assert stored(board, "bootstrap")["done"] is False


def test_bootstrap_server_down_then_back(cloud, owner, onboard):
    uid, token = owner
    cloud.stop_http()
    board = onboard(user=uid, secret="s3cret-4")
    board.wait_for(rb"bootstrap failed: no answer", timeout=20)
    cloud.start_http()
    board.wait_for(MAPPED, timeout=30)
    assert stored(board, "user")["status"] == "mapped"


def test_broker_down_then_back_delivers_the_mapping(cloud, owner, onboard):
    uid, token = owner
    cloud.broker.stop()
    board = onboard(user=uid, secret="s3cret-5")
    board.wait_for(rb"cannot reach the broker", timeout=20)
    cloud.broker.start()
    board.wait_for(MAPPED, timeout=40)
    request_id = map_request(cloud, token, board.node_id, "s3cret-5")
    assert mapping_status(cloud, token, request_id) == "confirmed"


def test_rotated_credentials_make_the_board_bootstrap_again(cloud, onboard):
    board = onboard()
    board.wait_for(rb"MQTT connected", timeout=20)
    old = cloud.device(board.node_id)["thing_key"]
    mark = board.mark()
    cloud.remove_device(board.node_id)          # re-registered: a new thing, a new key;
    cloud.add_device(board.node_id, external_key=board.external_key)
    cloud.broker.restart()                     # ... and drops the board's connection
    board.wait_for(rb"broker refused the credentials", timeout=30, since=mark)
    m = board.wait_for(rb"bootstrapped: thing", timeout=30, since=mark)
    board.wait_for(rb"MQTT connected", timeout=30, since=m.end())
    assert stored(board, "bootstrap")["thing_key"] != old


def test_cloud_asks_for_a_new_bootstrap(cloud, onboard):
    board = onboard()
    board.wait_for(rb"listening for commands", timeout=20)     # subscribed: a command arrives
    mark = board.mark()
    rid = cloud.send_command(board.node_id, "rebootstrap")
    reply = cloud.wait_message("channels/+/messages/res", timeout=10)
    assert rid.encode() in reply[1] and b'"vs":"ok"' in reply[1].replace(b" ", b"")
    board.wait_for(rb"bootstrapping as", timeout=10, since=mark)
    board.wait_for(rb"MQTT connected", timeout=20, since=mark)


def test_inactive_config_bootstraps_but_its_channels_stay_closed(cloud, owner, onboard):
    uid, token = owner
    board = onboard(active=False, user=uid, secret="s3cret-6")
    board.wait_for(MAPPED, timeout=20)             # its node topics are open
    cloud.send_command(board.node_id, "rebootstrap")
    with pytest.raises(TimeoutError):              # the control channel is not
        cloud.wait_message("channels/+/messages/res", timeout=3)
    cloud.set_state(board.node_id, True)
    rid = cloud.send_command(board.node_id, "rebootstrap")
    reply = cloud.wait_message("channels/+/messages/res", timeout=10)
    assert rid.encode() in reply[1]


def test_a_board_that_also_registers_connects_to_the_broker_first(cloud, new_board):
    """Bootstrap, the broker's TLS handshake and self-registration (KDF, AES, HTTP) each take
    the heap's peak; on an ESP32 without PSRAM two at once grow the GC heap into the IDF's RAM
    for good, and TLS failed with ENOMEM from then on (a CI run of `make sim --transport softap`).
    One at a time: the cloud's exchange first, registering after it, and no memory error."""
    node_id = "24A1600000F1"
    cloud.add_device(node_id)
    key = cloud.add_org("Demo Farm")["registration_key"]
    board = new_board(world=home_world(cloud), factory=dict(PROV, **cloud.factory_for(node_id)),
                      mac=bytes.fromhex(node_id))
    board.wait_for(b"provisioning open for", timeout=15)
    assert "registration key stored" in set_key(board, key)
    provision(board, POP, *WIFI)
    connected = board.wait_for(re.compile(rb"MQTT connected to mqtt\.roost\.local:8883 \(TLS\)"), timeout=30)
    derived = board.wait_for(re.compile(rb"registration: key derived"), timeout=30)
    board.wait_for(re.compile(rb"registration: registered: channel \d+"), timeout=20)
    assert derived.start() > connected.end()
    assert b"ENOMEM" not in board.out and b"MemoryError" not in board.out


class ClosingBroker:
    """A TLS MQTT broker that accepts CONNECT and closes the session at the client's next
    packet, as Mainflux's MQTT adapter does on a topic it does not allow. Records when each
    session was accepted."""

    def __init__(self, cloud):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cloud.pki.cert_path, cloud.pki.key_path)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = []
        threading.Thread(target=self._serve, daemon=True).start()

    @staticmethod
    def _packet(conn):
        first = conn.recv(1)
        if not first:
            raise OSError("closed")
        n = shift = 0
        while True:                     # remaining length: a varint (MQTT 3.1.1, 2.2.3)
            b = conn.recv(1)[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        while n:
            n -= len(conn.recv(n))

    def _serve(self):
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(raw, server_side=True) as conn:
                    self._packet(conn)                  # CONNECT
                    conn.sendall(b"\x20\x02\x00\x00")   # CONNACK: accepted
                    self.accepted.append(time.monotonic())
                    self._packet(conn)                  # SUBSCRIBE or PUBLISH: closed on it
            except (OSError, ssl.SSLError, IndexError):
                pass

    def close(self):
        self.sock.close()


def test_a_broker_that_closes_each_session_gets_the_backoff_of_a_failed_connect(cloud, onboard):
    broker = ClosingBroker(cloud)
    try:
        board = onboard(world_services={cloud.mqtt_name: ("127.0.0.1", broker.port)})
        board.wait_for(re.compile(rb"the broker closed the session 0 s after accepting it \(.*; last topic "
                                  rb"channels/[0-9a-f-]+/messages/req\)"), timeout=20)
        time.sleep(20)
        gaps = [b - a for a, b in zip(broker.accepted, broker.accepted[1:])]
        # 2 s doubling to 300 s, with jitter down to half: 1-2, 2-4, 4-8, 8-16 s... Reconnecting
        # every 1-2 s would have made 10 or more sessions in this time.
        assert 2 <= len(broker.accepted) <= 5, gaps
        assert all(later > 0.9 * earlier for earlier, later in zip(gaps, gaps[1:])) and gaps[-1] >= 2, gaps
    finally:
        broker.close()
