"""A simulated ESP32 board: the chip (MicroPython unix port), its flash (a LittleFS image file),
its UART (a TCP port that mpremote can drive), its radio (the air) and its power switch.

    board = Board("flash.img", world=World(aps=[...]))
    board.start()
    board.wait_for(b"roost: node")
    board.power_cut()

Reset and soft reset restart the chip process; a power cut SIGKILLs it at whatever instant
it is and starts it again on the same image, with RTC memory lost.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .air import AirServer, close_listener, listen_local
from .proxy import Proxy
from .world import Radio, World

CHIP = Path(__file__).resolve().parent / "chip"
FLASH_SIZE = 0x200000          # the vfs partition of a 4 MB ESP32
# RAM profiles (tools/sim/chip/esp32/esp32_ram.c): "esp32" is ESP32_GENERIC without PSRAM, the
# default; "psram" adds 4 MB of PSRAM. Either starts the GC heap at the port's initial size and
# grows it into the IDF heap. A fixed heap (Board(heap=...), --heap) is for experiments.
RAM_PROFILES = ("esp32", "psram")
INITIAL_HEAP = 56 * 1024       # MICROPY_GC_INITIAL_HEAP_SIZE for the ESP32 (esp32/mpconfigport.h:32)
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5


def micropython_binary(explicit=None):
    """The chip: --micropython, $ROOST_MICROPYTHON, else the ESP32 variant built from source
    (tools/sim/chip/build.py; built on first use, cached). Another binary must be a build of
    the same variant: the simulator's ROM and shims are frozen into it."""
    for cand in (explicit, os.environ.get("ROOST_MICROPYTHON")):
        if cand:
            return cand
    from .chip import build
    return build.chip_binary()


def chip_command(binary, heap):
    """argv that starts the chip's ROM (frozen, tools/sim/chip/rom.py) with a `heap`-byte GC heap."""
    return [binary, "-X", "heapsize=%d" % heap, "-m", "rom"]


def chip_env(**extra):
    """The chip's environment: only frozen modules on its path (nothing from the host's cwd)."""
    return dict(os.environ, MICROPYPATH=".frozen", **extra)


def ble_mac(base_mac):
    """The Bluetooth MAC of an ESP32 is its base MAC + 2 (IDF esp_read_mac, ESP_MAC_BT)."""
    return (int.from_bytes(base_mac, "big") + 2).to_bytes(6, "big")


def heap_bytes(size):
    """"100K" / "2M" / 65536 -> bytes, as micropython's -X heapsize reads it."""
    s = str(size).strip().upper()
    mult = {"K": 1024, "M": 1024 * 1024}.get(s[-1:], 1)
    return int(s.rstrip("KM")) * mult


# The romfs partition of MicroPython's partitions-4MiB-romfs.csv (0x20000 bytes at 0x1E0000).
# A board has one when the file beside its flash image exists (romfs_path in tools/deploy.py).
ROMFS_PARTITION_SIZE = 0x20000


def blank_image(path, size=FLASH_SIZE):
    """An erased flash: all 0xFF. The chip formats it at first boot, like a new ESP32."""
    with open(path, "wb") as f:
        f.write(b"\xff" * size)


