"""Espressif's own provisioning client (esp-rainmaker-cli's prov_util) against a board's SoftAP.

Not part of `make test`: esp-rainmaker-cli pulls in OpenCV, boto3 and friends. Run it from a
scratch venv (`python3 -m venv /tmp/rmv && /tmp/rmv/bin/pip install esp-rainmaker-cli==1.14.1`)
against a board started by run_board.py:

    .venv/bin/python tests/conformance/run_board.py 1      # prints {"port": N}
    /tmp/rmv/bin/python tests/conformance/esp_client.py 127.0.0.1:N 1 abcd1234
"""
import sys
import time

from rmaker_tools.rmaker_prov.prov import prov_util as esp_prov
from rmaker_tools.rmaker_prov.prov import user_mapping

host, sec, pop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tp = esp_prov.get_transport("softap", host)
print("version:", esp_prov.get_version(tp))
patch = esp_prov.get_sec_patch_ver(tp)
s = esp_prov.get_security(sec, patch, "wifiprov", pop if sec == 2 else "", pop if sec == 1 else None)
print("session:", esp_prov.establish_session(tp, s))
print("scan:", [(a["ssid"], a["rssi"], a["auth"]) for a in esp_prov.scan_wifi_APs("softap", tp, s)])
req = user_mapping.custom_cloud_config_request(s, "esp-user-1", "6b3e2b3c-secret")
print("user mapping (status, node id):",
      user_mapping.custom_cloud_config_response(s, tp.send_data("cloud_user_assoc", req)))
print("set config:", esp_prov.send_wifi_config(tp, s, "home", "right horse battery"))
print("apply:", esp_prov.apply_wifi_config(tp, s))
for _ in range(20):
    st = esp_prov.get_wifi_config(tp, s)
    print("status:", st)
    if st != "connecting":
        break
    time.sleep(0.5)
sys.exit(0 if st == "connected" else 1)
