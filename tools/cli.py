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


def cmd_board(args):
    from tools.sim.board import Board
    from tools.sim.world import World
    world = World.load(args.world) if args.world else World()
    board = Board(args.flash, heap=args.heap, world=world, micropython=args.micropython,
                  console_port=args.console_port,
                  mac=bytes.fromhex(args.mac) if args.mac else None)

    def announce(extra):
        print(json.dumps(extra), flush=True)
    board.on_ports = announce
    board.start()
    announce(board.ports())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    board.stop()


def cmd_deploy(args):
    from tools import deploy
    if bool(args.image) == bool(args.port):
        raise CliError("deploy needs exactly one target: --image FILE or --port PORT")
    if args.image:
        deploy.to_image(args.image, mpy=args.mpy, micropython=args.micropython)
    else:
        deploy.to_port(args.port, mpy=args.mpy)


def cmd_sim(args):
    """The product demo: a freshly deployed simulated board, its console shown live."""
    import time
    from pathlib import Path
    from tools import deploy
    from tools.sim.board import Board
    from tools.sim.world import AccessPoint, World
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    image = d / "board.img"
    if image.exists():
        image.unlink()  # a board fresh out of the box, every time
    print("roost sim: deploying the firmware (.mpy) to a new simulated board", flush=True)
    deploy.to_image(image, mpy=True, log=lambda line: print("roost sim: " + line, flush=True))
    world = World(aps=[AccessPoint("roost-lab", "correct horse", rssi=-48)])
    out = sys.stdout.buffer
    board = Board(image, heap=args.heap, world=world, echo=lambda b: (out.write(b), out.flush()))
    board.start()
    print("roost sim: board up; serial console on socket://127.0.0.1:%d (mpremote connect ...)"
          % board.console.port, flush=True)
    try:
        if args.seconds:
            time.sleep(args.seconds)
        else:
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()
        print("\nroost sim: stopped", flush=True)


def parser():
    p = argparse.ArgumentParser(prog="roost", description=__doc__.splitlines()[0])
    p.add_argument("--verbose", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("board", help="run one simulated board until stopped; prints its ports as JSON")
    b.add_argument("--flash", required=True, help="flash image file (created blank if missing)")
    b.add_argument("--heap", default="100K", help="MicroPython heap size (default 100K)")
    b.add_argument("--world", help="world JSON: access points, temperature, cloud services")
    b.add_argument("--mac", help="base MAC as 12 hex digits (default: random)")
    b.add_argument("--console-port", type=int, default=0, help="TCP port of the serial console")
    b.add_argument("--micropython", help="unix port binary (default: $ROOST_MICROPYTHON or the venv's)")
    b.set_defaults(fn=cmd_board)

    s = sub.add_parser("sim", help="the product demo on a simulated board (what `make sim` runs)")
    s.add_argument("--dir", default=".sim", help="working folder for images and logs")
    s.add_argument("--heap", default="100K", help="MicroPython heap size of the board")
    s.add_argument("--seconds", type=float, default=0, help="stop after this long (default: Ctrl-C)")
    s.set_defaults(fn=cmd_sim)

    d = sub.add_parser("deploy", help="put boot.py, main.py, firmware/, lib/ on a board or an image")
    d.add_argument("--image", help="simulated board flash image")
    d.add_argument("--port", help="serial port or socket://host:port of a board's console")
    d.add_argument("--mpy", action="store_true", help="deploy .mpy built by mpy-cross")
    d.add_argument("--micropython", help="unix port binary used to write the image")
    d.set_defaults(fn=cmd_deploy)
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