class Board:
    def __init__(self, flash, ram="esp32", heap=None, world=None, mac=None, micropython=None,
                 console_port=0, echo=None, heapwatch=None, pace=None, romfs_partition=False):
        self.flash = Path(flash)
        rom = Path(str(self.flash) + ".romfs")
        if romfs_partition and not rom.exists():  # partitions-4MiB-romfs.csv, erased
            blank_image(rom, ROMFS_PARTITION_SIZE)
        self.heapwatch = heapwatch          # a host file for the live heap's samples (chip/heapwatch.py)
        if ram not in RAM_PROFILES:
            raise ValueError("ram: one of %s, not %r" % (", ".join(RAM_PROFILES), ram))
        self.ram = None if heap else ram    # None: a fixed heap of `heap` bytes, an IDF that never runs out
        self.heap = heap or INITIAL_HEAP
        self.world = world or World()
        self.mac = mac or bytes.fromhex("240ac4") + os.urandom(3)
        self.binary = micropython_binary(micropython)
        # pace: None (host speed), "esp32" (calibrated: tools/sim/pace.py) or a factor.
        from .pace import factor
        self.pace = factor(pace, self.binary)
        self.radio = Radio(self.world, self.mac, on_link_down=self._link_down)
        self.echo = echo                    # fn(bytes) for console output (e.g. a terminal)
        self.proc = None
        self.lock = threading.RLock()
        self.out = bytearray()              # everything the chip printed, "cooked" like a UART
        self.out_cond = threading.Condition()
        self._last_byte = 0
        self.boots = 0
        self.reset_cause = PWRON_RESET
        self.rtc_memory = b""
        self.clock_base_us = 0              # host µs at which the board's RTC read 2000-01-01 (esp32_clock.c)
        self.led = []                       # (monotonic time, value) of pin writes to the LED
        self.pins = {}
        self.proxies = {}
        self.softap_port = None
        self.on_ports = None                # fn(dict) when a port appears (SoftAP HTTP)
        self.chip_radio = None              # the chip's Bluetooth controller on the world's air
        self.halted = False
        self.uart_intr = True               # Ctrl-C interrupts (code runs) or is a character (REPL reads)
        self._intr_pending = None           # the chip process a Ctrl-C waits to interrupt
        self._wdt = None
        self.nvs_path = self.flash.with_name(self.flash.name + ".nvs.json")
        self.air = AirServer(self._air_request)
        self.console = _ConsoleServer(self, console_port)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self):
        if not self.flash.exists():
            blank_image(self.flash)
        self._spawn(PWRON_RESET)
        return self

    def stop(self):
        with self.lock:
            self._kill()
        self.air.close()
        self.console.close()
        self._radio_off()
        for p in self.proxies.values():
            p.close()

    def power_cut(self):
        """Pull the plug at this very instant, then power on again."""
        with self.lock:
            self._kill()
            self.rtc_memory = b""
            self._spawn(PWRON_RESET)

    def reset(self, cause=HARD_RESET, raw=False):
        with self.lock:
            self._kill()
            if cause == PWRON_RESET:
                self.rtc_memory = b""
            self._spawn(cause, raw)

    def _kill(self):
        p, self.proc = self.proc, None
        if p and p.poll() is None:
            p.kill()
            p.wait()
        self._link_down()
        self.radio = Radio(self.world, self.mac, on_link_down=self._link_down)
        self._radio_off()                   # BLE links drop with the chip
        self._wdt = None

    def _radio_off(self):
        r, self.chip_radio = self.chip_radio, None
        if r is not None:
            r.close()

    def _spawn(self, cause, raw=False):
        if cause == PWRON_RESET:            # the RTC starts from 2000-01-01 00:00:00
            self.clock_base_us = time.time_ns() // 1000
        self.reset_cause = cause
        self.halted = False
        self.uart_intr = True
        rom = Path(str(self.flash) + ".romfs")     # the romfs partition, if the board has one
        rom_size = rom.stat().st_size if rom.exists() else 0
        from . import radio                         # Bumble: only for boards, not for tools that run the chip
        self.chip_radio = radio.attach_chip(self.world.air(), ble_mac(self.mac))
        env = chip_env(ROOST_FLASH=str(self.flash), ROOST_AIR="127.0.0.1:%d" % self.air.port,
                       ROOST_ROMFS=str(rom) if rom_size else "", MICROPYBTUART=self.chip_radio.pty_path,
                       ROOST_MAC=self.mac.hex(), ROOST_RESET_CAUSE=str(cause),
                       ROOST_REPL="raw" if raw else "", ROOST_HEAPWATCH=str(self.heapwatch or ""),
                       ROOST_CLOCK_BASE_US=str(self.clock_base_us), ROOST_PACE=str(self.pace or ""),
                       ROOST_RAM=self.ram or "", ROOST_RAM_ROMFS=str(rom_size + 64 if rom_size else 0))
        # ROMFS is flash on a chip, but VfsRom reads it from a buffer here: that buffer's
        # bytes are added to the heap, not taken from the board's (nor from the IDF's).
        self.proc = subprocess.Popen(
            chip_command(self.binary, heap_bytes(self.heap) + (rom_size + 64 if rom_size else 0)),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
            bufsize=0, start_new_session=True)
        self.boots += 1
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True, name="uart").start()

    def _pump(self, proc):
        while True:
            data = proc.stdout.read1(4096) if hasattr(proc.stdout, "read1") else proc.stdout.read(1)
            if not data:
                break
            self._emit(data)
        code = proc.wait()
        with self.lock:
            if self.proc is proc:
                # Nobody asked for this exit: a crash. A real chip's panic handler reboots.
                self._emit(("\r\n[sim] chip exited with status %d; rebooting\r\n" % code).encode())
                time.sleep(0.2)
                if self.proc is proc:
                    self._kill()
                    self._spawn(HARD_RESET)

    def _emit(self, data):
        cooked = bytearray()
        last = self._last_byte
        for b in data:
            if b == 10 and last != 13:
                cooked.append(13)
            cooked.append(b)
            last = b
        self._last_byte = last
        with self.out_cond:
            self.out += cooked
            self.out_cond.notify_all()
        self.console.send(bytes(cooked))
        if self.echo:
            self.echo(bytes(cooked))

    # -- what tests and tools look at --------------------------------------------------------
    def mark(self):
        """An offset into the console output; wait_for(since=mark) looks only after it."""
        with self.out_cond:
            return len(self.out)

    def wait_softap(self, timeout=10.0):
        """The port of the board's SoftAP HTTP server once it listens (TimeoutError if it does not)."""
        deadline = time.monotonic() + timeout
        while self.softap_port is None:
            if time.monotonic() > deadline:
                raise TimeoutError("the board's SoftAP HTTP server did not come up within %g s" % timeout)
            time.sleep(0.05)
        return self.softap_port

    def wait_for(self, pattern, timeout=10.0, since=0):
        """Wait until the console shows `pattern` (literal bytes/str, or a compiled bytes regex)."""
        if isinstance(pattern, str):
            pattern = pattern.encode()
        rx = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        deadline = time.monotonic() + timeout
        with self.out_cond:
            while True:
                m = rx.search(self.out, since)
                if m:
                    return m
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = bytes(self.out[max(since, len(self.out) - 2000):]).decode(errors="replace")
                    raise TimeoutError("console never showed %r; last output:\n%s" % (rx.pattern, tail))
                self.out_cond.wait(left)

    def write_console(self, data):
        """Type on the UART (Ctrl-C arrives as an interrupt, as the real UART driver does)."""
        for chunk in re.split(rb"(\x03)", data):
            if chunk == b"\x03" and self.uart_intr:
                self.interrupt()
            elif chunk:
                # What follows a Ctrl-C (mpremote's Ctrl-A) is for the REPL, not for firmware
                # that reads the UART: a chip raises the interrupt within microseconds, ours on
                # its next air call, so hold the bytes until it has been raised.
                deadline = time.monotonic() + 2.0
                while self._intr_pending is not None and time.monotonic() < deadline:
                    time.sleep(0.005)
                p = self.proc
                try:
                    p.stdin.write(chunk)
                except (OSError, AttributeError):
                    pass  # chip rebooting: bytes on a dead UART are lost

    def interrupt(self):
        """Ctrl-C while code runs. It rides on the reply to the chip's next air call (raised
        there as KeyboardInterrupt, at a point where no lock of the VM is held); only code that
        makes no air call for a second gets SIGINT. A signal can land inside the unix port's
        qstr interning, whose mutex (no-GIL threaded build) it then leaves locked: the chip
        deadlocks. An ESP32 has a GIL and checks its UART interrupt at safe points instead."""
        p = self.proc
        if not p or p.poll() is not None:
            return
        self._intr_pending = p

        def fallback():
            time.sleep(1.0)
            if self._intr_pending is p and p.poll() is None:
                self._intr_pending = None
                try:
                    os.kill(p.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        threading.Thread(target=fallback, daemon=True).start()

    def ports(self):
        """What another process needs to reach this board: its UART, its SoftAP server, and
        the air a phone joins (ROOST_BLE_AIR for the bleak backend, tools/ble)."""
        return {"console": self.console.port, "ble_air": self.ble_air,
                "softap_http": self.softap_port, "flash": str(self.flash), "mac": self.mac.hex()}

    @property
    def ble_address(self):
        """The board's Bluetooth address as a phone sees it ("24:0A:C4:..."): base MAC + 2."""
        return ":".join("%02X" % b for b in ble_mac(self.mac))

    @property
    def ble_air(self):
        """"host:port" where a phone joins this board's room (tools/ble, ROOST_BLE_AIR)."""
        return "127.0.0.1:%d" % self.world.phone_port()

    def led_on(self):
        return bool(self.led and self.led[-1][1])

    # -- the air -----------------------------------------------------------------------------
    def _link_down(self):
        for p in list(self.proxies.values()):
            p.cut()

    def _air_request(self, msg):
        op = msg["op"]
        fn = getattr(self, "_op_" + op.replace(".", "_"), None)
        if fn is None:
            raise OSError(19, "no such device")  # ENODEV
        else:
            reply = fn(msg) or {}
        if self._intr_pending is not None and self._intr_pending is self.proc:
            self._intr_pending = None
            reply = dict(reply, intr=1)          # raised as KeyboardInterrupt by the chip's _air.call
        return reply

    def _op_power(self, msg):
        kind = msg["kind"]
        if kind == "halt":
            self.halted = True
            time.sleep(1)
            return
        cause = {"hard": HARD_RESET, "soft": SOFT_RESET, "deepsleep": DEEPSLEEP_RESET}[kind]
        proc = self.proc

        def later():
            with self.lock:
                if self.proc is not proc:
                    return
                self._kill()
            if kind == "deepsleep" and msg.get("ms"):
                time.sleep(msg["ms"] / 1000)
            with self.lock:
                if self.proc is None:
                    try:
                        self._spawn(cause, msg.get("raw", False))
                    except Exception as e:      # say so on the UART, where tests look
                        self._emit(("\r\n[sim] the chip did not start again: %s\r\n" % e).encode())
                        raise
        threading.Thread(target=later, daemon=True).start()

    def _op_romfs_write(self, msg):
        # The romfs partition's new bytes (tools/sim/shims/sim_esp32.py Partition): flash.
        with open(str(self.flash) + ".romfs", "r+b") as f:
            f.seek(msg["offset"])
            f.write(bytes.fromhex(msg["data"]))

    def _op_uart(self, msg):
        self.uart_intr = msg["intr"]
        self._intr_pending = None                # code finished: a late Ctrl-C has nothing to stop

    def _op_pin(self, msg):
        pin = msg["pin"]
        if "value" in msg:
            self.pins[pin] = msg["value"]
            if pin == 2:                       # the on-board LED of most ESP32 dev kits
                self.led.append((time.monotonic(), msg["value"]))
                del self.led[:-1000]
            return
        if pin == 0:                           # BOOT button, active low with pull-up
            return {"value": 0 if self.world.button_pressed else 1}
        return {"value": self.pins.get(pin, 0)}

    def _op_adc(self, msg):
        # A TMP36-style analog sensor: 0.5 V at 0 degC, 10 mV per degC, ADC full scale ~3.3 V.
        volts = 0.5 + 0.01 * self.world.temperature
        return {"uv": int(volts * 1e6), "u16": max(0, min(65535, int(volts / 3.3 * 65535)))}

    def _op_clock(self, msg):
        # RTC.datetime() set the chip's clock: the next boot (not a power cut) keeps it.
        self.clock_base_us = int(msg["base_us"])

    def _op_rtc_memory(self, msg):
        if "data" in msg:
            self.rtc_memory = bytes.fromhex(msg["data"])
            return
        return {"data": self.rtc_memory.hex()}

    def _op_wdt(self, msg):
        if "timeout" in msg:
            self._wdt = [msg["timeout"] / 1000, time.monotonic(), self.proc]
            threading.Thread(target=self._watchdog, args=(self._wdt,), daemon=True).start()
        elif self._wdt:
            self._wdt[1] = time.monotonic()

    def _watchdog(self, wdt):
        while self._wdt is wdt:
            time.sleep(0.05)
            if time.monotonic() - wdt[1] > wdt[0]:
                with self.lock:
                    if self._wdt is wdt and self.proc is wdt[2]:
                        self._emit(b"\r\n[sim] watchdog timeout\r\n")
                        self.reset(WDT_RESET)
                return

    def _nvs(self):
        try:
            return json.loads(self.nvs_path.read_text())
        except (OSError, ValueError):
            return {}

    def _op_nvs_get(self, msg):
        return {"value": self._nvs().get(msg["ns"], {}).get(msg["key"])}

    def _op_nvs_commit(self, msg):
        nvs = self._nvs()
        ns = nvs.setdefault(msg["ns"], {})
        for k, v in msg["changes"].items():
            if v is None:
                ns.pop(k, None)
            else:
                ns[k] = v
        tmp = self.nvs_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(nvs))
        os.replace(tmp, self.nvs_path)

    def _op_wlan(self, msg):
        r, iface, fn = self.radio, msg["iface"], msg["fn"]
        if fn == "active":
            if "value" in msg:
                r.set_active(iface, msg["value"])
                return
            return {"value": r.sta_active if iface == 0 else r.ap_active}
        if fn == "connect":
            r.connect(msg["ssid"], msg.get("key"), bytes.fromhex(msg["bssid"]) if msg.get("bssid") else None)
        elif fn == "disconnect":
            r.disconnect()
        elif fn == "isconnected":
            return {"value": r.connected() if iface == 0 else False}
        elif fn == "status":
            return {"value": r.status() if iface == 0 else 1000}
        elif fn == "rssi":
            return {"value": r.rssi()}
        elif fn == "scan":
            return {"value": r.scan()}
        elif fn == "ifconfig":
            return {"value": r.ifconfig(iface)}
        elif fn == "hostname":
            if "value" in msg:
                r.hostname = msg["value"]
                return
            return {"value": r.hostname}
        elif fn == "config_get":
            key = msg["key"]
            if key == "mac":
                return {"value": r.iface_mac(iface).hex()}
            if iface == 1 and key in ("essid", "ssid"):
                return {"value": r.ap_config["essid"]}
            if key in ("ssid", "essid"):
                return {"value": r.requested[0] if r.requested else ""}
            if key == "channel":
                return {"value": r.channel(iface)}
            if key == "reconnects" and iface == 0:
                return {"value": r.reconnects - 1 if r.reconnects else -1}
            if iface == 0 and key in r.sta_config:
                return {"value": r.sta_config[key]}
            if key in r.ap_config:
                return {"value": r.ap_config[key]}
            raise OSError(22, "unknown config param")
        elif fn == "config_set":
            values = dict(msg["values"])
            if "ssid" in values:
                values["essid"] = values.pop("ssid")
            if "key" in values:
                values["password"] = values.pop("key")
            if iface == 0:
                r.configure_sta(values)
            else:
                r.configure_ap(values)

    def _op_resolve(self, msg):
        # No Wi-Fi, no DNS: the ESP32 port raises OSError(-202) from getaddrinfo.
        if not self.radio.connected():
            raise OSError(-202, "no network")
        host, port = msg["host"], msg["port"]
        if not re.fullmatch(r"[\d.]+", host):
            time.sleep(self.world.dns_time)     # a DNS query blocks the chip, as lwIP's does
        target = self.world.services.get("%s:%d" % (host, port)) or self.world.services.get(host)
        if target is None:
            if host in ("127.0.0.1", "localhost"):
                target = (host, port)
            else:
                raise OSError(-202, "unknown host")
        if isinstance(target, str):
            target = (target, port)
        if target[0] == "udp":              # a datagram service (NTP): no connection to cut
            return {"host": target[1], "port": target[2]}
        key = tuple(target)
        proxy = self.proxies.get(key)
        if proxy is None:
            proxy = self.proxies[key] = Proxy(key, self.radio.connected)
        return {"host": "127.0.0.1", "port": proxy.port}

    def _op_listen(self, msg):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if msg["port"] == 80:
            self.softap_port = port
            if self.on_ports:
                self.on_ports({"softap_http": port})
        return {"port": port}


