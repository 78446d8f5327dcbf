"""``dirac-like demo``: a small grid on this machine, from an empty home to a summary.

What runs is the real thing, on this host, in a temporary home:

- a central service (``dirac-like service central``), secure: its home is initialized (service
  keys, an admin identity), the admin sets the groups' shares and issues an identity to each user
  of the workload and to each site director;
- one site director per site (``dirac-like agent director``), each a process of its own, its
  site file and settings written into the home; its pilots run on the ``local`` fabric, each a
  ``dirac-like pilot`` process, with a pilot token its director obtained for it, that pulls jobs
  and runs them under the job wrapper and watchdog;
- the monitoring agent (``dirac-like agent monitoring``) beside them, with its own identity (role
  monitor): it sends probe jobs to every CE (group ``probes``, not part of the workload) and keeps
  each site's status;
- data on two ``file`` SEs (nothing to install): a transfer agent (``dirac-like agent
  transfer``); bob puts an input file on the first SE and asks for a replica on the second; a job
  reads that file as InputData (its pilot downloads it, checksum-checked), another writes
  OutputData that its pilot uploads and registers; the summary shows the files, their replicas
  and the transfer;
- a mixed workload submitted through the Python API, each user with its own identity: a
  parametric simulation (group physics), user analyses (group users), a 2-core job, two jobs
  whose payload exits non-zero, one job that goes over its MaxRAM (the watchdog kills it) and
  one its owner kills while it runs on a pilot.

Every job has a planned outcome (:class:`Expectation`); the demo prints live counts by status, then
a summary by site and status, the share each group received, the notable jobs, and each site's
status and availability as the monitoring agent measured them, and exits 1
when a job did not end as planned (naming it). Processes are stopped by PID in a ``finally``,
whatever happens (Ctrl-C included): the directors first (SIGTERM; they stop their pilots), SIGKILL
after a grace, then the service. ``--keep`` also starts the web dashboard (``dirac-like service
web``, printing its URL and the ``web-login`` commands that open it) and leaves the grid up until
Ctrl-C.

The plan and the checks are pure functions (:mod:`dirac_like.cli.demo_plan`); this module is the
I/O shell that starts, watches and stops processes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]  # no stubs installed
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dirac_like.availability import percent
from dirac_like.cli.data import TRANSFER_COLUMNS, transfers
from dirac_like.cli.demo_plan import (
    DATA_OWNER,
    INPUT_LFN,
    INPUT_SE,
    MIN_JOBS,
    OUTPUT_LFN,
    OUTPUT_SE,
    DemoPlan,
    all_ended,
    director_name,
    is_final,
    outcome_problems,
    plan_demo,
    plan_users,
    share_rows,
    short_site,
    site_rows,
    site_toml,
    status_line,
    storage_toml,
    victims_to_kill,
)
from dirac_like.cli.display import format_ids, make_console, print_table
from dirac_like.cli.monitoring import availability_report
from dirac_like.client import Client, RetryPolicy
from dirac_like.data_manager import DataManager
from dirac_like.errors import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, DiracLikeError
from dirac_like.identity import load_identity, save_identity
from dirac_like.monitoring import PROBE_GROUP
from dirac_like.processes import ServiceProcess, dirac_like_argv
from dirac_like.protocol import TransferView, to_wire

DEMO_CONFIG = """\
# Written by `dirac-like demo`. The groups' shares are set through the client.
[store]
synchronous = "normal"

