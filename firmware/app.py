# The application's lifecycle: the one place that knows the order of phases.
import asyncio
import time

import log
from firmware import board

VERSION = "0.1.0"
_BLINK_MS = 500


async def _blink():
    on = False
    while True:
        on = not on
        board.led(on)
        await asyncio.sleep_ms(_BLINK_MS)


async def _run():
    await asyncio.gather(_blink())


def banner():
    free, alloc = board.heap()
    log.info("roost", "roost %s node %s heap free %d alloc %d reset cause %d" % (
        VERSION, board.node_id(), free, alloc, board.reset_cause()))


def main():
    banner()
    try:
        asyncio.run(_run())
    except Exception as e:  # not KeyboardInterrupt: Ctrl-C must reach the REPL
        log.error("roost", "application crashed: %r; resetting in 5 s" % (e,))
        time.sleep(5)
        board.reset()
