"""Delays between retries: capped exponential backoff with jitter, the same in every component.

The client reconnecting to a gateway, the gateway resubscribing to Redis, the producer
reconnecting to Redis and reopening its camera all wait ``min(maximum, initial * factor**n)``
scaled by a random factor, so that many processes dropped at once do not come back in lock-step.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

__all__ = ["backoff"]


def backoff(
    *, initial: float = 0.25, maximum: float = 10.0, factor: float = 2.0, jitter: float = 0.5
) -> Iterator[float]:
    """Delays before successive attempts: capped exponential with jitter, endless.

    The n-th delay is ``min(maximum, initial * factor**n)`` scaled down by a
    random fraction of up to ``jitter``, so thousands of clients dropped by the
    same gateway do not come back in lock-step. Start a new iterator after a
    success: the next failure then waits ``initial`` again.

    Args:
        initial: First delay in seconds.
        maximum: Cap in seconds.
        factor: Growth per attempt.
        jitter: 0 for fixed delays, up to 1 for fully random ones.
    """
    delay = initial
    while True:
        yield delay * (1.0 - jitter * random.random())
        # Grows by multiplication, never as factor**n: no overflow however long the outage.
        delay = min(maximum, delay * factor)
