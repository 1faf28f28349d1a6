"""A BLE central for another process: the phone's side of a simulated board's air, over TCP.

`roost board` runs a board in one process; `roost provision --transport sim --air PORT` runs the
phone in another. The phone connects to the board's air port, attaches to the "central" channel
and then speaks JSON lines, one request and one reply at a time (bytes as hex):

    {"op": "scan", "timeout": 5, "name_prefix": "PROV_", "seq": 1} -> {"advs": [...], "seq": 1}
    {"op": "connect", "timeout": 10}                -> {"c": 1}
    {"op": "exchange_mtu", "c": 1, "mtu": 512}      -> {"mtu": 256}
    {"op": "discover", "c": 1}                      -> {"services": [[uuid, start, end, [chars]]]}
    {"op": "read", "c": 1, "h": 42}                 -> {"d": "0a0b"}
    {"op": "write", "c": 1, "h": 42, "d": "0a0b", "response": true} -> {}
    {"op": "disconnect", "c": 1}                    -> {}

A failure comes back as {"error": "att" | "disconnected" | "timeout" | "ble", ...} and is raised
on the phone's side as the same exception tools/sim/ble.py raises in process. Closing the socket
drops the phone's links, as a phone walking out of range would.
"""
import json
import socket
import threading

from .ble import (DEFAULT_TIMEOUT, _handle_of, Advertisement, AttError, BleDisconnected, BleError, BleTimeout,
                  Characteristic, Descriptor, Service)

MARGIN = 5.0    # the remote side's own timeout fires first; ours only catches a dead board


# -- the board's side ------------------------------------------------------------------------------
def serve_central(board, sock, rfile):
    """Serve one remote phone on an attached air connection until it hangs up."""
    radio = board.ble
    conns, next_id = {}, 1
    try:
        for line in rfile:
            msg = json.loads(line)
            try:
                op = msg["op"]
                if op == "scan":
                    reply = {"advs": [_adv_out(a) for a in radio.scan(
                        timeout=float(msg.get("timeout", 1.0)), name_prefix=msg.get("name_prefix"))]}
                elif op == "connect":
                    conns[next_id] = radio.connect(timeout=msg.get("timeout"))
                    reply = {"c": next_id}
                    next_id += 1
                else:
                    conn = conns.get(msg.get("c"))
                    if conn is None:
                        raise BleError("no such connection %r" % msg.get("c"))
                    reply = _conn_op(conn, op, msg)
                    if op == "disconnect":
                        del conns[msg["c"]]
            except AttError as e:
                reply = {"error": "att", "code": e.code, "handle": e.handle}
            except BleDisconnected as e:
                reply = {"error": "disconnected", "reason": e.reason, "msg": str(e)}
            except BleTimeout as e:
                reply = {"error": "timeout", "msg": str(e)}
            except (BleError, KeyError, ValueError, TypeError) as e:
                reply = {"error": "ble", "msg": "%s: %s" % (type(e).__name__, e)}
            reply["seq"] = msg.get("seq")
            sock.sendall(json.dumps(reply).encode() + b"\n")
    except (OSError, ValueError):
        pass  # the phone went away mid-line
    finally:
        for conn in conns.values():
            try:
                conn.disconnect(timeout=1.0)
            except BleError:
                pass
        sock.close()


def _conn_op(conn, op, msg):
    timeout = msg.get("timeout")
    if op == "exchange_mtu":
        return {"mtu": conn.exchange_mtu(int(msg.get("mtu", 517)), timeout=timeout)}
    if op == "discover":
        return {"services": [[s.uuid, s.start, s.end,
                              [[c.uuid, c.handle, c.value_handle, c.properties,
                                [[d.uuid, d.handle] for d in c.descriptors]] for c in s.characteristics]]
                             for s in conn.discover()]}
    if op == "read":
        return {"d": conn.read(int(msg["h"]), timeout=timeout).hex()}
    if op == "write":
        conn.write(int(msg["h"]), bytes.fromhex(msg["d"]), response=bool(msg.get("response", True)),
                   timeout=timeout)
        return {}
    if op == "disconnect":
        conn.disconnect(timeout=timeout)
        return {}
    raise BleError("unknown op %r" % op)


