"""The flash outbox (firmware/telemetry/outbox.py) under the MicroPython unix port, on a real
directory: order, segments, the acknowledgement cursor across reboots, a damaged tail, and the
drop-oldest policy when full."""
import json

from mpy import run_mpy

PRELUDE = """
import json, os
from firmware.store import Store
from firmware.telemetry.outbox import Outbox
ROOT = %r
def boot(capacity=12288, sinks=("mqtt",)):
    return Outbox(Store(ROOT), sinks, root=ROOT, capacity=capacity)
"""


def chip(tmp_path, code):
    """Run code on the unix port; its JSON lines (log lines are skipped)."""
    out = run_mpy(PRELUDE % str(tmp_path) + code, path=("lib", "."), heap="512K")
    return [json.loads(line) for line in out.strip().splitlines() if line[:1] in "[{"]


def test_readings_come_back_in_order_and_ack_frees_segments(tmp_path):
    got = chip(tmp_path, """
box = boot()
for i in range(300):
    box.add(20 + i / 10, 1700000000 + i, True)
print(json.dumps([box.next_seq, len(box), box.buffered(), box.pending("mqtt", 5)]))
box.flush()
p = box.pending("mqtt", 1000)
print(json.dumps([len(p), p[0][:4], p[-1][:4], round(p[-1][4], 1), sorted(os.listdir(ROOT + "/outbox"))]))
box.ack("mqtt", 200)
print(json.dumps([len(box), box.pending("mqtt", 2), sorted(os.listdir(ROOT + "/outbox"))]))
""")
    assert got[0] == [301, 300, 300, []]          # buffered readings are not pending yet
    assert got[1][:3] == [300, [1, 1700000000, True, 0], [300, 1700000299, True, 0]]
    assert got[1][3] == 49.9
    assert got[1][4] == ["00000001", "00000081", "00000101"]       # 128 readings per segment
    assert got[2][0] == 100
    assert [r[0] for r in got[2][1]] == [201, 202]
    assert got[2][2] == ["00000081", "00000101"]   # segment 1..128 was all acknowledged


def test_a_reboot_keeps_the_cursor_and_the_sequence(tmp_path):
    got = chip(tmp_path, """
box = boot()
for i in range(50):
    box.add(i, i, False, sensor=2)
box.flush()
box.ack("mqtt", 30)
box.add(99, 99, False)          # never flushed: lost with the power, as documented
box = boot()
p = box.pending("mqtt", 100)
print(json.dumps([box.next_seq, len(box), p[0][:4], p[-1][0], Store(ROOT).get("cursor")]))
""")
    assert got[0] == [51, 20, [31, 30, False, 2], 50, {"seq": 30, "dropped": 0, "sinks": {"mqtt": 30}}]


def test_a_damaged_tail_is_cut_and_the_rest_kept(tmp_path):
    got = chip(tmp_path, """
box = boot()
for i in range(10):
    box.add(i, i, True)
box.flush()
with open(ROOT + "/outbox/00000001", "ab") as f:
    f.write(b"\\x0b\\x00\\x00\\x00garbage-garbage-")          # a record with a bad CRC
with open(ROOT + "/outbox/00000001", "r+b") as f:
    f.seek(8 * 20 + 5)
    f.write(b"X")                                              # record 9 flipped
box = boot()
print(json.dumps([len(box), box.next_seq, os.stat(ROOT + "/outbox/00000001")[6]]))
box.add(1, 1, True)
box.flush()
print(json.dumps([r[0] for r in box.pending("mqtt", 100)]))
""")
    assert got[0] == [8, 9, 8 * 20]
    assert got[1] == list(range(1, 10))


def test_when_full_the_oldest_are_dropped_and_counted(tmp_path):
    got = chip(tmp_path, """
box = boot(capacity=256)
for i in range(600):
    box.add(i, i, True)
    if i % 50 == 49:
        box.flush()
box.flush()
p = box.pending("mqtt", 1000)
print(json.dumps([len(p), p[0][0], p[-1][0], box.dropped, Store(ROOT).get("cursor")]))
box = boot(capacity=256)
print(json.dumps([len(box), box.dropped]))
""")
    n, first, last, dropped, cursor = got[0]
    assert last == 600 and n == 600 - first + 1 and n <= 256 + 128
    assert dropped == first - 1 and cursor == {"seq": first - 1, "dropped": dropped, "sinks": {"mqtt": first - 1}}
    assert got[1] == [n, dropped]


