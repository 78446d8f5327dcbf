"""The demo's plan and its decisions while it runs: pure functions and frozen data (no I/O).

What ``dirac-like demo`` (:mod:`dirac_like.cli.demo`) submits, where, and how each notable job
must end; the sites and their directors; counting and checking the rows the service returns.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dirac_like.cli.display import count_by, format_percent
from dirac_like.states import JobStatus

MIN_JOBS = 9  # the seven notable jobs (NOTABLE), one simulation and one analysis
CPU_TIME = 300  # CPUTime of the demo's jobs (seconds)
FINAL = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.KILLED})

SIMULATE = (
    "import random, sys; rng = random.Random(int(sys.argv[1])); n = 20000; "
    "hits = sum(rng.random() ** 2 + rng.random() ** 2 < 1 for _ in range(n)); "
    "print('batch', sys.argv[1], 'pi ~', 4 * hits / n)"
)
ANALYSE = (
    "import hashlib, sys; data = sys.argv[1].encode() * 100000; "
    "print(sys.argv[1], hashlib.sha256(data).hexdigest())"
)
RECONSTRUCT = (
    "import concurrent.futures as cf; pool = cf.ProcessPoolExecutor(2); "
    "halves = [range(10**6), range(10**6, 2 * 10**6)]; "
    "print('reconstructed', sum(pool.map(sum, halves))); pool.shutdown()"
)
CALIBRATE = "import sys; sys.exit('calibration constants not found')"  # exit code 1
BROKEN_ANALYSIS = "import sys; print('no input data', file=sys.stderr); sys.exit(2)"
READ_INPUT = (  # a job with InputData: its pilot downloaded events.txt, checksum-checked
    "import zlib; data = open('events.txt', 'rb').read(); "
    "print('read', len(data), 'bytes of events.txt, adler32', format(zlib.adler32(data), '08x'))"
)
WRITE_OUTPUT = (  # a job with OutputData: its pilot uploads and registers histogram.txt
    "import collections; counts = collections.Counter(len(w) for w in 'a grid of pilots "
    "pulling jobs and data'.split()); open('histogram.txt', 'w').write(''.join("
    "f'{k} {v}\\n' for k, v in sorted(counts.items()))); print('wrote histogram.txt')"
)
HOG = (
    "import time; ballast = b'x' * (300 * 2**20); print('holding', len(ballast) >> 20, 'MB',"
    " flush=True); time.sleep(30)"
)


# -- the plan (pure) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CEPlan:
    name: str
    cores: int  # per pilot
    memory_mb: int
    max_total: int  # pilots alive at once


@dataclass(frozen=True)
class SitePlan:
    name: str
    ces: tuple[CEPlan, ...]


@dataclass(frozen=True)
class Expectation:
    """How a job must end: its status, and words its minor status must contain."""

    status: JobStatus
    minor: str = ""

    def met_by(self, row: Mapping[str, Any]) -> bool:
        return JobStatus(row["status"]) is self.status and self.minor in str(row["minor_status"])

    def __str__(self) -> str:
        return f"{self.status} ({self.minor})" if self.minor else self.status.value


@dataclass(frozen=True)
class Submission:
    owner: str
    group: str
    descriptions: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class DemoPlan:
    sites: tuple[SitePlan, ...]
    shares: tuple[tuple[str, float], ...]  # (group, share)
    submissions: tuple[Submission, ...]
    expected: Mapping[str, Expectation]  # by JobName (each name once in the workload)
    victim: str  # JobName of the job its owner kills once it runs
    notable: tuple[str, ...]  # JobNames shown one by one in the summary
    deadline: float  # seconds for the workload; then the demo gives up

    @property
    def total(self) -> int:
        return len(self.expected)

    def planned_counts(self) -> dict[str, int]:
        return dict(Counter(expectation.status for expectation in self.expected.values()))


def site_name(number: int) -> str:
    return f"DIRAC.Demo-{number}.org"


def short_site(name: str) -> str:
    return name.removeprefix("DIRAC.").removesuffix(".org")


def plan_sites(count: int) -> tuple[SitePlan, ...]:
    """``count`` sites with a single-core CE each; the first also has a 2-core CE."""
    single = CEPlan("cpu", cores=1, memory_mb=1024, max_total=2)
    multicore = CEPlan("multicore", cores=2, memory_mb=2048, max_total=1)
    return tuple(
        SitePlan(site_name(number), (single, multicore) if number == 1 else (single,))
        for number in range(1, count + 1)
    )


def python_job(
    name: str, python: str, code: str, *arguments: str, **attributes: Any
) -> dict[str, Any]:
    """A job whose payload is ``python -I -c code arguments...``."""
    return {
        "JobName": name,
        "Executable": python,
        "Arguments": shlex.join(["-I", "-c", code, *arguments]),
        "CPUTime": CPU_TIME,
        **attributes,
    }


DONE = Expectation(JobStatus.DONE, "Execution Complete")
# The demo's data, on two `file` SEs (no install needed): bob puts INPUT_LFN on the first SE and
# asks for a replica on the second (a transfer agent makes it); one job reads it as InputData,
# another writes OUTPUT_LFN as OutputData on the second SE.
DATA_OWNER = "bob"
INPUT_LFN = "/demo/user/bob/input/events.txt"
OUTPUT_LFN = "/demo/user/bob/output/histogram.txt"
DATA_READER, DATA_WRITER = "data-reader", "data-writer"
INPUT_SE, OUTPUT_SE = "DEMO-DISK-1", "DEMO-DISK-2"  # the replica goes to OUTPUT_SE too
VICTIM = "analysis-forgotten"  # killed by its owner once it runs on a pilot
NOTABLE: tuple[tuple[str, Expectation], ...] = (  # JobName, how it must end
    ("reconstruction-2cores", DONE),
    ("calibration-broken", Expectation(JobStatus.FAILED, "exited with code 1")),
    ("analysis-broken", Expectation(JobStatus.FAILED, "exited with code 2")),
    ("memory-hog", Expectation(JobStatus.FAILED, "Watchdog: memory")),
    (VICTIM, Expectation(JobStatus.KILLED)),
    (DATA_READER, DONE),
    (DATA_WRITER, DONE),
)


def plan_demo(jobs: int, sites: int, python: str) -> DemoPlan:
    """``jobs`` jobs on ``sites`` sites; payloads run with the interpreter ``python``: the
    notable jobs, and of the rest 60% simulations (one parametric job), 40% analyses."""
    plain = jobs - len(NOTABLE)
    simulations = max(1, round(plain * 0.6))
    analyses = plain - simulations
    width = len(str(simulations - 1))  # %n counts from 0, zero-padded as DIRAC does
    expected = {f"simulation_{n:0{width}d}": DONE for n in range(simulations)}
    expected.update({f"analysis-{n}": DONE for n in range(1, analyses + 1)})
    expected.update(NOTABLE)
    return DemoPlan(
        sites=plan_sites(sites),
        shares=(("physics", 70.0), ("users", 30.0)),
        submissions=plan_submissions(simulations, analyses, python),
        expected=expected,
        victim=VICTIM,
        notable=tuple(name for name, _ in NOTABLE),
        deadline=90.0 + jobs,
    )


def plan_submissions(simulations: int, analyses: int, python: str) -> tuple[Submission, ...]:
    physics = (
        python_job(
            "simulation_%n",
            python,
            SIMULATE,
            "%s",
            Parameters=simulations,
            ParameterStart=0,
            ParameterStep=1,
            JobGroup="demo-production",
            Priority=2,
        ),
        python_job(
            "reconstruction-2cores",
            python,
            RECONSTRUCT,
            NumberOfProcessors=2,
            MaxRAM=1000,
            Priority=5,
        ),
        python_job("calibration-broken", python, CALIBRATE, Priority=1),
    )
    analysis = tuple(
        python_job(f"analysis-{n}", python, ANALYSE, f"dataset-{n}", Priority=1)
        for n in range(1, analyses + 1)
    )
    broken = python_job("analysis-broken", python, BROKEN_ANALYSIS)
    reader = python_job(DATA_READER, python, READ_INPUT, InputData=[f"LFN:{INPUT_LFN}"])
    writer = python_job(
        DATA_WRITER,
        python,
        WRITE_OUTPUT,
        OutputData=[f"LFN:{OUTPUT_LFN}"],
        OutputSE=[OUTPUT_SE],
    )
    hog = python_job("memory-hog", python, HOG, MaxRAM=100)
    forgotten = {
        "JobName": VICTIM,
        "Executable": "/bin/sleep",
        "Arguments": "60",
        "CPUTime": CPU_TIME,
    }
    return (
        Submission("alice", "physics", physics),
        Submission(DATA_OWNER, "users", (*analysis, broken, reader, writer)),
        Submission("dave", "users", (hog,)),
        Submission("carol", "users", (forgotten,)),
    )


def data_ses(sites: int) -> tuple[tuple[str, str], tuple[str, str]]:
    """The demo's two ``file`` SEs, (name, site) each: at the first and at the last site."""
    return ((INPUT_SE, site_name(1)), (OUTPUT_SE, site_name(max(sites, 1))))


