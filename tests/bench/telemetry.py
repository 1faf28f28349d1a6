"""Telemetry throughput on the simulated board with the local cloud (host figures: the unix port is
10-25x faster than an ESP32, and its flash is a file; docs/simulator.md).

- MQTT: a backlog of 10,000 readings (tests/sim/backlog.py) waits while the broker is down; then
  the broker is back and the cloud's readings store is polled: the drain time from the device's
  "MQTT connected" to the cloud having them all, the delivery rate between 10% and 90% of them,
  and the heap free during the drain (the `status` command, about twice a second). Heap 128K,
  as in tests/sim/test_streaming.py.
- On the chip, firmware stopped: the sampler's cost per reading (Outbox.add() and flush() in a
  scratch outbox) and the heap (all of it garbage: the text goes into a buffer made once) and
  time one MQTT batch of 32 takes to make.
- ThingSpeak (heap 128K, no MQTT): a backlog of 1,440 readings, three bulk updates of 480 with
  one write per 15 s (the server's limit, which the sink keeps): the interval between the bulk
  updates as the server took them, the full drain, and the 10,000 drain that interval implies.
"""
import json
import re
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from tools import deploy
from tools.cloud.local import LocalCloud
from tools.sim.board import Board

from tests.sim import backlog
from tests.sim.conftest import POP, PROV, WIFI, home_world
from tests.sim.phone import provision
from tests.sim.terminal import type_
from tests.sim.test_registration import KEY_ACCEPTED, REGISTERED
from tests.sim.test_streaming import LISTENING, command, device_status, wait_all_acknowledged

BACKLOG = 10000
TS_BACKLOG = 1440               # three bulk updates of 480
# A number at a pattern's end is read to the line's end: the rest of the line may still be arriving.
CONNECTED = re.compile(rb"MQTT connected to \S+ \(TLS\) as \S+, heap free (\d+)\r?\n")

# On the chip, firmware stopped, in a scratch outbox (/bench): ms per reading of Outbox.add() +
# flush() for the sampler's flush policies; the heap one MQTT batch of 32 allocates while its
# SenML is written into the payload buffer; ms per batch for all but the publish (read, SenML, ack).
_CPU = """
import gc, json, os, time
from firmware.store import Store
from firmware.telemetry import senml
from firmware.telemetry.outbox import Outbox
from firmware.telemetry.sampler import clock

def scratch():
    try:
        os.mkdir("/bench")
    except OSError:
        pass
    return Outbox(Store("/bench"), ("mqtt",), root="/bench")

def rmtree(p):
    for e in os.ilistdir(p):
        q = p + "/" + e[0]
        rmtree(q) if e[1] == 0x4000 else os.remove(q)
    os.rmdir(p)

def cost(n, every, ack_every=0):
    box = scratch()
    t, _ = clock()
    gc.collect()
    t0 = time.ticks_us()
    for i in range(n):
        seq = box.add(21.5, t + i, True)
        if (i + 1) % every == 0:
            box.flush()
        if ack_every and (i + 1) % ack_every == 0:
            box.ack("mqtt", seq)
    us = time.ticks_diff(time.ticks_us(), t0)
    rmtree("/bench")
    return us / n / 1000

def batch_cost():
    box = scratch()
    t, _ = clock()
    for i in range(3200):
        box.add(21.5, t + i, True)
        if (i + 1) % 128 == 0:
            box.flush()
    buf = bytearray(3072)
    gc.collect()
    gc.disable()
    free = gc.mem_free()
    size, _ = senml.encode_into(buf, "24A160000001", box.readings("mqtt", 32), 0, 1)
    used = free - gc.mem_free()
    gc.enable()
    n = 0
    t0 = time.ticks_us()
    while True:
        size_n, last = senml.encode_into(buf, "24A160000001", box.readings("mqtt", 32), 0, 1)
        if not size_n:
            break
        box.ack("mqtt", last)
        n += 1
    ms = time.ticks_diff(time.ticks_us(), t0) / n / 1000
    rmtree("/bench")
    return used, size, ms

used, size, ms = batch_cost()
print(json.dumps({"one": cost(512, 1), "batch16": cost(2048, 16), "online": cost(512, 1, 32),
                  "batch_heap": used, "batch_bytes": size, "batch_ms": ms}))
"""


