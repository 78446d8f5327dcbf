"""What the dashboard's pages are made of, kept between requests: the store reader, the login
gate, the central service's actions, an optional accounting source, and what is costly to make
again for every viewer — every job's counts (refreshed in the background while someone watches),
a user's counts (reused for a few seconds), the share samples and the plots drawn.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from dirac_like.authz import Principal
from dirac_like.config import SharesConfig
from dirac_like.protocol import WhyReply

from .auth import Gate
from .reader import CountRow, StoreReader
from .views import ShareHistory, ShareRow, share_rows

COUNTS_CACHE_MAX = 1000
VIEW_WINDOW = 60.0  # seconds after a page showed every job's counts that they are kept fresh
SVG_CACHE_MAX = 256
T = TypeVar("T")


class Actions(Protocol):
    """What the dashboard asks of the central service (tests may pass a double)."""

    def kill(self, job_ids: list[int]) -> str: ...

    def reschedule(self, job_ids: list[int]) -> str: ...

    def why(self, job_id: int) -> WhyReply: ...


class AccountingSource(Protocol):
    """Plots of the accounting records a principal may see: (title, inline SVG) pairs."""

    def plots(self, principal: Principal, now: float) -> list[tuple[str, str]]: ...


@dataclass(frozen=True)
class WebSettings:
    home: Path
    store_url: str  # the central service's store: an SQLite file or postgresql://...
    shares: SharesConfig
    refresh_seconds: float = 5.0  # live parts of a page refresh this often
    session_hours: float = 8.0
    counts_ttl: float = 2.0  # seconds a job count is reused for other viewers
    sandbox_max_bytes: int = 64 * 1024 * 1024
    availability_validity: float = 3600.0  # how long a probe result holds (as admin availability)
    slow_ttl: float = 60.0  # seconds the availability grids and transfer figures are reused


class Dashboard:
    """What the pages are made of: the store reader, the gate, the share samples, the actions."""

    def __init__(
        self,
        settings: WebSettings,
        gate: Gate,
        actions: Actions | None,
        accounting: AccountingSource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.reader = StoreReader(settings.store_url)
        self.gate = gate
        self.actions = actions
        self.accounting = accounting
        self.clock = clock
        self.share_history = ShareHistory()
        self._lock = threading.Lock()
        self._counts: dict[str | None, tuple[float, list[CountRow]]] = {}
        self._all_counts: list[CountRow] | None = None  # every job's, refreshed in the background
        self._all_counts_viewed = 0.0
        self._latest_shares: list[ShareRow] | None = None  # the last sample's
        self._svgs: dict[tuple[Any, ...], str] = {}
        self._timed: dict[str, tuple[float, Any]] = {}

    def counts(self, owner: str | None) -> list[CountRow]:
        """Job counts: ``owner``'s (reused for ``counts_ttl`` seconds), or every job's (None:
        the latest that :meth:`refresh_counts` took, at most a refresh period old; counting a
        million jobs takes seconds, so pages never wait for it but the first time)."""
        now = self.clock()
        if owner is None:
            with self._lock:
                self._all_counts_viewed = now
                counts = self._all_counts
            if counts is None:
                counts = self.reader.job_counts(None)
                with self._lock:
                    self._all_counts = counts
            return counts
        with self._lock:
            cached = self._counts.get(owner)
            if cached is not None and now - cached[0] < self.settings.counts_ttl:
                return cached[1]
        counts = self.reader.job_counts(owner)
        with self._lock:
            if len(self._counts) > COUNTS_CACHE_MAX:
                self._counts.clear()
            self._counts[owner] = (now, counts)
        return counts

    def svg(self, key: tuple[Any, ...], draw: Callable[[], str]) -> str:
        """The plot drawn by ``draw`` for the data ``key`` describes: drawn once per distinct
        data (live pages ask again every few seconds, mostly for the same picture)."""
        with self._lock:
            cached = self._svgs.get(key)
        if cached is not None:
            return cached
        text = draw()
        with self._lock:
            if len(self._svgs) > SVG_CACHE_MAX:
                self._svgs.clear()
            self._svgs[key] = text
        return text

    def timed(self, name: str, make: Callable[[], T]) -> T:
        """What ``make`` returns, reused for ``slow_ttl`` seconds (figures that read many rows
        and change slowly: the availability grids, the transfer figures)."""
        now = self.clock()
        with self._lock:
            cached = self._timed.get(name)
        if cached is not None and now - cached[0] < self.settings.slow_ttl:
            value: T = cached[1]
            return value
        value = make()
        with self._lock:
            self._timed[name] = (now, value)
        return value

    def shares(self) -> list[ShareRow]:
        reader = self.reader
        return share_rows(
            self.settings.shares,
            reader.share_overrides(),
            reader.usage(),
            reader.running_cores(),
            self.clock(),
        )

    def warm_up(self) -> None:
        """Count every job and sample the shares once, before the first page asks."""
        self.counts(None)
        self.sample()

    def refresh_counts(self) -> None:
        """Count every job again, if a page showed them within the last minute."""
        with self._lock:
            wanted = self.clock() - self._all_counts_viewed < VIEW_WINDOW
        if wanted:
            counts = self.reader.job_counts(None)
            with self._lock:
                self._all_counts = counts

    def sample(self) -> None:
        """Record the realised shares now (the sampler thread calls this periodically)."""
        rows = self.shares()
        with self._lock:
            self.share_history.add(self.clock(), rows)
            self._latest_shares = rows

    def latest_shares(self) -> list[ShareRow]:
        """The shares as last sampled (computed now if never)."""
        with self._lock:
            rows = self._latest_shares
        return self.shares() if rows is None else rows

    def share_timeline(self) -> tuple[dict[str, list[tuple[float, float]]], dict[str, float]]:
        """The sampled realised shares by group, and the groups' targets (copies)."""
        with self._lock:
            return self.share_history.series(), dict(self.share_history.targets)
