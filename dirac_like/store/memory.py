"""An in-memory Store: the test double for unit tests of the service state (no files, no SQL).

It honours the same contract as the SQLite store (the contract suite runs against it too), except
durability: nothing survives the process. Records are copied on the way in and out, so a test
cannot pass only because the store and the service share objects.
"""

from __future__ import annotations

import copy
from typing import Any

import msgpack

from dirac_like.accounting import (
    JobAccountingRecord,
    PilotAccountingRecord,
    TransferAccountingRecord,
)
from dirac_like.errors import JobNotFound, StoreError, UnstorableValue
from dirac_like.model import (
    BulkActionRecord,
    ChangeSet,
    FileEntry,
    HistoryEntry,
    JobRecord,
    LoadedState,
    PilotRecord,
    RuleRecord,
    SEStatusRecord,
    SharedHistory,
    SiteRecord,
    StoredReply,
    SubmissionRecord,
    TaskQueueRow,
    TransferRecord,
    UsageRecord,
)
from dirac_like.monitoring import Downtime, ProbeResult, StatusRecord
from dirac_like.store.base import SCHEMA_VERSION, Store


class MemoryStore(Store):
    def __init__(self) -> None:
        self.jobs: dict[int, JobRecord] = {}
        self.descriptions: dict[int, bytes] = {}
        self.task_queues: dict[int, TaskQueueRow] = {}
        self.history_rows: list[HistoryEntry] = []
        self.shared_history: list[SharedHistory] = []
        self.sites: dict[str, SiteRecord] = {}
        self.shares: dict[str, float] = {}
        self.usage: dict[tuple[str, str], UsageRecord] = {}
        self.replies: dict[str, StoredReply] = {}
        self.pilots: dict[str, PilotRecord] = {}
        self.pilot_jobs: dict[str, list[int]] = {}
        self.pilot_outputs: dict[str, str] = {}
        self.next_pilot_number = 1
        self.sandboxes: dict[tuple[int, str], str] = {}
        self.results: list[ProbeResult] = []
        self.statuses: dict[tuple[str, str], StatusRecord] = {}
        self.downtimes: dict[int, Downtime] = {}
        self.accounting: dict[tuple[int, int], JobAccountingRecord] = {}
        self.pilot_accounting: dict[str, PilotAccountingRecord] = {}
        self.transfer_accounting: dict[int, TransferAccountingRecord] = {}
        self.usage_samples: list[tuple[int, int, float, float, float]] = []
        self.files: dict[str, FileEntry] = {}
        self.replicas: dict[str, dict[str, str]] = {}
        self.se_status: dict[str, SEStatusRecord] = {}
        self.transfers: dict[int, TransferRecord] = {}
        self.rules: dict[int, RuleRecord] = {}
        self.bulk_actions: dict[int, BulkActionRecord] = {}
        self.bulk_job_ids: dict[int, list[int]] = {}
        self.submissions: dict[int, SubmissionRecord] = {}
        self.commits = 0
        self.fail_next_commit = False  # a test sets it to see how callers survive a failure
        self.closed = False

    def commit(self, changes: ChangeSet) -> None:
        self._check_open()
        if self.fail_next_commit:
            self.fail_next_commit = False
            raise StoreError("commit failed (injected by the test)")
        for job, _ in changes.new_jobs:
            if job.job_id in self.jobs:
                raise UnstorableValue(f"job {job.job_id} already exists")
        keys = [(record.job_id, record.attempt) for record in changes.job_accounting]
        if len(set(keys)) != len(keys) or any(key in self.accounting for key in keys):
            raise StoreError("an accounting record of the same job attempt exists")
        transfer_ids = [record.transfer_id for record in changes.transfer_accounting]
        if len(set(transfer_ids)) != len(transfer_ids) or any(
            key in self.transfer_accounting for key in transfer_ids
        ):
            raise StoreError("an accounting record of the same transfer exists")
        for row in changes.new_task_queues:
            self.task_queues[row.task_queue_id] = row
        for job, packed in changes.new_jobs:
            self.jobs[job.job_id] = copy.copy(job)
            self.descriptions[job.job_id] = packed
        for job in changes.changed_jobs.values():
            self.jobs[job.job_id] = copy.copy(job)
        self.shared_history.extend(changes.shared_history)
        self.history_rows.extend(changes.history)
        self.sites.update(changes.sites)
        self.shares.update(changes.shares)
        self.usage.update(changes.usage)
        for reply in changes.replies:
            self.replies[reply.request_id] = reply
        if changes.forget_replies_before is not None:
            cutoff = changes.forget_replies_before
            self.replies = {k: r for k, r in self.replies.items() if r.time >= cutoff}
        self._commit_pilots(changes)
        for job_id, kind, sha256 in changes.sandboxes:
            self.sandboxes[(job_id, kind)] = sha256
        self.results.extend(changes.probe_results)
        self.statuses.update(changes.statuses)
        self.downtimes.update(changes.downtimes)
        self._commit_accounting(changes)
        self._commit_data(changes)
        self._commit_work(changes)
        self.commits += 1

    def _commit_work(self, changes: ChangeSet) -> None:
        """Bulk actions and submissions in progress."""
        for bulk_id, job_ids in changes.bulk_job_ids.items():
            self.bulk_job_ids[bulk_id] = list(job_ids)
        for bulk_id, bulk in changes.bulk_actions.items():
            if bulk is None:
                self.bulk_actions.pop(bulk_id, None)
                self.bulk_job_ids.pop(bulk_id, None)
            else:
                self.bulk_actions[bulk_id] = bulk
        for first_job_id, submission in changes.submissions.items():
            if submission is None:
                self.submissions.pop(first_job_id, None)
            else:
                self.submissions[first_job_id] = submission

    def _commit_accounting(self, changes: ChangeSet) -> None:
        for record in changes.job_accounting:
            self.accounting[(record.job_id, record.attempt)] = record
        for pilot in changes.pilot_accounting:
            self.pilot_accounting.setdefault(pilot.pilot_id, pilot)
        for transfer in changes.transfer_accounting:
            self.transfer_accounting[transfer.transfer_id] = transfer
        self.usage_samples.extend(changes.usage_samples)
        cutoffs = changes.accounting_retention
        if cutoffs is not None:  # (this double keeps no buckets)
            self.accounting = {
                key: record
                for key, record in self.accounting.items()
                if record.ended >= cutoffs.raw_before
            }
            self.pilot_accounting = {
                key: pilot
                for key, pilot in self.pilot_accounting.items()
                if pilot.ended >= cutoffs.raw_before
            }

    def _commit_data(self, changes: ChangeSet) -> None:
        for lfn, entry in changes.catalog_files.items():
            if entry is None:
                self.files.pop(lfn, None)
            else:
                self.files[lfn] = entry
        for lfn, by_se in changes.catalog_replicas.items():
            replicas = self.replicas.setdefault(lfn, {})
            for se, status in by_se.items():
                if status is None:
                    replicas.pop(se, None)
                else:
                    replicas[se] = status
            if not replicas:
                del self.replicas[lfn]
        self.se_status.update(changes.se_status)
        for transfer in changes.transfers.values():
            self.transfers[transfer.transfer_id] = copy.copy(transfer)
        for rule_id, rule in changes.rules.items():
            if rule is None:
                self.rules.pop(rule_id, None)
            else:
                self.rules[rule_id] = rule

    def _commit_pilots(self, changes: ChangeSet) -> None:
        for pilot in changes.pilots.values():
            stored = copy.copy(pilot)
            stored.jobs = []
            self.pilots[pilot.pilot_id] = stored
        for pilot_id, job_id in changes.pilot_jobs:
            jobs = self.pilot_jobs.setdefault(pilot_id, [])
            if job_id not in jobs:
                jobs.append(job_id)
        self.pilot_outputs.update(changes.pilot_outputs)
        for pilot_id in changes.forget_pilots:
            self.pilots.pop(pilot_id, None)
            self.pilot_jobs.pop(pilot_id, None)
            self.pilot_outputs.pop(pilot_id, None)
        if changes.next_pilot_number is not None:
            self.next_pilot_number = changes.next_pilot_number

    def load(self) -> LoadedState:
        self._check_open()
        return LoadedState(
            jobs=[copy.copy(job) for job in self.jobs.values()],
            task_queues=list(self.task_queues.values()),
            sites=list(self.sites.values()),
            shares=dict(self.shares),
            usage=list(self.usage.values()),
            replies=list(self.replies.values()),
            pilots=[self._loaded_pilot(pilot) for pilot in self.pilots.values()],
            next_pilot_number=self.next_pilot_number,
            statuses=list(self.statuses.values()),
            downtimes=[self.downtimes[key] for key in sorted(self.downtimes)],
            se_status=list(self.se_status.values()),
            transfers=[
                copy.copy(t) for t in sorted(self.transfers.values(), key=lambda t: t.transfer_id)
            ],
            rules=[self.rules[i] for i in sorted(self.rules)],
            bulk_actions=[
                (self.bulk_actions[i], list(self.bulk_job_ids.get(i, [])))
                for i in sorted(self.bulk_actions)
            ],
            submissions=[self.submissions[i] for i in sorted(self.submissions)],
        )

    def _loaded_pilot(self, pilot: PilotRecord) -> PilotRecord:
        loaded = copy.copy(pilot)
        loaded.jobs = sorted(self.pilot_jobs.get(pilot.pilot_id, []))
        return loaded

    def description(self, job_id: int) -> dict[str, Any]:
        self._check_open()
        if job_id not in self.descriptions:
            raise JobNotFound(f"job {job_id} not found")
        attributes: dict[str, Any] = msgpack.unpackb(self.descriptions[job_id], raw=False)
        return attributes

    def history(self, job_id: int) -> list[HistoryEntry]:
        self._check_open()
        shared = [e for run in self.shared_history if run.holds(job_id) for e in run.of(job_id)]
        return shared + [entry for entry in self.history_rows if entry.job_id == job_id]

    def pilot_output(self, pilot_id: str) -> str | None:
        self._check_open()
        return self.pilot_outputs.get(pilot_id)

    def sandbox(self, job_id: int, kind: str) -> str | None:
        self._check_open()
        return self.sandboxes.get((job_id, kind))

    def job_accounting(self, job_id: int) -> list[JobAccountingRecord]:
        self._check_open()
        return sorted(
            (record for (job, _), record in self.accounting.items() if job == job_id),
            key=lambda record: record.attempt,
        )

    def referenced_sandboxes(self) -> set[str]:
        self._check_open()
        return set(self.sandboxes.values())

    def probe_results(
        self, since: float, target: str = "", limit: int = 100_000
    ) -> list[ProbeResult]:
        self._check_open()
        found = [
            result
            for result in self.results
            if result.time >= since and (not target or result.target == target)
        ]
        found.sort(key=lambda result: result.time)
        return found[-limit:]

    def catalog_files(self, lfns: list[str]) -> dict[str, FileEntry]:
        self._check_open()
        return {lfn: self.files[lfn] for lfn in lfns if lfn in self.files}

    def catalog_replicas(self, lfns: list[str]) -> dict[str, dict[str, str]]:
        self._check_open()
        return {lfn: dict(self.replicas[lfn]) for lfn in lfns if lfn in self.replicas}

    def catalog_space(self, ses: list[str]) -> dict[str, int]:
        self._check_open()
        used = dict.fromkeys(ses, 0)
        for lfn, by_se in self.replicas.items():
            for se in by_se:
                if se in used:
                    used[se] += self.files[lfn].size
        return used

    def catalog_folder(self, folder: str, limit: int) -> list[FileEntry]:
        self._check_open()
        prefix = folder.rstrip("/") + "/"
        return [self.files[lfn] for lfn in sorted(self.files) if lfn.startswith(prefix)][:limit]

    def schema_version(self) -> int:
        return SCHEMA_VERSION

    def check_writable(self) -> None:
        self._check_open()

    def close(self) -> None:
        self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise StoreError("store is closed")


class FlakyStore(MemoryStore):
    """A :class:`MemoryStore` that fails on demand, to test how the service loop survives:
    ``fail_commits`` commits fail as a broken disk would (StoreError); a change set with a new job
    of owner ``unstorable_owner`` is refused as a value the store cannot hold (UnstorableValue);
    ``writable`` False makes :meth:`check_writable` fail; ``openable`` False makes :meth:`open`
    fail. :meth:`open` is what the service calls to (re)open its store: it counts the calls."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_commits = 0
        self.unstorable_owner = ""
        self.writable = True
        self.openable = True
        self.opens = 0

    def open(self) -> FlakyStore:
        if not self.openable:
            raise StoreError("cannot open the store (injected by the test)")
        self.opens += 1
        self.closed = False
        return self

    def check_writable(self) -> None:
        super().check_writable()
        if not self.writable:
            raise StoreError("store is not writable (injected by the test)")

    def commit(self, changes: ChangeSet) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            raise StoreError("disk I/O error (injected by the test)")
        if any(job.owner == self.unstorable_owner for job, _ in changes.new_jobs):
            raise UnstorableValue(
                f"a value out of range from {self.unstorable_owner} (injected by the test)"
            )
        super().commit(changes)
