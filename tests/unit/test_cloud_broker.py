"""Local cloud: certificates, the Mosquitto broker and the accounts that follow bootstrap configs
(real Mosquitto over TLS, real HTTP)."""
import json
import socket
import ssl

import pytest
from cryptography import x509

from cloud_helpers import Thing, call, need_mosquitto, published_or_dropped, start_cloud
from tools.cloud.broker import Broker, password_hash
from tools.cloud.pki import PKI


@pytest.fixture
def things():
    made = []

    def make(*a, **kw):
        t = Thing(*a, **kw)
        made.append(t)
        return t
    yield make
    for t in made:
        t.close()


def tls_handshake(port, server_hostname, cafile=None, tls12_only=False):
    ctx = ssl.create_default_context(cafile=cafile)
    if tls12_only:                      # as the device's mbedTLS client
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        with ctx.wrap_socket(s, server_hostname=server_hostname) as t:
            return t.version()


# --- certificates ---------------------------------------------------------------------------

def test_pki_rsa2048_sha256_sans_and_reuse(tmp_path):
    pki = PKI(tmp_path, names=["192.168.1.20", "box.lan"]).ensure()
    cert = x509.load_pem_x509_certificate(pki.cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate(pki.ca_path.read_bytes())
    assert cert.public_key().key_size == 2048 and ca.public_key().key_size == 2048
    assert cert.signature_hash_algorithm.name == "sha256"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days >= 3650
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"mqtt.roost.local", "localhost", "box.lan"}
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "192.168.1.20"}
    cert.verify_directly_issued_by(ca)
    before = (pki.ca_path.read_bytes(), pki.cert_path.read_bytes())
    assert (PKI(tmp_path, names=["box.lan"]).ensure().ca_path.read_bytes(),
            pki.cert_path.read_bytes()) == before                         # reused
    PKI(tmp_path, names=["other.lan"]).ensure()                           # new name: new server cert,
    assert pki.ca_path.read_bytes() == before[0]                          # same CA
    assert pki.cert_path.read_bytes() != before[1]


def test_tls_verifies_with_the_ca_only_for_its_names(cloud):
    ca = str(cloud.ca_path)
    assert tls_handshake(cloud.mqtt_tls_port, "mqtt.roost.local", ca, tls12_only=True) == "TLSv1.2"
    assert tls_handshake(cloud.mqtt_tls_port, "localhost", ca)
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_handshake(cloud.mqtt_tls_port, "mqtt.roost.local")            # system CAs only
    with pytest.raises(ssl.SSLCertVerificationError, match="[Hh]ostname"):
        tls_handshake(cloud.mqtt_tls_port, "evil.example", ca)


# --- the broker on its own --------------------------------------------------------------------

def test_password_hash_is_mosquittos_format():
    h = password_hash("pw", salt=b"\x00" * 12)
    assert h.startswith("$7$101$AAAAAAAAAAAAAAAA$") and len(h.split("$")[4]) == 88


def test_broker_accounts_change_live_and_ports_survive_restart(tmp_path):
    need_mosquitto()
    b = Broker(tmp_path, PKI(tmp_path).ensure()).start()
    try:
        assert b.login("alice", "pw") != 0
        b.set_account("alice", "pw", ["topic readwrite node/a/#"])
        assert b.login("alice", "pw") == 0
        assert b.login("alice", "wrong") != 0
        b.set_account("alice", "pw2")
        assert b.login("alice", "pw") != 0 and b.login("alice", "pw2") == 0
        ports = (b.plain_port, b.tls_port)
        b.restart()
        assert (b.plain_port, b.tls_port) == ports and b.login("alice", "pw2") == 0
        b.remove_account("alice")
        assert b.login("alice", "pw2") != 0
        with pytest.raises(ValueError):
            b.set_account("roost-cloud", "x")
        with pytest.raises(ValueError):
            b.set_account("bob", "x", ["topic read #\nuser roost-cloud"])
    finally:
        b.stop()
    assert "allow_anonymous false" in (tmp_path / "mosquitto.conf").read_text()


# --- things: what they may and may not do -------------------------------------------------------

def test_wrong_password_is_refused(cloud, things):
    cfg = cloud.add_device("n1")
    assert things(cloud, cfg, password="not-the-key").connected() != 0
    assert things(cloud, cfg, username="nobody", password=cfg["thing_key"], client_id="x").connected() != 0
    assert things(cloud, cfg).connected() == 0


def test_thing_uses_its_node_topics_and_channels(cloud, things):
    cfg = cloud.add_device("n1")
    ctl, data = (c["id"] for c in cfg["channels"])
    t = things(cloud, cfg)
    assert t.connected() == 0
    assert t.subscribe("node/n1/#") == 1
    assert t.subscribe("channels/%s/messages/req" % ctl) == 1
    assert published_or_dropped(cloud, t, "node/n1/user/mapping", b"{}") is True
    assert published_or_dropped(cloud, t, "channels/%s/messages" % data, b'[{"n":"t","v":21}]') is True
    assert published_or_dropped(cloud, t, "channels/%s/messages/res" % ctl, b"[]") is True
    cloud.publish("node/n1/claim/result", b'{"status":"invalid"}')
    assert t.wait_message("node/n1/claim/result") == b'{"status":"invalid"}'
    req_id = cloud.send_command("n1", "reboot")
    got = json.loads(t.wait_message("channels/%s/messages/req" % ctl))
    assert got == [{"bn": req_id + ":", "n": "control", "vs": "reboot"}]


