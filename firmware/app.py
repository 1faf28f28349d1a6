# The application's lifecycle: the one place that knows the order of phases.
#
#   boot -> (no Wi-Fi network stored, or reprovision asked) -> provisioning window
#        -> join the strongest known network -> online
#
# The BOOT button: held 3 s -> reboot into the provisioning window (networks kept);
# held 10 s -> factory reset (user data erased, factory config kept) and reboot.
import asyncio
import time

from micropython import const

import log
from firmware import board, wifi
from firmware.unload import unload
from firmware.store import Store

VERSION = "0.1.0"

_REPROVISION_MS = const(3000)
_NOTE_REPROVISION = b"reprovision"
_FACTORY_RESET_MS = const(10000)
_JOIN_BACKOFF_MS = const(5000)
_JOIN_BACKOFF_MAX_MS = const(300000)
_CONSOLE_POLL_MS = const(50)        # how soon the first character typed is noticed
# LED blink half-periods per state (ms): fast = waiting for the phone, slow = joining.
_BLINK = {"provisioning": 150, "connecting": 600, "offline": 1500}


class App:
    def __init__(self):
        self.store = Store()
        self.station = wifi.Station()
        self.node_id = self.store.factory.get("node_id") or board.node_id()
        self.state = "booting"
        # The button (or a cloud command) asks by rebooting with this note: see button().
        self.reprovision = board.boot_note() == _NOTE_REPROVISION
        self.telemetry = None       # (outbox, sampler) once the device has a network
        self.phase = None           # the online phase (firmware/online.py) while online
        self.tls = None             # the cloud's SSLContext, made by the first online phase

    async def blink(self):
        on = False
        while True:
            half = _BLINK.get(self.state)
            if half is None:            # online: steady on
                board.led(True)
                await asyncio.sleep_ms(200)
                continue
            on = not on
            board.led(on)
            await asyncio.sleep_ms(half)

    async def button(self):
        while True:
            await asyncio.sleep_ms(100)
            if not board.button_pressed():
                continue
            t0 = time.ticks_ms()
            while board.button_pressed():
                await asyncio.sleep_ms(100)
            held = time.ticks_diff(time.ticks_ms(), t0)
            if held >= _FACTORY_RESET_MS:
                log.warning("app", "button held %d ms: factory reset" % held)
                self.store.factory_reset()
                board.reset()
            elif held >= _REPROVISION_MS:
                # Reboot into the window: provisioning then starts on a fresh heap, instead of
                # re-importing its modules into one fragmented by the online phase.
                log.info("app", "button held %d ms: rebooting to reprovision" % held)
                board.boot_note(_NOTE_REPROVISION)
                board.reset()

    async def console(self):
        # The serial console's code is loaded by the first character of a line and dropped
        # when the line is served: between commands it costs a poll object, not the ~7 KB
        # (64-bit) of a line editor and its commands, nor asyncio's stream module, which
        # provisioning needs more.
        import select
        import sys
        poll = select.poll()
        poll.register(sys.stdin, select.POLLIN)
        while True:
            if not poll.poll(0):
                await asyncio.sleep_ms(_CONSOLE_POLL_MS)
                continue
            first = sys.stdin.read(1)
            if first == "\r":          # Enter alone (also mpremote's "\r" before its Ctrl-C)
                sys.stdout.write("\r\nroost> ")
                continue
            if not " " <= first <= "~":
                continue
            try:
                from firmware.console import Console
                await Console(self, poll).run(first)
                del Console
            except MemoryError:
                print("\r\nconsole: not enough memory right now; try again in a moment")
            unload("firmware.console")

    async def provision(self):
        from firmware.prov.manager import Provisioning
        self.state = "provisioning"
        p = Provisioning(self.store, self.station, self.node_id, VERSION)
        done = await p.run()
        del p
        unload("firmware.prov", "x25519", "aes", "protobuf", "sha512", "srp6a")
        return done

    def start_telemetry(self):
        """Sampling starts with the first network and goes on offline: readings wait in the
        outbox (flash) until the cloud has them."""
        if self.telemetry is None:
            from firmware.telemetry.outbox import Outbox, sinks
            from firmware.telemetry.sampler import Sampler
            box = Outbox(self.store, sinks(self.store))
            sampler = Sampler(self.store, box)
            self.telemetry = (box, sampler)
            asyncio.create_task(sampler.run())
            log.info("app", "telemetry: %d readings waiting, next seq %d" % (len(box), box.next_seq))

    async def run(self):
        asyncio.create_task(self.blink())
        asyncio.create_task(self.button())
        asyncio.create_task(self.console())
        backoff = _JOIN_BACKOFF_MS
        while True:
            if self.reprovision or not self.store.wifi_networks():
                self.reprovision = False
                if await self.provision() and self.station.state()[0] == wifi.CONNECTED:
                    await self.online()      # joined during provisioning: no need to rejoin
                elif not self.store.wifi_networks():
                    # Window timed out with nothing learned: radio off until the button is
                    # held again (which reboots into a new window).
                    self.state = "offline"
                    while True:
                        await asyncio.sleep(3600)
                continue
            self.state = "connecting"
            if await self.station.join_known(self.store.wifi_networks()):
                backoff = _JOIN_BACKOFF_MS
                await self.online()
            else:
                self.state = "offline"
                self.start_telemetry()      # offline readings wait in the outbox
                log.warning("app", "no known network reachable; retrying in %d s" % (backoff // 1000))
                await asyncio.sleep_ms(backoff)
                backoff = min(backoff * 2, _JOIN_BACKOFF_MAX_MS)

    def key_changed(self):
        """The console stored a new registration key: register now, not at the next retry."""
        if self.telemetry is not None:
            from firmware.telemetry.outbox import sinks
            if "thingspeak" in sinks(self.store):
                self.telemetry[0].attach("thingspeak")  # readings from now on wait for it
        if self.phase is not None:
            self.phase.key_changed()

    async def online(self):
        """Connected: the online phase (firmware/online.py) until the link is lost. Its code
        is loaded for the phase only: provisioning, the tightest moment, does without it."""
        from firmware.online import Online
        self.phase = Online(self)
        try:
            await self.phase.run()
        finally:
            self.phase = None
            unload("firmware.online")


def banner(node_id):
    free, alloc = board.heap()
    log.info("roost", "roost %s node %s heap free %d alloc %d reset cause %d" % (
        VERSION, node_id, free, alloc, board.reset_cause()))


def main():
    app = App()
    banner(app.node_id)
    try:
        asyncio.run(app.run())
    except Exception as e:  # not KeyboardInterrupt: Ctrl-C must reach the REPL
        import sys
        sys.print_exception(e)
        log.error("roost", "application crashed: %r; resetting in 5 s" % (e,))
        time.sleep(5)
        board.reset()
