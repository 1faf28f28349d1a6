"""`roost sim` (= `make sim`): the whole story on one simulated board, told in the terminal.

The local cloud comes up (HTTP, MQTT over TLS with Mosquitto, SNTP). A board fresh out of the box
gets the firmware and its factory config. A person types the organisation's registration key at
its serial console; the simulated phone provisions it (security 1) with the Wi-Fi credentials and
the user's mapping secret, over the board's SoftAP (HTTP) or BLE. The board bootstraps, connects over TLS MQTT, the user
mapping is confirmed, it registers itself and gets a ThingSpeak channel. The cloud asks it to
sample every 2 s, and a live line shows its readings arriving in both clouds, until Ctrl-C.

The board's own console is echoed with "  |"; everything else is the story.
"""
import math
import re
import threading
import time
import uuid
from pathlib import Path

POP = "abcd1234"                 # the demo board's proof of possession (printed on its label)
# How the phone reaches the board by default: BLE, as Espressif's apps do first.
TRANSPORT = "ble"
WIFI = ("roost-lab", "correct horse")
SPARKS = "▁▂▃▄▅▆▇█"
INTERVAL_S = 2


class DemoError(Exception):
    pass


def sparkline(values, width=40):
    """The last `width` values as a bar of block characters, scaled to their own range."""
    values = values[-width:]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(SPARKS[min(len(SPARKS) - 1, int((v - lo) / span * len(SPARKS)))] for v in values)


def _type(board, text):
    """Type at the board's console like a person: a character at a time."""
    for ch in text.encode():
        board.write_console(bytes([ch]))
        time.sleep(0.01)


class _Room:
    """The room's temperature: a slow swing of two degrees and a little noise, so the chart moves."""

    def __init__(self, world):
        self.world, self.stop = world, threading.Event()
        threading.Thread(target=self._run, daemon=True, name="room").start()

    def _run(self):
        t0 = time.monotonic()
        while not self.stop.wait(0.5):
            t = time.monotonic() - t0
            self.world.temperature = 21.5 + 2.0 * math.sin(t / 20.0) + 0.15 * math.sin(t * 1.7)


