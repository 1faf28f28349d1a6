"""SenML encoding of outbox readings and the cloud's control commands
(firmware/telemetry/senml.py, firmware/cloud/commands.py) under the MicroPython unix port."""
import json

import pytest

from mpy import run_mpy


def chip(code, tmp_path=None):
    prelude = "import json\nROOT = %r\n" % str(tmp_path or "")
    out = run_mpy(prelude + code, path=("lib", "."), heap="512K")
    return [json.loads(line) for line in out.strip().splitlines() if line[:1] in "[{"]


def test_senml_times_absolute_relative_and_unknown():
    [got] = chip("""
from firmware.telemetry import senml
from epoch import UNIX_OFFSET       # the outbox keeps the device's epoch; SenML has Unix time
readings = [(7, 1764540000 - UNIX_OFFSET, True, 0, 21.5), (8, 1000, False, 0, 21.25), (9, 1090, False, 0, 21.0),
            (3, 50, False, 0, 19.0), (10, 5, False, 4, 1.0)]
buf = bytearray(3072)
n, last = senml.encode_into(buf, "24A1600000AA", readings, 1100, 8)
print(bytes(buf[:n]).decode())
""")
    assert got[0] == {"bn": "24A1600000AA:", "n": "temperature", "u": "Cel", "v": 21.5, "t": 1764540000, "seq": 7}
    assert got[1] == {"n": "temperature", "u": "Cel", "v": 21.25, "t": -100, "seq": 8}     # 100 s ago
    assert got[2]["t"] == -10
    assert got[3] == {"n": "temperature", "u": "Cel", "v": 19.0, "uptime": 50, "seq": 3}       # earlier boot
    assert got[4]["n"] == "sensor4" and "bt" not in json.dumps(got)
    assert all(isinstance(r["v"], float) for r in got)          # 19.0 stays a float


def test_senml_into_a_fixed_buffer_takes_what_fits():
    # The payload buffer is allocated once: a batch never needs a new big block of heap.
    got = chip("""
from firmware.telemetry import senml
from epoch import UNIX_OFFSET       # the outbox keeps the device's epoch; SenML has Unix time
batch = [(100 + i, 1764540000 - UNIX_OFFSET + i, True, 0, 21.5 + i / 8) for i in range(32)]
buf = bytearray(3072)
n, last = senml.encode_into(buf, "24A1600000AA", batch, 0, 1)
print(json.dumps([n, last]))
small = bytearray(300)
n, last = senml.encode_into(small, "24A1600000AA", batch, 0, 1)
print(bytes(small[:n]).decode())
print(json.dumps(list(senml.encode_into(small, "n", [], 0, 1))))
""")
    (n, last), part, empty = got
    assert last == 131 and 2000 < n < 3072
    assert [r["seq"] for r in part] == [100, 101, 102, 103]              # the first four, whole
    assert empty == [0, 0]


def test_no_reading_shares_a_second_with_the_last_one_before_a_quick_reset():
    [got] = chip("""
import asyncio
import firmware

class Board:
    def temperature_c():
        return 21.5

firmware.board = Board          # the sensor, without the hardware facade

class Store:
    def get(self, name):
        return {"enabled": True, "interval_s": 1}

class Box:
    stamps = []
    def add(self, value, t, synced):
        self.stamps.append(t)
        return len(self.stamps)
    def buffered(self):
        return 0
    def flush(self):
        pass

from firmware.telemetry.sampler import Sampler, clock
last, synced = clock()          # the last reading stored before the reset: just now
box = Box()

async def boot():
    task = asyncio.create_task(Sampler(Store(), box).run())
    await asyncio.sleep_ms(2600)
    task.cancel()

asyncio.run(boot())
print(json.dumps({"last": last, "synced": synced, "stamps": box.stamps}))
""")
    assert got["synced"], "the unix port's clock is network time"
    assert len(got["stamps"]) >= 1
    assert got["stamps"][0] > got["last"], "the first reading of this boot shares its second"
    assert got["stamps"] == sorted(set(got["stamps"]))


COMMANDS = """
from firmware.store import Store
from firmware.cloud.commands import Commands
class Box:
    next_seq, dropped = 42, 3
    def __len__(self): return 5
class Sampler:
    def __init__(self):
        import asyncio
        self.wake = asyncio.Event()
    def uptime(self): return 77
s = Store(ROOT)
sampler = Sampler()
c = Commands(s, (Box(), sampler))
out = []
for line in %r:
    out.append([c.run(line), c.after, sampler.wake.is_set()])
    sampler.wake.clear()
print(json.dumps(out))
print(json.dumps(s.get("telemetry")))
"""


def test_commands_change_settings_or_answer_an_error(tmp_path):
    lines = ["stream off", "interval 5", "status", "interval 0", "interval soon", "stream maybe",
             "reboot", "factory-reset", "rebootstrap", "launch rockets", "", "interval", "__init__", 42]
    got, telemetry = chip(COMMANDS % (lines,), tmp_path)
    answers = dict(zip([str(x) for x in lines], got))
    assert answers["stream off"] == ["ok", None, True]
    assert answers["interval 5"] == ["ok", None, True]
    status = json.loads(answers["status"][0])
    assert status["last_seq"] == 41 and status["pending"] == 5 and status["dropped"] == 3
    assert status["enabled"] is False and status["interval_s"] == 5 and status["uptime_s"] == 77
    assert answers["interval 0"][0] == "error: interval must be 1..86400 s"
    assert answers["interval soon"][0].startswith("error:")
    assert answers["stream maybe"][0] == "error: stream takes on or off"
    assert answers["reboot"] == ["ok", "reboot", False]
    assert answers["factory-reset"] == ["ok", "reset", False]
    assert answers["rebootstrap"] == ["ok", "rebootstrap", False]
    assert answers["launch rockets"][0] == "error: unknown command launch"
    assert answers[""][0] == "error: empty command"
    assert answers["interval"][0] == "error: wrong arguments for interval"
    assert answers["__init__"][0].startswith("error: unknown command")
    assert answers["42"][0] == "error: empty command"
    assert telemetry == {"enabled": False, "interval_s": 5}