[jobs]
match_lease = 30.0
default_group = "users"
"""

# How the directors start pilots: quick to ask for work, quick to leave when there is none.
DIRECTOR_SETTINGS = """\
# Written by `dirac-like demo`: pilots that start fast and leave when idle.
[director]
idle_timeout = 3.0
local_grace = 5.0
pilot_args = ["--request-interval", "0.3", "--heartbeat", "0.5", "--kill-grace", "1"]
"""

# The monitoring agent of the demo: probes every few seconds, so each site has a status and an
# availability by the end of the workload.
MONITORING_SETTINGS = """\
# Written by `dirac-like demo`: the monitoring agent, quick.
[monitoring]
cycle_seconds = 1.0
probe_interval = 5.0
start_timeout = 60.0
run_timeout = 60.0
"""
PROBE_VALIDITY = 30.0  # seconds a probe result holds in the demo's availability figures

HELLO_JDL = """\
// Written by `dirac-like demo`: submit it with `dirac-like job submit hello.jdl`.
JobName = "hello";
Executable = "/bin/echo";
Arguments = "Hello from a dirac-like pilot";
CPUTime = 600;
"""

INPUT_EVENTS = "".join(f"event {n} energy {n * 7 % 100} GeV\n" for n in range(2000))
TRANSFER_WAIT = 30.0  # seconds the summary waits for the replication to end, at most

POLL_SECONDS = 0.2
DIRECTOR_GRACE = 15.0  # SIGTERM -> SIGKILL of a director (its pilots get local_grace = 5 s)
POLICY = RetryPolicy(timeout=10.0, retries=3, backoff=0.1, max_backoff=1.0)


# -- the grid (I/O) ----------------------------------------------------------------------------


@dataclass
class DirectorProcess:
    site: str
    popen: subprocess.Popen[bytes]
    stderr: Path
    label: str = ""  # how messages name it ("": the director of its site)

    @property
    def name(self) -> str:
        return self.label or f"director of {self.site}"


@dataclass
class Grid:
    """The processes of the demo; :func:`stop_grid` stops whatever was started."""

    home: Path
    service: ServiceProcess | None = None
    web: ServiceProcess | None = None  # the dashboard (with --keep)
    directors: list[DirectorProcess] = field(default_factory=list)
    identities: dict[str, Path] = field(default_factory=dict)  # user or site -> identity file

    @property
    def endpoint(self) -> str:
        assert self.service is not None
        return self.service.endpoint

    def dead(self) -> list[str]:
        """What stopped by itself, with its exit code."""
        dead = [
            f"{d.name} (exit code {d.popen.returncode}, see {d.stderr})"
            for d in self.directors
            if d.popen.poll() is not None
        ]
        if self.service is not None and self.service.popen.poll() is not None:
            dead.append(f"central service (exit code {self.service.popen.returncode})")
        if self.web is not None and self.web.popen.poll() is not None:
            dead.append(f"web dashboard (exit code {self.web.popen.returncode})")
        return dead


def write_files(home: Path, plan: DemoPlan) -> None:
    storage = storage_toml(len(plan.sites), str(home / "storage"))
    (home / "demo.toml").write_text(DEMO_CONFIG + storage)
    (home / "director.toml").write_text(DIRECTOR_SETTINGS)
    (home / "monitoring.toml").write_text(MONITORING_SETTINGS)
    (home / "hello.jdl").write_text(HELLO_JDL)
    sites = home / "sites"
    sites.mkdir()
    for site in plan.sites:
        (sites / f"{site.name}.toml").write_text(site_toml(site))


def issue_identities(admin: Client, plan: DemoPlan, home: Path) -> dict[str, Path]:
    """An identity file (0600, in the home) for each user of the workload and each site's
    director, issued by the admin: user name or site -> file."""
    folder = home / "identities"
    files: dict[str, Path] = {}
    for user, groups in plan_users(plan).items():
        files[user] = folder / f"{user}.identity"
        save_identity(files[user], admin.identity_add(user, "user", list(groups)))
    for site in plan.sites:
        files[site.name] = folder / f"{director_name(site.name)}.identity"
        save_identity(
            files[site.name],
            admin.identity_add(director_name(site.name), "director", site=site.name),
        )
    files["monitoring"] = folder / "monitoring.identity"
    save_identity(files["monitoring"], admin.identity_add("monitoring", "monitor"))
    files["transfer"] = folder / "transfer.identity"
    save_identity(files["transfer"], admin.identity_add("transfer", "agent"))
    return files


def as_client(endpoint: str, home: Path, identity: Path) -> list[str]:
    """The flags that make a demo daemon a client of the demo's service, as ``identity``."""
    return ["--server", endpoint, "--home", str(home), "--identity", str(identity)]