def _adv_out(a):
    return {"addr": a.addr, "addr_type": a.addr_type, "name": a.name, "adv_data": a.adv_data.hex(),
            "resp_data": a.resp_data.hex(), "service_uuids": a.service_uuids,
            "manufacturer_data": {str(k): v.hex() for k, v in a.manufacturer_data.items()},
            "service_data": {k: v.hex() for k, v in a.service_data.items()},
            "flags": a.flags, "connectable": a.connectable, "interval_us": a.interval_us, "rssi": a.rssi}


def _adv_in(d):
    return Advertisement(
        addr=d["addr"], addr_type=d["addr_type"], name=d["name"], adv_data=bytes.fromhex(d["adv_data"]),
        resp_data=bytes.fromhex(d["resp_data"]), service_uuids=list(d["service_uuids"]),
        manufacturer_data={int(k): bytes.fromhex(v) for k, v in d["manufacturer_data"].items()},
        service_data={k: bytes.fromhex(v) for k, v in d["service_data"].items()},
        flags=d["flags"], connectable=d["connectable"], interval_us=d["interval_us"], rssi=d["rssi"])


# -- the phone's side ------------------------------------------------------------------------------
class RemoteCentral:
    """The subset of BleRadio's central API the provisioning transport uses, across processes."""

    def __init__(self, air_port, host="127.0.0.1", timeout=DEFAULT_TIMEOUT):
        self.timeout = timeout
        try:
            self.sock = socket.create_connection((host, int(air_port)), timeout=timeout)
        except OSError as e:
            raise BleError("cannot reach the board's air at %s:%s: %s" % (host, air_port, e)) from e
        self.rfile = self.sock.makefile("rb")
        self.lock = threading.Lock()
        self.seq = 0
        self.sock.sendall(json.dumps({"op": "attach", "channel": "central"}).encode() + b"\n")

    def request(self, msg, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        with self.lock:
            self.seq += 1
            msg = dict(msg, seq=self.seq)
            try:
                self.sock.settimeout(timeout + MARGIN)
                self.sock.sendall(json.dumps(msg).encode() + b"\n")
                line = self.rfile.readline()
            except socket.timeout as e:
                raise BleTimeout("the board's air did not answer %s" % msg["op"]) from e
            except OSError as e:
                raise BleDisconnected(0x08, "the board's air went away: %s" % e) from e
            if not line:
                raise BleDisconnected(0x08, "the board's air closed the central channel (board stopped, "
                                            "or it does not serve remote centrals)")
        reply = json.loads(line)
        if reply.get("seq") != msg["seq"]:
            raise BleError("out-of-step reply from the board's air")
        err = reply.get("error")
        if err == "att":
            raise AttError(reply["code"], reply.get("handle"))
        if err == "disconnected":
            raise BleDisconnected(reply["reason"], reply.get("msg"))
        if err == "timeout":
            raise BleTimeout(reply.get("msg", "timeout"))
        if err:
            raise BleError(reply.get("msg", err))
        return reply

    def scan(self, timeout=1.0, name_prefix=None):
        r = self.request({"op": "scan", "timeout": timeout, "name_prefix": name_prefix}, timeout)
        return [_adv_in(a) for a in r["advs"]]

    def connect(self, timeout=None):
        r = self.request({"op": "connect", "timeout": timeout}, timeout)
        return RemoteConnection(self, r["c"])

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class RemoteConnection:
    def __init__(self, central, cid):
        self.central = central
        self.cid = cid
        self.connected = True
        self.mtu = 23
        self.services = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.disconnect()

    def _op(self, op, timeout=None, **kw):
        try:
            return self.central.request(dict(kw, op=op, c=self.cid, timeout=timeout), timeout)
        except BleDisconnected:
            self.connected = False
            raise

    def exchange_mtu(self, mtu=517, timeout=None):
        self.mtu = self._op("exchange_mtu", timeout, mtu=mtu)["mtu"]
        return self.mtu

    def discover(self):
        self.services = [
            Service(su, start, end, tuple(
                Characteristic(cu, h, vh, props, tuple(Descriptor(du, dh) for du, dh in descs))
                for cu, h, vh, props, descs in chars))
            for su, start, end, chars in self._op("discover")["services"]]
        return self.services

    def read(self, handle, timeout=None):
        return bytes.fromhex(self._op("read", timeout, h=_handle_of(handle))["d"])

    def write(self, handle, data, response=True, timeout=None):
        self._op("write", timeout, h=_handle_of(handle), d=bytes(data).hex(), response=response)

    def disconnect(self, timeout=None):
        if self.connected:
            self.connected = False
            try:
                self._op("disconnect", timeout)
            except BleError:
                pass

