"""roost: one command line for the boards, real or simulated.

Every subcommand fails with one clear line and a non-zero status; --verbose shows details.
"""
import argparse
import json
import signal
import sys
import threading


class CliError(Exception):
    pass


def _stop_on_sigterm():
    """An event set by SIGTERM, installed before the subcommand announces itself: whoever read
    the announcement may stop it at once."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    return stop


def _wait_for_stop(stop=None):
    """Block until Ctrl-C or SIGTERM: how a long-running subcommand ends."""
    stop = stop or _stop_on_sigterm()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass


def cmd_board(args):
    from tools.sim.board import Board
    from tools.sim.world import World
    world = World.load(args.world) if args.world else World()
    board = Board(args.flash, ram=args.ram, heap=args.heap, world=world, micropython=args.micropython,
                  console_port=args.console_port, pace=args.pace,
                  mac=bytes.fromhex(args.mac) if args.mac else None)

    def announce(extra):
        print(json.dumps(extra), flush=True)
    board.on_ports = announce
    stop = _stop_on_sigterm()
    board.start()
    announce(board.ports())
    _wait_for_stop(stop)
    board.stop()


def cmd_flash(args):
    """MicroPython on a real board: check the image, detect the chip, erase, write, reset (esptool)."""
    from tools import flash
    try:
        flash.flash(args.port, args.firmware, chip=args.chip, baud=args.baud, erase=not args.no_erase,
                    verbose=args.verbose)
    except flash.FlashError as e:
        raise CliError(str(e)) from (e.__cause__ or e)


def cmd_deploy(args):
    from tools import deploy
    if bool(args.image) == bool(args.port):
        raise CliError("deploy needs exactly one target: --image FILE or --port PORT")
    factory = None
    if args.factory:
        with open(args.factory) as f:
            factory = json.load(f)
    if args.sec2_password:
        # Security 2: only the SRP salt and verifier go to the board, never the password.
        from tools.prov.factory import sec2_factory
        factory = factory or {}
        prov = factory.setdefault("prov", {})
        prov["sec"] = 2
        prov.update(sec2_factory(args.sec2_password))
    if args.image:
        deploy.to_image(args.image, mpy=args.mpy, romfs=args.romfs, frozen=args.frozen,
                        micropython=args.micropython, factory=factory)
    else:
        deploy.to_port(args.port, mpy=args.mpy, factory=factory, romfs=args.romfs, frozen=args.frozen)


def cmd_sim(args):
    """The product demo (tools/demo.py): the local cloud, a board out of the box provisioned by the
    simulated phone, bootstrapped, mapped, registered, streaming; a live line of its readings."""
    from tools import demo
    out = sys.stdout.buffer
    pending = bytearray()

    def console(data):              # the UART arrives in chunks: show whole lines
        pending.extend(data.replace(b"\r", b""))
        *lines, rest = bytes(pending).split(b"\n")
        pending[:] = rest
        out.write(b"".join(b"  | " + line + b"\n" for line in lines if line))
        out.flush()

    def map_user(cloud_dir, node_id, secret, token):
        return _cloud_map(argparse.Namespace(dir=str(cloud_dir)), node_id, secret, token, poll=0.2)
    try:
        demo.run(args.dir, ram=args.ram, heap=args.heap, seconds=args.seconds, echo=console, map_user=map_user,
                 say=lambda line: print("roost sim: " + line, flush=True),
                 transport=args.transport or demo.TRANSPORT, pace=args.pace)
    except demo.DemoError as e:
        raise CliError(str(e))
    except KeyboardInterrupt:
        pass


def cmd_provision(args):
    """The phone: provision a board over BLE (real, or a simulated board's air) or its SoftAP."""
    from tools.prov.client import Provisioner
    from tools.prov.transport import BleakTransport, HttpTransport
    missing = [o for o in ("transport", "ssid", "passphrase") if getattr(args, o) is None]
    if missing:
        raise CliError("provision needs " + ", ".join("--" + o for o in missing))
    say = lambda line: print(line, flush=True)  # noqa: E731
    if args.transport == "ble":
        transport = BleakTransport(args.name, air=_air_address(args.board))
    else:
        transport = HttpTransport(args.host, args.port)
    with transport:
        if transport.kind == "ble":
            say("BLE: connected to %s (MTU %s)" % (transport.peer, transport.mtu))
        p = Provisioner(transport, security=args.sec, pop=args.pop, username=args.username)
        result = p.provision(args.ssid, args.passphrase, user_id=args.user_id, secret=args.secret,
                             claim=args.claim, on_progress=say, timeout=args.timeout)
    say("node ID: %s" % (result.node_id or "not reported (give --user-id or --claim)"))


def _air_address(board):
    """--board sim://HOST:PORT or HOST:PORT (the "ble_air" `roost board` prints) -> "HOST:PORT"."""
    if not board:
        return None
    addr = board.split("://", 1)[1] if "://" in board else board
    host, _, port = addr.rpartition(":")
    if not port.isdigit():
        raise CliError("--board wants sim://HOST:PORT, the \"ble_air\" that `roost board` prints")
    return "%s:%s" % (host or "127.0.0.1", port)


def cmd_provision_qr(args):
    from tools.prov.qr import qr_payload, qr_text
    payload = qr_payload(args.name, args.pop, args.transport, args.username)
    print(qr_text(payload) or "", end="")
    print(payload)


def _console_command(args, line, fallback, answers=(), until=None):
    """A command typed at the running firmware's roost> prompt: the firmware keeps running. Only
    when it is not at its prompt (stopped at the Python REPL, crashed) the same job runs through
    the raw REPL (fallback: firmware/console.py's function and arguments), then the firmware
    restarts, as it would after a reset."""
    from tools.console import Console, NotAtPrompt, PROMPT
    with Console(args.port) as c:
        try:
            return c.command(line, answers, until or PROMPT)
        except NotAtPrompt:
            print("the firmware is not at its roost> prompt: ran %s from the Python REPL and restarted "
                  "the firmware" % fallback[0], file=sys.stderr)
            out = c.firmware(*fallback)
            c.restart()
            return out


def cmd_console_set_key(args):
    key = args.key
    if not key:
        import getpass
        key = getpass.getpass("registration key: ")
    out = _console_command(args, "key", ("set_key", key), answers=[("registration key: ", key)])
    print(out.strip())
    if "registration key stored" not in out:
        raise CliError("the board did not store the key")
    print("the board registers with it once it is online")


def cmd_console_terminal(args):
    from tools.console import ConsoleError, terminal
    if not args.port:
        raise CliError("roost console needs --port PORT (a terminal), or one of set-key, status, factory-reset")
    try:
        terminal(args.port, banner="roost console on %s: Ctrl-] quits, Ctrl-C reaches the board's "
                                   "Python REPL" % args.port)
    except ConsoleError as e:
        raise CliError(str(e))


def cmd_console_status(args):
    print(_console_command(args, "status", ("status",)).strip())


def cmd_console_factory_reset(args):
    if not args.yes:
        raise CliError("factory reset erases Wi-Fi networks, keys and registration: add --yes")
    print(_console_command(args, "factory-reset", ("factory_reset",), answers=[("type yes: ", "yes")],
                           until=b"rebooting").strip())


def cmd_cloud_serve(args):
    """The local cloud until Ctrl-C/SIGTERM; state (ports, users, devices, certificates) in --dir."""
    import logging
    from tools.cloud.broker import find_mosquitto
    from tools.cloud.local import LocalCloud
    if not find_mosquitto():
        raise CliError("mosquitto is not installed (Debian/Ubuntu: apt-get install mosquitto; or `make setup`)")
    kw = {}
    if args.public_host:      # a board on the LAN: it is told this address and the real ports
        kw = dict(http_name=args.public_host, mqtt_name=args.public_host, ntp_name="pool.ntp.org",
                  http_advertised_port=None, mqtt_advertised_port=None)
    bind = args.bind or ("0.0.0.0" if args.public_host else "127.0.0.1")
    cloud = LocalCloud(args.dir, http_port=args.http_port, mqtt_tls_port=args.mqtt_port, bind=bind,
                       mapping_timeout=args.mapping_timeout, **kw)
    try:
        cloud.start()
    except OSError as e:
        raise CliError("cannot start the cloud: %s (ports taken? see %s)" % (e, cloud.broker.log_path))
    print(json.dumps({"http_url": cloud.http_url, "mqtt_tls_port": cloud.mqtt_tls_port,
                      "ca": str(cloud.ca_path), "admin_token": cloud.admin_token, "dir": str(args.dir),
                      "http_name": cloud.http_name, "mqtt_name": cloud.mqtt_name}), flush=True)
    handler = logging.StreamHandler(sys.stdout)       # then one line per mapping/claim event
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("roost.cloud")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        _wait_for_stop()
    finally:
        cloud.stop()


def _cloud_call(args, method, path, body=None, token=None):
    """One request to the cloud running for --dir; returns the decoded JSON answer."""
    import os
    from tools.cloud.client import call
    state_path = os.path.join(args.dir, "cloud.json")
    try:
        with open(state_path) as f:
            state = json.load(f)
    except (OSError, ValueError):
        raise CliError("no cloud in %s (start one: roost cloud serve --dir %s)" % (args.dir, args.dir))
    try:
        status, answer = call(state["http_url"], method, path, body, token or state["admin_token"])
    except OSError as e:
        raise CliError("cloud at %s not reachable (%s); is `roost cloud serve --dir %s` running?"
                       % (state["http_url"], e, args.dir)) from None
    if status >= 400:
        if isinstance(answer, dict):
            why = answer.get("error") or answer.get("description") or answer
        else:
            why = answer.decode(errors="replace").strip() or "no details"
        raise CliError("%s %s: HTTP %d: %s" % (method, path, status, why))
    return answer if answer != b"" else {}


def _cloud_login(args):
    return _cloud_call(args, "POST", "/v1/login", {"user_name": args.user, "password": args.password})


def cmd_cloud_user_add(args):
    print(json.dumps(_cloud_call(args, "POST", "/admin/users", {"name": args.name, "password": args.password})))


def cmd_cloud_device_add(args):
    factory = _cloud_call(args, "POST", "/admin/devices", {"node_id": args.node_id, "secure": args.secure,
                                                           "active": not args.inactive})
    print(json.dumps(factory, indent=1))


def _readings_line(readings, stats):
    from tools.demo import sparkline
    last = readings[-1] if readings else None
    return "%s  %s  %d readings, seq %s..%s, %d missing, %d sent twice (kept once)" % (
        sparkline([r["value"] for r in readings if isinstance(r["value"], (int, float))]) or "-",
        "%.2f %s" % (last["value"], last["unit"] or "") if last else "no readings yet",
        stats["count"], stats["first_seq"], stats["last_seq"], stats["gaps"], stats["duplicates"])


def cmd_cloud_readings(args):
    import time
    doc = _cloud_call(args, "GET", "/admin/readings/%s" % args.node_id)
    readings, stats = doc["readings"], doc["stats"]
    for r in readings[-args.last:] if args.last > 0 else []:
        print("seq %-6d %s  %s %s" % (r["seq"], time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["time"])),
                                      r["value"], r["unit"] or ""))
    print(_readings_line(readings, stats), flush=True)
    shown = stats["count"]
    while args.follow:
        time.sleep(2)
        doc = _cloud_call(args, "GET", "/admin/readings/%s" % args.node_id)
        if doc["stats"]["count"] != shown:
            shown = doc["stats"]["count"]
            print(_readings_line(doc["readings"], doc["stats"]), flush=True)


