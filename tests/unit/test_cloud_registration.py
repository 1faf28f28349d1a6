"""midPoint-style self-registration (docs/registration.md) over real HTTP: channels per serial,
plain and sealed answers, rotation, every refusal, concurrency; then LocalCloud's wiring (admin
API, factory endpoints) and `roost cloud org add` / `channel rotate`."""
import json
import logging
import os
import re
import threading

import pytest

from cloud_helpers import Services, call, raw_call, start_cloud
from tools import cli
from tools.cloud import seal
from tools.cloud.db import Conflict

KEY = "HQ481047-1JWORF43"
NONCE = "000102030405060708090a0b0c0d0e0f"
PATH = "/midpoint/ws/iot/devices/"


@pytest.fixture
def svc():
    s = Services(rate_limit_s=0)
    yield s
    s.close()


def register(svc, serial, key=KEY[:8], nonce=None):
    """(status, body text, content type)."""
    query = "?key=" + key + ("&nonce=" + nonce if nonce else "")
    st, hdrs, body = svc.call("GET", PATH + serial + query, headers={"Accept": "text/plain"})
    return st, body, hdrs["Content-Type"]


def registered(svc, serial, nonce=NONCE, key=KEY):
    """{"channel", "write_key"} from a sealed registration."""
    st, body, _ = register(svc, serial, key[:8], nonce)
    assert st == 200, body
    return seal.parse_answer(seal.open_sealed(body, key, serial, nonce).decode())


def test_a_new_serial_gets_a_channel_then_the_same_one(svc):
    org = svc.reg.add_org("Acme", KEY)
    st, body, ctype = register(svc, "74743827342")                     # midPoint's original: no nonce
    assert st == 200 and ctype.startswith("text/plain")
    plain = seal.parse_answer(body)
    assert body == "channel=%d\nwriteKey=%s\n" % (plain["channel"], plain["write_key"])
    ch = svc.ts.channel(plain["channel"])
    assert ch["name"] == "Thermometer 74743827342" and ch["fields"] == {"field1": "temperature", "field2": "seq"}
    assert ch["write_key"] == plain["write_key"] and ch["owner"] == str(org["id"])
    assert registered(svc, "74743827342") == plain                         # sealed, same channel
    assert registered(svc, "74743827342", nonce=NONCE.upper()) == plain    # the AAD has it in lower case
    assert svc.reg.device("74743827342") == {"serial": "74743827342", "org_id": org["id"], "org": "Acme",
                                             "channel_id": plain["channel"],
                                             "created": svc.reg.device("74743827342")["created"]}
    other = registered(svc, "24A160ABCDEF")
    assert other["channel"] == plain["channel"] + 1 and other["write_key"] != plain["write_key"]
    assert svc.reg.device("nope") is None and svc.reg.registered("nope") is None
    assert svc.reg.registered("24A160ABCDEF")["channel"]["write_key"] == other["write_key"]


def test_sealed_answer_layout_and_the_derived_key_cache(svc):
    svc.reg.add_org("Acme", KEY)
    st, body, _ = register(svc, "s1", nonce=NONCE)
    assert re.fullmatch(r"v=1\nkdf=pbkdf2-sha256\niter=10000\niv=[0-9a-f]{24}\nsealed=[0-9a-f]{116}\n", body)
    before = svc.reg._derive.cache_info()
    register(svc, "s1", nonce="ff" * 16)
    after = svc.reg._derive.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)     # no second PBKDF2 for s1
    with pytest.raises(ValueError, match="failed authentication"):            # the answer was for NONCE
        seal.open_sealed(body, KEY, "s1", "ff" * 16)


def test_after_a_rotation_the_device_gets_the_new_key(svc):
    svc.reg.add_org("Acme", KEY)
    first = registered(svc, "s1")
    key = lambda k: svc.call("GET", "/update?field1=1&api_key=" + k)[0]    # noqa: E731
    assert key(first["write_key"]) == 200
    new = svc.ts.rotate_write_key(first["channel"])
    assert key(first["write_key"]) == 400                                   # what makes the device register again
    again = registered(svc, "s1")
    assert again == {"channel": first["channel"], "write_key": new}
    assert key(new) == 200