def storage_toml(sites: int, base: str) -> str:
    """The ``[storage]`` tables of the demo's SEs, in folders below ``base``."""
    return "".join(
        f'\n[storage.{name}]\nsite = "{site}"\nprotocol = "file"\n'
        f'base_path = "{base}/{name}"\ntags = ["disk"]\n'
        for name, site in data_ses(sites)
    )


def plan_users(plan: DemoPlan) -> dict[str, tuple[str, ...]]:
    """Each user of the workload and the groups it submits into (its identity's groups)."""
    users: dict[str, tuple[str, ...]] = {}
    for item in plan.submissions:
        groups = users.get(item.owner, ())
        users[item.owner] = groups if item.group in groups else (*groups, item.group)
    return users


def director_name(site: str) -> str:
    """The identity name of a site's director."""
    return f"director@{site}"


def site_toml(site: SitePlan) -> str:
    """The site file of ``site`` (see etc/sites/): fast director cycles, local pilots."""
    lines = [
        f"# {site.name}: written by `dirac-like demo`.",
        "cycle_seconds = 0.5",
        "failure_threshold = 3",
        "backoff_seconds = 5.0",
        "max_backoff_seconds = 30.0",
    ]
    for ce in site.ces:
        lines += [
            "",
            f"[ce.{ce.name}]",
            'fabric = "local"',
            f"cores_per_slot = {ce.cores}",
            f"memory_mb = {ce.memory_mb}",
            "max_wall_time = 172800  # room for jobs of the default CPUTime (86400 s)",
            f"max_queued = {ce.max_total}",
            f"max_total = {ce.max_total}",
        ]
    return "\n".join(lines) + "\n"


