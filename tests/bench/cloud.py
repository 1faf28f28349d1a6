"""Cloud onboarding on the simulated board with the local cloud (Mosquitto, TLS): time from the
phone seeing "Wi-Fi connected" to the owner's status poll seeing "confirmed", and the heap the
board has left with its TLS MQTT connection up."""
import re
import statistics
import tempfile
import time
from pathlib import Path

from tools import deploy
from tools.cloud.client import call
from tools.cloud.local import LocalCloud
from tools.prov.client import Provisioner
from tools.sim.board import Board
from tools.sim.world import AccessPoint, World

from tests.sim.phone import ble

from tests.bench.table import run_alone

CONNECTED = re.compile(rb"MQTT connected to \S+ \(TLS\) as \S+, heap free (\d+)\r\n")
ONLINE = re.compile(rb"(\d+) INFO app: online")
MAPPED = re.compile(rb"(\d+) INFO cloud: user mapping delivered")


def _api(cloud, method, path, token, body=None):
    return call(cloud.http_url, method, path, body, token, timeout=5)[1]


def run(rows, runs=5, rams=("esp32",)):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        cloud = LocalCloud(d / "cloud").start()
        try:
            uid = cloud.add_user("bench", "pw")
            token = cloud.login("bench", "pw")
            template = d / "t.img"
            deploy.to_image(template, mpy=True, log=lambda line: None)
            for k, ram in enumerate(rams):
                confirm, chip, free = [], [], []
                for i in range(runs):
                    mac = bytes.fromhex("24a16000%02x%02x" % (k, i))
                    node = mac.hex().upper()
                    cloud.add_device(node)
                    image = d / ("b%s%d.img" % (ram, i))
                    image.write_bytes(template.read_bytes())
                    factory = dict(cloud.factory_for(node), pop="abcd1234")
                    deploy.factory_to_image(image, factory, log=lambda line: None)
                    world = World(aps=[AccessPoint("home", "right horse battery")], connect_time=0.3,
                                  services=cloud.world_services())
                    board = Board(image, world=world, ram=ram, mac=mac).start()
                    try:
                        board.wait_for(b"provisioning open", timeout=15)
                        secret = "secret-%d" % i
                        with ble(board) as t:
                            Provisioner(t, pop="abcd1234").provision(
                                "home", "right horse battery", user_id=uid, secret=secret,
                                on_progress=None, poll=0.05)
                        t0 = time.perf_counter()      # the phone has just seen "connected"
                        rid = _api(cloud, "PUT", "/v1/user/nodes/mapping", token,
                                   {"node_id": node, "secret_key": secret, "operation": "add"})["request_id"]
                        while _api(cloud, "GET", "/v1/user/nodes/mapping?request_id=" + rid,
                                   token)["request_status"] != "confirmed":
                            if time.perf_counter() - t0 > 30:
                                raise TimeoutError("mapping not confirmed")
                            time.sleep(0.02)
                        confirm.append((time.perf_counter() - t0) * 1000)
                        free.append(int(board.wait_for(CONNECTED, timeout=10).group(1)))
                        on = int(board.wait_for(ONLINE, timeout=1).group(1))
                        chip.append(int(board.wait_for(MAPPED, timeout=1).group(1)) - on)
                    finally:
                        board.stop()
                rows.append(("cloud: Wi-Fi connected to mapping confirmed, RAM %s (median of %d)"
                             % (ram, runs), "%.0f" % statistics.median(confirm), "ms"))
                rows.append(("cloud: on the chip, online to mapping PUBACK, RAM %s (median)" % ram,
                             "%d" % statistics.median(chip), "ms"))
                rows.append(("cloud: gc.mem_free() with TLS MQTT connected, RAM %s (lowest)" % ram,
                             "%d" % min(free), "B"))
        finally:
            cloud.stop()


if __name__ == "__main__":
    run_alone(run)
