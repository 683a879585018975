"""The retry and rate-limit policy of the network providers, on a fake clock."""

from __future__ import annotations

import random

import pytest

from portflow.errors import (
    ProviderResponseError,
    RateLimitedError,
    RetriesExhaustedError,
    TransientProviderError,
)
from portflow.providers.retry import RateLimiter, RetryPolicy


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def test_limiter_spaces_request_starts() -> None:
    clk = FakeClock()
    lim = RateLimiter(4.0, clock=clk, sleep=clk.sleep)
    starts = []
    for _ in range(9):
        lim.acquire()
        starts.append(clk.now)
    assert starts == pytest.approx([i * 0.25 for i in range(9)])
    clk.now += 10  # idle time is not saved up into a burst
    lim.acquire()
    lim.acquire()
    assert clk.sleeps[-1] == pytest.approx(0.25)


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    pol = RetryPolicy(retries=5, base_s=1.0, cap_s=8.0, rng=random.Random(3))
    for k in range(6):
        d = pol.delay(k, None)
        assert min(8.0, 2.0**k) * 0.5 <= d <= min(8.0, 2.0**k)
    assert pol.delay(0, 5.0) == 5.0  # the server asks for longer: wait that long
    assert pol.delay(0, 60.0) == 8.0  # but never past the cap


def test_transient_errors_are_retried_then_reported_with_what() -> None:
    clk = FakeClock()
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RateLimitedError("429", retry_after=0.5) if len(calls) == 1 else TransientProviderError("502")
        return "ok"

    pol = RetryPolicy(retries=4, base_s=0.1, sleep=clk.sleep, rng=random.Random(1))
    assert pol.call(flaky, "p sym") == "ok" and len(clk.sleeps) == 2
    assert clk.sleeps[0] == 0.5  # Retry-After
    with pytest.raises(RetriesExhaustedError, match=r"^p BTC/USDT: gave up after 3 tries \(down\)"):
        RetryPolicy(retries=2, base_s=0.01, sleep=clk.sleep).call(
            lambda: (_ for _ in ()).throw(TransientProviderError("down")), "p BTC/USDT")


def test_other_errors_pass_through_at_once() -> None:
    calls = []

    def bad() -> None:
        calls.append(1)
        raise ProviderResponseError("unknown symbol")

    with pytest.raises(ProviderResponseError):
        RetryPolicy(retries=5, sleep=lambda s: None).call(bad, "p")
    assert len(calls) == 1
