# Delivers the outbox to the cloud over the MQTT session the cloud manager holds: SenML on
# the bootstrap data channel at QoS 1, a batch at a time; a batch leaves the outbox only
# once the broker acknowledged it (PUBACK). A batch sent but not acknowledged (link lost,
# power cut) is sent again later; the cloud keeps each seq once.
from micropython import const

import log
from firmware.telemetry import senml

_BATCH = const(32)      # readings per message: ~2.5 KB of JSON


async def stream(client, topic, node_id, outbox, sampler):
    """Until the link dies (the publish raises) or the task is cancelled."""
    first_this_boot = outbox.first_seq_this_boot
    while True:
        batch = outbox.pending("mqtt", _BATCH)
        if not batch:
            sampler.stored.clear()
            await sampler.stored.wait()
            continue
        payload = senml.encode(node_id, batch, sampler.uptime(), first_this_boot)
        await client.publish(topic, payload, qos=1)
        outbox.ack("mqtt", batch[-1][0])
        log.debug("telemetry", "delivered readings %d..%d" % (batch[0][0], batch[-1][0]))
