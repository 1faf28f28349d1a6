"""The chip runs BLE IRQ handlers as an ESP32 does (docs/simulator.md, "BLE IRQ context").

A MicroPython program on the chip (IRQ_PROGRAM) serves one characteristic; a phone (bleak on
the Bumble air) writes a command to it and reads the answer, which the handler writes back when
it lived. Each command breaks one rule inside the handler, or obeys it:
- the C stack: about 4 KB on the NimBLE task (scaled to i386 frames) -> RuntimeError
  "maximum recursion depth exceeded";
- calls that release the GIL on the ESP32 -> RuntimeError naming the call (the simulator's rule:
  on the chip the failure is silent heap corruption);
- an uncaught exception -> "Unhandled exception in IRQ callback handler", and the handler is
  off until irq() is called again (the program re-arms it when the phone asks, through a
  second characteristic that the main loop polls).
"""
import asyncio
import subprocess
import threading

import pytest
from bleak import BleakClient, BleakScanner

from tools.ble.bleak_bumble import BumbleClient, BumbleScanner
from tools.sim import radio
from tools.sim.air import AirServer
from tools.sim.board import chip_env, micropython_binary

SERVICE = "7b6f0001-0000-4000-8000-00000000e532"
CMD = "7b6f0002-0000-4000-8000-00000000e532"
REARM = "7b6f0003-0000-4000-8000-00000000e532"
MAC = bytes.fromhex("240AC4ABCDEF")

IRQ_PROGRAM = r"""
import bluetooth, select, sys, time, _simchip
import sim_network, sim_socket
ble = bluetooth.BLE()
ble.active(True)
F = bluetooth.FLAG_READ | bluetooth.FLAG_WRITE
((cmd, rearm),) = ble.gatts_register_services(((bluetooth.UUID("%(service)s"),
    ((bluetooth.UUID("%(cmd)s"), F), (bluetooth.UUID("%(rearm)s"), F))),))
ble.gatts_set_buffer(cmd, 64)
reached = 0

def deep(n):
    global reached
    reached = n
    deep(n + 1)

def run(kind, arg):
    global reached
    if kind == "depth":             # how deep Python calls go in a handler
        reached = 0
        try:
            deep(1)
        except RuntimeError as e:
            return "%%d %%s" %% (reached, e)
    elif kind == "recurse":         # uncaught: the handler dies of it
        deep(1)
    elif kind == "sleep_ms":
        time.sleep_ms(int(arg))
    elif kind == "sleep":
        time.sleep(0.001)
    elif kind == "print":
        print("x" * int(arg))
    elif kind == "poll":
        select.poll().poll(int(arg))
    elif kind == "socket":
        s = sim_socket.socket()
        try:
            s.connect(("127.0.0.1", 9))
        finally:
            s.close()
    elif kind == "scan":
        sim_network.WLAN(0).scan()
    elif kind == "connect":
        sim_network.WLAN(0).connect("home", "password")
    elif kind == "getaddrinfo":
        sim_socket.getaddrinfo("example.com", 80)
    elif kind == "stack":           # (budget, handlers running, most used so far)
        return "%%d %%d %%d" %% _simchip.irq_stack()
    elif kind == "air":             # the simulator's own line: no rule applies
        return str(sim_network.WLAN(0).active())
    elif kind == "raise":
        raise ValueError("boom")
    return "ok"

name = b"IRQTEST"
adv = b"\x02\x01\x06" + bytes((len(name) + 1, 9)) + name

def handler(event, data):
    if event == 3 and data[1] == cmd:            # _IRQ_GATTS_WRITE
        kind, _, arg = bytes(ble.gatts_read(cmd)).decode().partition(" ")
        ble.gatts_write(cmd, b"= " + run(kind, arg).encode())
    elif event == 2:                             # _IRQ_CENTRAL_DISCONNECT: the next phone
        ble.gap_advertise(20000, adv_data=adv)

ble.irq(handler)
ble.gap_advertise(20000, adv_data=adv)
print("ready")
while True:
    if ble.gatts_read(rearm):
        ble.irq(handler)
        ble.gatts_write(rearm, b"")
    time.sleep_ms(20)
""" % {"service": SERVICE, "cmd": CMD, "rearm": REARM}


