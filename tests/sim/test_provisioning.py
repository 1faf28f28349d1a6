"""A board out of the box, provisioned by the phone over BLE or SoftAP with Espressif's protocol:
the phone sends the user ID, a secret and Wi-Fi credentials, the board answers with its node ID
and joins the network."""
import http.client
import re
import time

import pytest

from tools.prov.client import Provisioner, WifiFailed
from tools.prov import ProvError
from tools.sim.world import AccessPoint, World

from tests.sim.phone import advertisements, ble, softap, stored

POP = "abcd1234"


def factory(*transports, sec=1):
    return {"pop": POP, "prov": {"sec": sec, "transports": list(transports), "timeout_s": 600,
                                 "softap_key": "", "srp_salt": "", "srp_verifier": ""}}


FACTORY = factory("ble", "softap")
WAITING = re.compile(rb"provisioning open for")


@pytest.fixture
def home():
    return World(aps=[AccessPoint("home", "right horse battery", rssi=-45),
                      AccessPoint("neighbour", "xyz", rssi=-80)], connect_time=0.2, scan_time=0.05)


@pytest.fixture
def fresh_board(new_board, home):
    """Power on a board out of the box and wait until it waits for a phone."""
    def make(factory=FACTORY, **kw):
        board = new_board(world=home, factory=factory, **kw)
        board.wait_for(WAITING, timeout=15)
        return board
    return make


@pytest.mark.parametrize("transport", ["ble", "softap"])
def test_phone_provisions_a_new_board_and_gets_its_node_id(fresh_board, transport):
    board = fresh_board(factory(transport))
    t = ble(board) if transport == "ble" else softap(board)
    lines = []
    with t:
        p = Provisioner(t, pop=POP)
        result = p.provision("home", "right horse battery", user_id="user-42", secret="s3cret-key",
                             on_progress=lines.append, poll=0.2)
    assert result.node_id == board.mac.hex().upper()
    assert result.ip.startswith("192.168.1.")
    assert "session established (security 1)" in lines
    board.wait_for(b"provisioning done", timeout=10)
    board.wait_for(b"app: online", timeout=10)   # provisioning code unloaded: heap to spare again
    assert board.boots == 1
    log = bytes(board.out)     # no secret reached the console log
    assert b"right horse battery" not in log and b"s3cret-key" not in log and POP.encode() not in log
    user = stored(board, "user")
    assert (user["user_id"], user["secret"], user["status"]) == ("user-42", "s3cret-key", "pending")
    assert stored(board, "wifi")["networks"] == [{"ssid": "home", "password": "right horse battery"}]


def test_wrong_passphrase_then_corrected_without_a_reboot(fresh_board):
    board = fresh_board()
    with ble(board) as t:
        p = Provisioner(t, pop=POP)
        with pytest.raises(WifiFailed) as failed:
            p.provision("home", "wrong horse", poll=0.2)
        assert failed.value.result.reason == "auth"
        # provision() sent prov-ctrl Reset after the failure: the board takes new credentials.
        result = p.provision("home", "right horse battery", poll=0.2)
    assert result.ip.startswith("192.168.1.")
    board.wait_for(b"app: online")
    assert board.boots == 1
    assert stored(board, "wifi")["networks"] == [{"ssid": "home", "password": "right horse battery"}]


def test_unknown_network_is_reported_as_not_found(fresh_board):
    board = fresh_board()
    with softap(board) as t:
        with pytest.raises(WifiFailed) as failed:
            Provisioner(t, pop=POP).provision("nowhere", "whatever1", poll=0.2)
    assert failed.value.result.reason == "not_found"


def test_scan_lists_networks_strongest_first(fresh_board):
    board = fresh_board()
    with ble(board) as t:
        p = Provisioner(t, pop=POP)
        p.establish_session()
        found = p.scan_wifi()
    assert [e.ssid for e in found][:2] == ["home", "neighbour"]
    assert found[0].rssi == -45 and found[0].auth == "WPA2_PSK"


