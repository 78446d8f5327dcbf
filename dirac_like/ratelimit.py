"""A per-identity rate limit: one token bucket per authenticated identity name.

Each identity may send ``rate_per_second`` requests per second on average, and up to ``burst``
at once after a quiet spell (``[security]`` ``rate_per_second`` and ``rate_burst``). A request
takes one token (or ``cost`` tokens); a bucket refills continuously at ``rate_per_second`` up to
``burst``. A request that finds too few tokens is refused with
:class:`dirac_like.errors.RateLimited` (retryable: the client's backoff spaces its retries) and
takes nothing, so a client that keeps hammering is held back by its own excess only.

Pure: no clock is read here, ``now`` (seconds, any origin that does not jump) is passed in.
Memory is bounded: at most ``max_identities`` buckets are kept, the least recently used dropped
first; a dropped bucket comes back full, which is what the bucket of an identity quiet for
``burst / rate_per_second`` seconds is anyway.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from dirac_like.config import SecurityConfig
from dirac_like.errors import ConfigError, RateLimited

MAX_IDENTITIES = 100_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(
        self, rate_per_second: float, burst: float, max_identities: int = MAX_IDENTITIES
    ) -> None:
        if rate_per_second < 0 or (rate_per_second > 0 and burst < 1) or max_identities < 1:
            raise ConfigError(
                "security: rate_per_second must not be negative and rate_burst must be at least 1"
            )
        self.rate_per_second = rate_per_second
        self.burst = burst
        self.max_identities = max_identities
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @classmethod
    def from_config(cls, security: SecurityConfig) -> RateLimiter:
        return cls(security.rate_per_second, security.rate_burst)

    def check(self, identity: str, now: float, cost: float = 1.0) -> None:
        """Take ``cost`` tokens from ``identity``'s bucket, or raise RateLimited (taking
        nothing) saying when to retry."""
        wait = self.take(identity, now, cost)
        if wait > 0:
            raise RateLimited(
                f"{identity[:64]} sends more than {self.rate_per_second:g} requests per second "
                f"(bursts of {self.burst:g}): retry in {wait:.2f} s"
            )

    def take(self, identity: str, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens and return 0.0, or take nothing and return the seconds until
        there would be enough."""
        if self.rate_per_second == 0:
            return 0.0
        bucket = self._buckets.get(identity)
        if bucket is not None and bucket.updated >= now and bucket.tokens >= cost:
            # the common case of a busy identity: several requests in one batch (same ``now``)
            self._buckets.move_to_end(identity)
            bucket.tokens -= cost
            return 0.0
        bucket = self._bucket(identity, now)
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (min(cost, self.burst) - bucket.tokens) / self.rate_per_second

    def tokens(self, identity: str, now: float) -> float:
        """The tokens ``identity`` has at ``now`` (for tests and reports)."""
        return self._bucket(identity, now).tokens

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, identity: str) -> bool:
        """Whether ``identity`` has a bucket (it took tokens lately)."""
        return identity in self._buckets

    def _bucket(self, identity: str, now: float) -> _Bucket:
        buckets = self._buckets
        bucket = buckets.get(identity)
        if bucket is None:
            bucket = buckets[identity] = _Bucket(self.burst, now)
            while len(buckets) > self.max_identities:
                buckets.popitem(last=False)
            return bucket
        buckets.move_to_end(identity)
        elapsed = max(0.0, now - bucket.updated)  # a clock stepping back refills nothing
        bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate_per_second)
        bucket.updated = max(bucket.updated, now)
        return bucket
