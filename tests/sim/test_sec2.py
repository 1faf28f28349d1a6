"""Security 2 (SRP6a + AES-256-GCM, sec_patch_ver 1) end to end on the simulated board: the
factory config holds only the SRP salt and verifier made by tools/prov/factory.py, and the
phone side (tools/prov) proves the password and provisions over BLE and SoftAP (R6, R7)."""
import re

import pytest

from tools.prov import ProvError
from tools.prov.client import Provisioner
from tools.prov.factory import sec2_factory
from tools.sim.world import AccessPoint, World

from tests.sim.phone import ble, softap

PASSWORD = "abcd1234"
SRP = sec2_factory(PASSWORD)          # a fresh salt per test run, as at manufacture
WAITING = re.compile(rb"provisioning open for")


def factory(*transports):
    return {"pop": "", "prov": {"sec": 2, "transports": list(transports), "timeout_s": 600,
                                "softap_key": "", **SRP}}


@pytest.fixture
def home():
    return World(aps=[AccessPoint("home", "right horse battery", rssi=-45)], connect_time=0.2, scan_time=0.05)


@pytest.fixture
def fresh_board(new_board, home):
    def make(*transports):
        board = new_board(world=home, factory=factory(*transports))
        board.wait_for(WAITING, timeout=15)
        return board
    return make


def transport(board, kind):
    return ble(board) if kind == "ble" else softap(board)


@pytest.mark.parametrize("kind", ["ble", "softap"])
def test_phone_provisions_with_the_password(fresh_board, kind):
    board = fresh_board(kind)
    lines = []
    with transport(board, kind) as t:
        p = Provisioner(t, password=PASSWORD)
        result = p.provision("home", "right horse battery", user_id="user-7", secret="k-7",
                             on_progress=lines.append, poll=0.2)
        prov = p.info["prov"]
    assert (prov["sec_ver"], prov["sec_patch_ver"]) == (2, 1)
    assert "no_pop" not in prov["cap"] and "no_sec" not in prov["cap"]
    assert "session established (security 2)" in lines
    assert result.node_id == board.mac.hex().upper() and result.ip.startswith("192.168.1.")
    board.wait_for(b"provisioning done", timeout=10)
    board.wait_for(b"app: online", timeout=10)
    assert board.boots == 1
    log = bytes(board.out)
    assert PASSWORD.encode() not in log and b"right horse battery" not in log
    assert SRP["srp_verifier"].encode() not in log


def test_wrong_password_is_rejected_and_a_fresh_handshake_works(fresh_board):
    board = fresh_board("ble")
    with ble(board) as t:
        with pytest.raises(ProvError, match="wrong PoP"):
            Provisioner(t, password="abcd1235").establish_session()
        board.wait_for(b"wrong password", timeout=5)
        p = Provisioner(t, password=PASSWORD)     # same connection, a new handshake
        p.establish_session()
        assert p.set_user_mapping("u1", "k1") == board.mac.hex().upper()
    with ble(board) as t:             # and a new connection
        assert Provisioner(t, password=PASSWORD).provision("home", "right horse battery", poll=0.2).ip


@pytest.mark.parametrize("kind", ["ble", "softap"])
def test_tampered_request_is_refused_and_the_session_goes_on(fresh_board, kind):
    board = fresh_board(kind)
    with transport(board, kind) as t:
        p = Provisioner(t, password=PASSWORD)
        p.establish_session()
        nonce = p.session._nonce
        request = bytearray(p.session.encrypt(b"\x52\x00"))    # GetStatus, then one bit flipped
        request[-1] ^= 1
        mark = board.mark()
        with pytest.raises(ProvError):
            t.send("prov-config", bytes(request))
        board.wait_for(b"GCM authentication", since=mark, timeout=5)
        # The device did not advance its counter: the client steps back and carries on.
        p.session._nonce = nonce
        assert p.set_user_mapping("u2", "k2") == board.mac.hex().upper()
        result = p.provision("home", "right horse battery", poll=0.2)
    assert result.ip.startswith("192.168.1.")
    assert board.boots == 1


def test_a_replayed_request_is_refused(fresh_board):
    """sec_patch_ver 1: each message has its own nonce, so a captured request does not
    decrypt a second time (with patch 0 it would)."""
    board = fresh_board("ble")
    with ble(board) as t:
        p = Provisioner(t, password=PASSWORD)
        p.establish_session()
        request = p.session.encrypt(b"\x52\x00")
        p.session.decrypt(t.send("prov-config", request))
        with pytest.raises(ProvError):
            t.send("prov-config", request)
        assert p.set_user_mapping("u3", "k3") == board.mac.hex().upper()


def test_roost_deploy_stores_only_the_srp_verifier(new_board, home, tmp_path):
    """Manufacture: `roost deploy --sec2-password` writes salt and verifier, never the password."""
    import subprocess
    import sys
    image = tmp_path / "sec2.img"
    r = subprocess.run([sys.executable, "-m", "tools", "deploy", "--image", str(image), "--mpy",
                        "--sec2-password", "pass phrase 9"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert b"pass phrase 9" not in image.read_bytes()
    board = new_board(world=home, image=image)
    board.wait_for(b"provisioning open", timeout=15)
    with ble(board) as t:
        p = Provisioner(t, password="pass phrase 9")
        assert p.provision("home", "right horse battery", poll=0.2).ip
        assert p.security == 2
