"""Self-registration end to end (docs/registration.md): a person types the organisation's
registration key at the board's console, the phone gives it Wi-Fi, and the board registers with
the local cloud, receives its ThingSpeak channel in a sealed answer and checks its write key.
Then what happens when the key is wrong, the server is down, or the write key is rotated."""
import re

import pytest

from tools.cloud.local import LocalCloud
from tools.sim.world import AccessPoint, World

from tests.sim.phone import provision_ble, stored
from tests.sim.terminal import command, type_

POP = "abcd1234"
WIFI = ("home", "right horse battery")
SERIAL = "74743827342"
REGISTERED = re.compile(rb"registered: channel (\d+)")


@pytest.fixture
def cloud(tmp_path):
    c = LocalCloud(tmp_path / "cloud", thingspeak_rate_limit=0)
    c.start_http()          # registration and ThingSpeak are plain HTTP: no broker needed
    yield c
    c.stop_http()


@pytest.fixture
def homer(cloud):
    """The customer's organisation; its registration key, as the cloud shows it to him."""
    return cloud.add_org("The Simpsons")["registration_key"]


@pytest.fixture
def thermometer(new_board, cloud):
    """A board out of the box whose factory config points at the cloud; not on Wi-Fi yet."""
    def make(heap="100K"):
        world = World(aps=[AccessPoint(*WIFI, rssi=-45)], connect_time=0.1, scan_time=0.05,
                      services=cloud.world_services())
        factory = dict(cloud.registration_factory(), pop=POP, serial=SERIAL,
                       prov={"sec": 1, "transports": ["ble"], "timeout_s": 600})
        board = new_board(world=world, factory=factory, heap=heap)
        board.wait_for(b"provisioning open for", timeout=15)
        return board
    return make


def set_key(board, key):
    type_(board, "key\r", "registration key: ")
    return type_(board, key + "\r", re.compile(rb"registration key (stored|refused)[^\r\n]*\r\n"))


def registered_channel(board, since=0, timeout=20):
    return int(board.wait_for(REGISTERED, since=since, timeout=timeout).group(1))


def test_key_at_the_terminal_then_wifi_then_registered(thermometer, cloud, homer):
    board = thermometer()
    assert "registration key stored: %s-********" % homer[:8] in set_key(board, homer)
    provision_ble(board, POP, *WIFI)
    channel = registered_channel(board)
    board.wait_for(b"write key accepted by ThingSpeak", timeout=10)
    # The cloud made the channel for this serial in Homer's organisation, and the status
    # update the board sent with its write key landed in it.
    reg = cloud.registered(SERIAL)
    write_key = reg["channel"]["write_key"]
    assert reg["channel_id"] == channel and reg["org"] == "The Simpsons"
    assert [e["status"] for e in cloud.channel_entries(channel)] == ["online"]
    # The console showed the derivation cost and never a key in clear.
    board.wait_for(re.compile(rb"key derived: 20000 PBKDF2 iterations in \d+ ms"))
    out = bytes(board.out).decode(errors="replace")
    assert homer[9:] not in out and write_key not in out
    assert stored(board, "registration") == {"done": True, "channel": str(channel), "write_key": write_key}


def test_key_typed_while_online_registers_at_once(thermometer, cloud, homer):
    board = thermometer()
    provision_ble(board, POP, *WIFI)
    board.wait_for(b"app: online", timeout=10)
    mark = board.mark()
    set_key(board, homer)
    registered_channel(board, since=mark, timeout=10)
    command(board, "status", "registration: key %s-********, registered, channel" % homer[:8])


def test_unknown_key_then_the_right_one(thermometer, cloud, homer):
    board = thermometer()
    set_key(board, "ZZZZZZZZ-1JWORF43")
    provision_ble(board, POP, *WIFI)
    board.wait_for(b"HTTP 404: server does not know this registration key", timeout=15)
    assert cloud.registered(SERIAL) is None
    mark = board.mark()
    set_key(board, homer)            # a new key wakes the registration: no waiting for the backoff
    registered_channel(board, since=mark, timeout=10)


def test_wrong_secret_half_stores_nothing(thermometer, cloud, homer):
    board = thermometer()
    wrong = homer[:9] + ("A" if homer[9] != "A" else "B") + homer[10:]
    set_key(board, wrong)
    provision_ble(board, POP, *WIFI)
    board.wait_for(b"answer failed authentication (wrong registration key, tampered or replayed)", timeout=15)
    command(board, "status", "registration: key %s-********, not registered yet" % homer[:8])
    assert stored(board, "registration")["done"] is False


def test_server_down_then_back(thermometer, cloud, homer):
    board = thermometer()
    set_key(board, homer)
    cloud.stop_http()
    provision_ble(board, POP, *WIFI)
    board.wait_for(b"no answer from the registration server", timeout=15)
    cloud.start_http()
    registered_channel(board, timeout=30)      # first retries: 2.5-5 s, then 5-10 s


def test_rotated_write_key_makes_it_register_again(thermometer, cloud, homer):
    board = thermometer()
    set_key(board, homer)
    provision_ble(board, POP, *WIFI)
    channel = registered_channel(board)
    board.wait_for(b"write key accepted", timeout=10)
    new_key = cloud.rotate_write_key(channel)
    mark = board.mark()
    board.power_cut()
    # Back online, its status update is refused with the old key: it registers again and gets
    # the same channel with the new key.
    board.wait_for(b"write key rejected (HTTP 400): registering again", since=mark, timeout=20)
    assert registered_channel(board, since=mark) == channel
    board.wait_for(b"write key accepted", since=mark, timeout=10)
    assert stored(board, "registration")["write_key"] == new_key