def run(directory, ram="esp32", heap=None, seconds=0, say=print, echo=None, map_user=None, transport=TRANSPORT,
        pace=None):
    """The story; `seconds` of live readings at the end (0: until Ctrl-C or SIGTERM).
    map_user(cloud_dir, node_id, secret, token) -> mapping status (the phone app's half).
    ram, heap: the board's RAM profile, or a fixed heap (tools/sim/board.py);
    transport: "softap" or "ble", how the phone provisions the board; pace: the board's
    (None: the host's speed, "esp32": an ESP32's, tools/sim/pace.py)."""
    from tools import deploy
    from tools.cloud.local import LocalCloud
    from tools.prov import ProvError
    from tools.prov.client import Provisioner
    from tools.prov.transport import BleakTransport, HttpTransport
    from tools.sim.board import Board
    from tools.sim.world import AccessPoint, World
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    image = d / "board.img"
    if image.exists():
        image.unlink()          # a board fresh out of the box, every time
    cloud = LocalCloud(d / "cloud", thingspeak_rate_limit=15.0).start()
    board = room = None
    try:
        say("local cloud up: HTTP %s, MQTT over TLS on port %d (Mosquitto), SNTP, state in %s"
            % (cloud.http_url, cloud.mqtt_tls_port, d / "cloud"))
        mac = bytes.fromhex("24a160" + uuid.uuid4().hex[:6])
        node_id = mac.hex().upper()
        cloud.add_device(node_id)
        user = "demo-%s@roost.local" % node_id[-6:]
        uid = cloud.add_user(user, "demo")
        token = cloud.login(user, "demo")
        org = cloud.add_org("Demo Farm %s" % node_id[-4:])
        say("cloud: bootstrap config for node %s; user %s; organisation %r with registration key %s"
            % (node_id, user, org["name"], org["registration_key"]))
        say("deploying the firmware (.mpy) and its factory config (PoP %s, cloud, CA) to a new board" % POP)
        factory = dict(cloud.factory_for(node_id), pop=POP, serial=node_id)
        factory["prov"] = {"sec": 1, "transports": [transport], "timeout_s": 900, "softap_key": "",
                           "srp_salt": "", "srp_verifier": ""}
        deploy.to_image(image, mpy=True, factory=factory, log=say)
        world = World(aps=[AccessPoint(*WIFI, rssi=-48), AccessPoint("neighbours", "not yours", rssi=-77)],
                      services=cloud.world_services())
        room = _Room(world)
        board = Board(image, ram=ram, heap=heap, world=world, echo=echo, mac=mac, pace=pace).start()
        say("board up (%s%s); its serial console is shown with '  |', and is on socket://127.0.0.1:%d "
            "(mpremote connect ...)" % ("a fixed %s heap" % heap if heap else "RAM of an ESP32_GENERIC" + (
                " with PSRAM" if ram == "psram" else ", no PSRAM"), ", at ESP32 pace: %.0fx slower than this host" % board.pace
                                        if board.pace else "", board.console.port))
        board.wait_for(b"provisioning open", timeout=60 if board.pace else 20)
        say("a person types the organisation's registration key at the board's serial console")
        _type(board, "\r")
        board.wait_for(b"roost> ", timeout=5)
        _type(board, "key\r")
        board.wait_for(b"registration key: ", timeout=5)
        _type(board, org["registration_key"] + "\r")
        board.wait_for(b"registration key stored", timeout=5)
        secret = str(uuid.uuid4())
        if transport == "ble":
            say("the phone scans for PROV_ devices and provisions the board over BLE (security 1)")
            phone = BleakTransport(board.ble_address, air=board.ble_air)
        else:
            say("the phone joins the board's PROV_ access point and provisions it over HTTP (security 1)")
            try:
                phone = HttpTransport("127.0.0.1", board.wait_softap(20))
            except TimeoutError as e:
                raise DemoError(str(e))
        try:
            with phone as t:
                p = Provisioner(t, pop=POP, on_progress=lambda line: say("phone: " + line))
                p.establish_session()
                nets = ", ".join("%s (%d dBm)" % (e.ssid, e.rssi) for e in p.scan_wifi())
                say("phone: Wi-Fi networks the board sees: " + nets)
                result = p.provision(*WIFI, user_id=uid, secret=secret,
                                     on_progress=lambda line: say("phone: " + line), poll=0.5)
        except ProvError as e:
            raise DemoError("provisioning over %s failed: %s" % (transport, e))
        say("provisioned: node %s on Wi-Fi with IP %s" % (result.node_id, result.ip))
        status = map_user(d / "cloud", node_id, secret, token)
        say("phone: the cloud says the mapping of node %s to %s is %s" % (node_id, user, status))
        if status != "confirmed":
            raise DemoError("user-node mapping %s" % status)
        board.wait_for(b"listening for commands", timeout=30)
        try:
            answer = cloud.command(node_id, "interval %d" % INTERVAL_S, timeout=15)
        except TimeoutError as e:
            raise DemoError(str(e))
        say("cloud: asked the board to sample every %d s: %s" % (INTERVAL_S, answer))
        reg = board.wait_for(re.compile(rb"registered: channel (\d+)\r\n"), timeout=60)
        channel = int(reg.group(1))
        say("registered: ThingSpeak channel %d for serial %s in %r" % (channel, node_id, org["name"]))
        say("live: readings as the cloud stores them (MQTT, each seq once) and ThingSpeak's channel; "
            "%s" % ("Ctrl-C to stop" if not seconds else "for %g s" % seconds))
        _live(cloud, node_id, channel, seconds, say)
    finally:
        if room:
            room.stop.set()
        if board:
            board.stop()
        cloud.stop()
        say("stopped")


def _live(cloud, node_id, channel, seconds, say):
    stop = threading.Event()
    if not seconds:
        import signal
        signal.signal(signal.SIGTERM, lambda *a: stop.set())
    end = time.monotonic() + seconds if seconds else None
    shown = None
    try:
        while not stop.is_set() and (end is None or time.monotonic() < end):
            readings = cloud.readings(node_id)
            stats = cloud.reading_stats(node_id)
            entries = len(cloud.channel_entries(channel))
            if readings and (stats["count"], entries) != shown:
                shown = (stats["count"], entries)
                last = readings[-1]
                say("%s  %5.2f °C  MQTT %d readings (%d missing, %d sent twice, kept once)  ThingSpeak %d"
                    % (sparkline([r["value"] for r in readings]), last["value"], stats["count"],
                       stats["gaps"], stats["duplicates"], entries))
            stop.wait(1.0)
    except KeyboardInterrupt:
        pass