# -- decisions while it runs (pure) ------------------------------------------------------------


def is_final(row: Mapping[str, Any]) -> bool:
    return JobStatus(row["status"]) in FINAL


def status_line(rows: Sequence[Mapping[str, Any]]) -> str:
    counts = Counter(row["status"] for row in rows)
    return "  ".join(f"{status} {count}" for status, count in sorted(counts.items()))


def victims_to_kill(rows: Sequence[Mapping[str, Any]], victim: str, already: set[int]) -> list[int]:
    """The victim's job id once it runs on a pilot (and has not been killed yet)."""
    return [
        row["job_id"]
        for row in rows
        if row["job_name"] == victim
        and row["status"] == JobStatus.RUNNING
        and row["job_id"] not in already
    ]


def all_ended(rows: Sequence[Mapping[str, Any]], total: int) -> bool:
    return len(rows) >= total and all(is_final(row) for row in rows)


def outcome_problems(
    rows: Sequence[Mapping[str, Any]], plan: DemoPlan, victim_history: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Every way the jobs did not end as planned (empty: all did)."""
    problems = []
    by_name = {row["job_name"]: row for row in rows}
    for name, expectation in plan.expected.items():
        row = by_name.get(name)
        if row is None:
            problems.append(f"job {name!r}: not found (planned {expectation})")
        elif not expectation.met_by(row):
            problems.append(
                f"job {row['job_id']} {name}: planned {expectation}, got "
                f"{row['status']} ({row['minor_status']})"
            )
    for name in sorted(set(by_name) - set(plan.expected)):
        problems.append(f"job {by_name[name]['job_id']} {name}: not in the plan")
    if victim_history and JobStatus.RUNNING not in (entry["status"] for entry in victim_history):
        problems.append(f"job {plan.victim}: killed before it ran on a pilot")
    return problems


def site_rows(
    rows: Sequence[Mapping[str, Any]], pilots: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of the summary by site and status, with the pilots each site's director submitted
    (the service's pilot records); and the statuses, in order."""
    counts = count_by(rows, "site", "status")
    pilot_counts = Counter(pilot["site"] for pilot in pilots)
    statuses = sorted({status for _, status in counts})
    table = []
    for site in sorted({site for site, _ in counts} | set(pilot_counts)):
        row: dict[str, Any] = {"site": site}
        row.update({status: counts.get((site, status), 0) for status in statuses})
        row["total"] = sum(counts.get((site, status), 0) for status in statuses)
        row["pilots"] = pilot_counts[site]
        table.append(row)
    return table, statuses


def share_rows(
    shares: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    per_site = count_by([row for row in rows if row["pilot_id"]], "group", "site")
    table = []
    for share in shares:
        group = share["group"]
        sites = sorted((site, n) for (g, site), n in per_site.items() if g == group)
        table.append(
            {
                "group": group,
                "target": format_percent(share["share_fraction"]),
                "received": format_percent(share["load_fraction"]),
                "usage": f"{share['usage_core_seconds']:.1f}",
                "jobs": sum(n for _, n in sites),
                "per_site": ", ".join(f"{short_site(site)}: {n}" for site, n in sites) or "-",
            }
        )
    return table
