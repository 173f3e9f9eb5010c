"""When to try a Runflow call again, and how long to wait first (RELIABILITY.md R3).

Runflow's guidance: retry connection errors, 429 and 5xx with exponential backoff and full
jitter, capped at 32 s, at most 5 attempts; honour a numeric ``Retry-After`` when present;
never retry another 4xx. Full jitter (a uniform draw between 0 and the exponential ceiling)
spreads the retries of many workers so they do not hit Runflow again in lock step.
"""

from __future__ import annotations

import random
from collections.abc import Callable

BASE_DELAY = 0.5  # seconds: the ceiling after the first failed attempt
MAX_DELAY = 32.0  # seconds: no single backoff wait is longer
MAX_ATTEMPTS = 5

# Answers worth another try. 429 and 503 mean "not processed, come back later", so they are
# safe to retry even for a request that creates something; 500, 502 and 504 may come after
# the work was done, so a create sees them as an unknown outcome (see client.py).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
NOT_PROCESSED_STATUSES = frozenset({429, 503})


def backoff_ceiling(attempt: int, *, base: float = BASE_DELAY, cap: float = MAX_DELAY) -> float:
    """The longest wait after failed attempt number ``attempt`` (1-based)."""
    exponent = min(max(attempt, 1) - 1, 64)  # 2**64 * base is far past any cap; no overflow
    return min(cap, base * 2.0**exponent)


def backoff_delay(
    attempt: int,
    *,
    rng: Callable[[], float] = random.random,
    base: float = BASE_DELAY,
    cap: float = MAX_DELAY,
) -> float:
    """Full jitter: a uniform wait in [0, ceiling] after failed attempt ``attempt``."""
    fraction = min(max(rng(), 0.0), 1.0)
    return fraction * backoff_ceiling(attempt, base=base, cap=cap)


def wait_before_retry(
    attempt: int, retry_after: float | None, *, rng: Callable[[], float] = random.random
) -> float:
    """Runflow's own ``Retry-After`` when it gave one, else our backoff."""
    if retry_after is not None:
        return retry_after
    return backoff_delay(attempt, rng=rng)