def _quickack(conn):
    # mpremote's socket:// transport (pyserial) leaves Nagle on, so its second small write of a
    # command waits for our ACK, which Linux delays by 40 ms: every raw REPL command then takes
    # 50 ms instead of a UART's few. Acknowledging at once (a flag Linux clears after each ACK)
    # gives the console a UART's pace.
    if hasattr(socket, "TCP_QUICKACK"):
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except OSError:
            pass        # the client just went: the next recv says so


class _ConsoleServer:
    """The UART: one TCP client at a time (a new one takes over, like reopening a serial port)."""

    def __init__(self, board, port=0):
        self.board = board
        self.sock = listen_local(port, 4)
        self.port = self.sock.getsockname()[1]
        self.client = None
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="uart-accept").start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _quickack(conn)
            with self.lock:
                old, self.client = self.client, conn
            if old:
                old.close()
            threading.Thread(target=self._read, args=(conn,), daemon=True, name="uart-rx").start()

    def _read(self, conn):
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                data = b""
            if not data:
                with self.lock:
                    if self.client is conn:
                        self.client = None
                return
            _quickack(conn)
            self.board.write_console(data)

    def send(self, data):
        with self.lock:
            c = self.client
        if c:
            try:
                c.sendall(data)
            except OSError:
                pass

    def close(self):
        close_listener(self.sock)
        with self.lock:
            if self.client:
                self.client.close()
