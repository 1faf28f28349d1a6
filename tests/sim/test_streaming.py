"""Readings reach the cloud exactly once (docs/telemetry.md): a provisioned, bootstrapped board
samples, keeps its readings in the flash outbox and streams them as SenML over TLS MQTT; the
cloud keeps each (node, seq) once. Through a broker restart, Wi-Fi loss and power cuts, every
stored reading arrives, in order of seq, and the counts match. The cloud's commands round-trip."""
import json
import random
import re
import time

import pytest

from tests.sim.terminal import PROMPT, type_

# Commands sent before the device subscribed to its control channel are lost (clean session):
# wait for this, not for "MQTT connected", before sending one.
LISTENING = b"listening for commands"


def command(cloud, board, text, timeout=10):
    """Send a control command; the device's answer (the "vs" of its SenML response)."""
    return cloud.command(board.node_id, text, timeout)


@pytest.fixture
def streaming(onboard, cloud):
    """An onboarded board sampling every second."""
    def make(**kw):
        board = onboard(**kw)
        board.wait_for(LISTENING, timeout=20)
        assert command(cloud, board, "interval 1") == "ok"
        return board
    return make


def device_status(cloud, board):
    return json.loads(command(cloud, board, "status"))


def wait_all_acknowledged(cloud, board, timeout=10):
    """Until the device counts no reading pending. The cloud may hold a reading before the device
    has handled its PUBACK: the MQTT reader wakes the sink's publish() and reads on, so a command
    right behind the PUBACK can be answered first."""
    end = time.monotonic() + timeout
    while (status := device_status(cloud, board))["pending"]:
        assert time.monotonic() < end, "still pending after %d s: %s" % (timeout, status)
        time.sleep(0.1)
    return status


def device_last_seq(cloud, board):
    return device_status(cloud, board)["last_seq"]


def assert_exactly_once(cloud, board, upto):
    """The cloud has seqs 1..upto (at least), each once, none missing."""
    readings = cloud.wait_readings(board.node_id, upto, timeout=30)
    seqs = [r["seq"] for r in readings]
    assert seqs == list(range(1, len(seqs) + 1)), "gaps or disorder: %s" % cloud.reading_stats(board.node_id)
    stats = cloud.reading_stats(board.node_id)
    assert stats["gaps"] == 0 and stats["rejected"] == 0
    return readings, stats


def test_steady_streaming(streaming, cloud):
    board = streaming()
    readings = cloud.wait_readings(board.node_id, 8, timeout=20)
    r = readings[0]
    assert r["name"] == "temperature" and r["unit"] == "Cel" and r["value"] == pytest.approx(21.5, abs=0.01)
    assert abs(r["time"] - time.time()) < 60        # network time on the simulated board
    assert_exactly_once(cloud, board, device_last_seq(cloud, board))


def test_broker_restart_loses_nothing(streaming, cloud):
    board = streaming()
    cloud.wait_readings(board.node_id, 3, timeout=15)
    cloud.broker.stop()
    time.sleep(6)                                   # readings pile up in the outbox meanwhile
    cloud.broker.start()
    mark = board.mark()
    board.wait_for(LISTENING, since=mark, timeout=40)
    _, stats = assert_exactly_once(cloud, board, device_last_seq(cloud, board))
    assert stats["count"] >= 9


BOOTED = re.compile(rb"INFO roost: roost \S+ node")


def assert_never_reset(board, since):
    """The board stayed up: no crash, no boot banner, no refusal from the Wi-Fi driver."""
    out = bytes(board.out[since:])
    assert b"application crashed" not in out and not BOOTED.search(out), out.decode(errors="replace")[-2000:]
    assert b"Wifi Internal Error" not in out


def test_wifi_down_then_back(streaming, cloud):
    """A short outage: the port rejoins by itself, and the firmware lets it (no join of its own,
    which the driver would refuse with "Wifi Internal Error" while it is rejoining)."""
    board = streaming()
    cloud.wait_readings(board.node_id, 3, timeout=15)
    start = board.mark()
    ap = board.world.ap("home")
    ap.up = False
    board.wait_for(b"Wi-Fi lost; waiting for the driver", timeout=10)
    time.sleep(5)
    ap.up = True
    board.wait_for(b"Wi-Fi back", since=start, timeout=20)
    board.wait_for(LISTENING, since=start, timeout=60)
    assert_exactly_once(cloud, board, device_last_seq(cloud, board))
    assert_never_reset(board, start)