def cmd_cloud_org_add(args):
    body = {"name": args.name}
    if args.key:
        body["registration_key"] = args.key
    print(_cloud_call(args, "POST", "/admin/orgs", body)["registration_key"])


def cmd_cloud_channel_rotate(args):
    print(_cloud_call(args, "POST", "/admin/channels/%d/rotate" % args.channel_id)["write_key"])


def cmd_cloud_claim_code(args):
    token = _cloud_login(args)["accesstoken"]
    print(json.dumps(_cloud_call(args, "POST", "/v1/device_claims", {}, token=token)))


def _cloud_map(args, node_id, secret, token, poll=1.0, say=lambda line: None):
    """The phone app's half of the user-node mapping: PUT, then poll until it is decided."""
    import time
    req = _cloud_call(args, "PUT", "/v1/user/nodes/mapping",
                      {"node_id": node_id, "secret_key": secret, "operation": "add"}, token=token)
    rid = req["request_id"]
    say("request %s: requested" % rid)
    while True:
        st = _cloud_call(args, "GET", "/v1/user/nodes/mapping?request_id=" + rid, token=token)
        if st["request_status"] != "requested":
            return st["request_status"]
        time.sleep(poll)


def cmd_cloud_map(args):
    token = _cloud_login(args)["accesstoken"]
    say = lambda line: print(line, flush=True)  # noqa: E731
    status = _cloud_map(args, args.node_id, args.secret, token, say=say)
    say("node %s: %s" % (args.node_id, status))
    if status != "confirmed":
        raise CliError("node %s was not mapped: %s" % (args.node_id, status))


