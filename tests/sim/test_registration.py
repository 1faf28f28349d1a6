"""Self-registration end to end (docs/registration.md): a person types the organisation's
registration key at the board's console, the phone gives it Wi-Fi, and the board registers with
the local cloud, receives its ThingSpeak channel in a sealed answer and checks its write key.
Then what happens when the key is wrong, the server is down, or the write key is rotated; and
its readings reaching the channel once each, through server errors and a power cut."""
import re
import time

import pytest

from tools.cloud.local import LocalCloud

from tests.sim.conftest import POP, WIFI, home_world
from tests.sim.phone import ONBOARDING, provision, stored
from tools.console import Console
from tests.sim.terminal import command, type_

SERIAL = "74743827342"
REGISTERED = re.compile(rb"registered: channel (\d+)\r\n")
# The heap free the board logs once ThingSpeak took its write key, read to the line's end.
KEY_ACCEPTED = re.compile(rb"write key accepted by ThingSpeak[^\r\n]*heap free (\d+)\r\n")


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
    def make():
        world = home_world(cloud)
        factory = dict(cloud.registration_factory(), pop=POP, serial=SERIAL,
                       prov={"sec": 1, "transports": [ONBOARDING], "timeout_s": 600})
        board = new_board(world=world, factory=factory)
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
    provision(board, POP, *WIFI)
    channel = registered_channel(board)
    board.wait_for(b"write key accepted by ThingSpeak", timeout=10)
    # The cloud made the channel for this serial in Homer's organisation, and the board's
    # first reading landed in it with the write key.
    reg = cloud.registered(SERIAL)
    write_key = reg["channel"]["write_key"]
    assert reg["channel_id"] == channel and reg["org"] == "The Simpsons"
    [entry] = cloud.channel_entries(channel)
    assert entry["field2"] == "1" and 10 < float(entry["field1"]) < 40
    # The console showed the derivation cost and never a key in clear.
    board.wait_for(re.compile(rb"key derived: 20000 PBKDF2 iterations in \d+ ms"))
    out = bytes(board.out).decode(errors="replace")
    assert homer[9:] not in out and write_key not in out
    assert stored(board, "registration") == {"done": True, "channel": str(channel), "write_key": write_key}


def test_key_typed_while_online_registers_at_once(thermometer, cloud, homer):
    board = thermometer()
    provision(board, POP, *WIFI)
    board.wait_for(b"app: online", timeout=10)
    mark = board.mark()
    set_key(board, homer)
    registered_channel(board, since=mark, timeout=10)
    command(board, "status", "registration: key %s-********, registered, channel" % homer[:8])


def test_unknown_key_then_the_right_one(thermometer, cloud, homer):
    board = thermometer()
    set_key(board, "ZZZZZZZZ-1JWORF43")
    provision(board, POP, *WIFI)
    board.wait_for(b"HTTP 404: server does not know this registration key", timeout=15)
    assert cloud.registered(SERIAL) is None
    mark = board.mark()
    set_key(board, homer)            # a new key wakes the registration: no waiting for the backoff
    registered_channel(board, since=mark, timeout=10)


def test_wrong_secret_half_stores_nothing(thermometer, cloud, homer):
    board = thermometer()
    wrong = homer[:9] + ("A" if homer[9] != "A" else "B") + homer[10:]
    set_key(board, wrong)
    provision(board, POP, *WIFI)
    board.wait_for(b"answer failed authentication (wrong registration key, tampered or replayed)", timeout=15)
    command(board, "status", "registration: key %s-********, not registered yet" % homer[:8])
    assert stored(board, "registration")["done"] is False


def test_server_down_then_back(thermometer, cloud, homer):
    board = thermometer()
    set_key(board, homer)
    cloud.stop_http()
    provision(board, POP, *WIFI)
    board.wait_for(b"no answer from the registration server", timeout=15)
    cloud.start_http()
    registered_channel(board, timeout=30)      # first retries: 2.5-5 s, then 5-10 s


def test_rotated_write_key_makes_it_register_again(thermometer, cloud, homer):
    board = thermometer()
    set_key(board, homer)
    provision(board, POP, *WIFI)
    channel = registered_channel(board)
    board.wait_for(b"write key accepted", timeout=10)
    new_key = cloud.rotate_write_key(channel)
    mark = board.mark()
    board.power_cut()
    # Back online, its status update is refused with the old key: it registers again and gets
    # the same channel with the new key.
    board.wait_for(b"write key rejected (HTTP 400): registering again", since=mark, timeout=20)
    assert registered_channel(board, since=mark) == channel
    # (Its first reading after the reset may share a second with the last one before it:
    # then it goes 1 s later, after the 15 s pause between writes.)
    board.wait_for(b"write key accepted", since=mark, timeout=25)
    assert stored(board, "registration")["write_key"] == new_key


def sample_every_second(board):
    """Set the telemetry interval to 1 s through the console's Python REPL, then restart."""
    with Console("socket://127.0.0.1:%d" % board.console.port) as c:
        c.exec("__import__('firmware.store').store.Store().update('telemetry', interval_s=1)", soft_reset=True)
        c.restart()


def seqs_in(cloud, channel):
    return [int(e["field2"]) for e in cloud.channel_entries(channel) if e["field2"]]


def wait_seqs(cloud, channel, at_least, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = seqs_in(cloud, channel)
        if got and max(got) >= at_least:
            return got
        time.sleep(0.25)
    raise AssertionError("channel %d has seqs %s, waited for %d" % (channel, seqs_in(cloud, channel)[-5:], at_least))


def test_readings_reach_the_channel_once_through_server_errors_and_a_power_cut(thermometer, cloud, homer):
    board = thermometer()
    start = board.mark()
    sample_every_second(board)
    board.wait_for(b"provisioning open for", since=start, timeout=15)
    start = board.mark()        # (the firmware was interrupted: a KeyboardInterrupt before this)
    set_key(board, homer)
    provision(board, POP, *WIFI)
    channel = registered_channel(board)
    first = wait_seqs(cloud, channel, 5, timeout=30)
    # The next writes meet a server error, an answer lost after the server stored the
    # readings, and a server that never answers: the board backs off and sends again.
    for kind in ("500", "lost", "stall"):
        cloud.http_faults.add("/channels/%d/" % channel, kind)
    cloud.http_faults.stall_s = 11
    deadline = time.monotonic() + 90
    while len(cloud.http_faults.met) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [k for _, k in cloud.http_faults.met] == ["500", "lost", "stall"]
    for why in (b"HTTP 500 from ThingSpeak bulk_update", b"connection closed without an answer", b"TimeoutError"):
        board.wait_for(why, timeout=15)         # the stalled request times out after 10 s
    got = wait_seqs(cloud, channel, max(first) + 20, timeout=60)
    # Power cut mid-stream; after the reboot it checks its key and goes on where it was.
    mark = board.mark()
    board.power_cut()
    board.wait_for(b"write key accepted", since=mark, timeout=20)
    got = wait_seqs(cloud, channel, max(got) + 20, timeout=60)
    assert got == list(range(1, max(got) + 1)), "every reading once, in order"
    # No task died, and the sink never ran out of heap (its buffers are made once). (At 100K a
    # first registration attempt may still meet a MemoryError and succeed on the retry.)
    out = bytes(board.out[start:])
    assert b"Traceback" not in out and b"cannot deliver (MemoryError" not in out
