"""The watchdog's decisions: is a running payload over one of its limits? Pure: no I/O, no clock.

The job wrapper (:mod:`dirac_like.agents.wrapper`) samples the payload's process tree (in the
pilot, on a timer of its loop: :meth:`PayloadRunner.sample_now`) and hands each :class:`Sample`
to :meth:`Watchdog.check`; a :class:`Verdict` means "kill the tree" and
carries the minor status the job ends with (DIRAC marks watchdog kills as Failed), e.g.
``Watchdog: memory 2150 MB > MaxRAM 2048 MB``.

Limits and their checks, in the order they are tried (the first one exceeded gives the verdict):

- memory: resident set size of the whole tree, in MB, against MaxRAM;
- disk: size of the job's working directory, in MB;
- CPU: user + system time of the whole tree, in seconds, against CPUTime. CPUTime is the job's
  total over all its cores (a 4-core job using its 4 cores burns 4 CPU seconds per second);
- wall clock: seconds since the payload started, against a limit that defaults to
  :func:`wall_limit_for` the CPU time;
- pilot time left: the absolute time the pilot must stop at (the pilot subtracts its own margin
  for killing, reporting and uploading before it hands the deadline in).

A value equal to its limit is still within it; only strictly more is over. The pilot deadline is
the exception: at the deadline itself the time left is exhausted. A limit of 0 means none.
"""

from __future__ import annotations

from dataclasses import dataclass

from dirac_like.errors import InvalidArgument

WALL_FACTOR = 1.5  # wall-clock limit = CPUTime x WALL_FACTOR + WALL_MARGIN
WALL_MARGIN = 600.0  # seconds: start-up, stage-in and stage-out around the computation


def wall_limit_for(cpu_time: float, cores: int = 1) -> float:
    """The default wall-clock limit of a job asking for ``cpu_time`` CPU seconds (0: no limit).

    ``cpu_time * 1.5 + 600``, as DIRAC derives its wall limit from CPUTime: room for a payload
    that waits on I/O a third of its time, plus ten minutes. ``cores`` is accepted and checked
    but does not shrink the limit: a multi-core job that does not keep all its cores busy takes
    longer than ``cpu_time / cores``, and the bound for one core is a safe upper one.
    """
    if cpu_time < 0:
        raise InvalidArgument(f"CPU time must not be negative, got {cpu_time}")
    if cores < 1:
        raise InvalidArgument(f"cores must be at least 1, got {cores}")
    if cpu_time == 0:
        return 0.0
    return cpu_time * WALL_FACTOR + WALL_MARGIN


@dataclass(frozen=True)
class Limits:
    """A payload's limits. Seconds and MB; 0 means no limit. ``pilot_deadline`` is absolute
    (the same clock as :attr:`Sample.now`)."""

    cpu_time: float = 0.0
    wall_time: float = 0.0
    max_rss_mb: float = 0.0
    max_disk_mb: float = 0.0
    pilot_deadline: float = 0.0

    def __post_init__(self) -> None:
        for name in ("cpu_time", "wall_time", "max_rss_mb", "max_disk_mb", "pilot_deadline"):
            if getattr(self, name) < 0:
                raise InvalidArgument(f"limit {name} must not be negative")

    @classmethod
    def for_job(
        cls,
        cpu_time: float,
        max_ram_mb: float = 0.0,
        max_disk_mb: float = 0.0,
        pilot_deadline: float = 0.0,
        cores: int = 1,
    ) -> Limits:
        """The limits of a job from its CPUTime and MaxRAM, the wall limit derived. CPUTime is
        per core, as the matcher reads it (a pilot offers its CPU time left per core): the whole
        process tree of a ``cores``-core job may use ``cpu_time * cores`` CPU seconds."""
        return cls(
            cpu_time=cpu_time * max(1, cores),
            wall_time=wall_limit_for(cpu_time, cores),
            max_rss_mb=max_ram_mb,
            max_disk_mb=max_disk_mb,
            pilot_deadline=pilot_deadline,
        )


@dataclass(frozen=True)
class Sample:
    """One measurement of a running payload. ``now`` and ``started`` are on the same clock."""

    now: float
    started: float
    cpu_seconds: float  # user + system of the whole process tree
    rss_mb: float  # resident memory of the whole process tree
    disk_mb: float  # size of the working directory

    @property
    def wall_seconds(self) -> float:
        return self.now - self.started


@dataclass(frozen=True)
class Verdict:
    """Kill the payload's process tree; the job ends Failed with ``minor_status``.

    ``reason`` names the limit: "memory", "disk", "cpu", "wall" or "time_left".
    """

    reason: str
    minor_status: str


@dataclass(frozen=True)
class Peaks:
    """The highest values seen so far (for heartbeats and the final report)."""

    cpu_seconds: float = 0.0
    rss_mb: float = 0.0
    disk_mb: float = 0.0
    wall_seconds: float = 0.0


class Watchdog:
    """Checks samples of one payload against its limits and remembers the peaks."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.peaks = Peaks()

    def check(self, sample: Sample) -> Verdict | None:
        """A verdict when the sample is over a limit, else None. Updates the peaks."""
        self._record(sample)
        limits = self.limits
        if _over(sample.rss_mb, limits.max_rss_mb):
            return Verdict(
                "memory", _status("memory", sample.rss_mb, "MB", "MaxRAM", limits.max_rss_mb)
            )
        if _over(sample.disk_mb, limits.max_disk_mb):
            return Verdict(
                "disk", _status("disk", sample.disk_mb, "MB", "limit", limits.max_disk_mb)
            )
        if _over(sample.cpu_seconds, limits.cpu_time):
            return Verdict(
                "cpu", _status("CPU time", sample.cpu_seconds, "s", "CPUTime", limits.cpu_time)
            )
        if _over(sample.wall_seconds, limits.wall_time):
            return Verdict(
                "wall", _status("wall clock", sample.wall_seconds, "s", "limit", limits.wall_time)
            )
        if limits.pilot_deadline and sample.now >= limits.pilot_deadline:
            return Verdict("time_left", "Watchdog: pilot time left exhausted")
        return None

    def _record(self, sample: Sample) -> None:
        peaks = self.peaks
        self.peaks = Peaks(
            cpu_seconds=max(peaks.cpu_seconds, sample.cpu_seconds),
            rss_mb=max(peaks.rss_mb, sample.rss_mb),
            disk_mb=max(peaks.disk_mb, sample.disk_mb),
            wall_seconds=max(peaks.wall_seconds, sample.wall_seconds),
        )


def _over(value: float, limit: float) -> bool:
    return limit > 0 and value > limit


def _status(what: str, value: float, unit: str, limit_name: str, limit: float) -> str:
    measured = _measured(value, limit)
    return f"Watchdog: {what} {measured} {unit} > {limit_name} {_number(limit)} {unit}"


def _measured(value: float, limit: float) -> str:
    """The value in whole units, unless rounding down would hide that it is over the limit."""
    whole = int(value)
    return str(whole) if whole > limit else _number(value)


def _number(value: float) -> str:
    """2048 for 2048.0, 5400.5 for 5400.5: at most two decimals, no trailing zeros."""
    if value == int(value):
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")