def start_director(home: Path, site: str, endpoint: str, identity: Path) -> DirectorProcess:
    """``dirac-like agent director`` for ``site``, in its own session (Ctrl-C reaches only the
    demo, which stops it in order)."""
    command = [
        *dirac_like_argv("agent", "director", "--site", site),
        "--sites-dir",
        str(home / "sites"),
        "--config",
        str(home / "director.toml"),
        *as_client(endpoint, home, identity),
    ]
    return start_daemon(home, command, f"director-{site}.stderr", site)


def start_monitoring(home: Path, endpoint: str, identity: Path) -> DirectorProcess:
    """``dirac-like agent monitoring`` for every site of the demo, in its own session."""
    command = [
        *dirac_like_argv("agent", "monitoring"),
        "--sites-dir",
        str(home / "sites"),
        "--config",
        str(home / "monitoring.toml"),
        *as_client(endpoint, home, identity),
    ]
    return start_daemon(home, command, "monitoring.stderr", "", "monitoring agent")


def start_transfer_agent(home: Path, endpoint: str, identity: Path) -> DirectorProcess:
    """``dirac-like agent transfer`` (it makes the demo's replica), in its own session."""
    command = [
        *dirac_like_argv("agent", "transfer", "--name", "transfer"),
        "--idle-interval",
        "0.5",
        *as_client(endpoint, home, identity),
    ]
    return start_daemon(home, command, "transfer.stderr", "", "transfer agent")


def start_daemon(
    home: Path, command: list[str], log_name: str, site: str, label: str = ""
) -> DirectorProcess:
    """``command`` in its own session in ``home``, its output to ``home/log_name``."""
    stderr = home / log_name
    with open(stderr, "wb") as output:
        popen = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            cwd=home,
            start_new_session=True,
        )
    return DirectorProcess(site, popen, stderr, label)


def start_service(grid: Grid, console: Console) -> None:
    grid.service = ServiceProcess.start_central(grid.home, grid.home / "demo.toml")
    console.print(f"Central service at {grid.endpoint}, home {grid.home}")


def start_web(grid: Grid, console: Console) -> None:
    """The dashboard on the service's home, acting (kill, reschedule) as the home's admin."""
    assert grid.service is not None
    grid.web = ServiceProcess.start_web(
        grid.home,
        grid.endpoint,
        grid.service.identity_path,
        grid.home / "demo.toml",
        extra=("--refresh", "2", "--sample-seconds", "2"),
    )
    console.print(f"Web dashboard at {grid.web.endpoint}")


def web_login_hint(grid: Grid) -> str:
    """How to open the dashboard as a demo user and as the admin."""
    if grid.web is None:
        return ""
    url = grid.web.endpoint
    return (
        f"The web dashboard is at {url}; log in with a link from:\n"
        f"  dirac-like web-login --url {url} --identity {grid.identities['bob']}   # bob\n"
        f"  dirac-like web-login --url {url} --identity {grid.identities['admin']}   "
        "# the admin\n"
    )


def start_directors(grid: Grid, plan: DemoPlan, console: Console) -> None:
    for site in plan.sites:
        grid.directors.append(
            start_director(grid.home, site.name, grid.endpoint, grid.identities[site.name])
        )
    ces = "; ".join(
        f"{short_site(site.name)}: "
        + ", ".join(
            f"{ce.name} ({ce.cores} core{'s' if ce.cores > 1 else ''}, {ce.max_total} pilots max)"
            for ce in site.ces
        )
        for site in plan.sites
    )
    console.print(f"{len(plan.sites)} site director(s), pilots on the local fabric ({ces})")
    grid.directors.append(start_monitoring(grid.home, grid.endpoint, grid.identities["monitoring"]))
    console.print("The monitoring agent probes every CE (probe jobs, group probes)")
    grid.directors.append(
        start_transfer_agent(grid.home, grid.endpoint, grid.identities["transfer"])
    )
    console.print("A transfer agent copies files between the SEs (transfer requests)")


