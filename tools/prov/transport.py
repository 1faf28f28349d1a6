"""Transports: one request, one response, `send(endpoint, data) -> bytes`, whatever the link.

    BleakTransport    a board over BLE, through bleak: a real one through the system's Bluetooth,
                      a simulated one through the Bumble backend (tools/ble) on its room's air
    HttpTransport     a real or simulated board's SoftAP: POST /<endpoint> (spec section 3)

The BLE transports do what the phone apps do (spec section 2): find the `PROV_` advertisement,
take the service UUID from it, exchange MTU, map endpoint names from the 0x2901 user-description
descriptors (exact, case-sensitive, as Android), then write the request and read the response.
"""
import asyncio
import concurrent.futures
import contextlib
import http.client
import os
import re
import socket
import threading

from . import ProvError, TransportError

USER_DESCRIPTION = "00002901-0000-1000-8000-00805f9b34fb"
# esp_prov refuses a device without these three; the others are checked when first used.
REQUIRED_ENDPOINTS = ("prov-session", "proto-ver", "prov-config")
ATT_MAX_LEN = 512          # largest GATT value: no application-level fragmentation exists
HTTP_MAX_BODY = 4096       # the device's limit on a request body


class Transport:
    kind = None            # "ble" or "softap": clients page scan results differently on each
    peer = None            # what a person would call the device: its BLE name, or host:port
    timeout = 10.0

    def send(self, endpoint, data):
        raise NotImplementedError

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _GattTransport(Transport):
    kind = "ble"

    def _check(self, endpoint, data):
        if endpoint not in self.endpoints:
            raise ProvError("device has no '%s' endpoint (its 0x2901 names: %s)"
                            % (endpoint, ", ".join(sorted(self.endpoints)) or "none"))
        if not 1 <= len(data) <= ATT_MAX_LEN:
            raise ProvError("a %d-byte request does not fit one GATT value (1..%d bytes)"
                            % (len(data), ATT_MAX_LEN))
        return self.endpoints[endpoint]

    def _require(self, service_uuid):
        missing = [e for e in REQUIRED_ENDPOINTS if e not in self.endpoints]
        if missing:
            raise ProvError("service %s lacks the endpoint(s) %s (0x2901 names found: %s)"
                            % (service_uuid, ", ".join(missing), ", ".join(sorted(self.endpoints)) or "none"))


