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
        self.registrar = None       # the self-registration task's object while online
        self._tasks = []            # the online phase's tasks, cancelled when it ends
        self._tls = None

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
                log.warning("app", "no known network reachable; retrying in %d s" % (backoff // 1000))
                await asyncio.sleep_ms(backoff)
                backoff = min(backoff * 2, _JOIN_BACKOFF_MAX_MS)

    def key_changed(self):
        """The console stored a new registration key: register now, not at the next retry."""
        if self.registrar is not None:
            self.registrar.wake.set()
        elif self.state == "online":
            self._register()

    def _register(self):
        # Self-registration's code is loaded only once there is a key to register with.
        endpoint = self.store.factory["endpoints"]["registration"]
        if endpoint and self.store.get("regkey")["key"]:
            from firmware.cloud.registration import Registrar
            f = self.store.factory
            self.registrar = Registrar(self.store, f["serial"] or self.node_id, self._tls)
            self._tasks.append(asyncio.create_task(self.registrar.run()))

    async def online(self):
        """Connected: run the cloud phase until the link is lost."""
        self.state = "online"
        log.info("app", "online, heap free %d" % board.heap()[0])
        factory = self.store.factory
        endpoints = factory["endpoints"]
        self._tasks = tasks = []
        self._tls = None
        if endpoints["bootstrap"] or endpoints["registration"]:
            # The TLS context first: it needs one contiguous ~3 KB block, which the heap still
            # has now but may not once the cloud code is loaded around the holes provisioning left.
            from firmware.cloud.tls import context
            try:
                self._tls = context(factory["ca_cert"])
            except Exception as e:      # a damaged CA must not take the device down
                log.error("app", "factory CA unusable (%r): no TLS broker possible" % (e,))
        self._register()
        if endpoints["bootstrap"]:
            from firmware.cloud.manager import Cloud
            tasks.append(asyncio.create_task(Cloud(self.store, self.node_id, self._tls).run()))
        if not endpoints["bootstrap"] and not endpoints["registration"]:
            log.info("app", "no cloud in the factory config: staying local")
        try:
            while True:
                await asyncio.sleep_ms(1000)
                if not board.sta().isconnected():
                    log.warning("app", "Wi-Fi lost; rejoining")
                    return
        finally:
            self.registrar = self._tls = None
            for t in tasks:
                t.cancel()      # their sockets are dead anyway; they close them on the way out


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
