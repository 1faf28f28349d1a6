"""Fixtures for simulated-board tests: boards that run a given program from a fresh flash image."""
import textwrap
import time

import pytest

from tools.cloud.local import LocalCloud
from tools.deploy import files_to_image
from tools.sim.board import Board
from tools.sim.world import AccessPoint, World

from tests.conftest import stop_and_show
from tests.sim.phone import ONBOARDING, provision

POP = "abcd1234"
WIFI = ("home", "right horse battery")
PROV = {"pop": POP, "prov": {"sec": 1, "transports": [ONBOARDING], "timeout_s": 600}}


def home_world(cloud):
    """The room every test board is in: the home access point (WIFI), and the local cloud's
    services on the network behind it."""
    return World(aps=[AccessPoint(*WIFI, rssi=-45)], connect_time=0.1, scan_time=0.05,
                 services=cloud.world_services())


def write_image(image, files, staging):
    """Write `files` ({path on the board: str or bytes}) into a flash image, with the same
    LittleFS (chip/imagetool.py under the unix port) the chip mounts; the image is created
    blank (erased) first if it does not exist."""
    for rel, content in files.items():
        p = staging / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            p.write_text(textwrap.dedent(content))
        else:
            p.write_bytes(content)
    files_to_image(image, staging)


@pytest.fixture
def board(tmp_path, request):
    """Factory: board(main="...", files={...}, **Board kwargs) -> a started Board whose flash
    holds main.py (and `files`). Boards are stopped at teardown; a failed test prints the
    tail of each board's console."""
    boards = []

    def make(main=None, files=None, start=True, **kw):
        n = len(boards)
        image = tmp_path / ("flash%d.img" % n)
        files = dict(files or {})
        if main is not None:
            files["main.py"] = main
        if files:
            write_image(image, files, tmp_path / ("staging%d" % n))
        b = Board(image, **kw)
        boards.append(b)
        if start:
            b.start()
        return b

    yield make
    stop_and_show(boards, request)


@pytest.fixture
def cloud(tmp_path):
    c = LocalCloud(tmp_path / "cloud", mapping_timeout=3.0)
    c.start()
    yield c
    c.stop()


@pytest.fixture
def owner(cloud):
    """The phone's logged-in user: (user_id, token)."""
    uid = cloud.add_user("alice@example.com", "pw-alice")
    return uid, cloud.login("alice@example.com", "pw-alice")


@pytest.fixture
def onboard(new_board, cloud):
    """Power on a board registered in the cloud and provision it (phone.ONBOARDING); returns the board.
    add_device=False: the cloud does not know it (yet). world_services: host names the board's
    network resolves elsewhere than to the local cloud (a hostile broker, say)."""
    n = [0]

    def make(secure=False, user=None, secret="s3cret", claim=None, add_device=True, active=True,
             world_services=None, **kw):
        n[0] += 1
        mac = bytes.fromhex("24a1600000%02x" % n[0])
        node_id = mac.hex().upper()
        cloud.add_device(node_id, active=active)
        world = home_world(cloud)
        world.services.update(world_services or {})
        factory = dict(PROV, **cloud.factory_for(node_id, secure=secure))
        if not add_device:
            cloud.remove_device(node_id)
        board = new_board(world=world, factory=factory, mac=mac, **kw)
        result = provision(board, POP, *WIFI, user_id=user, secret=secret, claim=claim)
        board.node_id = node_id
        board.external_key = factory["external_key"]
        assert result.node_id in (None, node_id)
        board.connected_at = time.monotonic()
        return board
    return make
