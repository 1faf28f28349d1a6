# Handing the device to its owner once MQTT is up (docs/cloud.md):
#
# - user-node mapping (RainMaker, esp-provisioning.md section 9): publish node ID, user ID
#   and secret on node/<id>/user/mapping at QoS 1; the mapping counts as delivered on PUBACK
#   only. "reset":true when the user differs from the previous owner (or there was none, as
#   after a factory reset), so the cloud drops old associations. A device that reaches the
#   cloud without any mapping (provisioned by a non-RainMaker client) sends the dummy reset
#   notice once, as RainMaker does after a factory reset.
# - claim code (Particle, cloud-contracts.md 4.5): publish it on node/<id>/claim; the cloud
#   answers on node/<id>/claim/result and the device then clears the code.
import asyncio
import json

import log

_CLAIM_WAIT_MS = 30000
_RESET_USER = "esp-rmaker"
_RESET_SECRET = "failed"


def mapping_payload(node_id, user_id, secret, reset):
    # Compact JSON in the reference field order (dict order is not kept by MicroPython).
    return '{"node_id":%s,"user_id":%s,"secret_key":%s%s}' % (
        json.dumps(node_id), json.dumps(user_id), json.dumps(secret), ',"reset":true' if reset else "")


async def report_mapping(client, store, node_id):
    """Publish the pending mapping (or the reset notice); returns True if something was
    delivered. MQTT errors propagate: the caller reconnects and this runs again."""
    u = store.get("user")
    status = u["status"]
    if status == "pending":
        payload = mapping_payload(node_id, u["user_id"], u["secret"], u.get("reset", False))
        done = "mapped"
    elif status == "none":
        payload = mapping_payload(node_id, _RESET_USER, _RESET_SECRET, True)
        done = "cleared"
    else:
        return False
    await client.publish("node/%s/user/mapping" % node_id, payload, qos=1)
    store.update("user", status=done)
    if done == "mapped":
        log.info("cloud", "user mapping delivered for user %s" % u["user_id"])
    else:
        log.info("cloud", "reset notice delivered (no user mapping on this device)")
    return True


class Claim:
    """Presents a stored claim code and waits for the cloud's verdict."""

    def __init__(self, store, node_id):
        self.store = store
        self.topic = "node/%s/claim" % node_id
        self.result_topic = (self.topic + "/result").encode()   # bytes, as topics arrive
        self._answer = None
        self._got = asyncio.Event()

    def pending(self):
        return bool(self.store.get("claim")["code"])

    def on_message(self, msg):
        """Called from the MQTT reader: must not block."""
        try:
            ans = json.loads(msg)
            status = ans.get("status")
        except (ValueError, AttributeError):
            log.warning("cloud", "malformed claim result ignored")
            return
        self._answer = status
        self._got.set()

    async def present(self, client):
        """Returns the cloud's status ("claimed", "invalid"...) or None if it did not answer
        in time (the code is kept and presented again on the next connection)."""
        code = self.store.get("claim")["code"]
        if not code:
            return None
        self._got.clear()
        await client.subscribe(self.result_topic, qos=1)   # before publishing: no lost answer
        await client.publish(self.topic, '{"claim_code":%s}' % json.dumps(code), qos=1)
        try:
            await asyncio.wait_for_ms(self._got.wait(), _CLAIM_WAIT_MS)
        except asyncio.TimeoutError:
            log.warning("cloud", "no answer to the claim code yet; will present it again")
            return None
        status = self._answer
        # Any answer ends the claim, as on Particle devices: a refused code is not retried.
        self.store.set("claim", {"code": "", "claimed": status == "claimed"})
        if status == "claimed":
            log.info("cloud", "device claimed; claim code cleared")
        else:
            log.error("cloud", "cloud refused the claim code (%s); code cleared" % status)
        return status
