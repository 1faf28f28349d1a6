"""A simulated board with SoftAP provisioning for tests/conformance/esp_client.py.

usage: .venv/bin/python tests/conformance/run_board.py SEC   (1 or 2; PoP/password abcd1234)
Prints {"port": N} once the board serves provisioning; stops (printing its console) on EOF.
"""
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tools import deploy  # noqa: E402
from tools.sim.board import Board  # noqa: E402
from tools.sim.world import AccessPoint, World  # noqa: E402

sec = int(sys.argv[1])
factory = {"pop": "abcd1234", "prov": {"sec": sec, "transports": ["softap"]}}
if sec == 2:
    from tools.prov.factory import sec2_factory
    factory["pop"] = ""
    factory["prov"].update(sec2_factory("abcd1234"))
with tempfile.TemporaryDirectory() as d:
    image = Path(d) / "board.img"
    deploy.to_image(image, mpy=True, factory=factory, log=lambda line: None)
    world = World(aps=[AccessPoint("home", "right horse battery", rssi=-45), AccessPoint("cafe", "", rssi=-70)],
                  connect_time=0.3)
    board = Board(image, world=world).start()
    board.wait_for(b"provisioning open", timeout=20)
    print(json.dumps({"port": board.wait_softap(20)}), flush=True)
    sys.stdin.read()
    print(bytes(board.out).decode())
    board.stop()