def test_thing_cannot_touch_other_nodes_or_channels(cloud, things):
    mine, other = cloud.add_device("n1"), cloud.add_device("n2")
    t = things(cloud, mine)
    assert t.connected() == 0
    theirs = other["channels"][0]["id"]
    for topic in ("node/n2/user/mapping", "channels/%s/messages" % theirs, "channels/%s/messages/req" % theirs,
                  "node/n1x/claim", "other/topic"):
        assert published_or_dropped(cloud, t, topic) is False, topic
    # Mosquitto 2.0's acl_file grants every SUBSCRIBE (SUBACK 0, a FIXME in its source) and applies
    # the read ACL to each message instead: the subscription exists but delivers nothing foreign.
    for topic in ("node/n2/#", "channels/%s/messages/#" % theirs, "#", "node/+/claim/result"):
        assert t.subscribe(topic) in (0, 1, 0x80), topic
    forbidden = [("node/n2/claim/result", b"for n2 only"), ("channels/%s/messages/req" % theirs, b"cmd")]
    for topic, payload in forbidden:
        cloud.publish(topic, payload)
    cloud.publish("node/n1/ping", b"for n1")
    t.wait_message("node/n1/ping")          # sent last, on the same connection: the others came first
    assert [m for m in t.received if m in forbidden] == []
    assert t.received.count(("node/n1/ping", b"for n1")) >= 1


def test_inactive_config_has_no_channels_until_activated(cloud, things):
    cfg = cloud.add_device("n1", active=False)
    data = cfg["channels"][1]["id"]
    t = things(cloud, cfg)
    assert t.connected() == 0
    assert published_or_dropped(cloud, t, "node/n1/user/mapping", b"{}") is True    # node topics: yes
    assert published_or_dropped(cloud, t, "channels/%s/messages" % data, b"1") is False
    cloud.set_state("n1", True)
    assert published_or_dropped(cloud, t, "channels/%s/messages" % data, b"2") is True
    cloud.set_state("n1", False)
    assert published_or_dropped(cloud, t, "channels/%s/messages" % data, b"3") is False


def test_bootstrap_management_api_drives_the_broker(cloud, things):
    admin = cloud.admin_token
    st, _ = call(cloud, "POST", "/things/configs", {
        "external_id": "n9", "external_key": "k", "thing_id": "thing-9", "thing_key": "key-9",
        "channels": [{"id": "ch9", "metadata": {"type": "control"}}]}, token=admin)
    assert st == 201
    assert cloud.broker.login("thing-9", "key-9") == 0
    assert cloud.broker.accounts()["thing-9"] == ["topic readwrite node/n9/#"]        # created inactive
    st, _ = call(cloud, "PUT", "/things/state/thing-9", {"state": 1}, token=admin)
    assert st == 200
    assert cloud.broker.accounts()["thing-9"] == [
        "topic readwrite node/n9/#", "topic readwrite channels/ch9/messages/#",
        "topic readwrite channels/ch9/messages"]
    st, _ = call(cloud, "DELETE", "/things/configs/thing-9", token=admin)
    assert st == 204
    assert cloud.broker.login("thing-9", "key-9") != 0
    assert things(cloud, username="thing-9", password="key-9", client_id="n9").connected() != 0


def test_device_bootstraps_and_factory_config(cloud):
    cfg = cloud.add_device("n1")
    f = cloud.factory_for("n1", secure=True)
    assert f["external_key"] == cfg["external_key"] and f["bootstrap_secure"] is True
    assert f["endpoints"] == {"bootstrap": "http://cloud.roost.local/things/bootstrap", "mqtt": "",
                              "registration": "http://cloud.roost.local/midpoint/ws/iot/devices",
                              "thingspeak": "http://cloud.roost.local", "ntp": "ntp.roost.local"}
    assert f["ca_cert"].startswith("-----BEGIN CERTIFICATE-----") and f["auth_prefix"] == "Thing "
    st, doc = call(cloud, "GET", "/things/bootstrap/n1", headers={"Authorization": "Thing " + cfg["external_key"]})
    assert st == 200 and doc["thing_id"] == cfg["thing_id"] and doc["thing_key"] == cfg["thing_key"]
    assert json.loads(doc["content"]) == {"agent": {"mqtt": {"url": "mqtts://mqtt.roost.local:8883"}}}
    assert [c["metadata"]["type"] for c in doc["channels"]] == ["control", "data"]
    assert cloud.world_services() == {"cloud.roost.local": ("127.0.0.1", cloud.http_port),
                                      "mqtt.roost.local": ("127.0.0.1", cloud.mqtt_tls_port),
                                      "ntp.roost.local": ("udp", "127.0.0.1", cloud.ntp.port)}


def test_outages_come_back_on_the_same_ports_and_state_persists(tmp_path, things):
    cloud = start_cloud(tmp_path)
    try:
        cfg = cloud.add_device("n1")
        user = cloud.add_user("ann", "pw")
        http_port, mqtt_port = cloud.http_port, cloud.mqtt_tls_port
        cloud.stop_http()
        with pytest.raises(OSError):
            call(cloud, "GET", "/v1/user/nodes")
        cloud.start_http()
        assert cloud.http_port == http_port and call(cloud, "GET", "/v1/user/nodes")[0] == 401
        cloud.broker.stop()
        cloud.broker.start()
        cloud.wait_connected()
        assert cloud.mqtt_tls_port == mqtt_port
        t = things(cloud, cfg)
        assert t.connected() == 0
        assert published_or_dropped(cloud, t, "node/n1/hello") is True      # the cloud's client is back
        t.close()
    finally:
        cloud.stop()
    again = start_cloud(tmp_path)
    try:
        assert (again.http_port, again.mqtt_tls_port) == (http_port, mqtt_port)
        assert again.users.check("ann", "pw") == user and again.device("n1")["thing_id"] == cfg["thing_id"]
        assert again.broker.login(cfg["thing_id"], cfg["thing_key"]) == 0
    finally:
        again.stop()
