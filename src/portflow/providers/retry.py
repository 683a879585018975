"""Retry and rate-limit policy shared by the network providers (ccxt, TradingView).

1. :class:`RateLimiter` — at most ``per_second`` request starts per second across every
   thread of one provider: a request reserves the next free slot (slots are spaced
   ``1 / per_second`` apart) under a lock, then sleeps until its slot outside the lock, so
   threads queue fairly and the limit holds however many workers ingest in parallel.
2. :class:`RetryPolicy` — ``call(fn, what)`` runs ``fn``; on a
   :class:`~portflow.errors.TransientProviderError` (HTTP 429, 5xx, a timeout, a dropped
   connection) it waits ``min(cap, base * 2**k) * uniform(0.5, 1)`` (exponential backoff
   with jitter, so parallel workers do not retry in lockstep) — or the server's Retry-After
   when that is longer — and tries again, up to ``retries`` retries. When they run out it
   raises :class:`~portflow.errors.RetriesExhaustedError` naming ``what`` (provider and
   symbol) and the last cause. Any other error passes through at once: retrying a bad symbol
   or a refused key only wastes the rate limit.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from portflow.errors import RetriesExhaustedError, TransientProviderError

T = TypeVar("T")


class RateLimiter:
    """Space request starts at least ``1 / per_second`` apart (thread-safe)."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if per_second <= 0:
            raise ValueError(f"per_second must be > 0, got {per_second}")
        self.interval = 1.0 / per_second
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter on transient failures (module docstring, step 2)."""

    retries: int = 5
    base_s: float = 0.5
    cap_s: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        backoff = min(self.cap_s, self.base_s * 2.0**attempt) * self.rng.uniform(0.5, 1.0)
        return max(backoff, min(self.cap_s, retry_after or 0.0))

    def call(self, fn: Callable[[], T], what: str) -> T:
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except TransientProviderError as exc:
                if attempt == self.retries:
                    raise RetriesExhaustedError(
                        f"{what}: gave up after {self.retries + 1} tries ({exc}); the source is"
                        " overloaded or down — re-run later (nothing stored was lost), or lower"
                        " rate_limit_per_s in the profile's provider block"
                    ) from exc
                self.sleep(self.delay(attempt, exc.retry_after))
        raise AssertionError("unreachable")  # the loop returns or raises


__all__ = ["RateLimiter", "RetryPolicy"]
