"""Retry delays for everything that talks to the network: capped exponential backoff with jitter.
Its own module so a retry loop does not have to load a whole protocol client to get it."""
import random


def backoff(attempt, base=1.0, cap=60.0):
    """Seconds to wait before reconnect attempt `attempt` (0, 1, 2...).

    d = min(cap, base * 2**attempt); returns a uniform value in [d/2, d]. The jitter keeps a
    fleet of nodes that lost the same broker from reconnecting in lock-step; the half floor keeps
    the delay growing. getrandbits is used because it exists on every port.
    """
    d = min(cap, base * (1 << min(attempt, 30)))
    return d / 2 + d / 2 * random.getrandbits(16) / 65535