class _Fleet:
    """Boards from one firmware image, each with its factory config, in one folder."""

    def __init__(self, d):
        self.d = d
        self.template = d / "t.img"
        deploy.to_image(self.template, mpy=True, log=lambda line: None)
        self.n = 0
        self.boards = []

    def board(self, cloud, factory, heap, mac):
        self.n += 1
        image = self.d / ("b%d.img" % self.n)
        shutil.copyfile(self.template, image)
        deploy.factory_to_image(image, dict(PROV, **factory), log=lambda line: None)
        b = Board(image, world=home_world(cloud), heap=heap, mac=mac)
        self.boards.append(b)
        return b.start()

    def onboard(self, cloud, heap):
        """A board provisioned, bootstrapped and streaming (as tests/sim/conftest.py's onboard)."""
        mac = bytes.fromhex("24a1600001%02x" % (self.n + 1))
        node = mac.hex().upper()
        cloud.add_device(node)
        b = self.board(cloud, cloud.factory_for(node), heap, mac)
        b.node_id = node
        provision(b, POP, *WIFI)
        b.wait_for(LISTENING, timeout=20)
        cloud.wait_readings(node, 1, timeout=15)
        return b

    def stop(self):
        for b in self.boards:
            b.stop()


def _outage_backlog(cloud, board, n):
    """Broker down, n readings stored, firmware restarted and failing to connect; returns
    (fill info, console mark before the restart)."""
    cloud.broker.stop()
    mark = board.mark()
    info = backlog.fill(board, n)
    board.wait_for(b"cannot reach the broker", since=mark, timeout=30)
    return info, mark


def _mqtt_drain(cloud, board, info, mark, timeout=120):
    """Broker up; polls the cloud until it has every seq up to info["last"]. Returns
    (seconds from "MQTT connected" to all stored, readings/s from 10% to 90%, heap free
    answers, heap free at the connect)."""
    cloud.broker.start()
    m = board.wait_for(CONNECTED, since=mark, timeout=60)
    t0 = time.monotonic()
    base = cloud.reading_stats(board.node_id)["count"]
    want = info["last"] - base          # seqs 1..last, each once
    heap, done = [], threading.Event()

    def ask_status():                   # beside the polling: an answer takes a round trip
        board.wait_for(LISTENING, since=mark, timeout=30)
        while not done.wait(0.5):
            try:
                heap.append(json.loads(command(cloud, board, "status", timeout=5))["heap_free"])
            except TimeoutError:
                pass
    asker = threading.Thread(target=ask_status, daemon=True)
    asker.start()
    samples = []
    try:
        while not samples or samples[-1][1] < want:
            if time.monotonic() - t0 > timeout:
                raise TimeoutError("%d of %d readings in %d s" % (samples[-1][1], want, timeout))
            time.sleep(0.02)
            samples.append((time.monotonic(), cloud.reading_stats(board.node_id)["count"] - base))
    finally:
        done.set()
        asker.join()
    t10, c10 = next((t, c) for t, c in samples if c >= want * 0.1)
    t90, c90 = next((t, c) for t, c in samples if c >= want * 0.9)
    return samples[-1][0] - t0, (c90 - c10) / (t90 - t10), heap, int(m.group(1))


def _mqtt(rows, fleet, cloud, runs, heap):
    drain, rate, busy, idle, at_connect, cpu = [], [], [], [], [], []
    for _ in range(runs):
        board = fleet.onboard(cloud, heap)
        wait_all_acknowledged(cloud, board)
        cpu.append(json.loads(backlog.run_stopped(board, _CPU, restart=False).strip().splitlines()[-1]))
        info, mark = _outage_backlog(cloud, board, BACKLOG)
        s, r, h, c = _mqtt_drain(cloud, board, info, mark)
        drain.append(s)
        rate.append(r)
        busy += h
        at_connect.append(c)
        time.sleep(0.5)
        idle.append(device_status(cloud, board)["heap_free"])
        board.stop()

    def runs_of(xs, fmt):
        return "(runs: %s)" % ", ".join(fmt % x for x in xs)

    rows.append(("telemetry: MQTT delivery rate, backlog of %d, heap %s (10%%-90%%, median of %d)"
                 % (BACKLOG, heap, runs), "%.0f" % statistics.median(rate),
                 "readings/s " + runs_of(rate, "%.0f")))
    rows.append(("telemetry: MQTT drain of %d after an outage, MQTT connected to all in the cloud (median)"
                 % BACKLOG, "%.2f" % statistics.median(drain), "s " + runs_of(drain, "%.2f")))
    rows.append(("telemetry: heap free at MQTT connect with the backlog waiting, heap %s (lowest)" % heap,
                 "%d" % min(at_connect), "B"))
    rows.append(("telemetry: heap free during the MQTT drain, heap %s (lowest of %d status answers)"
                 % (heap, len(busy)), "%d" % min(busy), "B"))
    rows.append(("telemetry: heap free once drained, heap %s (lowest)" % heap, "%d" % min(idle), "B"))
    for key, what in (("one", "one append per reading (readings 10 s or more apart)"),
                      ("batch16", "batches of 16 (fast readings)"),
                      ("online", "one append per reading, acknowledged every 32")):
        xs = [c[key] for c in cpu]
        rows.append(("telemetry: sampler Outbox.add+flush per reading, %s (host, median)" % what,
                     "%.3f" % statistics.median(xs), "ms " + runs_of(xs, "%.3f")))
    rows.append(("telemetry: heap allocated (garbage) making one MQTT batch of 32 (%d B of SenML; 32-bit chip)"
                 % cpu[0]["batch_bytes"], "%d" % cpu[0]["batch_heap"], "B"))
    xs = [c["batch_ms"] for c in cpu]
    rows.append(("telemetry: chip time per MQTT batch of 32 but the publish (read, SenML, ack; host, median)",
                 "%.2f" % statistics.median(xs), "ms " + runs_of(xs, "%.2f")))