class Chip:
    """The program on a chip on the air, its output collected, and a phone talking to it."""

    def __init__(self):
        self.link = radio.AirLink()
        self.phones = radio.serve_phones(self.link)
        self.radio = radio.attach_chip(self.link, MAC)
        # The shims' world: Wi-Fi active, everything else refused, as a board's supervisor would.
        self.world = AirServer(lambda msg: {"value": True} if msg.get("fn") == "active" else {"errno": 5})
        env = chip_env(MICROPYBTUART=self.radio.pty_path, ROOST_AIR="127.0.0.1:%d" % self.world.port)
        self.proc = subprocess.Popen([micropython_binary(), "-X", "heapsize=100K", "-c", IRQ_PROGRAM],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.ready.wait(20), "the chip did not start:\n" + self.output()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.strip() == "ready":
                self.ready.set()

    def output(self):
        return "".join(self.lines)

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.radio.close()
        self.phones.close()
        self.world.close()


@pytest.fixture(scope="module")
def chip():
    c = Chip()
    yield c
    c.close()


def ask(chip, *commands):
    """Write each command and read the characteristic back: the handler's answer ("= ..."),
    or the command itself when the handler died of it. Re-arms the handler after a death."""
    air = "127.0.0.1:%d" % chip.phones.port

    async def session():
        device = await BleakScanner.find_device_by_name("IRQTEST", timeout=5, backend=BumbleScanner, air=air)
        assert device is not None
        answers = []
        async with BleakClient(device, backend=BumbleClient, air=air) as client:
            for command in commands:
                before = len(chip.lines)
                await client.write_gatt_char(CMD, command.encode(), response=True)
                answer = bytes(await client.read_gatt_char(CMD)).decode()
                if not answer.startswith("= "):
                    await client.write_gatt_char(REARM, b"1", response=True)
                    for _ in range(100):
                        if not await client.read_gatt_char(REARM):
                            break
                        await asyncio.sleep(0.02)
                answers.append((answer, "".join(chip.lines[before:])))
        return answers
    return asyncio.run(asyncio.wait_for(session(), 60))


def died_of(answer, command, message):
    text, output = answer
    assert text == command, "the handler lived: %r" % (answer,)
    assert "Unhandled exception in IRQ callback handler" in output, output
    assert message in output, output


def test_a_handler_has_the_nimble_tasks_stack_and_dies_past_it(chip):
    (depth, _), recurse, after, (stack, _) = ask(chip, "depth", "recurse", "depth", "stack")
    reached, _, message = depth[2:].partition(" ")
    # 4096 B of Xtensa stack is about 12 Python frames; the handler's own frames come first.
    assert 6 <= int(reached) <= 14 and message == "maximum recursion depth exceeded", depth
    died_of(recurse, "recurse", "RuntimeError: maximum recursion depth exceeded")
    assert after[0] == depth, "re-armed, the handler works as before"
    budget, running, most = (int(x) for x in stack[2:].split())
    assert (budget, running) == (4096 * 256 // 328, 1)      # i386 bytes; asked from a handler
    assert budget <= most < budget + 512                     # the overflow was measured


def test_outside_a_handler_the_main_thread_keeps_its_own_stack():
    from mpy import run_mpy
    out = run_mpy("def deep(n):\n  global r\n  r = n\n  deep(n + 1)\nr = 0\n"
                  "try:\n  deep(1)\nexcept RuntimeError:\n  print(r)\n", path=())
    # The unix port's 40,000-byte main stack: about 156 frames of 256 B (i386).
    assert int(out) > 100


@pytest.mark.parametrize("command,call", [
    ("sleep_ms 1", "time.sleep_ms()"),
    ("sleep", "time.sleep()"),
    ("print 21", "print() of more than 20 characters"),
    ("poll 5", "select.poll()/select.select() with a timeout"),
    ("socket", "a blocking socket.connect()"),
    ("scan", "WLAN.scan()"),
    ("connect", "WLAN.connect()"),
    ("getaddrinfo", "socket.getaddrinfo()"),
])
def test_a_call_that_releases_the_gil_kills_the_handler_and_names_the_call(chip, command, call):
    (answer,) = ask(chip, command)
    died_of(answer, command, "RuntimeError: %s in a BLE IRQ handler: it releases the GIL on ESP32" % call)


def test_a_handler_that_only_copies_and_signals_lives(chip):
    answers = ask(chip, "print 20", "poll 0", "air", "print 1")
    assert [a for a, _ in answers] == ["= ok", "= ok", "= True", "= ok"], answers
    assert "Unhandled exception" not in "".join(o for _, o in answers)


def test_an_uncaught_exception_disables_the_handler_until_irq_is_called_again(chip):
    air = "127.0.0.1:%d" % chip.phones.port

    async def session():
        device = await BleakScanner.find_device_by_name("IRQTEST", timeout=5, backend=BumbleScanner, air=air)
        async with BleakClient(device, backend=BumbleClient, air=air) as client:
            await client.write_gatt_char(CMD, b"raise", response=True)
            await client.write_gatt_char(CMD, b"print 1", response=True)
            unanswered = bytes(await client.read_gatt_char(CMD))
            await client.write_gatt_char(REARM, b"1", response=True)
            while await client.read_gatt_char(REARM):
                await asyncio.sleep(0.02)
            await client.write_gatt_char(CMD, b"print 1", response=True)
            return unanswered, bytes(await client.read_gatt_char(CMD))
    unanswered, answered = asyncio.run(asyncio.wait_for(session(), 60))
    assert unanswered == b"print 1", "no handler ran: the value is what the phone wrote"
    assert answered == b"= ok"
    assert "ValueError: boom" in chip.output()