def test_refusals(svc):
    svc.reg.add_org("Acme", KEY)
    svc.reg.add_org("Other", "ZZZZZZZZ-00000000")
    registered(svc, "taken", key="ZZZZZZZZ-00000000")
    cases = [
        (("s1", "AAAAAAAA"), 404, "no organisation has this registration key"),
        (("taken", KEY[:8]), 409, "serial taken belongs to another organisation"),
        (("x" * 65, KEY[:8]), 400, "serial must be 1 to 64 of [A-Za-z0-9_.-]"),
        (("bad%20serial", KEY[:8]), 400, "serial"),
        (("", KEY[:8]), 400, "serial"),
        (("s1", "hq481047"), 400, "key must be the first 8 characters"),
        (("s1", KEY[:7]), 400, "key must be"),
        (("s1", KEY), 400, "key must be"),
        (("s1", ""), 400, "key must be"),
        (("s1", KEY[:8], "0" * 31), 400, "nonce must be 32 hex digits"),
        (("s1", KEY[:8], "g" * 32), 400, "nonce"),
    ]
    for args, status, message in cases:
        st, body, ctype = register(svc, *args)
        assert (st, ctype) == (status, "text/plain; charset=utf-8") and body.startswith(message), (args, body)
        assert body.endswith("\n") and body.count("\n") == 1
    assert svc.call("GET", PATH + "s1")[:1] == (400,)                     # no key at all
    assert svc.reg.device("s1") is None and len(svc.db.query("SELECT id FROM ts_channels")) == 1


def test_ambiguous_lookup_key_is_500(svc):
    svc.reg.add_org("One", "ABCDEFGH-11111111")
    svc.reg.add_org("Two", "ABCDEFGH-22222222")                           # same first half: allowed to exist
    assert register(svc, "s1", "ABCDEFGH")[:2] == (500, "registration key is ambiguous (more than one organisation)\n")
    assert svc.reg.device("s1") is None


def test_concurrent_requests_for_one_serial_make_one_channel(svc):
    svc.reg.add_org("Acme", KEY)
    answers, errors = [], []

    def go():
        try:
            answers.append(registered(svc, "race", nonce=os.urandom(16).hex()))
        except Exception as e:     # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors and len(answers) == 8 and all(a == answers[0] for a in answers)
    assert len(svc.db.query("SELECT id FROM ts_channels")) == 1


def test_orgs_from_python(svc):
    org = svc.reg.add_org("Acme")
    assert re.fullmatch(r"[A-Z0-9]{8}-[A-Z0-9]{8}", org["registration_key"])
    assert org["lookup_key"] == org["registration_key"][:8] and re.fullmatch(r"[A-Z0-9]{16}", org["thingspeak_api_key"])
    assert svc.reg.orgs() == [org]
    for bad in ("hq481047-1jworf43", "HQ4810471JWORF43", "HQ481047-1JWORF4", 5):
        with pytest.raises(ValueError):
            svc.reg.add_org("x", bad)
    with pytest.raises(ValueError):
        svc.reg.add_org(" ")
    svc.reg.add_org("Acme 2", KEY)
    with pytest.raises(Conflict):
        svc.reg.add_org("Acme 3", KEY)


def test_logs_name_the_serial_never_a_key(svc, caplog):
    svc.reg.add_org("Acme", KEY)
    with caplog.at_level(logging.INFO, logger="roost.cloud"):
        reg = registered(svc, "s1")
        register(svc, "s1", "AAAAAAAA")
    text = caplog.text
    assert "serial s1 registered in organisation" in text and "refused" in text
    for secret in (KEY, KEY[:8], KEY[9:], reg["write_key"]):
        assert secret not in text


# --- wired into LocalCloud: admin API, factory endpoints, the CLI -------------------------------