def parser():
    from tools.sim.board import RAM_PROFILES
    p = argparse.ArgumentParser(prog="roost", description=__doc__.splitlines()[0])
    p.add_argument("--verbose", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("board", help="run one simulated board until stopped; prints its ports as JSON")
    b.add_argument("--flash", required=True, help="flash image file (created blank if missing)")
    b.add_argument("--ram", choices=RAM_PROFILES, default="esp32",
                   help="the chip's RAM: esp32 (ESP32_GENERIC, no PSRAM: a 56K GC heap that grows into the "
                        "IDF heap shared with BLE, Wi-Fi and TLS) or psram (4 MB of PSRAM); default esp32")
    b.add_argument("--heap", default=None,
                   help="a fixed GC heap instead (e.g. 100K) and an IDF heap that never runs out: experiments")
    b.add_argument("--pace", default=None,
                   help="'esp32': run at an ESP32's speed (calibrated on this host), or a slow-down "
                        "factor; default: the host's speed")
    b.add_argument("--world", help="world JSON: access points, temperature, cloud services")
    b.add_argument("--mac", help="base MAC as 12 hex digits (default: random)")
    b.add_argument("--console-port", type=int, default=0, help="TCP port of the serial console")
    b.add_argument("--micropython", help="unix port binary (default: $ROOST_MICROPYTHON or the venv's)")
    b.set_defaults(fn=cmd_board)

    s = sub.add_parser("sim", help="the product demo on a simulated board (what `make sim` runs)")
    s.add_argument("--dir", default=".sim", help="working folder for images and logs")
    s.add_argument("--ram", choices=RAM_PROFILES, default="esp32", help="the board's RAM (as `roost board`)")
    s.add_argument("--heap", default=None, help="a fixed GC heap instead (as `roost board`)")
    s.add_argument("--seconds", type=float, default=0,
                   help="seconds of live readings, then stop (default: until Ctrl-C)")
    s.add_argument("--transport", choices=("softap", "ble"), default=None,
                   help="how the simulated phone provisions the board (default ble)")
    s.add_argument("--pace", default=None, help="'esp32': the board runs at an ESP32's speed")
    s.set_defaults(fn=cmd_sim)

    f = sub.add_parser("flash", help="put a MicroPython firmware image on a real board (esptool: "
                                     "detect the chip, erase, write at its offset, reset)")
    f.add_argument("--port", required=True, help="serial port of the board, e.g. /dev/ttyUSB0 or COM3")
    f.add_argument("--firmware", required=True, help="the firmware .bin from micropython.org/download")
    f.add_argument("--chip", help="esp32, esp32s2, esp32s3, esp32c2, esp32c3, esp32c5, esp32c6, esp32h2, "
                                  "esp32p4 (default: the image's); the board must be this chip")
    f.add_argument("--baud", type=int, default=460800, help="baud rate for writing (default 460800)")
    f.add_argument("--no-erase", action="store_true", help="do not erase the whole flash first")
    f.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="esptool's full output, and its traceback on errors")
    f.set_defaults(fn=cmd_flash)

    d = sub.add_parser("deploy", help="put boot.py, main.py, firmware/, lib/ on a board or an image")
    d.add_argument("--image", help="simulated board flash image")
    d.add_argument("--port", help="serial port or socket://host:port of a board's console")
    d.add_argument("--mpy", action="store_true", help="deploy .mpy built by mpy-cross")
    where = d.add_mutually_exclusive_group()
    where.add_argument("--romfs", action="store_true",
                       help="code in the romfs partition (builds with one: partitions-4MiB-romfs.csv); it runs from flash and saves heap")
    where.add_argument("--frozen", action="store_true",
                       help="the board's MicroPython has the code frozen in (built with manifest.py): only boot.py, main.py "
                            "and the factory config go to its filesystem")
    d.add_argument("--factory", help="factory config JSON to write (node_id, pop, prov, endpoints...)")
    d.add_argument("--sec2-password", metavar="PW",
                   help="security 2: store the SRP salt and verifier of this password (not the password)")
    d.add_argument("--micropython", help="unix port binary used to write the image")
    d.set_defaults(fn=cmd_deploy)

    v = sub.add_parser("provision", help="provision a board (the phone's side: BLE, simulated air or SoftAP)")
    v.add_argument("--transport", choices=("ble", "softap"),
                   help="ble: over Bluetooth LE (bleak); softap: HTTP to the board's access point")
    v.add_argument("--board", metavar="sim://HOST:PORT",
                   help="(ble) a simulated board: the \"ble_air\" `roost board` prints "
                        "(or set ROOST_BLE_AIR); default: the computer's Bluetooth")
    v.add_argument("--name", help="(ble) advertised name, e.g. PROV_a1b2c3, or address; "
                                  "default: the first PROV_ device")
    v.add_argument("--host", default="192.168.4.1", help="(softap) the board's address")
    v.add_argument("--port", type=int, default=80, help="(softap) HTTP port")
    v.add_argument("--pop", help="proof of possession (security 1; the password of security 2)")
    v.add_argument("--sec", type=int, choices=(0, 1, 2), help="security scheme (default: what the board says)")
    v.add_argument("--username", default="wifiprov", help="(security 2) SRP username")
    v.add_argument("--ssid", help="Wi-Fi network name")
    v.add_argument("--passphrase", help="Wi-Fi passphrase")
    v.add_argument("--user-id", help="RainMaker user ID to map the node to (sent before Wi-Fi)")
    v.add_argument("--secret", help="secret key of the user mapping (default: a random UUID4)")
    v.add_argument("--claim", help="claim code (roost-claim endpoint)")
    v.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for Wi-Fi (default 60)")
    v.set_defaults(fn=cmd_provision)
    vs = v.add_subparsers(dest="provision_cmd")
    q = vs.add_parser("qr", help="print the provisioning QR code the phone apps scan")
    q.add_argument("--name", required=True, help="advertised name, e.g. PROV_a1b2c3")
    q.add_argument("--pop", help="proof of possession (left out of the code when not given)")
    q.add_argument("--transport", choices=("ble", "softap"), default="ble")
    q.add_argument("--username", help="(security 2) SRP username, e.g. wifiprov")
    q.set_defaults(fn=cmd_provision_qr)

    k = sub.add_parser("console", help="the board's serial console: an interactive terminal (with --port "
                                       "alone), or registration key, status, factory reset")
    k.add_argument("--port", help="serial port or socket://host:port: an interactive terminal (Ctrl-] quits)")
    k.set_defaults(fn=cmd_console_terminal)
    ks = k.add_subparsers(dest="console_cmd")

    def console_cmd(name, fn, help):
        x = ks.add_parser(name, help=help)
        x.add_argument("--port", required=True, help="serial port or socket://host:port (simulated board)")
        x.set_defaults(fn=fn)
        return x
    x = console_cmd("set-key", cmd_console_set_key, "store the registration key (then the board registers)")
    x.add_argument("key", nargs="?", help="XXXXXXXX-XXXXXXXX (asked for without echo if left out)")
    console_cmd("status", cmd_console_status, "show the board's state (no secrets)")
    x = console_cmd("factory-reset", cmd_console_factory_reset, "erase user data, keep the factory config")
    x.add_argument("--yes", action="store_true", help="really erase")

    c = sub.add_parser("cloud", help="the local cloud: bootstrap, MQTT broker (TLS), user mapping, claim codes, "
                                        "self-registration, ThingSpeak")
    cs = c.add_subparsers(dest="cloud_cmd", required=True)

    def cloud_cmd(name, fn, help, parent=cs):
        x = parent.add_parser(name, help=help)
        x.add_argument("--dir", default=".cloud", help="the cloud's state folder (default .cloud)")
        x.set_defaults(fn=fn)
        return x
    x = cloud_cmd("serve", cmd_cloud_serve, "run the cloud until stopped; prints its URLs as JSON")
    x.add_argument("--http-port", type=int, default=0, help="HTTP port (default: as last time, else free)")
    x.add_argument("--mqtt-port", type=int, default=0, help="MQTT TLS port (default: as last time, else free)")
    x.add_argument("--bind", help="address to listen on (default 127.0.0.1; 0.0.0.0 with --public-host)")
    x.add_argument("--public-host", help="name or LAN address boards use to reach this machine "
                                         "(goes into the certificate and the factory config)")
    x.add_argument("--mapping-timeout", type=float, default=60.0, help="user-node mapping timeout, s")
    cu = cs.add_parser("user", help="users of the cloud")
    cus = cu.add_subparsers(dest="cloud_user_cmd", required=True)
    x = cloud_cmd("add", cmd_cloud_user_add, "add a user", cus)
    x.add_argument("name")
    x.add_argument("--password", required=True)
    cd = cs.add_parser("device", help="devices (bootstrap configs)")
    cds = cd.add_subparsers(dest="cloud_device_cmd", required=True)
    x = cloud_cmd("add", cmd_cloud_device_add, "add a device; prints its factory config "
                  "(for roost deploy --factory)", cds)
    x.add_argument("node_id")
    x.add_argument("--secure", action="store_true", help="the device uses the secure (encrypted) bootstrap")
    x.add_argument("--inactive", action="store_true", help="start inactive: no channel access yet")
    co = cs.add_parser("org", help="midPoint organisations (self-registration with a registration key)")
    cos = co.add_subparsers(dest="cloud_org_cmd", required=True)
    x = cloud_cmd("add", cmd_cloud_org_add, "add an organisation; prints its registration key", cos)
    x.add_argument("name")
    x.add_argument("--key", help="the registration key XXXXXXXX-XXXXXXXX (default: a new random one)")
    cc = cs.add_parser("channel", help="ThingSpeak channels")
    ccs = cc.add_subparsers(dest="cloud_channel_cmd", required=True)
    x = cloud_cmd("rotate", cmd_cloud_channel_rotate, "give a channel a new write key; prints it", ccs)
    x.add_argument("channel_id", type=int)
    x = cloud_cmd("claim-code", cmd_cloud_claim_code, "get a claim code for a user")
    x.add_argument("--user", required=True)
    x.add_argument("--password", required=True)
    x = cloud_cmd("map", cmd_cloud_map, "map a node to a user (the app's side) and wait for the node")
    x.add_argument("node_id")
    x.add_argument("secret", help="the secret key the phone gave the node")
    x.add_argument("--user", required=True)
    x.add_argument("--password", required=True)
    x = cloud_cmd("readings", cmd_cloud_readings, "a node's readings as the cloud stores them (each seq once)")
    x.add_argument("node_id")
    x.add_argument("--last", type=int, default=10, help="how many of the latest to list (default 10)")
    x.add_argument("--follow", action="store_true", help="then a live line as more arrive, until Ctrl-C")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        args.fn(args)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # one clear line, unless asked for the whole story
        if args.verbose:
            raise
        print("roost %s: error: %s" % (args.cmd, e), file=sys.stderr)
        sys.exit(1)