def stop_grid(grid: Grid, console: Console) -> bool:
    """Directors (SIGTERM, SIGKILL after a grace; they stop their pilots), the service, then
    any stray process. True when everything stopped cleanly."""
    clean = stop_directors(grid.directors, DIRECTOR_GRACE, console)
    if grid.web is not None and grid.web.stop() != 0:
        console.print("the web dashboard did not stop cleanly")
        clean = False
    if grid.service is not None:
        code = grid.service.stop()
        if code != 0:
            console.print(f"the central service exited with code {code}")
            clean = False
    strays = kill_strays(grid.home)
    if strays:
        console.print(f"warning: killed {len(strays)} process(es) left behind: {strays}")
        clean = False
    return clean


def stop_directors(directors: list[DirectorProcess], grace: float, console: Console) -> bool:
    """SIGTERM to every director at once, SIGKILL to those still there after ``grace``. True
    when each exited 0 (or died of SIGTERM before it had a handler for it: no pilot yet)."""
    running = [d for d in directors if d.popen.poll() is None]
    for director in running:
        director.popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for director in running:
        try:
            director.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            console.print(f"{director.name}: alive {grace:g} s after SIGTERM, SIGKILL")
            director.popen.kill()
            director.popen.wait(10)
    failed = [d for d in directors if d.popen.returncode not in (0, -signal.SIGTERM)]
    for director in failed:
        console.print(
            f"{director.name} exited with code {director.popen.returncode} (see {director.stderr})"
        )
    return not failed


def mentions(word: str, home: Path) -> bool:
    """``word`` names ``home`` or something under it."""
    return word == str(home) or f"{home}{os.sep}" in word


def kill_strays(home: Path) -> list[str]:
    """Kill processes that still mention ``home`` (command line or working folder): a safety
    net; after a clean stop there are none. Returns their descriptions."""
    found: list[psutil.Process] = []
    for process in psutil.process_iter(["pid", "cmdline", "cwd"]):
        if process.pid == os.getpid():
            continue
        words = [*(process.info["cmdline"] or []), process.info["cwd"] or ""]
        if any(mentions(word, home) for word in words):
            found.append(process)
    described = []
    for process in found:
        with contextlib.suppress(psutil.Error):
            described.append(f"{process.pid} {' '.join(process.cmdline())[:80]}")
            process.kill()
    psutil.wait_procs(found, timeout=5)
    return described


# -- the workload (I/O) ------------------------------------------------------------------------


def stage_data(user: Client, home: Path, console: Console) -> None:
    """The data owner puts the input file on the first SE (checked, registered) and asks for a
    replica on the second, before the jobs that read it are submitted."""
    local = home / "events.txt"
    local.write_text(INPUT_EVENTS)
    data = DataManager(user)
    copied = data.put(local, INPUT_LFN, INPUT_SE)
    (transfer_id,) = data.replicate([INPUT_LFN], OUTPUT_SE)
    console.print(
        f"{DATA_OWNER} put {INPUT_LFN} on {INPUT_SE} ({copied.size} bytes, adler32 "
        f"{copied.adler32}) and asked for a replica on {OUTPUT_SE} (transfer {transfer_id})"
    )


def submit_workload(users: Mapping[str, Client], plan: DemoPlan, console: Console) -> None:
    """Each user submits its jobs with its own identity."""
    for item in plan.submissions:
        descriptions: list[str | dict[str, Any]] = [dict(d) for d in item.descriptions]
        job_ids = users[item.owner].submit(descriptions, item.owner, item.group, timeout=60.0)
        console.print(
            f"{item.owner} ({item.group}) submitted {len(job_ids)} job(s): {format_ids(job_ids)}"
        )


