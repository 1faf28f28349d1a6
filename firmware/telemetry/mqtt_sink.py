# Delivers the outbox to the cloud over the MQTT session the cloud manager holds: SenML on
# the bootstrap data channel at QoS 1, a batch at a time; a batch leaves the outbox only
# once the broker acknowledged it (PUBACK). A batch sent but not acknowledged (link lost,
# power cut) is sent again later; the cloud keeps each seq once.
from micropython import const

import log
from firmware.telemetry import senml

_BATCH = const(32)      # readings per message: ~2.5 KB of JSON
BUFFER = const(3072)    # the payload buffer the caller allocates once: a batch fits


async def stream(client, topic, node_id, outbox, sampler, buf):
    """Until the link dies (the publish raises) or the task is cancelled. buf: a bytearray
    of BUFFER bytes, kept across sessions (see senml.py)."""
    first_this_boot = outbox.first_seq_this_boot
    while True:
        n, last = senml.encode_into(buf, node_id, outbox.readings("mqtt", _BATCH), sampler.uptime(),
                                    first_this_boot)
        if not n:
            sampler.stored.clear()
            await sampler.stored.wait()
            continue
        await client.publish(topic, memoryview(buf)[:n], qos=1)
        outbox.ack("mqtt", last)
        log.debug("telemetry", "delivered readings up to %d" % last)