def test_a_factory_reset_keeps_the_sequence(tmp_path):
    # The cloud keeps each (node, seq) once: starting again at 1 would lose the new owner's readings.
    got = chip(tmp_path, """
box = boot()
for i in range(5):
    box.add(i, i, True)
box.flush()
box.ack("mqtt", 5)
Store(ROOT).factory_reset()
box = boot()
print(json.dumps([box.next_seq, Store(ROOT).get("cursor")]))
""")
    assert got[0] == [6, {"seq": 5, "dropped": 0, "sinks": {"mqtt": 5}}]


def test_each_sink_has_its_own_cursor_and_the_slowest_holds_the_segments(tmp_path):
    got = chip(tmp_path, """
box = boot(sinks=("mqtt", "thingspeak"))
for i in range(300):
    box.add(i, 1700000000 + i, True)
box.flush()
box.ack("mqtt", 300)
print(json.dumps([len(box), [r[0] for r in box.pending("thingspeak", 2)], box.pending("mqtt", 5),
                  sorted(os.listdir(ROOT + "/outbox"))]))
box.ack("thingspeak", 200)
print(json.dumps([len(box), sorted(os.listdir(ROOT + "/outbox")), Store(ROOT).get("cursor")]))
box = boot(sinks=("mqtt", "thingspeak"))          # a reboot keeps both cursors
print(json.dumps([[r[0] for r in box.pending("thingspeak", 1)], box.pending("mqtt", 1)]))
box = boot(sinks=("mqtt",))                        # thingspeak no longer configured: forgotten
print(json.dumps([len(box), box.acked]))
box.add(1, 1700001000, True)
box.flush()
box.ack("mqtt", 301)
print(json.dumps([sorted(os.listdir(ROOT + "/outbox")), Store(ROOT).get("cursor")]))
""")
    assert got[0] == [300, [1, 2], [], ["00000001", "00000081", "00000101"]]
    assert got[1] == [100, ["00000081", "00000101"], {"seq": 200, "dropped": 0, "sinks": {"mqtt": 300, "thingspeak": 200}}]
    assert got[2] == [[201], []]
    assert got[3] == [0, 300]
    assert got[4] == [[], {"seq": 301, "dropped": 0, "sinks": {"mqtt": 301}}]


def test_a_sink_attached_later_gets_what_is_still_stored(tmp_path):
    got = chip(tmp_path, """
box = boot(sinks=())                    # no cloud yet: readings wait
for i in range(40):
    box.add(i, 1700000000 + i, True)
box.flush()
box.attach("thingspeak")
print(json.dumps([len(box), [r[0] for r in box.readings("thingspeak", 3)]]))
box.ack("thingspeak", 40)
print(json.dumps([len(box), os.listdir(ROOT + "/outbox")]))
""")
    assert got[0] == [40, [1, 2, 3]]
    assert got[1] == [0, []]


def test_a_flush_that_fails_half_way_keeps_only_the_rest_for_the_next(tmp_path):
    got = chip(tmp_path, """
import firmware.telemetry.outbox as mod
box = boot()
for i in range(120):
    box.add(i, 1700000000 + i, True)
box.flush()
for i in range(120, 250):
    box.add(i, 1700000000 + i, True)
calls = [0]
def failing_open(path, mode):
    calls[0] += 1
    if calls[0] == 2:               # the second segment: flash full
        raise OSError(28)
    return open(path, mode)
mod.open = failing_open
try:
    box.flush()
except OSError as e:
    print(json.dumps(["failed", box.buffered()]))
del mod.open
box.flush()
p = box.pending("mqtt", 1000)
print(json.dumps([len(p), [r[0] for r in p] == list(range(1, 251))]))
box = boot()
print(json.dumps([len(box), box.next_seq]))
""")
    assert got == [["failed", 122], [250, True], [250, 251]]
