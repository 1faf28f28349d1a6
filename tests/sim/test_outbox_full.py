"""The outbox full (docs/telemetry.md, "The outbox on flash"): while the cloud is unreachable a board
gets more readings than its outbox holds (96 segments of 128: 12,288). The oldest are dropped,
counted and logged, never silently; when the cloud is back it gets every reading that was not
dropped, once, and sees the dropped ones as one gap in seq.

The board runs in the 128K heap of test_streaming.py. Draining thousands of readings there once
failed: every batch's SenML text needed a new ~2.5 KB block, and a full outbox left the heap in
pieces smaller than that (firmware/telemetry/senml.py and outbox.py say what changed).
"""
import re

from tests.sim import backlog
from tests.sim.test_streaming import LISTENING, device_status, wait_all_acknowledged

CAPACITY = 96 * 128
FULL = re.compile(rb"outbox full: dropped (\d+) oldest readings \((\d+) in all\)")


def drops_logged(board, since):
    """[(dropped, in all)] of each "outbox full" line the board printed since the mark."""
    return [(int(m.group(1)), int(m.group(2))) for m in FULL.finditer(bytes(board.out), since)]


def test_outbox_full_drops_the_oldest_and_counts_them(onboard, cloud):
    board = onboard()
    board.wait_for(LISTENING, timeout=20)
    cloud.wait_readings(board.node_id, 1, timeout=15)          # seq 1, taken when it came online
    # ... and acknowledged: a reading the cloud has but the device does not know it has would be
    # dropped and counted like the others, and the cloud's gap would be smaller than `dropped`.
    wait_all_acknowledged(cloud, board)
    cloud.broker.stop()                                        # the cloud is unreachable
    mark = board.mark()
    info = backlog.fill(board, CAPACITY + 300)                 # firmware stopped, then restarted
    restarted = board.mark()
    drops = drops_logged(board, mark)
    dropped = drops[-1][1]
    # Whole segments go, oldest first, each logged with the running total.
    assert sum(n for n, _ in drops) == dropped == info["dropped"] >= 300
    assert info["pending"] == info["last"] - info["first"] + 1 - dropped <= CAPACITY
    # The firmware finds them at boot and samples on (its first reading may start a segment past
    # the capacity: more dropped) while it cannot reach the broker. Then the cloud is back.
    board.wait_for(b"cannot reach the broker", since=restarted, timeout=30)
    cloud.broker.start()
    board.wait_for(LISTENING, since=restarted, timeout=40)
    status = device_status(cloud, board)
    drops = drops_logged(board, mark)
    dropped = drops[-1][1]
    assert status["dropped"] == dropped == sum(n for n, _ in drops)
    last = status["last_seq"]
    cloud.wait_readings(board.node_id, last - dropped, timeout=40)
    stats = cloud.reading_stats(board.node_id)
    assert (stats["first_seq"], stats["last_seq"], stats["count"]) == (1, last, last - dropped)
    assert stats["gaps"] == dropped and stats["rejected"] == 0
    # The gap is one run of seqs: the oldest readings waiting when the outbox overflowed.
    seqs = [r["seq"] for r in cloud.readings(board.node_id)]
    have = set(seqs)
    gap = next(s for s in range(1, last + 1) if s not in have)
    assert gap <= info["first"] and seqs == list(range(1, gap)) + list(range(gap + dropped, last + 1))
    assert b"Traceback" not in bytes(board.out[restarted:])