@pytest.fixture
def cloud(tmp_path):
    c = start_cloud(tmp_path, registration_iterations=10000, thingspeak_rate_limit=0)
    yield c
    c.stop()


def test_local_cloud_admin_api_and_endpoints(cloud):
    admin = cloud.admin_token
    assert call(cloud, "POST", "/admin/orgs", {"name": "Acme"})[0] == 401
    st, org = call(cloud, "POST", "/admin/orgs", {"name": "Acme", "registration_key": KEY}, token=admin)
    assert st == 201 and org == {"id": org["id"], "name": "Acme", "registration_key": KEY}
    assert call(cloud, "POST", "/admin/orgs", {"name": "Again", "registration_key": KEY}, token=admin)[0] == 409
    assert call(cloud, "POST", "/admin/orgs", {"name": "Bad", "registration_key": "nope"}, token=admin)[0] == 400
    generated = cloud.add_org("Beta")["registration_key"]
    st, orgs = call(cloud, "GET", "/admin/orgs", token=admin)
    assert st == 200 and [o["registration_key"] for o in orgs["orgs"]] == [KEY, generated]

    st, _, body = raw_call(cloud.http_url, "GET", PATH + "74743827342?key=HQ481047&nonce=" + NONCE)
    answer = seal.parse_answer(seal.open_sealed(body, KEY, "74743827342", NONCE).decode())
    st, reg = call(cloud, "GET", "/admin/registrations/74743827342", token=admin)
    assert st == 200 and reg["org"] == "Acme" and reg["channel"]["write_key"] == answer["write_key"]
    assert reg == json.loads(json.dumps(cloud.registered("74743827342")))
    assert call(cloud, "GET", "/admin/registrations/nope", token=admin)[0] == 404

    st, rotated = call(cloud, "POST", "/admin/channels/%d/rotate" % answer["channel"], token=admin)
    assert st == 200 and rotated["write_key"] != answer["write_key"]
    assert cloud.registered("74743827342")["channel"]["write_key"] == rotated["write_key"]
    assert call(cloud, "POST", "/admin/channels/42/rotate", token=admin)[0] == 404
    assert call(cloud, "POST", "/update?field1=21.5&api_key=" + rotated["write_key"]) == (200, 1)
    assert [e["field1"] for e in cloud.channel_entries(answer["channel"])] == ["21.5"]
    assert cloud.rotate_write_key(answer["channel"]) != rotated["write_key"]

    assert cloud.registration_factory() == {"endpoints": {
        "bootstrap": "", "mqtt": "", "registration": "http://cloud.roost.local/midpoint/ws/iot/devices",
        "thingspeak": "http://cloud.roost.local", "ntp": "ntp.roost.local"}}
    cloud.http_advertised_port = 8080
    assert cloud.endpoints()["registration"] == "http://cloud.roost.local:8080/midpoint/ws/iot/devices"


def test_cli_org_add_and_channel_rotate(cloud, capsys):
    d = str(cloud.dir)
    cli.main(["cloud", "org", "add", "Acme", "--key", KEY, "--dir", d])
    assert capsys.readouterr().out == KEY + "\n"
    cli.main(["cloud", "org", "add", "Beta", "--dir", d])
    generated = capsys.readouterr().out.strip()
    assert re.fullmatch(r"[A-Z0-9]{8}-[A-Z0-9]{8}", generated) and cloud.registration.orgs()[1]["name"] == "Beta"
    with pytest.raises(SystemExit):
        cli.main(["cloud", "org", "add", "Again", "--key", KEY, "--dir", d])
    assert "HTTP 409" in capsys.readouterr().err
    channel = cloud.thingspeak.create_channel("c")
    cli.main(["cloud", "channel", "rotate", str(channel["id"]), "--dir", d])
    new = capsys.readouterr().out.strip()
    assert new == cloud.thingspeak.channel(channel["id"])["write_key"] != channel["write_key"]
    with pytest.raises(SystemExit):
        cli.main(["cloud", "channel", "rotate", "7", "--dir", d])
    assert "HTTP 404" in capsys.readouterr().err
