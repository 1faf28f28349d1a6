"""The phone: a host-side client of Espressif's unified provisioning (protocomm) protocol.

It plays on the wire what esp_prov, esp-rainmaker-cli and the ESP provisioning apps do, over
interchangeable transports (the simulated board's BLE air, real BLE through bleak, SoftAP HTTP),
so the same code provisions a real board, drives the simulator and checks our firmware's
conformance. Layers, one per module:

    proto.py      the protocomm / wifi_provisioning / rainmaker protobuf messages
    security.py   client side of security 0, 1 (X25519 + PoP + AES-CTR) and 2 (SRP6a + AES-GCM)
    transport.py  send(endpoint, bytes) -> bytes over BLE GATT (simulated or bleak) or HTTP
    client.py     Provisioner: the app's steps (version, session, scan, mapping, claim, Wi-Fi)
    qr.py         the QR payload the phone apps scan
"""


class ProvError(Exception):
    """Provisioning failed; the message says why in words a person can act on."""


class TransportError(ProvError):
    """The link to the device failed (closed, refused, timed out): the session is dead."""
