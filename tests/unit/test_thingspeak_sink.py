"""The ThingSpeak sink (firmware/telemetry/thingspeak_sink.py) under the MicroPython unix port,
against the local cloud's ThingSpeak API, directly or through a proxy that fails on purpose:
server errors, a stalled answer, an answer lost after the entries were stored, 429s. Every
reading must end in the channel once, with its time and seq; a refused key ends the sink."""
import http.client
import json
import time

import pytest

from cloud_helpers import Services
from mpy import run_mpy
from raw_server import RawServer, reply

T0 = 1767225600          # 2026-01-01T00:00:00Z

DEVICE = """
import asyncio, json, time
from epoch import UNIX_OFFSET       # the test's times are Unix; the device keeps its own epoch
from firmware.store import Store
from firmware.telemetry.outbox import Outbox
from firmware.telemetry.thingspeak_sink import ThingSpeakSink
ROOT = %(root)r
s = Store(ROOT)
s.set_factory({"node_id": "n1", "endpoints": {"thingspeak": %(base)r}})
s.set("registration", {"done": True, "channel": %(channel)r, "write_key": %(key)r})
box = Outbox(s, ("thingspeak",), root=ROOT)
for i, (t, synced) in enumerate(%(readings)r):
    box.add(20 + i / 4, t - UNIX_OFFSET if synced else t, synced)
box.flush()
box.first_seq_this_boot = %(first_this_boot)d

class Sampler:
    stored = asyncio.Event()
    def boot_time(self):
        return %(boot)d - UNIX_OFFSET

class Registrar:
    ready = asyncio.Event()
    accepted = 0
    def key_accepted(self, entry=None):
        self.accepted += 1

async def main():
    reg = Registrar()
    reg.ready.set()
    sink = ThingSpeakSink(s, box, Sampler(), None)
    sink.gap_s, sink.backoff_s = 0.05, (0.05, 0.2)
    task = asyncio.create_task(sink.run(reg))
    end = time.ticks_add(time.ticks_ms(), %(timeout_ms)d)
    while len(box) and not task.done() and time.ticks_diff(end, time.ticks_ms()) > 0:
        await asyncio.sleep_ms(20)
    result = {"left": len(box), "accepted": reg.accepted, "error": None}
    if task.done():
        try:
            await task
        except Exception as e:
            result["error"] = "%%s: %%s" %% (type(e).__name__, e)
    task.cancel()
    print(json.dumps(result))

asyncio.run(main())
"""


@pytest.fixture
def svc():
    s = Services(rate_limit_s=0, clock=time.time)
    yield s
    s.close()


@pytest.fixture
def channel(svc):
    return svc.ts.create_channel("Thermometer n1", ["temperature", "seq"])


def run_sink(tmp_path, base, channel, readings, boot=T0 - 1000, first_this_boot=1, timeout_ms=20000):
    out = run_mpy(DEVICE % dict(root=str(tmp_path), base=base, channel=str(channel["id"]),
                                key=channel["write_key"], readings=readings, boot=boot,
                                first_this_boot=first_this_boot, timeout_ms=timeout_ms),
                  path=("lib", "."), heap="256K", timeout=90)
    return json.loads(out.strip().splitlines()[-1]), out


def entries(svc, channel):
    return [(int(e["field2"]), e["created_at"], float(e["field1"]), e["status"])
            for e in svc.ts.entries(channel["id"])]


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def test_readings_arrive_once_with_their_times(tmp_path, svc, channel):
    # 1..3: an earlier boot without network time; 4..5: this boot before the clock was set
    # (uptime 10 and 20 s); 6..600: network time. 600 readings take two bulk updates.
    readings = [(5, False), (6, False), (7, False), (10, False), (20, False)]
    readings += [(T0 + i, True) for i in range(6, 601)]
    got, _ = run_sink(tmp_path, svc.url, channel, readings, boot=T0 - 100, first_this_boot=4)
    assert got == {"left": 0, "accepted": 2, "error": None}
    stored = entries(svc, channel)
    assert [e[0] for e in stored] == list(range(1, 601))
    assert stored[0] == (1, iso(T0 - 103), 20.0, "time unknown")        # just before this boot
    assert stored[3][1:] == (iso(T0 - 90), 20.75, None)                 # boot time + uptime
    assert stored[5][1] == iso(T0 + 6) and stored[-1][1] == iso(T0 + 600)


def test_one_reading_is_a_single_update(tmp_path, svc, channel):
    got, out = run_sink(tmp_path, svc.url, channel, [(T0 + 5, True)])
    assert got["left"] == 0
    assert entries(svc, channel) == [(1, iso(T0 + 5), 20.0, None)]


class FaultyProxy(RawServer):
    """Forwards requests to the ThingSpeak service, except that request k (from 0) meets
    faults[k]: "500", "429", "stall" (no answer), or "lose" (forwarded, the answer dropped)."""

    def __init__(self, target, faults):
        self.target, self.faults = target, list(faults)
        super().__init__(self._respond)

    def _respond(self, req):
        k = len(self.requests) - 1
        fault = self.faults[k] if k < len(self.faults) else None
        if fault == "500":
            return reply(b"oops", "500 Internal Server Error")
        if fault == "429":
            return reply(b'{"error": "slow down"}', "429 Too Many Requests")
        if fault == "stall":
            time.sleep(11)                      # past the device's 10 s timeout
            return b""
        answer = self._forward(req)
        return b"" if fault == "lose" else answer

    def _forward(self, req):
        head, _, body = req.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        headers.pop("Host", None)
        host, port = self.target.split("//")[1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            return reply(data, "%d %s" % (r.status, r.reason))
        finally:
            conn.close()


def test_server_errors_timeouts_and_lost_answers_lose_and_repeat_nothing(tmp_path, svc, channel):
    readings = [(T0 + i, True) for i in range(1, 101)]
    with FaultyProxy(svc.url, ["500", "lose", "stall", "429", "lose"]) as proxy:
        got, out = run_sink(tmp_path, proxy.url, channel, readings, timeout_ms=40000)
    assert got["left"] == 0 and got["error"] is None, out
    assert [e[0] for e in entries(svc, channel)] == list(range(1, 101))      # once each, in order
    assert len(proxy.requests) == 6
    assert "HTTP 500" in out and "TimeoutError" in out and "too soon" in out


def test_a_refused_bulk_goes_one_by_one_and_a_refused_key_ends_the_sink(tmp_path, svc, channel):
    # Another entry holds reading 2's second and the next: the bulk is refused (400), single
    # updates deliver the rest, and reading 2 goes 1 s later each time it is answered "0".
    for t in (T0 + 2, T0 + 3):
        svc.ts.update(channel["write_key"], {"field1": "99", "created_at": str(t)})
    got, out = run_sink(tmp_path, svc.url, channel, [(T0 + 1, True), (T0 + 2, True), (T0 + 5, True)])
    assert got == {"left": 0, "accepted": 3, "error": None}
    assert "one at a time" in out and "reading 2 not inserted (its time taken?); again 2 s later" in out
    assert [(e["field2"], e["created_at"]) for e in svc.ts.entries(channel["id"]) if e["field2"]] == [
        ("1", iso(T0 + 1)), ("2", iso(T0 + 4)), ("3", iso(T0 + 5))]

    svc.ts.rotate_write_key(channel["id"])
    (tmp_path / "b").mkdir()
    got, out = run_sink(tmp_path / "b", svc.url, channel, [(T0 + 10, True), (T0 + 11, True)])
    assert got["error"] == "KeyRejected: write key rejected (HTTP 400)" and got["left"] == 2