def _thingspeak(rows, fleet, d, heap):
    cloud = LocalCloud(d / "ts", registration_iterations=10000)    # the least the board accepts
    stored = []                 # (when, entries) of each bulk update the server took

    def timed(*args, _bulk=cloud.thingspeak.bulk_update):
        n = _bulk(*args)
        stored.append((time.monotonic(), n))
        return n
    cloud.thingspeak.bulk_update = timed
    cloud.start_http()
    try:
        key = cloud.add_org("bench")["registration_key"]
        board = fleet.board(cloud, dict(cloud.registration_factory(), serial="bench-ts"), heap,
                            bytes.fromhex("24a160000200"))
        board.wait_for(b"provisioning open for", timeout=15)
        type_(board, "key\r", "registration key: ")
        type_(board, key + "\r", "registration key stored")
        mark = board.mark()
        info = backlog.fill(board, TS_BACKLOG)          # no network yet: they wait for ThingSpeak
        board.wait_for(b"provisioning open for", since=mark, timeout=15)
        provision(board, POP, *WIFI)
        channel = int(board.wait_for(REGISTERED, since=mark, timeout=30).group(1))
        free = int(board.wait_for(KEY_ACCEPTED, since=mark, timeout=30).group(1))
        t0 = time.monotonic()
        while sum(n for _, n in stored) < info["last"]:
            if time.monotonic() - t0 > 180:
                tail = bytes(board.out[-3000:]).decode(errors="replace")
                raise TimeoutError("ThingSpeak: %d of %d readings; the board's console:\n%s" % (
                    sum(n for _, n in stored), info["last"], tail))
            time.sleep(0.05)
        seqs = sorted(int(e["field2"]) for e in cloud.channel_entries(channel) if e["field2"])
        assert seqs[:info["last"]] == list(range(1, info["last"] + 1)), "readings missing or twice"
        board.stop()
    finally:
        cloud.stop_http()
    bulks = [t for t, n in stored if n == 480]
    gaps = [b - a for a, b in zip(bulks, bulks[1:])]
    gap = statistics.median(gaps)
    n_bulks = -(-BACKLOG // 480)
    rows.append(("telemetry: ThingSpeak interval between bulk updates of 480 (15 s gap + the update), "
                 "heap %s" % heap, "%.3f" % gap, "s (%s)" % ", ".join("%.3f" % g for g in gaps)))
    rows.append(("telemetry: ThingSpeak one bulk update of 480, device and server (the interval less 15 s)",
                 "%.0f" % ((gap - 15) * 1000), "ms"))
    rows.append(("telemetry: ThingSpeak readings/s that implies (480 per interval)",
                 "%.1f" % (480 / gap), "readings/s"))
    rows.append(("telemetry: ThingSpeak full drain of %d (3 bulk updates), key accepted to all in the channel"
                 % TS_BACKLOG, "%.1f" % (stored[-1][0] - t0), "s"))
    rows.append(("telemetry: ThingSpeak drain of %d estimated from that interval (%d bulk updates)"
                 % (BACKLOG, n_bulks), "%.0f" % ((n_bulks - 1) * gap), "s"))
    rows.append(("telemetry: heap free at ThingSpeak key check with the backlog waiting, heap %s" % heap,
                 "%d" % free, "B"))


def run(rows, runs=3, heap="128K"):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        fleet = _Fleet(d)
        cloud = LocalCloud(d / "cloud", mapping_timeout=3.0).start()
        try:
            _mqtt(rows, fleet, cloud, runs, heap)
            _thingspeak(rows, fleet, d, heap)
        finally:
            fleet.stop()
            cloud.stop()

