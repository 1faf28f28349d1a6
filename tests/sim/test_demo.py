"""`make sim` tells the story: the local cloud, a new board whose registration key is typed at its
console, provisioned by the simulated phone (over BLE by default, tools/demo.py TRANSPORT; SoftAP
on request), bootstrapped, on TLS MQTT, mapped to the phone's user,
registered with a ThingSpeak channel, and a live line of its readings arriving."""
import re
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("transport", [None, "softap"],
                         ids=["default", "softap"])
def test_make_sim_tells_the_story_from_the_box_to_readings(tmp_path, transport):
    r = subprocess.run([sys.executable, "-m", "tools", "sim", "--dir", str(tmp_path), "--seconds", "20"]
                       + (["--transport", transport] if transport else []),
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert re.search(r"roost: roost \S+ node [0-9A-F]{12}", out)          # the banner
    assert "session established (security 1)" in out
    assert re.search(r"provisioned: node [0-9A-F]{12} on Wi-Fi with IP 192\.168\.1\.\d+", out)
    assert "app: online" in out
    assert re.search(r"cloud: MQTT connected to mqtt\.roost\.local:8883 \(TLS\)", out)
    assert re.search(r"the cloud says the mapping of node [0-9A-F]{12} to \S+ is confirmed", out)
    assert "asked the board to sample every 2 s: ok" in out
    key = re.search(r"registration key ([0-9A-Z]{8}-[0-9A-Z]{8})", out).group(1)
    assert re.search(r"registered: ThingSpeak channel \d+ for serial [0-9A-F]{12}", out)
    live = re.findall(r"roost sim: \S+ +[\d.]+ °C  MQTT (\d+) readings \(0 missing, \d+ sent twice, kept once\)"
                      r"  ThingSpeak (\d+)", out)
    assert live and int(live[-1][0]) >= 5 and int(live[-1][1]) >= 1, out[-2000:]
    # The command's wake-up takes no second reading in the same second: no created_at clash.
    assert "WARN" not in out and "ERROR" not in out, out[-2000:]
    board_console = "\n".join(line for line in out.splitlines() if line.startswith("  |"))
    assert "correct horse" not in board_console and "abcd1234" not in board_console
    assert key[9:] not in board_console            # the key's secret half is never echoed
