"""``dirac-like demo``: a small grid on this machine, start to finish in a few seconds.

A central service in a temporary home; a mixed workload submitted through the Python API (a
parametric simulation, user analysis jobs, a 4-core job, jobs meant to fail, a job its owner kills
while it waits); one simulated pilot per site, each a thread with its own client, pulling jobs
until none is left. Prints live counts by status, then a summary by site and the share each group
received. The outcome is planned: every job ends Done, Failed or Killed as the plan says, and the
demo exits 1 if it did not. The service is stopped by PID whatever happens (Ctrl-C included).

(Interim: real pilots and directors replace the simulated pilots in the next issue.)
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dirac_like.client import Client, RetryPolicy
from dirac_like.display import count_by, format_ids, format_percent, make_console, print_table
from dirac_like.errors import EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from dirac_like.jdl import parse_jdl
from dirac_like.processes import ServiceProcess
from dirac_like.protocol import PilotResources

DEMO_CONFIG = """\
# Written by `dirac-like demo`.
[store]
synchronous = "normal"

[jobs]
match_lease = 30.0
default_group = "users"

[shares.groups]
physics = 70.0
users = 30.0
"""

MIN_JOBS = 6  # one of each kind of job at least
PAYLOAD_SECONDS = 0.1  # how long a simulated payload "runs"
POLL_SECONDS = 0.2
POLICY = RetryPolicy(timeout=10.0, retries=3, backoff=0.1, max_backoff=1.0)
FINAL = ("Done", "Failed", "Killed")


# -- the workload ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    owner: str
    group: str
    descriptions: list[dict[str, Any]]


@dataclass(frozen=True)
class Plan:
    submissions: list[Submission]
    victim: Submission  # submitted, then killed by its owner while it waits
    expected: dict[str, int]  # final status -> number of jobs

    @property
    def total(self) -> int:
        return sum(self.expected.values())


def load_template(name: str) -> dict[str, Any]:
    """The attributes of ``dirac_like/defaults/<name>.jdl``."""
    text = resources.files("dirac_like").joinpath("defaults", f"{name}.jdl").read_text()
    return dict(parse_jdl(text).attributes)


def plan_workload(jobs: int) -> Plan:
    """``jobs`` jobs: 60% of the plain ones a physics simulation, the rest user analysis, plus
    a 4-core job, one failing job per group and one job that gets killed."""
    plain = jobs - 4
    simulations = max(1, round(plain * 0.6))
    analyses = plain - simulations
    simulation = {**load_template("demo-simulation"), "Parameters": simulations}
    reconstruction = load_template("demo-reconstruction")
    calibration = {**load_template("demo-analysis"), "JobName": "calibration-fail"}
    analysis = load_template("demo-analysis")
    user_jobs = [{**analysis, "JobName": f"analysis-{n}"} for n in range(1, analyses + 1)]
    user_jobs.append({**analysis, "JobName": "analysis-fail"})
    victim = {**analysis, "JobName": "analysis-forgotten", "Priority": 0}
    return Plan(
        submissions=[
            Submission("alice", "physics", [simulation, reconstruction, calibration]),
            Submission("bob", "users", user_jobs),
        ],
        victim=Submission("carol", "users", [victim]),
        expected={"Done": simulations + 1 + analyses, "Failed": 2, "Killed": 1},
    )


def submit_workload(client: Client, plan: Plan, console: Console) -> None:
    for item in plan.submissions:
        job_ids = client.submit(list(item.descriptions), item.owner, item.group, timeout=60.0)
        console.print(f"{item.owner} ({item.group}) submitted {len(job_ids)} job(s): "
                      f"{format_ids(job_ids)}")
    victims = client.submit(list(plan.victim.descriptions), plan.victim.owner, plan.victim.group)
    client.kill(victims)
    console.print(f"{plan.victim.owner} ({plan.victim.group}) submitted job "
                  f"{format_ids(victims)} and killed it while it was waiting")


# -- simulated pilots --------------------------------------------------------------------------


@dataclass
class PilotRun:
    site: str
    pilot_id: str
    job_ids: list[int] = field(default_factory=list)
    error: str = ""
    thread: threading.Thread | None = None

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


def site_name(number: int) -> str:
    return f"DIRAC.Demo-{number}.org"


def short_site(name: str) -> str:
    return name.removeprefix("DIRAC.").removesuffix(".org")


def run_pilot(endpoint: str, run: PilotRun, stop: threading.Event) -> None:
    """Pull and "run" jobs until the service has none left for this pilot (or ``stop``)."""
    resources_offered = PilotResources(
        site=run.site, ce=f"ce.{run.site}", platform="EL9", cores=4, memory_mb=8000
    )
    try:
        with Client(endpoint, POLICY) as client:
            while not stop.is_set():
                job = client.request_job(run.pilot_id, resources_offered)["job"]
                if job is None:
                    return
                run.job_ids.append(job["job_id"])
                run_payload(client, run.pilot_id, job, stop)
    except Exception as exc:  # reported in the summary; the demo then exits 1
        run.error = f"{type(exc).__name__}: {exc}"


def run_payload(client: Client, pilot_id: str, job: dict[str, Any], stop: threading.Event) -> None:
    """Report Running, "run" for a moment, report Done (Failed if the JobName says "fail")."""
    job_id, attempt = job["job_id"], job["attempt"]
    commands = client.update_status(job_id, attempt, pilot_id, "Running", "Application")
    if not any(command["command"] == "kill" for command in commands):
        stop.wait(PAYLOAD_SECONDS)
    if any(command["command"] == "kill" for command in commands) or stop.is_set():
        client.update_status(job_id, attempt, pilot_id, "Killed", "Killed by the pilot")
    elif "fail" in str(job["description"].get("JobName", "")).lower():
        client.update_status(job_id, attempt, pilot_id, "Failed",
                             "Application exited with code 1", "exit code 1")
    else:
        client.update_status(job_id, attempt, pilot_id, "Done", "Execution Complete",
                             "exit code 0")


def start_pilots(endpoint: str, sites: int, stop: threading.Event) -> list[PilotRun]:
    runs = [PilotRun(site_name(n), f"demo-pilot-{n}") for n in range(1, sites + 1)]
    for run in runs:
        run.thread = threading.Thread(target=run_pilot, args=(endpoint, run, stop),
                                      name=run.pilot_id, daemon=True)
        run.thread.start()
    return runs


# -- watching ----------------------------------------------------------------------------------


def status_line(rows: list[dict[str, Any]]) -> str:
    counts = Counter(row["status"] for row in rows)
    return "  ".join(f"{status} {count}" for status, count in sorted(counts.items()))


def watch(
    client: Client, runs: list[PilotRun], total: int, console: Console
) -> list[dict[str, Any]]:
    """Show job counts by status until every pilot has stopped; the jobs as they end up."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("starting", total=total)
        while True:
            running = any(run.alive() for run in runs)
            rows = client.list_jobs(limit=total)
            finished = sum(row["status"] in FINAL for row in rows)
            progress.update(task, completed=finished, description=status_line(rows))
            if not running:
                return rows
            time.sleep(POLL_SECONDS)