def test_wrong_pop_is_rejected_and_a_fresh_handshake_works(fresh_board):
    board = fresh_board()
    with ble(board) as t:
        with pytest.raises(ProvError, match="wrong PoP"):
            Provisioner(t, pop="not-the-pop").establish_session()
        p = Provisioner(t, pop=POP)     # same connection: a new handshake (R1)
        p.establish_session()
        assert p.set_user_mapping("u1", "k1") == board.mac.hex().upper()


def test_pop_guessing_is_limited(fresh_board):
    board = fresh_board()
    with softap(board) as t:
        for _ in range(5):
            with pytest.raises(ProvError):
                Provisioner(t, pop="guess").establish_session()
    with softap(board) as t:
        with pytest.raises(ProvError):       # locked out for a while, even with the right PoP
            Provisioner(t, pop=POP).establish_session()
    board.wait_for(b"too many failed attempts")


def test_credentials_survive_a_power_cut_right_after_apply(fresh_board):
    board = fresh_board()
    with ble(board) as t:
        p = Provisioner(t, pop=POP)
        p.establish_session()
        p.set_wifi("home", "right horse battery")
        p.apply()
        mark = board.mark()
        board.power_cut()
    board.wait_for(b"connected to 'home'", since=mark, timeout=15)


def test_security_0_only_when_the_factory_allows_it(fresh_board):
    board = fresh_board()
    with ble(board) as t:
        with pytest.raises(ProvError, match="security 1"):
            Provisioner(t, security=0).version()
    dev = fresh_board(factory("ble", sec=0))
    with ble(dev) as t:
        p = Provisioner(t)
        assert "no_sec" in p.capabilities()
        assert p.provision("home", "right horse battery", poll=0.2).ip


def test_claim_code_is_stored(fresh_board):
    board = fresh_board(factory("softap"))
    with softap(board) as t:
        p = Provisioner(t, pop=POP)
        p.establish_session()
        assert p.send_claim_code("c" * 63) == board.mac.hex().upper()
        with pytest.raises(ProvError):
            p.send_claim_code("c" * 64)
    assert stored(board, "claim") == {"code": "c" * 63, "claimed": False}


def raw_http(board, endpoint, body, cookie=None):
    conn = http.client.HTTPConnection("127.0.0.1", board.softap_port, timeout=5)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if cookie:
        headers["Cookie"] = cookie
    conn.request("POST", "/" + endpoint, body=body, headers=headers)
    try:
        r = conn.getresponse()
        return r.status, r.read(), r.getheader("Set-Cookie")
    except (http.client.HTTPException, ConnectionError):
        return None, b"", None          # the device closed the socket: a refused request
    finally:
        conn.close()


def test_bad_frames_are_refused_and_the_board_keeps_serving(fresh_board):
    board = fresh_board()
    softap(board)
    assert raw_http(board, "prov-session", b"\xff\xff\xff")[0] is None          # not protobuf
    assert raw_http(board, "prov-session", b"\x10\x01\x5a\x25\xa2\x01")[0] is None   # truncated
    assert raw_http(board, "prov-config", b"\x08\x02")[0] is None               # before a handshake
    assert raw_http(board, "no-such-endpoint", b"x")[0] == 404
    assert raw_http(board, "prov-config", b"x" * 5000)[0] is None               # over 4096 bytes
    with ble(board) as t:
        t.write("prov-session", b"\x08" * 40)                                  # garbage over BLE
        with pytest.raises(Exception):
            t.read("prov-session")
        p = Provisioner(t, pop=POP)
        p.establish_session()
        # A replayed request: security 1 has no MAC, so the device decrypts it with the next
        # keystream bytes. Whatever it makes of them, the stream is then out of step and the
        # session is dead for both sides: the next real request is refused.
        req = p.session.encrypt(b"\x52\x00")
        p.session.decrypt(t.send("prov-config", req))
        t.write("prov-config", req)
        with pytest.raises(ProvError):
            p.set_wifi("home", "right horse battery")
    # ... and the device still provisions.
    with ble(board) as t:
        assert Provisioner(t, pop=POP).provision("home", "right horse battery", poll=0.2).ip
    assert board.boots == 1


