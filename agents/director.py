"""The site director: keeps pilots on a site's CEs while there is work for them.

One :meth:`Director.cycle` is one iteration (huey style), ``now`` passed in; :meth:`Director.run`
drives it with apscheduler until SIGTERM or SIGINT. A cycle:

0. **sync** — reads the site's live pilot records from the central service (see
   director_records.py: the records live there); unreachable: the cycle stops here;
1. **update** — cancels the pilots an admin killed, asks each fabric for the state of the others;
   a pilot that ended is an outcome for its CE's :class:`CEHealth` (Done: ok; Failed or Aborted:
   failed) and its output goes to the service with its final state;
2. **size** — asks the central service how many waiting jobs a pilot of each CE could run
   (``Client.eligible``), counts its own queued and running pilots per CE;
3. **plan** — :func:`director_sizing.plan` (pure) says how many pilots each CE gets;
4. **submit** — pilot ids from the service, then one :class:`PilotRequest` per pilot. A
   :class:`FabricError` counts as a failed submission for the CE's back-off, its pilot is
   Aborted with the fabric's message, and submitting to that CE stops this cycle;
5. **report** — every state learned goes to the service in one request.

Decisions and accounting:

- Sizing asks with the resources a pilot will really offer (see :meth:`Director.offered`): the
  CE's, with the CPU time a pilot derives from its wall-clock limit.
- A multi-core slot is counted like a single-core one: each eligible job is one pilot slot, even
  though a 4-core pilot may pack four 1-core jobs. This may submit more multi-core pilots than
  strictly needed (bounded by the CE's ``max_queued``/``max_total``), never too few; surplus pilots
  leave after their idle timeout.
- Pilot records live in the central service, which numbers the pilots (``SITE.CE.N``), so a
  restarted director follows the pilots of its previous run. CE back-off state is not persisted:
  a restarted director starts healthy.
- The service unreachable: the cycle logs it, skips everything else, and the next cycle tries
  again; updates not sent wait in the outbox. Nothing in a cycle raises for a service or fabric
  failure; the runner also logs and survives anything unexpected.
- Stopping: the director cancels no pilot itself (an admin's kill-pilot aside). ``close()``
  closes its fabrics; the pilots of the in-process fabrics live with this process (``local``:
  processes on this host, which ``LocalFabric.close`` stops so nothing is left behind;
  ``simulated``: inside this process), so they stop with it: ``close()`` reports them Aborted
  (a local pilot that already reported its own end keeps that), and a restarted director marks
  any it finds still live Aborted (not counted as failures). A batch fabric (slurm) leaves
  queued and running pilots alone, as real directors do, and the next run follows them.
- ``agent director --once`` (:meth:`Director.run_once`) leaves its local pilots running
  (``LocalFabric.detach``): their records say so (:data:`LEFT_RUNNING`), no later director
  adopts them, and each pilot closes its own record when it stops (the ``pilot_stopped``
  request of ``dirac-like pilot``).
- A director follows only records of its own fabrics: a pilot started by hand (no fabric) is
  never adopted; it closes its own record when it stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from dirac_like.client import Client, RetryPolicy
from dirac_like.config import from_mapping, read_toml
from dirac_like.errors import (
    EXIT_OK,
    EXIT_UNREACHABLE,
    ConfigError,
    DiracLikeError,
    ServiceUnavailable,
)
from dirac_like.home_lock import HomeLock, holding, lock_path
from dirac_like.identity import Identity, save_identity
from dirac_like.metrics import MetricsEndpoint, serve_metrics
from dirac_like.processes import dirac_like_argv
from dirac_like.protocol import PilotResources
from dirac_like.sites import CEConfig, SiteConfig
from dirac_like.states import LIVE_PILOT_STATES

from .batch_env import BOOTSTRAP_SCRIPT, bootstrap_command
from .director_metrics import DirectorMetrics
from .director_records import LEFT_RUNNING, PilotBook, PilotRecord
from .director_sizing import CEDemand, CEHealth, CycleLimits, PilotOutcome, plan
from .fabrics import Fabric, FabricError, PilotRequest, PilotState, make_fabric

log = logging.getLogger(__name__)

DIRECTOR_RETRIES = RetryPolicy(timeout=5.0, retries=1, backoff=0.2, max_backoff=1.0)
PILOT_TOKEN_FILE = "pilot.identity"  # in a pilot's working folder
IN_PROCESS_FABRICS = frozenset({"local", "simulated"})  # their pilots stop with the director
# Their pilots report to the service when they stop (dirac-like pilot), which closes the record.
SELF_CLOSING_FABRICS = frozenset({"local"})
BATCH_FABRICS = frozenset({"slurm"})  # their pilots start through the bootstrap script
KILLED_BY_ADMIN = "Killed by an admin"
_SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class DirectorSettings:
    """How the director starts pilots (the ``[director]`` table of ``--config FILE``)."""

    idle_timeout: float = 60.0  # a pilot with nothing to run leaves after this
    drain_margin: float = 60.0  # seconds of a pilot's time left kept to stop and report
    local_grace: float = 30.0  # local fabric: seconds between SIGTERM and SIGKILL of a pilot
    pilot_args: tuple[str, ...] = ()  # more flags for `dirac-like pilot`
    # Batch fabrics (slurm): each pilot runs the bootstrap script (scripts/pilot-bootstrap.sh)
    # at this path, as the worker nodes see it ("": the one installed with dirac-like here).
    bootstrap_script: str = ""
    bootstrap_python: str = ""  # a Python to try first ("": this director's own)
    bootstrap_install_from: str = ""  # a wheel or source folder, when no Python has dirac-like
    bootstrap_venv: str = ""  # where the bootstrap creates that environment ("": per pilot)
    slurm_conf: str = ""  # SLURM_CONF for the Slurm commands ("": their default)
    slurm_timeout: float = 30.0  # seconds a Slurm command may take
    # host:port of the director's Prometheus /metrics (port 0: a free one, logged); "": none
    metrics_listen: str = "127.0.0.1:0"


@dataclass(frozen=True)
class CEReport:
    ce: str
    eligible: int  # waiting jobs a pilot of this CE could run; -1: not asked (unreachable)
    submitted: int
    queued: int  # after this cycle's submissions
    running: int
    backoff_until: float  # 0.0: not backed off

    def backed_off(self, now: float) -> bool:
        return now < self.backoff_until


@dataclass(frozen=True)
class CycleReport:
    now: float
    ces: tuple[CEReport, ...]
    errors: tuple[str, ...] = ()
    unreachable: bool = False  # the central service did not answer: no sizing this cycle

    @property
    def submitted(self) -> int:
        return sum(ce.submitted for ce in self.ces)

    def ce(self, name: str) -> CEReport:
        for report in self.ces:
            if report.ce == name:
                return report
        raise KeyError(name)

    def summary(self) -> str:
        parts = [
            f"{ce.ce}: eligible {ce.eligible}, submitted {ce.submitted}, queued {ce.queued}, "
            f"running {ce.running}" + (" (backed off)" if ce.backed_off(self.now) else "")
            for ce in self.ces
        ]
        text = "; ".join(parts)
        if self.errors:
            text += f"; {len(self.errors)} error(s): " + " | ".join(self.errors)
        return text


class Director:
    """One site's director. Not thread safe: one cycle at a time (the runner sees to it)."""

    def __init__(
        self,
        site: SiteConfig,
        client: Client,
        fabrics: dict[str, Fabric],
        home: Path,
        clock: Callable[[], float] = time.time,
        settings: DirectorSettings | None = None,
    ) -> None:
        for ce in site.ces:
            if ce.fabric not in fabrics:
                raise ConfigError(
                    f"site {site.name}: ce.{ce.name}.fabric: no {ce.fabric!r} "
                    f"fabric available (have: {', '.join(sorted(fabrics))})"
                )
        self.site = site
        self.client = client
        self.fabrics = fabrics
        self.home = Path(home)
        self.clock = clock
        self.settings = settings or DirectorSettings()
        self.health = {ce.name: CEHealth.for_site(site) for ce in site.ces}
        self.book = PilotBook(site.name, client, IN_PROCESS_FABRICS, frozenset(fabrics))
        self.pilots_dir = self.home / "pilots"  # the pilots' working folders
        self.pilots_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # held during a cycle; close() waits for it
        self.metrics = DirectorMetrics(site.name)
        self.metrics_endpoint: MetricsEndpoint | None = None

    # -- one cycle -------------------------------------------------------------------------------

    def cycle(self, now: float | None = None) -> CycleReport:
        """One iteration: update pilots, size, plan, submit. Never raises for a service or fabric
        failure: those are in the report's errors."""
        now = self.clock() if now is None else now
        started = time.perf_counter()
        errors: list[str] = []
        eligible: dict[str, int] | None = None
        submitted: dict[str, int] = {}
        with self._lock:
            try:
                if self._sync(now, errors):
                    self.update_pilots(now, errors)
                    eligible = self.size(errors)
                if eligible is not None:
                    submitted = self.submit_planned(eligible, now, errors)
            finally:
                self.book.flush(errors)
                self.book.prune()
        report = self._report(now, eligible, submitted, errors)
        self.metrics.observe(report, time.perf_counter() - started)
        log.info("site %s cycle: %s", self.site.name, report.summary())
        return report

    @property
    def records(self) -> dict[str, PilotRecord]:
        return self.book.records

    def _sync(self, now: float, errors: list[str]) -> bool:
        """The site's live pilot records from the service; False when it is unreachable."""
        try:
            self.book.sync(now)
        except ServiceUnavailable as exc:
            errors.append(f"central service unreachable: {exc.message}")
            log.error(
                "site %s: central service unreachable, no pilots this cycle: %s",
                self.site.name,
                exc.message,
            )
            return False
        return True

    def update_pilots(self, now: float, errors: list[str]) -> None:
        """Cancel the pilots an admin killed; ask the fabrics about the other live ones."""
        by_fabric: dict[str, list[PilotRecord]] = {}
        for record in self.book.alive():
            if record.fabric not in self.fabrics:
                errors.append(f"pilot {record.pilot_id}: no {record.fabric!r} fabric here")
            elif record.kill_requested:
                self._cancel(record, now, errors)
            else:
                by_fabric.setdefault(record.fabric, []).append(record)
        for name, records in by_fabric.items():
            try:
                states = self.fabrics[name].status([record.fabric_ref for record in records])
            except DiracLikeError as exc:
                errors.append(f"fabric {name}: status failed: {exc.message}")
                log.error(
                    "site %s: fabric %s: status failed: %s", self.site.name, name, exc.message
                )
                continue
            for record in records:
                self._note_state(record, states.get(record.fabric_ref, PilotState.ABORTED), now)

    def _cancel(self, record: PilotRecord, now: float, errors: list[str]) -> None:
        try:
            self.fabrics[record.fabric].cancel(record.fabric_ref)
        except DiracLikeError as exc:
            errors.append(f"pilot {record.pilot_id}: cancel failed: {exc.message}")
            return
        log.info("pilot %s (%s): cancelled, an admin killed it", record.pilot_id, record.fabric_ref)
        self.book.note(record, PilotState.ABORTED, now, KILLED_BY_ADMIN, self._output(record))

    def _note_state(self, record: PilotRecord, state: PilotState, now: float) -> None:
        if state is record.pilot_state:
            return
        log.info("pilot %s (%s): %s -> %s", record.pilot_id, record.fabric_ref, record.state, state)
        if not state.final:
            self.book.note(record, state, now)
            return
        reason = self._describe(record) if state is not PilotState.DONE else None
        self.book.note(record, state, now, reason, self._output(record))
        if reason:
            log.warning("pilot %s ended %s: %s", record.pilot_id, state, reason)
        outcome = PilotOutcome.PILOT_OK if state is PilotState.DONE else PilotOutcome.PILOT_FAILED
        length = self.health[record.ce].record(outcome, now) if record.ce in self.health else None
        if length is not None:
            log.warning(
                "site %s: CE %s backed off for %.0f s after pilot %s ended %s",
                self.site.name,
                record.ce,
                length,
                record.pilot_id,
                state,
            )

    def _describe(self, record: PilotRecord) -> str | None:
        """What the fabric says about how the pilot ended (None: nothing)."""
        try:
            return self.fabrics[record.fabric].describe(record.fabric_ref) or None
        except Exception:  # a description is a nicety: never fail a cycle for it
            log.exception("pilot %s: describing it failed", record.pilot_id)
            return None

    def _output(self, record: PilotRecord) -> str:
        """The ended pilot's output from its fabric ('' with a log line if there is none)."""
        try:
            return self.fabrics[record.fabric].output(record.fabric_ref)
        except DiracLikeError as exc:
            log.warning("pilot %s: no output to collect: %s", record.pilot_id, exc.message)
            return ""

    def size(self, errors: list[str]) -> dict[str, int] | None:
        """Eligible jobs per CE; None when the central service is unreachable."""
        eligible: dict[str, int] = {}
        for ce in self.site.ces:
            try:
                eligible[ce.name] = self.client.eligible(self.offered(ce))
            except ServiceUnavailable as exc:
                errors.append(f"central service unreachable: {exc.message}")
                log.error(
                    "site %s: central service unreachable, no pilots this cycle: %s",
                    self.site.name,
                    exc.message,
                )
                return None
            except DiracLikeError as exc:
                errors.append(f"CE {ce.name}: eligible refused: {exc.message}")
                log.error(
                    "site %s: CE %s: the service refused eligible: %s",
                    self.site.name,
                    ce.name,
                    exc.message,
                )
                eligible[ce.name] = 0
        return eligible

    def offered(self, ce: CEConfig) -> PilotResources:
        """What a pilot of ``ce`` will offer the matcher: the CE's resources, with the CPU time
        the pilot derives from its ``--time-left`` (less its drain margin), capped by the CE's
        ``max_cpu_time``. Sizing by ``ce.resources`` alone would count jobs whose CPUTime the
        pilots then refuse, and submit pilots for them forever."""
        resources = ce.resources(self.site.name)
        from_wall = max(1, int(ce.max_wall_time - self.settings.drain_margin))
        cpu = min(ce.max_cpu_time, from_wall) if ce.max_cpu_time else from_wall
        return dataclasses.replace(resources, cpu_time_left=cpu)

    def submit_planned(
        self, eligible: dict[str, int], now: float, errors: list[str]
    ) -> dict[str, int]:
        demands = [
            CEDemand.for_ce(
                ce,
                eligible[ce.name],
                *self.counts(ce.name),
                backoff_until=self.health[ce.name].backoff_until,
            )
            for ce in self.site.ces
        ]
        planned = plan(demands, CycleLimits.for_site(self.site), now)
        return {
            name: self.submit(self.site.ce(name), count, now, errors)
            for name, count in planned.items()
        }

    def submit(self, ce: CEConfig, count: int, now: float, errors: list[str]) -> int:
        """Submit up to ``count`` pilots to ``ce``; stops at the first refusal. Returns how many."""
        if count <= 0:
            return 0
        try:
            pilot_ids = self.book.new_ids(ce.name, count, ce.fabric)
        except DiracLikeError as exc:
            errors.append(f"CE {ce.name}: no pilot ids from the service: {exc.message}")
            return 0
        fabric = self.fabrics[ce.fabric]
        for done, pilot_id in enumerate(pilot_ids):
            try:
                ref = fabric.submit(self.pilot_request(ce, pilot_id))
            except FabricError as exc:
                self._submit_failed(ce, pilot_id, exc, now, errors)
                for unused in pilot_ids[done + 1 :]:
                    self.book.refused(unused, f"Not submitted: CE {ce.name} refused {pilot_id}")
                return done
            self.book.add(pilot_id, ce.name, ce.fabric, ref, now)
            log.info("pilot %s submitted to CE %s (%s)", pilot_id, ce.name, ref)
        return count

    def _submit_failed(
        self, ce: CEConfig, pilot_id: str, exc: FabricError, now: float, errors: list[str]
    ) -> None:
        errors.append(f"CE {ce.name}: submit failed: {exc.message}")
        self.book.refused(pilot_id, f"Fabric {ce.fabric} refused it: {exc.message}")
        length = self.health[ce.name].record(PilotOutcome.SUBMIT_FAILED, now)
        log.error(
            "pilot %s: CE %s (fabric %s) refused it: %s; no more pilots to this CE this cycle",
            pilot_id,
            ce.name,
            ce.fabric,
            exc.message,
        )
        if length is not None:
            log.warning("site %s: CE %s backed off for %.0f s", self.site.name, ce.name, length)

    def pilot_request(self, ce: CEConfig, pilot_id: str) -> PilotRequest:
        """What to start for one pilot of ``ce``: the ``dirac-like pilot`` command (local
        fabric) and the environment the simulated fabric reads."""
        site, server = self.site.name, self.client.server
        idle = f"{self.settings.idle_timeout:g}"
        workdir = self.pilots_dir / pilot_id
        command = [
            *dirac_like_argv("pilot"),
            "--server",
            server,
            "--site",
            site,
            "--ce",
            ce.name,
            "--cores",
            str(ce.cores_per_slot),
            "--time-left",
            str(ce.max_wall_time),
            "--pilot-id",
            pilot_id,
            "--workdir",
            str(workdir),
            "--idle-timeout",
            idle,
            "--drain-margin",
            f"{self.settings.drain_margin:g}",
        ]
        if ce.memory_mb:
            command += ["--memory", str(ce.memory_mb)]
        if ce.max_cpu_time:  # the pilot offers what the director sized with
            command += ["--cpu-time", str(ce.max_cpu_time)]
        if ce.platform:
            command += ["--platform", ce.platform]
        if ce.tags:
            command += ["--tags", ",".join(ce.tags)]
        if ce.required_tags:
            command += ["--required-tags", ",".join(ce.required_tags)]
        if ce.fabric != "simulated":  # its pilots share the fabric's token (build_director)
            command += self._pilot_token(pilot_id, workdir)
        command += self.settings.pilot_args
        env = {
            "DIRAC_LIKE_SITE": site,
            "DIRAC_LIKE_CE": ce.name,
            "DIRAC_LIKE_SERVER": server,
            "DIRAC_LIKE_IDLE_TIMEOUT": idle,
        }
        if ce.fabric in BATCH_FABRICS:
            command = self._bootstrapped(command)
        return PilotRequest(
            pilot_id,
            command,
            env,
            cores=ce.cores_per_slot,
            memory_mb=ce.memory_mb,
            wall_seconds=ce.max_wall_time,
            workdir=workdir,
            queue=ce.partition,
        )

    def _pilot_token(self, pilot_id: str, workdir: Path) -> list[str]:
        """A pilot token for ``pilot_id`` (bound to this site and that pilot, short-lived) in a
        file of its working folder (0600; the pilot removes it once read), as the pilot's
        ``--identity`` flag; no flag when we have no identity ourselves (--insecure). A token
        the service refuses is a FabricError: the CE backs off as for a refused submission."""
        if self.client.identity is None:
            return []
        try:
            token = self.client.pilot_token(self.site.name, pilot_id)
        except DiracLikeError as exc:
            raise FabricError(
                f"pilot {pilot_id}: no pilot token from the central service: {exc.message}"
            ) from None
        path = workdir / PILOT_TOKEN_FILE
        save_identity(path, token)
        return ["--identity", str(path)]

    def _bootstrapped(self, command: list[str]) -> list[str]:
        """``command`` run through the pilot bootstrap, as a batch system's worker node must."""
        settings = self.settings
        return bootstrap_command(
            command,
            python=settings.bootstrap_python or sys.executable,
            install_from=settings.bootstrap_install_from or None,
            venv=settings.bootstrap_venv or None,
            script=settings.bootstrap_script or BOOTSTRAP_SCRIPT,
        )

    def counts(self, ce: str) -> tuple[int, int]:
        """(queued, running) pilots of ``ce``."""
        return self.book.counts(ce)

    def alive(self) -> list[PilotRecord]:
        return self.book.alive()

    def _report(
        self,
        now: float,
        eligible: dict[str, int] | None,
        submitted: dict[str, int],
        errors: list[str],
    ) -> CycleReport:
        ces = tuple(
            CEReport(
                ce.name,
                -1 if eligible is None else eligible.get(ce.name, 0),
                submitted.get(ce.name, 0),
                *self.counts(ce.name),
                backoff_until=self.health[ce.name].backoff_until,
            )
            for ce in self.site.ces
        )
        return CycleReport(now, ces, tuple(errors), unreachable=eligible is None)

    # -- running ---------------------------------------------------------------------------------

    def run_once(self) -> int:
        """One cycle, then close leaving the pilots running: the exit code of ``agent director
        --once``."""
        try:
            with self._locked():
                report = self.cycle()
        finally:
            self.close(leave_running=True)
        return EXIT_UNREACHABLE if report.unreachable else EXIT_OK

    def _locked(self) -> contextlib.AbstractContextManager[list[HomeLock]]:
        """One director per site and home (two would both submit pilots for the same jobs)."""
        name = f"director-{self.site.name}"
        return holding(
            (lock_path(self.home, name), f"a director of site {self.site.name} on home {self.home}")
        )

    def run(self) -> int:
        """Cycles every ``site.cycle_seconds`` until SIGTERM or SIGINT; the cycle under way is
        finished, then the fabrics are closed. Returns 0."""
        with self._locked():
            self.serve_metrics()
            return self._run_cycles()

    def serve_metrics(self) -> str:
        """Open /metrics on ``metrics_listen`` ('' there: not at all); returns its URL."""
        if not self.settings.metrics_listen or self.metrics_endpoint is not None:
            return self.metrics_endpoint.url if self.metrics_endpoint else ""
        self.metrics_endpoint = serve_metrics(
            self.settings.metrics_listen, self.metrics.registry, "director.metrics_listen"
        )
        log.info("site %s: director metrics on %s", self.site.name, self.metrics_endpoint.url)
        return self.metrics_endpoint.url

    def _run_cycles(self) -> int:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.blocking import BlockingScheduler

        scheduler = BlockingScheduler(executors={"default": ThreadPoolExecutor(1)}, timezone=UTC)
        scheduler.add_job(
            self._tick,
            "interval",
            seconds=self.site.cycle_seconds,
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info(
                "site %s: %s received, stopping after the current cycle",
                self.site.name,
                signal.Signals(signum).name,
            )
            with contextlib.suppress(Exception):
                scheduler.shutdown(wait=False)

        previous = {
            signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)
        }
        log.info(
            "site %s: director started, a cycle every %g s", self.site.name, self.site.cycle_seconds
        )
        try:
            scheduler.start()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.close()
        log.info("site %s: director stopped", self.site.name)
        return EXIT_OK

    def _live_at_service(self, records: list[PilotRecord]) -> dict[str, PilotState]:
        """The service's state of those of ``records`` whose pilots close their own records (a
        local pilot reports when it stops): Done for one no longer live there. Empty when
        there are none, or the service cannot tell."""
        closing = {record.pilot_id for record in records if record.fabric in SELF_CLOSING_FABRICS}
        if not closing:
            return {}
        try:
            rows = self.client.pilots(
                site=self.site.name, states=sorted(s.value for s in LIVE_PILOT_STATES)
            )
        except DiracLikeError:
            return {}
        live = {row.pilot_id: PilotState(row.state) for row in rows}
        return {pilot_id: live.get(pilot_id, PilotState.DONE) for pilot_id in closing}

    def _tick(self) -> None:
        try:
            self.cycle()
        except Exception:  # a daemon survives its own bugs; the next cycle tries again
            log.exception("site %s: cycle failed", self.site.name)

    def close(self, leave_running: bool = False) -> None:
        """Wait for a cycle under way, close the fabrics (see the module docstring), report the
        pilots that stopped with them. ``leave_running``: the local fabric's pilots are left
        running (they close their own records when they stop)."""
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close()
            self.metrics_endpoint = None
        with self._lock:
            for name, fabric in self.fabrics.items():
                try:
                    fabric.detach() if leave_running else fabric.close()
                except Exception:
                    log.exception("site %s: closing fabric %s failed", self.site.name, name)
            now = self.clock()
            ended = [record for record in self.book.alive() if record.fabric in IN_PROCESS_FABRICS]
            live = self._live_at_service(ended)
            for record in ended:
                state = live.get(record.pilot_id, record.pilot_state)
                if record.fabric in SELF_CLOSING_FABRICS and state.final:
                    continue  # the pilot stopped and closed its own record
                if leave_running and record.fabric in SELF_CLOSING_FABRICS:
                    self.book.note(record, state, now, LEFT_RUNNING)
                else:
                    self.book.note(
                        record, PilotState.ABORTED, now, "Director stopped", self._output(record)
                    )
            errors: list[str] = []
            self.book.flush(errors)
            for error in errors:
                log.warning("site %s: %s", self.site.name, error)


