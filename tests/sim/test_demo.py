"""`make sim` tells the story: the local cloud, a new board provisioned over BLE by the simulated
phone, bootstrapped, on TLS MQTT, and mapped to the phone's user."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_sim_provisions_a_fresh_board_and_brings_it_online(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tools", "sim", "--dir", str(tmp_path), "--seconds", "0.5"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert re.search(r"roost: roost \S+ node [0-9A-F]{12}", out)          # the banner
    assert "session established (security 1)" in out
    assert re.search(r"provisioned: node [0-9A-F]{12} on Wi-Fi with IP 192\.168\.1\.\d+", out)
    assert "app: online" in out
    assert re.search(r"cloud: MQTT connected to mqtt\.roost\.local:8883 \(TLS\)", out)
    assert re.search(r"the cloud says the mapping of node [0-9A-F]{12} to \S+ is confirmed", out)
    board_console = "\n".join(line for line in out.splitlines() if line.startswith("  |"))
    assert "correct horse" not in board_console and "abcd1234" not in board_console