def test_a_long_wifi_outage_never_resets_the_board(streaming, cloud):
    """Past the port's own attempts the firmware joins again itself: it stops the driver's
    attempt first, and keeps trying with backoff until the access point is back."""
    board = streaming()
    cloud.wait_readings(board.node_id, 2, timeout=15)
    start = board.mark()
    ap = board.world.ap("home")
    ap.up = False
    board.wait_for(b"Wi-Fi still lost", timeout=30)
    board.wait_for(b"no known network reachable", since=start, timeout=60)
    ap.up = True
    board.wait_for(LISTENING, since=start, timeout=90)
    assert_exactly_once(cloud, board, device_last_seq(cloud, board))
    assert_never_reset(board, start)


def test_power_cuts_while_streaming(streaming, cloud):
    board = streaming()
    rng = random.Random(7)
    for _ in range(4):
        cloud.wait_readings(board.node_id, 1, timeout=15)
        time.sleep(rng.uniform(0.5, 4.0))
        mark = board.mark()
        board.power_cut()
        board.wait_for(LISTENING, since=mark, timeout=40)
    # Readings still in the RAM batch at a cut were never stored: their seqs are reused, so
    # the cloud must still see 1..last without a gap or a duplicate stored.
    _, stats = assert_exactly_once(cloud, board, device_last_seq(cloud, board))
    assert stats["count"] >= 5


def test_commands_round_trip(streaming, cloud):
    board = streaming()
    assert command(cloud, board, "stream off") == "ok"
    time.sleep(1.5)
    before = device_last_seq(cloud, board)
    time.sleep(3)
    assert device_last_seq(cloud, board) == before         # no sampling while off
    assert command(cloud, board, "stream on") == "ok"
    assert command(cloud, board, "interval 0") == "error: interval must be 1..86400 s"
    assert command(cloud, board, "self-destruct") == "error: unknown command self-destruct"
    status = device_status(cloud, board)
    assert status["enabled"] is True and status["interval_s"] == 1 and status["dropped"] == 0
    # A malformed request gets an error answer; the device keeps serving.
    channel = [c for c in cloud.device(board.node_id)["channels"] if c["metadata"]["type"] == "control"][0]["id"]
    mark = len(cloud.messages("channels/+/messages/res"))
    cloud.publish("channels/%s/messages/req" % channel, b"{not senml", qos=1)
    end = time.monotonic() + 10
    while len(cloud.messages("channels/+/messages/res")) == mark and time.monotonic() < end:
        time.sleep(0.05)
    reply = json.loads(cloud.messages("channels/+/messages/res")[mark][1])[0]
    assert reply["vs"] == "error: malformed request"
    assert device_last_seq(cloud, board) > before
    mark = board.mark()
    assert command(cloud, board, "reboot") == "ok"
    board.wait_for(b"reset cause", since=mark, timeout=15)
    board.wait_for(LISTENING, since=mark, timeout=30)
    assert_exactly_once(cloud, board, device_last_seq(cloud, board))


def test_a_registration_key_adds_thingspeak_and_both_clouds_get_every_reading(streaming, cloud):
    # A bootstrapped board streaming over MQTT; then somebody types an organisation's key at
    # its console: it registers, and from then on its readings go to its ThingSpeak channel
    # too, each once, while MQTT goes on undisturbed.
    board = streaming()
    cloud.wait_readings(board.node_id, 3, timeout=15)
    key = cloud.add_org("The Simpsons")["registration_key"]
    type_(board, "\r", PROMPT)
    type_(board, "key\r", "registration key: ")
    type_(board, key + "\r", "registration key stored")
    channel = int(board.wait_for(re.compile(rb"registered: channel (\d+)\r\n"), timeout=20).group(1))
    board.wait_for(b"write key accepted by ThingSpeak", timeout=30)
    time.sleep(16)                              # one more write, 15 s after the first
    last = device_last_seq(cloud, board)
    assert_exactly_once(cloud, board, last)
    end = time.monotonic() + 40
    while time.monotonic() < end:
        seqs = [int(e["field2"]) for e in cloud.channel_entries(channel)]
        if seqs and seqs[-1] >= last:
            break
        time.sleep(0.5)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and seqs[-1] >= last, seqs
    assert b"MemoryError" not in bytes(board.out)