class BleakTransport(_GattTransport):
    """A board over BLE with bleak.

    `air`: "host:port" of a simulated room's phone port (Board.ports()["ble_air"]), or
    $ROOST_BLE_AIR: bleak then runs on the Bumble backend (tools/ble/bleak_bumble.py) as a
    phone in that room; otherwise bleak uses the system's Bluetooth (BlueZ, CoreBluetooth...).

    bleak is asyncio-only and a BleakClient belongs to the event loop it connected on, so one
    private loop runs in a daemon thread for the transport's life and each synchronous call
    submits a coroutine to it (asyncio.run per call would lose the connection)."""

    def __init__(self, name_or_address=None, name_prefix="PROV_", timeout=10.0, scan_timeout=10.0,
                 air=None):
        self.timeout = timeout
        self._client = None
        self._backends = {}
        air = air or os.environ.get("ROOST_BLE_AIR")
        if air:
            from tools.ble import bleak_bumble
            self._backends = {"scanner": dict(backend=bleak_bumble.BumbleScanner, air=air),
                              "client": dict(backend=bleak_bumble.BumbleClient, air=air)}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="bleak")
        self._thread.start()
        try:
            self._run(self._open(name_or_address, name_prefix, scan_timeout), scan_timeout + 3 * timeout,
                      "connecting")
        except BaseException:
            self.close()
            raise

    def _run(self, coro, timeout, what):
        from bleak.exc import BleakError
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as e:
            future.cancel()
            raise TransportError("no answer during %s within %.0f s" % (what, timeout)) from e
        except (BleakError, EOFError, OSError, asyncio.TimeoutError) as e:
            hint = ""
            if isinstance(e, OSError) and what == "connecting":
                hint = " (no usable Bluetooth adapter? on Linux bleak needs BlueZ on the system D-Bus)"
            raise TransportError("BLE error during %s: %s%s" % (what, e or type(e).__name__, hint)) from e

    async def _open(self, target, prefix, scan_timeout):
        from bleak import BleakClient, BleakScanner
        seen = {}

        def match(device, adv):
            name = adv.local_name or device.name or ""
            if target:
                ok = device.address.lower() == target.lower() or name == target
            else:
                ok = name.upper().startswith(prefix.upper())   # iOS: case-insensitive prefix
            if ok:
                seen["adv"] = adv
            return ok

        device = await BleakScanner.find_device_by_filter(match, timeout=scan_timeout,
                                                          **self._backends.get("scanner", {}))
        if device is None:
            raise TransportError("no BLE device %s found within %.0f s"
                                 % (target or "advertising " + prefix + "*", scan_timeout))
        adv = seen["adv"]
        self.peer = adv.local_name or device.name or device.address
        if not adv.service_uuids:
            raise ProvError("%s advertises no service UUID; phones take the provisioning service "
                            "from the advertisement (spec 2.1)" % (adv.local_name or device.address))
        service_uuid = adv.service_uuids[0]
        # BlueZ, CoreBluetooth and WinRT negotiate the MTU themselves, and turn a write longer
        # than MTU-3 into a long (prepare/execute) write and a long value into read-blobs.
        self._client = BleakClient(device, timeout=self.timeout, **self._backends.get("client", {}))
        await self._client.connect()
        service = self._client.services.get_service(service_uuid)
        if service is None:
            raise ProvError("%s advertises service %s but has no such GATT service"
                            % (device.address, service_uuid))
        self.endpoints = {}
        for ch in service.characteristics:
            d = ch.get_descriptor(USER_DESCRIPTION)
            if d is not None:
                label = bytes(await self._client.read_gatt_descriptor(d))
                self.endpoints[label.decode("utf-8", "replace")] = ch
        self._require(service_uuid)
        self.mtu = self._client.mtu_size

    async def _exchange(self, ch, data):
        await self._client.write_gatt_char(ch, data, response=True)
        return bytes(await self._client.read_gatt_char(ch))

    def send(self, endpoint, data):
        data = bytes(data)
        ch = self._check(endpoint, data)
        return self._run(self._exchange(ch, data), self.timeout, endpoint)

    # The two halves of send(), unchecked: for tests that play a broken or hostile phone.
    def write(self, endpoint, data):
        ch = self.endpoints[endpoint]
        self._run(self._client.write_gatt_char(ch, bytes(data), response=True), self.timeout, endpoint)

    def read(self, endpoint):
        ch = self.endpoints[endpoint]
        return bytes(self._run(self._client.read_gatt_char(ch), self.timeout, endpoint))

    def close(self):
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(client.disconnect(), self._loop).result(5)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._loop.is_running():
            self._loop.close()


_COOKIE = re.compile(r"session=(\d{1,10})")


class HttpTransport(Transport):
    """SoftAP: POST /<endpoint> on one persistent connection, as esp_prov does.

    The device opens a session on the first request and names it in `Set-Cookie: session=<id>`;
    every later request carries `Cookie: session=<id>` so it lands in the same session even on a
    new socket. Like esp_prov, only a header named exactly `Set-Cookie` counts. When a request
    fails (decryption, handshake, handler) the device closes the socket without a response:
    that, a timeout, or a non-200 status ends the session (TransportError)."""

    kind = "softap"

    def __init__(self, host="192.168.4.1", port=80, timeout=10.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.peer = "%s:%d" % (host, port)
        self.cookie = None
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)

    def send(self, endpoint, data):
        data = bytes(data)
        if not 1 <= len(data) <= HTTP_MAX_BODY:
            raise ProvError("a %d-byte request does not fit the device's body limit (1..%d bytes)"
                            % (len(data), HTTP_MAX_BODY))
        headers = {"Content-type": "application/x-www-form-urlencoded", "Accept": "text/plain"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        where = "http://%s:%d/%s" % (self.host, self.port, endpoint)
        try:
            self.conn.request("POST", "/" + endpoint, body=data, headers=headers)
            resp = self.conn.getresponse()
            body = resp.read()
        except socket.timeout as e:
            self.conn.close()
            raise TransportError("no answer from %s within %.0f s" % (where, self.timeout)) from e
        except (http.client.HTTPException, OSError) as e:
            self.conn.close()
            raise TransportError("connection failure on %s: %s" % (where, e or type(e).__name__)) from e
        for name, value in resp.getheaders():
            if name == "Set-Cookie":
                m = _COOKIE.fullmatch(value.strip())
                if not m or int(m.group(1)) > 0xFFFFFFFF:
                    raise ProvError("device sent a malformed session cookie %r (want session=<uint32>)" % value)
                self.cookie = "session=" + m.group(1)
        if resp.status != 200:
            raise TransportError("server responded with error code %d on %s" % (resp.status, where))
        return body

    def close(self):
        self.conn.close()