# -- building a director from files ------------------------------------------------------------


def load_settings(path: Path | None) -> DirectorSettings:
    """The ``[director]`` table of a TOML file (keys of :class:`DirectorSettings`)."""
    if path is None:
        return DirectorSettings()
    raw = read_toml(path)
    table = dict(raw.get("director", {}))
    unknown = sorted(set(raw) - {"director"})
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown key (only a [director] table)")
    pilot_args = table.pop("pilot_args", [])
    if not isinstance(pilot_args, list) or not all(isinstance(a, str) for a in pilot_args):
        raise ConfigError(f"{path}: director.pilot_args: expected a list of strings")
    try:
        settings = from_mapping(DirectorSettings, table, "director")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.message}") from None
    if min(settings.idle_timeout, settings.local_grace, settings.drain_margin) < 0:
        raise ConfigError(
            f"{path}: director.idle_timeout, drain_margin and local_grace must not be negative"
        )
    if settings.slurm_timeout <= 0:
        raise ConfigError(f"{path}: director.slurm_timeout must be positive")
    return dataclasses.replace(settings, pilot_args=tuple(pilot_args))


def site_file(site: str, sites_dir: Path) -> Path:
    """``sites_dir/<site>.toml``; a ConfigError naming the sites there when it does not exist."""
    path = sites_dir / f"{site}.toml"
    if _SITE_NAME.fullmatch(site) and path.is_file():
        return path
    known = sorted(p.stem for p in sites_dir.glob("*.toml")) if sites_dir.is_dir() else []
    raise ConfigError(
        f"unknown site {site!r}: no file {path} "
        f"(sites in {sites_dir}: {', '.join(known) or 'none'})"
    )


