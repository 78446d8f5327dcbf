"""The per-identity rate limit, on a fake clock: bursts, refill, isolation between identities,
bounded memory, a clock that steps back, and a hypothesis property (never more than
burst + rate x elapsed requests admitted)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dirac_like.config import SecurityConfig, load_config
from dirac_like.errors import ConfigError, RateLimited
from dirac_like.ratelimit import RateLimiter


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def limiter(rate: float = 4.0, burst: float = 5.0, max_identities: int = 1000) -> RateLimiter:
    return RateLimiter(rate, burst, max_identities)


def admitted(limit: RateLimiter, identity: str, now: float, tries: int) -> int:
    return sum(limit.take(identity, now) == 0.0 for _ in range(tries))


def test_a_burst_is_admitted_then_refused_with_when_to_retry() -> None:
    limit, clock = limiter(), FakeClock()
    for _ in range(5):
        limit.check("alice", clock.now)
    with pytest.raises(
        RateLimited,
        match=r"alice sends more than 4 requests per second "
        r"\(bursts of 5\): retry in 0\.25 s",
    ) as caught:
        limit.check("alice", clock.now)
    assert caught.value.retryable and caught.value.code == "rate_limited"


def test_tokens_come_back_at_the_rate_up_to_the_burst() -> None:
    limit, clock = limiter(), FakeClock()
    assert admitted(limit, "alice", clock.now, 20) == 5
    assert admitted(limit, "alice", clock.advance(0.5), 20) == 2
    assert admitted(limit, "alice", clock.advance(60), 20) == 5  # never more than the burst


def test_a_refused_request_takes_nothing() -> None:
    limit, clock = limiter(), FakeClock()
    admitted(limit, "alice", clock.now, 5)
    for _ in range(1000):
        assert limit.take("alice", clock.now) > 0
    assert admitted(limit, "alice", clock.advance(0.25), 1) == 1


def test_identities_have_their_own_buckets() -> None:
    limit, clock = limiter(), FakeClock()
    assert admitted(limit, "mallory", clock.now, 100) == 5
    assert admitted(limit, "alice", clock.now, 5) == 5


def test_a_costly_request_takes_more_tokens() -> None:
    limit, clock = limiter(), FakeClock()
    assert limit.take("alice", clock.now, cost=4) == 0.0
    assert limit.take("alice", clock.now, cost=4) == pytest.approx(0.75)
    assert limit.take("alice", clock.now, cost=100) == pytest.approx(1.0)  # capped at the burst


def test_a_clock_stepping_back_refills_nothing() -> None:
    limit, clock = limiter(), FakeClock()
    admitted(limit, "alice", clock.now, 5)
    assert admitted(limit, "alice", clock.advance(-3600), 5) == 0
    assert admitted(limit, "alice", clock.advance(3600 + 0.25), 5) == 1


def test_memory_is_bounded_and_the_least_recently_seen_go_first() -> None:
    limit, clock = limiter(max_identities=100), FakeClock()
    admitted(limit, "busy", clock.now, 5)
    for number in range(10_000):
        limit.take(f"identity-{number}", clock.now)
        if number % 50 == 0:
            limit.take("busy", clock.now)  # seen again: kept, still empty
    assert len(limit) == 100
    assert limit.tokens("busy", clock.now) == 0


def test_rate_zero_means_no_limit() -> None:
    limit = limiter(rate=0, burst=0)
    assert admitted(limit, "alice", 0.0, 10_000) == 10_000
    assert len(limit) == 0


@pytest.mark.parametrize(
    ("rate", "burst", "max_identities"), [(-1, 5, 10), (10, 0, 10), (10, 5, 0)]
)
def test_bad_settings_are_refused(rate: float, burst: float, max_identities: int) -> None:
    with pytest.raises(ConfigError, match="security"):
        RateLimiter(rate, burst, max_identities)


def test_the_settings_come_from_the_security_section(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[security]\nrate_per_second = 50\nrate_burst = 80\n")
    limit = RateLimiter.from_config(load_config(path).security)
    assert (limit.rate_per_second, limit.burst) == (50.0, 80.0)
    assert RateLimiter.from_config(SecurityConfig()).rate_per_second > 0  # on by default
    path.write_text("[security]\nrate_burst = 0\n")
    with pytest.raises(ConfigError, match="rate_burst"):
        load_config(path)


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.5, 1000),
    burst=st.floats(1, 100),
    steps=st.lists(st.tuples(st.floats(0, 2), st.integers(0, 50)), max_size=30),
)
def test_never_more_than_the_burst_plus_the_rate_times_the_time(
    rate: float, burst: float, steps: list[tuple[float, int]]
) -> None:
    limit, clock = limiter(rate, burst), FakeClock()
    start, total = clock.now, 0
    for pause, tries in steps:
        total += admitted(limit, "alice", clock.advance(pause), tries)
        assert total <= burst + rate * (clock.now - start) + 1e-6