def run_workload(endpoint: str, client: Client, plan: Plan, sites: int,
                 console: Console) -> tuple[list[dict[str, Any]], list[PilotRun]]:
    stop = threading.Event()
    runs = start_pilots(endpoint, sites, stop)
    try:
        rows = watch(client, runs, plan.total, console)
    finally:
        stop.set()
        for run in runs:
            if run.thread is not None:
                run.thread.join(timeout=5.0)
    return rows, runs


# -- the summary -------------------------------------------------------------------------------


def print_site_summary(rows: list[dict[str, Any]], console: Console) -> None:
    counts = count_by(rows, "site", "status")
    statuses = sorted({status for _, status in counts})
    table_rows = []
    for site in sorted({site for site, _ in counts}):
        row: dict[str, Any] = {"site": site}
        row.update({status: counts.get((site, status), 0) for status in statuses})
        row["total"] = sum(counts.get((site, status), 0) for status in statuses)
        table_rows.append(row)
    columns = [("site", "Site"), *((status, f"{status}>") for status in statuses),
               ("total", "Total>")]
    print_table(table_rows, columns, title="Jobs by site and status", console=console)


def print_share_summary(client: Client, rows: list[dict[str, Any]], console: Console) -> None:
    ran = [row for row in rows if row["site"].startswith("DIRAC.Demo-")]
    per_site = count_by(ran, "group", "site")
    table_rows = []
    for share in client.shares():
        group = share["group"]
        sites = sorted((site, n) for (g, site), n in per_site.items() if g == group)
        table_rows.append({
            "group": group,
            "target": format_percent(share["share_fraction"]),
            "received": format_percent(share["load_fraction"]),
            "usage": f"{share['usage_core_seconds']:.1f}",
            "jobs": sum(n for _, n in sites),
            "per_site": ", ".join(f"{short_site(site)}: {n}" for site, n in sites) or "-",
        })
    columns = [("group", "Group"), ("target", "Target>"),
               ("received", "Received>"), ("usage", "Usage (core-s)>"),
               ("jobs", "Jobs run>"), ("per_site", "Jobs per site")]
    print_table(table_rows, columns, title="Shares", console=console)


