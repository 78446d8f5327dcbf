"""The central service's in-memory state: the parts below, put together. No sockets, no clock.

``CentralState`` is what the service loop (services/central.py) and the handlers hold. It composes

- the job book (:class:`~services.job_book.JobBook`, services/job_book.py): jobs, task queues,
  deadlines and the one transition path: every change of a job goes through it;
- the pilot records (:class:`~services.pilots.PilotRegistry`, services/pilots.py);
- the reply cache for idempotent retries (:class:`~services.replies.ReplyCache`);
- the sandbox index (:class:`~services.sandbox_index.SandboxIndex`), a thin shell over the
  sandbox files and the store;
- the journal (:class:`~services.journal.Journal`): what the batch changed, for the store;
- the site board (:class:`~services.site_board.SiteBoard`): bans, limits, names met;
- fair shares (:class:`dirac_like.shares.FairShare`), and the commands to push to pilots;
- data: the storage elements and their status (:class:`~services.catalog.StorageBoard`), the
  replica catalog (:class:`~services.catalog.Catalog`, read from the store) and the transfer
  requests (:class:`~services.transfer_book.TransferBook`).

Each operation changes the parts in place and records what it changed in the journal; the loop
writes that in one transaction per batch (:meth:`take_changes`) and only then sends the replies.
Operations check everything before they change anything, so a refused request leaves the state
exactly as it was. The decisions (job book, deadlines, replies, pilots, shares, matcher) do no
I/O; reads of what lives only in the store (descriptions, history, pilot output, sandbox rows)
go through ``stored`` here and in the sandbox index.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from dirac_like.accounting import retention_cutoffs
from dirac_like.config import Config
from dirac_like.description import (
    NO_LIMITS,
    DescriptionLimits,
    JobDescription,
    parse_descriptions,
)
from dirac_like.errors import InvalidArgument
from dirac_like.model import (
    ChangeSet,
    FileEntry,
    HistoryEntry,
    JobRecord,
    LoadedState,
    Requirements,
    SubmissionRecord,
)
from dirac_like.monitoring import PROBE_GROUP, ProbeResult
from dirac_like.protocol import KillJob, PilotCommand, PilotResources, StopPilot
from dirac_like.sandbox import SandboxStore
from dirac_like.shares import FairShare
from dirac_like.states import ACTIVE_STATUSES, JobStatus
from dirac_like.storage import StorageElementConfig
from dirac_like.why import never_reasons

from .bulk import BulkBook
from .catalog import Catalog, StorageBoard
from .expansion import ExpansionBook, PreparedJobs, SharedRequirements
from .grid_log import GridLog
from .input_data import resolve_input_data
from .job_book import JobBook, pack_description
from .journal import Journal
from .limits import SubmissionLimits
from .monitor_board import MonitorBoard
from .pilots import PilotRegistry
from .replies import ReplyCache
from .rules import RuleBook
from .sandbox_index import SandboxIndex
from .site_board import SiteBoard
from .stdout_tails import StdoutTails
from .transfer_book import TransferBook

if TYPE_CHECKING:
    from .identities import IdentityIssuer
    from .status_handlers import ServiceView

log = logging.getLogger(__name__)

S = JobStatus
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@:+-]{1,64}$")
CLEANUP_SECONDS = 300.0  # how often empty task queues, old pilots and sandboxes are forgotten
STOP_PILOT = StopPilot("Killed by an admin")
NEVER_RUNNABLE = "No CE can run it: "  # the minor status of such a job starts so


def check_name(kind: str, value: str) -> str:
    if not NAME_PATTERN.match(value):
        raise InvalidArgument(
            f"{kind} {value[:70]!r} is not valid: 1 to 64 letters, digits or _ . @ : + -"
        )
    return value


class StoredJobs(Protocol):
    """What the state reads back from the store: the parts it does not keep in memory."""

    def catalog_files(self, lfns: list[str]) -> dict[str, FileEntry]: ...

    def catalog_replicas(self, lfns: list[str]) -> dict[str, dict[str, str]]: ...

    def catalog_folder(self, folder: str, limit: int) -> list[FileEntry]: ...

    def catalog_space(self, ses: list[str]) -> dict[str, int]: ...

    def catalog_lookup(self, lfns: list[str]) -> list[tuple[Any, ...]]: ...

    def description(self, job_id: int) -> dict[str, Any]: ...

    def history(self, job_id: int) -> list[HistoryEntry]: ...

    def pilot_output(self, pilot_id: str) -> str | None: ...

    def sandbox(self, job_id: int, kind: str) -> str | None: ...

    def referenced_sandboxes(self) -> set[str]: ...

    def probe_results(
        self, since: float, target: str = "", limit: int = 100_000
    ) -> list[ProbeResult]: ...


def _fair_share(config: Config, loaded: LoadedState) -> FairShare:
    shares = FairShare(
        config.shares.groups,
        config.shares.users,
        config.shares.half_life,
        config.shares.default_share,
    )
    for record in loaded.usage:
        shares.restore(record)
    for group, share in loaded.shares.items():
        shares.set_group_share(group, share)
    return shares


class CentralState:
    def __init__(
        self,
        config: Config,
        stored: StoredJobs,
        loaded: LoadedState | None = None,
        now: float = 0.0,
        sandboxes: SandboxStore | None = None,
        storage: dict[str, StorageElementConfig] | None = None,
    ):
        self.config = config
        self.stored = stored
        self.stdout_tails = StdoutTails()  # what running jobs printed last (job peek)
        self.limits = DescriptionLimits(
            max_cpu_time=config.jobs.max_cpu_time,
            max_parametric_jobs=config.jobs.max_parametric_jobs,
        )
        self.submission_limits = SubmissionLimits(config.limits, self.limits)
        restoring = loaded is not None
        loaded = loaded or LoadedState([], [], [], {}, [], [])
        self.shares = _fair_share(config, loaded)
        self.journal = Journal()
        self.book = JobBook(config.jobs, self.shares, self.journal, config.shares.drain)
        self.book.restore(loaded.task_queues, loaded.jobs, now)
        self.shares.dirty.clear()  # restoring changed nothing to write
        self.replies = ReplyCache(
            config.service.reply_memory,
            self.journal,
            loaded.replies,
            config.service.secret_reply_memory,
        )
        self.sandbox_index = SandboxIndex(
            sandboxes, stored, self.journal, config.sandboxes.collect_after
        )
        self.pilots = PilotRegistry(config.pilots, loaded.pilots, loaded.next_pilot_number)
        self.sites = SiteBoard(config.sites, self.journal, loaded.sites)
        self.monitor = MonitorBoard(self.sites, self.journal, loaded.statuses, loaded.downtimes)
        elements = dict(config.storage) if storage is None else storage
        limited = [name for name, element in elements.items() if element.total_space]
        used = stored.catalog_space(limited) if limited else {}  # one query, at start
        self.storage = StorageBoard(
            elements, self.journal, loaded.se_status, used, policy=self.monitor.se_status
        )
        self.monitor.known_ses.update(elements)  # the policy may set the status of each SE
        self.catalog = Catalog(
            stored, self.journal, self.storage, config.data.vos, config.data.max_bulk
        )
        self.transfers = TransferBook(
            config.data.transfers, self.catalog, self.storage, self.journal, loaded.transfers
        )
        self.rules = RuleBook(
            self.catalog, self.storage, self.transfers, self.journal, loaded.rules
        )
        self.pushes: list[tuple[str, PilotCommand]] = []  # (pilot id, command) to send now
        self.identities: IdentityIssuer | None = None  # set by a service that runs secure
        self.service_view: ServiceView | None = None  # who leads (set by the service)
        self.grid = GridLog()  # CEs and pilots seen lately, the match rate (job why)
        self.bulk = BulkBook(self.journal, loaded.bulk_actions)  # carried out a batch at a time
        self.expansions = ExpansionBook(self.journal)  # big submissions, made a slice at a time
        self._resume_expansions(loaded.submissions)
        self._next_cleanup = now + CLEANUP_SECONDS
        if restoring:
            log.info(
                "restored %d jobs in %d task queues", len(self.jobs), len(self.book.task_queue_rows)
            )

    @property
    def sandboxes(self) -> SandboxStore | None:
        """The sandbox archive files (None: this service keeps no sandboxes)."""
        return self.sandbox_index.files

    @sandboxes.setter
    def sandboxes(self, files: SandboxStore | None) -> None:
        self.sandbox_index.files = files

    @property
    def secure(self) -> bool:
        """Whether requests come from authenticated identities (sandboxes are then bound to
        their holders)."""
        return self.identities is not None

    @property
    def jobs(self) -> dict[int, JobRecord]:
        """Every job by id (read it here; change it through :attr:`book`)."""
        return self.book.jobs

    # -- the batch -------------------------------------------------------------------------------

    def take_changes(self) -> ChangeSet:
        """What changed since the last call; it is in flight until :meth:`committed`."""
        changes = self.journal.take()
        for record in self.shares.take_dirty():
            changes.usage[(record.group, record.user)] = record
        self.pilots.take_changes(changes)
        records = changes.job_accounting
        for index, accounted in enumerate(records):
            if accounted.pilot_id and not accounted.ce:  # matched before a restart: ask its pilot
                pilot = self.pilots.pilots.get(accounted.pilot_id)
                if pilot is not None and pilot.ce:
                    records[index] = accounted._replace(ce=pilot.ce)
        return changes

    def committed(self, changes: ChangeSet) -> None:
        """The store holds ``changes`` now: read them from there from now on."""
        self.journal.committed(changes)

    def put_back(self, changes: ChangeSet) -> None:
        """``changes`` (just taken) waits for the next batch's commit."""
        self.journal.put_back(changes)

    def store_description(self, job_id: int) -> dict[str, Any]:
        pending = self.journal.new_descriptions.get(job_id)
        return pending if pending is not None else self.stored.description(job_id)

    def store_history(self, job_id: int) -> list[HistoryEntry]:
        """Committed history, then what is on its way to the store."""
        return self.stored.history(job_id) + self.journal.history(job_id)

    def stored_probe_results(self, since: float, target: str, limit: int) -> list[ProbeResult]:
        """Committed probe results, with those on their way to the store, oldest first."""
        found = self.stored.probe_results(since, target, limit) + [
            result
            for result in self.journal.probe_results()
            if result.time >= since and (not target or result.target == target)
        ]
        found.sort(key=lambda result: result.time)
        return found[-limit:]

    # -- timers ----------------------------------------------------------------------------------

    @property
    def background_pending(self) -> bool:
        """Whether a bulk action or a big submission is in progress (the loop goes on with it
        a paced piece at a time: services/pacing.py)."""
        return self.bulk.pending or self.expansions.pending

    def next_deadline(self) -> float | None:
        deadlines = [
            d
            for d in (
                self.book.next_deadline(),
                self.transfers.next_deadline(),
                self.rules.next_pass if self.rules.rules else None,
            )
            if d is not None
        ]
        return min(deadlines, default=None)

    def expire(self, now: float) -> int:
        """Act on every deadline that has passed; returns how many jobs changed."""
        acted = self.book.expire(now)
        self.transfers.expire(now)
        if self.rules.due(now):
            self.rules.reconcile(now)
        self.replies.forget_old(now)
        if now >= self._next_cleanup:
            self._next_cleanup = now + CLEANUP_SECONDS
            self.clean_up(now)
        return acted

    def clean_up(self, now: float) -> None:
        """Forget empty task queues and old ended pilots; delete unreferenced sandboxes."""
        dropped = self.book.matcher.drop_empty()
        if dropped:
            log.info("dropped %d empty task queues", len(dropped))
        forgotten = self.pilots.forget_ended(now)
        if forgotten:
            log.info("forgot %d pilots that ended long ago", forgotten)
        self.sandbox_index.collect(now)
        accounting = self.config.accounting
        self.journal.changes.accounting_retention = retention_cutoffs(
            now, accounting.raw_retention, accounting.hourly_retention
        )

    # -- submission ------------------------------------------------------------------------------

    def submit(
        self,
        sources: list[str | dict[str, Any]],
        owner: str,
        group: str,
        now: float,
        submitter: str = "",
    ) -> list[int]:
        """New jobs of ``owner``, all or none: everything is parsed and checked against the
        limits (services/limits.py) before the first job is made. On a secure service the input
        sandboxes named must be held by ``submitter`` (the owner, or the admin submitting).
        More than ``limits.expand_slice`` jobs: their ids are reserved, the submission is
        recorded whole and its jobs are made a slice at a time (services/expansion.py)."""
        check_name("owner", owner)
        check_name("group", group)
        descriptions: list[JobDescription] = []
        for source in sources:  # parse everything first: a bad one refuses the whole request
            limits = self.submission_limits.for_next_description(len(descriptions))
            descriptions.extend(parse_descriptions(source, limits))
        self.submission_limits.check_request(len(descriptions))
        waiting = self.book.waiting_by_owner[owner] + self.expansions.still_to_make(owner)
        self.submission_limits.check_waiting(owner, waiting, len(descriptions))
        holder = (submitter or owner) if self.secure else None
        prepared = self._prepare(descriptions, holder, checking=True)
        slice_size = self.config.limits.expand_slice
        if not slice_size or len(prepared) <= slice_size:
            return self._make_jobs(prepared, owner, group, now)
        first = self.book.reserve(len(prepared))
        record = SubmissionRecord(
            first, owner, group, submitter, tuple(sources), len(prepared), 0, now
        )
        self.expansions.start(record, prepared)
        log.info("%s/%s submitted jobs %d..%d, made in slices of %d", owner, group, first,
                 first + len(prepared) - 1, slice_size)  # fmt: skip
        self.expand_slice(now)  # the first slice at once
        return list(range(first, first + len(prepared)))

    def _prepare(
        self, descriptions: list[JobDescription], holder: str | None, checking: bool
    ) -> PreparedJobs:
        """Each job ready to be made; ``checking``: each description's size and input sandbox
        checked (not again for a submission resumed after a restart). InputData: the sites of
        the replicas become the job's Site requirement (no lookup for jobs without InputData);
        what is stored is the resolved description."""
        anywhere = self.config.data.input_data_anywhere
        failures = [""] * len(descriptions)
        for index, description in enumerate(descriptions):
            if description.input_data:
                resolved = resolve_input_data(self.catalog, self.storage, description, anywhere)
                descriptions[index], failures[index] = resolved.description, resolved.failure
        packed = list(map(pack_description, descriptions))
        if checking:
            for index, size in enumerate(map(len, packed)):
                self.submission_limits.check_size(index, size)
        sandboxes = [
            self.sandbox_index.input_of(description, holder, checking)
            if description.input_sandbox
            else ""
            for description in descriptions
        ]
        shared = SharedRequirements()
        requirements = list(map(shared.of, descriptions))
        return PreparedJobs(descriptions, packed, sandboxes, failures, requirements)

    def _make_jobs(
        self, prepared: PreparedJobs, owner: str, group: str, now: float, first_id: int = 0
    ) -> list[int]:
        """Make the jobs (ids from ``first_id`` on, if reserved; else the next ones), each
        with a minor status saying so if no known CE can run it. The jobs that share their
        requirements one after the other are made as one run (their task queue and minor status
        decided once); a job holding ``%j`` alone."""
        first = first_id or self.book.reserve(len(prepared))
        never = NeverRunnable(self, group)
        descriptions, requirements = prepared.descriptions, prepared.requirements
        for start, end in runs_of(requirements):
            minor = never.minor_status(requirements[start])
            if any(description.holds_job_id for description in descriptions[start:end]):
                for index in range(start, end):  # its requirements may hold the job id too
                    self.book.add(
                        descriptions[index], owner, group, now, None, minor, first + index
                    )
                continue
            task_queue = self.book.task_queue_for(owner, group, requirements[start])
            self.book.add_run(descriptions[start:end], prepared.packed[start:end], owner, group,
                              now, task_queue, minor, first + start)  # fmt: skip
        for index in (index for index, sha256 in enumerate(prepared.sandboxes) if sha256):
            self.sandbox_index.attach(first + index, "input", prepared.sandboxes[index])
        for index in (index for index, failure in enumerate(prepared.failures) if failure):
            job = self.jobs[first + index]
            self.book.set_status(job, S.FAILED, prepared.failures[index][:256], "InputData", now)
        job_ids = list(range(first, first + len(prepared)))
        if job_ids and not first_id:
            log.info("%s/%s submitted jobs %d..%d", owner, group, job_ids[0], job_ids[-1])
        return job_ids

    def expand_slice(self, now: float) -> int:
        """Make the next slice of jobs of the oldest submission in progress; how many."""
        taken = self.expansions.next_slice(self.config.limits.expand_slice)
        if taken is None:
            return 0
        record, jobs = taken
        first = record.first_job_id + record.expanded
        self._make_jobs(jobs, record.owner, record.group, now, first)
        if record.expanded + len(jobs) >= record.count:
            log.info("submission of jobs %d..%d: all made", record.first_job_id,
                     record.first_job_id + record.count - 1)  # fmt: skip
        return len(jobs)

    def _resume_expansions(self, records: list[SubmissionRecord]) -> None:
        """Submissions a restart interrupted: parsed again from their stored sources (no limit
        applied again: they were accepted), to be made from where they were."""
        for record in sorted(records, key=lambda r: r.first_job_id):
            descriptions = [
                job for source in record.sources for job in parse_descriptions(source, NO_LIMITS)
            ]
            prepared = self._prepare(descriptions, None, checking=False)
            if len(prepared) != record.count:  # cannot be, unless the parser changed
                log.error("submission of jobs %d..: %d jobs parsed again, %d stored",
                          record.first_job_id, len(prepared), record.count)  # fmt: skip
                prepared = prepared.part(0, record.count)
                record = dataclasses.replace(record, count=len(prepared))
            self.expansions.start(record, prepared)
            log.info("submission of jobs %d..%d: resumed at %d", record.first_job_id,
                     record.first_job_id + record.count - 1, record.expanded)  # fmt: skip
        self.book.next_job_id = max(self.book.next_job_id, self.expansions.end_job_id)

    # -- matching --------------------------------------------------------------------------------

    def why_not(self, resources: PilotResources, now: float) -> str:
        """Why a pilot at this site gets no user job right now, or '' if it may be matched."""
        return self.monitor.why_not(resources.site, now) or self.sites.why_not(
            resources.site, self.book.site_active[resources.site]
        )

    def matchable(self, resources: PilotResources, now: float) -> PilotResources | None:
        """What a pilot may be matched with now: None in a downtime (nothing), only probe jobs
        at a banned site or one at its limit of running jobs, else anything it fits."""
        if self.monitor.why_not(resources.site, now):
            return None
        if self.sites.why_not(resources.site, self.book.site_active[resources.site]):
            return dataclasses.replace(resources, owner_group=PROBE_GROUP)
        return resources

    def request_job(
        self, pilot_id: str, resources: PilotResources, now: float, credential: str = ""
    ) -> JobRecord | None:
        self.sites.see(resources.site)
        self.grid.pilot_asked(pilot_id, resources, now)
        pilot = self.pilots.contact(pilot_id, resources.site, resources.ce, now, credential)
        matchable = None if pilot.kill_requested else self.matchable(resources, now)
        if matchable is None:
            return None
        job = self.book.match(pilot_id, matchable, now)
        if job is not None:
            self.pilots.note_job(pilot, job.job_id)
            self.grid.matched(now)
        return job

    # -- invariants ------------------------------------------------------------------------------

    def validate(self) -> None:
        """Check that the indexes agree with the jobs (tests call this after every step)."""
        self.book.validate()

    # -- commands to pilots ----------------------------------------------------------------------

    def push_kill(self, job: JobRecord) -> None:
        """Tell the pilot holding ``job`` to kill it, at once (heartbeat replies repeat it)."""
        self.pushes.append((job.pilot_id, KillJob(job.job_id)))

    def take_pushes(self) -> list[tuple[str, PilotCommand]]:
        pushes, self.pushes = self.pushes, []
        return pushes

    def pending_commands(self, job: JobRecord) -> list[PilotCommand]:
        commands: list[PilotCommand] = []
        if job.kill_requested or job.status in (S.KILLED, S.DONE, S.FAILED, S.DELETED):
            commands.append(KillJob(job.job_id))
        commands.extend(self.pilot_commands(job.pilot_id))
        return commands

    def pilot_commands(self, pilot_id: str) -> list[PilotCommand]:
        """What a pilot must do whatever job it asks about: stop, if an admin killed it."""
        pilot = self.pilots.pilots.get(pilot_id)
        return [STOP_PILOT] if pilot is not None and pilot.kill_requested else []

    def kill_pilot(self, pilot_id: str, now: float) -> list[int]:
        """An admin kills a pilot: its jobs are rescheduled (the pilot is told to kill them), it
        is told to stop, and its director cancels it. Returns the rescheduled jobs."""
        pilot = self.pilots.kill(pilot_id, now)
        held = [
            job
            for job in map(self.jobs.get, pilot.jobs)
            if job is not None and job.pilot_id == pilot_id and job.status in ACTIVE_STATUSES
        ]
        for job in held:
            self.push_kill(job)
            self.book.reschedule(
                job, f"Pilot {pilot_id} killed by an admin", "admin", now, hold=False
            )
        self.pushes.append((pilot_id, STOP_PILOT))
        return [job.job_id for job in held]


def runs_of(items: list[Any]) -> Iterator[tuple[int, int]]:
    """(start, end) of each run of the same object (``is``) one after the other in ``items``."""
    start = 0
    for index in range(1, len(items) + 1):
        if index == len(items) or items[index] is not items[start]:
            yield start, index
            start = index


class NeverRunnable:
    """At submission: the minor status of a job no known CE can ever run ('' for the others),
    decided once per distinct requirements (a parametric submission has one or a few)."""

    def __init__(self, state: CentralState, group: str) -> None:
        self.ces = state.grid.known_ces()
        self.known_sites = frozenset(state.sites.seen)
        self.group = group
        self.decided: dict[Requirements, str] = {}

    def minor_status(self, requirements: Requirements) -> str:
        minor = self.decided.get(requirements)
        if minor is None:
            reasons = never_reasons(requirements, self.group, self.ces, self.known_sites)
            minor = (NEVER_RUNNABLE + "; ".join(reasons))[:256] if reasons else ""
            self.decided[requirements] = minor
        return minor