def make_fabrics(
    names: Iterable[str],
    server: str,
    home: Path,
    settings: DirectorSettings,
    identity: Identity | None = None,
) -> dict[str, Fabric]:
    """One fabric object per fabric name the site's CEs use (``identity``: what the simulated
    fabric's pilots present)."""
    options: dict[str, dict[str, Any]] = {
        "local": {"base_dir": home / "fabric" / "local", "grace": settings.local_grace},
        "simulated": {"server": server, "identity": identity},
        # Batch pilots outlive their director: the next run follows them by their job ids.
        "slurm": {
            "base_dir": home / "fabric" / "slurm",
            "cancel_on_close": False,
            "slurm_conf": Path(settings.slurm_conf) if settings.slurm_conf else None,
            "timeout": settings.slurm_timeout,
        },
    }
    fabrics: dict[str, Fabric] = {}
    try:
        for name in sorted(set(names)):
            fabrics[name] = make_fabric(name, **options.get(name, {}))
    except BaseException:
        for fabric in fabrics.values():
            fabric.close()
        raise
    return fabrics


def simulated_identity(site: SiteConfig, client: Client) -> Identity | None:
    """What the simulated fabric's pilots present: they live in this process and share its
    sockets, so one pilot token for any pilot of the site (None when we run insecure). It
    expires like any pilot token (``security.pilot_token_lifetime``): restart the director of a
    simulated site before then."""
    return None if client.identity is None else client.pilot_token(site.name)


def build_director(
    site: SiteConfig, client: Client, home: Path, settings: DirectorSettings
) -> Director:
    """A director with a fabric for each kind its CEs name (``client`` stays the caller's)."""
    names = {ce.fabric for ce in site.ces}
    identity = simulated_identity(site, client) if "simulated" in names else None
    fabrics = make_fabrics(names, client.server, home, settings, identity)
    try:
        return Director(site, client, fabrics, home, settings=settings)
    except BaseException:
        for fabric in fabrics.values():
            fabric.close()
        raise