def watch(
    client: Client, users: Mapping[str, Client], grid: Grid, plan: DemoPlan, console: Console
) -> list[dict[str, Any]]:
    """Show job counts by status (``client``: the admin's), have its owner kill the victim once
    it runs, until every job has ended (or the deadline, or a process of the grid died). The
    jobs as they end up."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    killed: set[int] = set()
    deadline = time.monotonic() + plan.deadline
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("starting", total=plan.total)
        while True:
            dead = grid.dead()  # before asking a service that may be gone
            rows = workload_rows(client, plan)
            for job_id in victims_to_kill(rows, plan.victim, killed):
                kill_running(users, job_id, rows, console)
                killed.add(job_id)
            progress.update(task, completed=sum(map(is_final, rows)), description=status_line(rows))
            if all_ended(rows, plan.total):
                return rows
            if dead or time.monotonic() > deadline:
                why = ", ".join(dead) or f"not done after {plan.deadline:g} s"
                console.print(f"giving up: {why}")
                return rows
            time.sleep(POLL_SECONDS)


def workload_rows(client: Client, plan: DemoPlan) -> list[dict[str, Any]]:
    """The jobs of the workload (the monitoring agent's probe jobs aside)."""
    rows = to_wire(client.list_jobs(limit=plan.total + 10_000))
    return [row for row in rows if row["group"] != PROBE_GROUP]


def kill_running(
    users: Mapping[str, Client], job_id: int, rows: Sequence[Mapping[str, Any]], console: Console
) -> None:
    row = next(row for row in rows if row["job_id"] == job_id)
    users[row["owner"]].kill([job_id])
    console.print(
        f"{row['owner']} killed job {job_id} ({row['job_name']}) while it ran on "
        f"pilot {row['pilot_id']}"
    )


# -- the summary (I/O) -------------------------------------------------------------------------


def print_summary(
    client: Client, rows: list[dict[str, Any]], plan: DemoPlan, console: Console, since: float
) -> bool:
    table, statuses = site_rows(rows, to_wire(client.pilots()))
    columns = [
        ("site", "Site"),
        *((status, f"{status}>") for status in statuses),
        ("total", "Total>"),
        ("pilots", "Pilots>"),
    ]
    print_table(table, columns, title="Jobs by site and status", console=console)
    print_table(
        share_rows(to_wire(client.shares()), rows),
        [
            ("group", "Group"),
            ("target", "Target>"),
            ("received", "Received>"),
            ("usage", "Usage (core-s)>"),
            ("jobs", "Jobs run>"),
            ("per_site", "Jobs per site"),
        ],
        title="Shares",
        console=console,
    )
    notable = [
        {**row, "planned": str(plan.expected[row["job_name"]])}
        for row in rows
        if row["job_name"] in plan.notable
    ]
    print_table(
        notable,
        [
            ("job_id", "JobID>"),
            ("job_name", "JobName"),
            ("owner", "Owner"),
            ("planned", "Planned"),
            ("status", "Status"),
            ("minor_status", "MinorStatus"),
            ("site", "Site"),
        ],
        title="Notable jobs",
        console=console,
    )
    print_table(
        site_health(client, since),
        [
            ("target", "Site"),
            ("status", "Status"),
            ("reason", "Reason"),
            ("availability", "Availability>"),
            ("reliability", "Reliability>"),
            ("probes", "Probes>"),
        ],
        title="Sites as the monitoring agent sees them",
        empty="no probe result yet",
        console=console,
    )
    return check_outcome(client, rows, plan, console)


def print_data_summary(client: Client, console: Console) -> bool:
    """The demo's files with their replicas and its transfers (once the replication ended, or
    after TRANSFER_WAIT); False, naming it, when a file or replica is missing."""
    deadline = time.monotonic() + TRANSFER_WAIT
    moves: list[TransferView] = transfers(client, None, 100)
    while any(t.status not in ("Done", "Failed") for t in moves) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        moves = transfers(client, None, 100)
    found = {row.lfn: row for row in DataManager(client).files([INPUT_LFN, OUTPUT_LFN]).files}
    print_table(
        [
            {
                "lfn": lfn,
                "size": row.size if row else "-",
                "adler32": row.adler32 if row else "-",
                "replicas": ", ".join(f"{r.se} ({r.status})" for r in row.replicas) if row else "-",
            }
            for lfn, row in ((lfn, found.get(lfn)) for lfn in (INPUT_LFN, OUTPUT_LFN))
        ],
        [("lfn", "LFN"), ("size", "Size>"), ("adler32", "Adler32"), ("replicas", "Replicas")],
        title="Files in the replica catalog",
        console=console,
    )
    print_table(to_wire(moves), TRANSFER_COLUMNS, title="Transfers", console=console)
    problems = data_problems(found, moves)
    for problem in problems:
        console.print(f"  data: {problem}")
    return not problems


def data_problems(found: Mapping[str, Any], moves: Sequence[TransferView]) -> list[str]:
    """What the demo's data did not do as planned."""
    problems = []
    wanted = {INPUT_LFN: {INPUT_SE, OUTPUT_SE}, OUTPUT_LFN: {OUTPUT_SE}}
    for lfn, ses in wanted.items():
        row = found.get(lfn)
        good = {r.se for r in row.replicas if r.status == "Good"} if row else set()
        if not ses <= good:
            problems.append(f"{lfn}: Good replicas on {sorted(good)}, planned {sorted(ses)}")
    problems += [
        f"transfer {t.transfer_id}: {t.status} ({t.reason})" for t in moves if t.status != "Done"
    ]
    return problems


def site_health(client: Client, since: float) -> list[dict[str, Any]]:
    """Each site's status and WLCG availability since ``since``, from the probe results."""
    reasons = {row.target: row.reason for row in client.resource_status()}
    rows = []
    for target in availability_report(client, since, time.time(), None, PROBE_VALIDITY):
        if target["kind"] != "site":
            continue
        (figures,) = target["periods"]
        rows.append(
            {
                "target": target["target"],
                "status": target["status"],
                "reason": reasons.get(target["target"], ""),
                "availability": percent(figures["availability"]),
                "reliability": percent(figures["reliability"]),
                "probes": figures["probes"],
            }
        )
    return rows


def check_outcome(
    client: Client, rows: list[dict[str, Any]], plan: DemoPlan, console: Console
) -> bool:
    victims = [row["job_id"] for row in rows if row["job_name"] == plan.victim]
    history = to_wire(client.history(victims[0])) if victims else []
    problems = outcome_problems(rows, plan, history)
    got = ", ".join(f"{n} {s}" for s, n in sorted(Counter(r["status"] for r in rows).items()))
    console.print()
    if not problems:
        console.print(f"All {plan.total} jobs ended as planned: {got}.")
        return True
    planned = ", ".join(f"{n} {s}" for s, n in sorted(plan.planned_counts().items()))
    console.print(f"Unexpected outcome: planned {planned}; got {got}. Not as planned:")
    for problem in problems:
        console.print(f"  {problem}")
    return False


# -- the demo ----------------------------------------------------------------------------------


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, so the finally blocks stop the grid."""
    with _signals({signal.SIGTERM: signal.default_int_handler}):
        yield


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """No Ctrl-C or SIGTERM while the grid stops (each stop step has its own deadline)."""
    with _signals({signal.SIGINT: signal.SIG_IGN, signal.SIGTERM: signal.SIG_IGN}):
        yield


@contextlib.contextmanager
def _signals(handlers: dict[signal.Signals, Any]) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def wait_for_interrupt(grid: Grid, console: Console) -> int:
    console.print(
        f"\nThe grid keeps running (central service and {len(grid.directors)} site directors; "
        "pilots start when jobs wait). In another shell:\n"
        f"{web_login_hint(grid)}"
        f"  export DIRAC_LIKE_SERVER={grid.endpoint}   # or pass --server {grid.endpoint}\n"
        f"  export DIRAC_LIKE_IDENTITY={grid.identities['bob']}   # or pass --identity FILE\n"
        f"  dirac-like job submit {grid.home / 'hello.jdl'} --group users\n"
        "  dirac-like job list\n"
        "  dirac-like job why ID        # why a job waits, from the matcher's own rules\n"
        f"  dirac-like console --identity {grid.identities['admin']}\n"
        f"  dirac-like admin pilots --identity {grid.identities['admin']}\n"
        f"  dirac-like admin shares --identity {grid.identities['admin']}\n"
        f"Logs are in {grid.home / 'logs'}. Press Ctrl-C to stop the grid.",
        soft_wrap=True,
    )
    try:
        while not grid.dead():
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("Stopping the grid ...")
        return EXIT_OK
    console.print(f"stopped by itself: {', '.join(grid.dead())}")
    return EXIT_REFUSED


def run_workload(grid: Grid, plan: DemoPlan, console: Console, keep: bool) -> int:
    write_files(grid.home, plan)
    start_service(grid, console)
    assert grid.service is not None and grid.service.identity_path is not None
    with contextlib.ExitStack() as clients:
        client = clients.enter_context(
            Client(grid.endpoint, POLICY, identity=grid.service.identity)
        )
        for group, share in plan.shares:
            client.set_share(group, share)
        grid.identities = {
            "admin": grid.service.identity_path,
            **issue_identities(client, plan, grid.home),
        }
        users = {
            user: clients.enter_context(
                Client(grid.endpoint, POLICY, identity=load_identity(grid.identities[user]))
            )
            for user in plan_users(plan)
        }
        console.print(
            f"Identities issued: {', '.join(users)} (users), {len(plan.sites)} "
            f"director(s); files in {grid.home / 'identities'}"
        )
        if keep:
            start_web(grid, console)
            console.print(web_login_hint(grid), end="", soft_wrap=True)  # commands: no folds
        start_directors(grid, plan, console)
        stage_data(users[DATA_OWNER], grid.home, console)
        submit_workload(users, plan, console)
        started = time.time()
        rows = watch(client, users, grid, plan, console)
        ok = print_summary(client, rows, plan, console, started)
        ok = print_data_summary(client, console) and ok
    if not ok:
        return EXIT_REFUSED
    return wait_for_interrupt(grid, console) if keep else EXIT_OK


def run_demo(jobs: int = 60, sites: int = 3, keep: bool = False) -> int:
    console = make_console()
    if jobs < MIN_JOBS or sites < 1:
        console.print(f"error: the demo needs at least {MIN_JOBS} jobs and 1 site")
        return EXIT_USAGE
    plan = plan_demo(jobs, sites, sys.executable)
    grid = Grid(Path(tempfile.mkdtemp(prefix="dirac-like-demo-")))
    code = EXIT_REFUSED
    try:
        with sigterm_as_interrupt():
            code = run_workload(grid, plan, console, keep)
    except KeyboardInterrupt:
        console.print("interrupted")
        code = 130
    except DiracLikeError as exc:
        console.print(f"error: {exc.message}")
        code = exc.exit_code
    finally:
        with signals_ignored():
            clean = stop_grid(grid, console)
        finish(grid.home, keep_home=code not in (EXIT_OK, 130) or not clean, console=console)
    return code if clean or code != EXIT_OK else EXIT_REFUSED


def finish(home: Path, keep_home: bool, console: Console) -> None:
    """Remove the home unless it is kept for inspection."""
    if not keep_home:
        shutil.rmtree(home, ignore_errors=True)
    else:
        console.print(f"the demo's home is kept for inspection: {home} (logs: {home / 'logs'})")
