"""Hierarchical fair share with usage in core-seconds that decays with a half-life.

Every group has a share; a group's share is split among its users (equally, or by the users' own
shares). A job charges its owner's group and user from the moment it is matched until it ends, at
its number of cores: usage is consumed core time, not a count of matches, so a group whose jobs
run ten times longer gets ten times fewer of them.

The load of an account is ``running cores + decayed usage * ln2 / half_life`` (both in cores: the
second term is the average number of cores used over the recent past). The matcher serves the
account with the smallest load per unit of share first. Probe jobs (the reserved group
:data:`dirac_like.monitoring.PROBE_GROUP`, the monitoring agent's site tests) come before every
group and are charged to nobody. Pure: every method takes ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dirac_like.model import UsageRecord
from dirac_like.monitoring import PROBE_GROUP


@dataclass(slots=True)
class Account:
    """Usage of one group (user == "") or of one user within a group."""

    usage: float = 0.0  # decayed core-seconds as of ``stamp``
    stamp: float = 0.0
    running_cores: int = 0

    def advance(self, now: float, half_life: float) -> None:
        """Bring ``usage`` forward to ``now``: decay it, and add what running jobs consumed."""
        elapsed = now - self.stamp
        if elapsed <= 0:
            return
        decay = math.exp(-elapsed * math.log(2) / half_life)
        mean_life = half_life / math.log(2)
        self.usage = self.usage * decay + self.running_cores * mean_life * (1.0 - decay)
        self.stamp = now

    def load(self, now: float, half_life: float) -> float:
        self.advance(now, half_life)
        return self.running_cores + self.usage * math.log(2) / half_life


class FairShare:
    def __init__(
        self,
        group_shares: Mapping[str, float],
        user_shares: Mapping[str, Mapping[str, float]],
        half_life: float,
        default_share: float = 1.0,
    ) -> None:
        self.group_shares = dict(group_shares)
        self.user_shares = {group: dict(users) for group, users in user_shares.items()}
        self.half_life = half_life
        self.default_share = default_share
        self.accounts: dict[tuple[str, str], Account] = {}
        self.dirty: set[tuple[str, str]] = set()

    # -- shares ----------------------------------------------------------------------------------

    def group_share(self, group: str) -> float:
        return self.group_shares.get(group, self.default_share)

    def user_share(self, group: str, user: str) -> float:
        return self.user_shares.get(group, {}).get(user, 1.0)

    def set_group_share(self, group: str, share: float) -> None:
        self.group_shares[group] = share

    # -- usage -----------------------------------------------------------------------------------

    def account(self, group: str, user: str) -> Account:
        key = (group, user)
        account = self.accounts.get(key)
        if account is None:
            account = self.accounts[key] = Account()
        return account

    def start(self, group: str, user: str, cores: int, now: float) -> None:
        """A job of ``cores`` started consuming (it was matched)."""
        self._change_running(group, user, cores, now)

    def stop(self, group: str, user: str, cores: int, now: float) -> None:
        """A job of ``cores`` stopped consuming (it ended or went back to waiting)."""
        self._change_running(group, user, -cores, now)

    def _change_running(self, group: str, user: str, delta: int, now: float) -> None:
        if group == PROBE_GROUP:  # site tests: charged to nobody's share
            return
        for key in ((group, ""), (group, user)):
            account = self.account(*key)
            account.advance(now, self.half_life)
            account.running_cores = max(0, account.running_cores + delta)
            self.dirty.add(key)

    def rank_groups(self, groups: Iterable[str], now: float) -> list[str]:
        """Groups by load per share (least served first), then by name; the probe group
        (site tests) before all of them."""
        ranked = self._rank([((g, ""), self.group_share(g), g) for g in groups], now)
        if PROBE_GROUP in ranked:
            ranked.remove(PROBE_GROUP)
            ranked.insert(0, PROBE_GROUP)
        return ranked

    def rank_users(self, group: str, users: Iterable[str], now: float) -> list[str]:
        """Users of ``group`` by load per share within the group, then by name."""
        shares = self.user_shares.get(group) or {}  # on the matcher's hot path: looked up once
        return self._rank([((group, u), shares.get(u, 1.0), u) for u in users], now)

    def _rank(self, entries: list[tuple[tuple[str, str], float, str]], now: float) -> list[str]:
        # On the matcher's hot path: one pass, locals only.
        accounts, half_life = self.accounts, self.half_life
        per_second = math.log(2) / half_life
        ranked = []
        for key, share, name in entries:
            account = accounts.get(key)
            load = 0.0
            if account is not None:
                if account.stamp < now:
                    account.advance(now, half_life)
                load = account.running_cores + account.usage * per_second
            ranked.append((load / share, name))
        ranked.sort()
        return [name for _, name in ranked]

    def owed_cores(self, group: str, groups: Iterable[str], now: float) -> float:
        """How many cores ``group`` is owed among ``groups`` (those competing for a pilot): its
        fraction of their shares times their total load, minus its own load. Negative: the
        group is above its share."""
        loads = {
            g: self.account(g, "").load(now, self.half_life) for g in groups if g != PROBE_GROUP
        }  # site tests take no share
        loads.setdefault(group, self.account(group, "").load(now, self.half_life))
        total_share = sum(self.group_share(g) for g in loads)
        return self.group_share(group) / total_share * sum(loads.values()) - loads[group]

    def group_priority(self, group: str, now: float) -> float:
        """Load per unit of share: the smallest is served first."""
        return self.account(group, "").load(now, self.half_life) / self.group_share(group)

    def user_priority(self, group: str, user: str, now: float) -> float:
        load = self.account(group, user).load(now, self.half_life)
        return load / self.user_share(group, user)

    # -- persistence -----------------------------------------------------------------------------

    def restore(self, record: UsageRecord) -> None:
        account = self.account(record.group, record.user)
        account.usage, account.stamp = record.usage, record.stamp

    def take_dirty(self) -> list[UsageRecord]:
        """Usage records changed since the last call (to be written with the batch)."""
        records = [
            UsageRecord(
                group, user, self.accounts[(group, user)].usage, self.accounts[(group, user)].stamp
            )
            for group, user in sorted(self.dirty)
        ]
        self.dirty.clear()
        return records

    def report(self, now: float) -> list[dict[str, float | str | int]]:
        """Per group what the matcher ranks on: configured share (and its fraction), running
        cores, decayed usage (core-seconds, and as cores: its average over the recent past),
        load (the two added, in cores), load per share (the smallest is served first), and the
        group's fraction of all loads and of the running cores."""
        groups = set(self.group_shares) | {g for g, u in self.accounts if u == ""}
        total_share = sum(self.group_share(g) for g in groups) or 1.0
        loads = {g: self.account(g, "").load(now, self.half_life) for g in groups}
        total_load = sum(loads.values()) or 1.0
        running = {g: self.account(g, "").running_cores for g in groups}
        total_running = sum(running.values()) or 1
        per_second = math.log(2) / self.half_life
        return [
            {
                "group": group,
                "share": self.group_share(group),
                "share_fraction": self.group_share(group) / total_share,
                "usage_core_seconds": self.account(group, "").usage,
                "running_cores": running[group],
                "load_fraction": loads[group] / total_load,
                "usage_cores": self.account(group, "").usage * per_second,
                "load": loads[group],
                "load_per_share": loads[group] / self.group_share(group),
                "running_fraction": running[group] / total_running,
            }
            for group in sorted(groups)
        ]