def test_firmware_in_a_romfs_partition_also_provisions(new_board, home, tmp_path):
    """Boards whose partition table has a romfs partition run the code from flash (~30% less heap)."""
    from tools import deploy
    image = tmp_path / "rom.img"
    deploy.to_image(image, romfs=True, factory=FACTORY, log=lambda line: None)
    board = new_board(world=home, image=image)
    board.wait_for(WAITING, timeout=15)
    with ble(board) as t:
        assert Provisioner(t, pop=POP).provision("home", "right horse battery", poll=0.2).ip


def test_board_rejoins_the_strongest_known_network_at_boot(fresh_board, home):
    board = fresh_board(factory("ble"))
    with ble(board) as t:
        Provisioner(t, pop=POP).provision("home", "right horse battery", poll=0.2)
    board.wait_for(b"app: online")
    # The user moves the board: holding BOOT for 3 s reopens provisioning, networks kept.
    office = home.add_ap("office", "open sesame 42", rssi=-70)
    mark = board.mark()
    home.button_pressed = True
    time.sleep(3.4)
    home.button_pressed = False
    board.wait_for(WAITING, since=mark)
    with ble(board) as t:
        Provisioner(t, pop=POP).provision("office", "open sesame 42", poll=0.2)
    board.wait_for(b"app: online", since=mark)
    # Both networks are known; after a power cut the stronger one wins ...
    office.rssi = -40
    mark = board.mark()
    board.power_cut()
    board.wait_for(b"connected to 'office'", since=mark, timeout=15)
    # ... and when it is gone, the board falls back to the other.
    office.up = False
    mark = board.mark()
    board.power_cut()
    board.wait_for(b"connected to 'home'", since=mark, timeout=15)


def test_provisioning_window_times_out_and_stops_advertising(fresh_board):
    f = factory("ble")
    f["prov"]["timeout_s"] = 2
    board = fresh_board(f)
    board.wait_for(b"provisioning window timed out", timeout=10)
    assert board.ble_address not in advertisements(board, timeout=0.5)


def test_roost_provision_cli_reaches_a_board_in_another_process(tmp_path, firmware_image, home):
    """`roost board` in one process, `roost provision --transport ble --board sim://HOST:PORT` in
    another: a phone (bleak on the Bumble backend) joins the board's air over TCP."""
    import json
    import shutil
    import subprocess
    import sys
    from tools import deploy
    flash = tmp_path / "b.img"
    shutil.copyfile(firmware_image, flash)
    deploy.factory_to_image(flash, factory("ble"), log=lambda line: None)
    world = tmp_path / "world.json"
    world.write_text(json.dumps({"aps": [{"ssid": "home", "password": "right horse battery"}],
                                 "connect_time": 0.2}))
    board = subprocess.Popen([sys.executable, "-m", "tools", "board", "--flash", str(flash),
                              "--world", str(world), "--mac", "240ac4123456"], stdout=subprocess.PIPE, text=True)
    try:
        air = json.loads(board.stdout.readline())["ble_air"]
        r = subprocess.run([sys.executable, "-m", "tools", "provision", "--transport", "ble", "--board", "sim://" + air,
                            "--pop", POP, "--ssid", "home", "--passphrase", "right horse battery",
                            "--user-id", "u-1"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "node ID: 240AC4123456" in r.stdout
        assert "Wi-Fi: connected" in r.stdout
        bad = subprocess.run([sys.executable, "-m", "tools", "provision", "--transport", "ble", "--board", "sim://" + air,
                              "--pop", "wrong", "--ssid", "x", "--passphrase", "y"],
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 1 and bad.stderr.count("\n") == 1    # one clear line
    finally:
        board.terminate()
        board.wait(10)