def check_outcome(rows: list[dict[str, Any]], runs: list[PilotRun], plan: Plan,
                  console: Console) -> bool:
    console.print()
    outcome = dict(Counter(row["status"] for row in rows))
    for run in runs:
        if run.error:
            console.print(f"pilot {run.pilot_id} at {run.site} stopped: {run.error}")
    summary = ", ".join(f"{n} {status}" for status, n in sorted(outcome.items()))
    if outcome == plan.expected and not any(run.error for run in runs):
        console.print(f"All {plan.total} jobs ended as planned: {summary}.")
        return True
    planned = ", ".join(f"{n} {status}" for status, n in sorted(plan.expected.items()))
    console.print(f"Unexpected outcome: planned {planned}; got {summary}.")
    return False


# -- the demo ----------------------------------------------------------------------------------


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, so the finally blocks stop the service."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def wait_for_interrupt(service: ServiceProcess, console: Console) -> int:
    console.print("\nThe central service keeps running. In another shell:\n"
                  f"  export DIRAC_LIKE_SERVER={service.endpoint}\n"
                  f"  export DIRAC_LIKE_HOME={service.home}\n"
                  "  dirac-like job list\n"
                  "Press Ctrl-C to stop it.")
    try:
        while service.popen.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        return EXIT_OK
    console.print(f"the central service exited by itself (code {service.popen.returncode})")
    return EXIT_REFUSED


def demo_on(service: ServiceProcess, plan: Plan, sites: int, console: Console) -> bool:
    with Client(service.endpoint, POLICY) as client:
        submit_workload(client, plan, console)
        console.print(f"Starting {sites} simulated pilot(s), one per site ...")
        rows, runs = run_workload(service.endpoint, client, plan, sites, console)
        print_site_summary(rows, console)
        print_share_summary(client, rows, console)
        return check_outcome(rows, runs, plan, console)


def run_demo(jobs: int = 60, sites: int = 3, keep: bool = False) -> int:
    console = make_console()
    if jobs < MIN_JOBS or sites < 1:
        console.print(f"error: the demo needs at least {MIN_JOBS} jobs and 1 site")
        return EXIT_USAGE
    plan = plan_workload(jobs)
    home = Path(tempfile.mkdtemp(prefix="dirac-like-demo-"))
    service: ServiceProcess | None = None
    keep_home = True  # for inspection, unless the demo went as planned or was interrupted
    try:
        with sigterm_as_interrupt():
            config = home / "demo.toml"
            config.write_text(DEMO_CONFIG)
            service = ServiceProcess.start_central(home, config)
            console.print(f"Central service at {service.endpoint}, home {home}")
            ok = demo_on(service, plan, sites, console)
            keep_home = not ok
            if ok and keep:
                return wait_for_interrupt(service, console)
            return EXIT_OK if ok else EXIT_REFUSED
    except KeyboardInterrupt:
        console.print("interrupted")
        keep_home = False
        return 130
    finally:
        finish(service, home, keep_home, console)


def finish(
    service: ServiceProcess | None, home: Path, keep_home: bool, console: Console
) -> None:
    """Stop the service by PID; remove the home unless it is kept for inspection."""
    if service is not None:
        code = service.stop()
        if code != 0:
            console.print(f"the central service exited with code {code}")
            keep_home = True
    if not keep_home:
        shutil.rmtree(home, ignore_errors=True)
    else:
        console.print(f"the demo's home is kept for inspection: {home} "
                      f"(service log: {home / 'logs' / 'central.log'})")
