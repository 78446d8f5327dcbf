#!/usr/bin/env python3
"""The central service with 10,000 connected pilots: its CPU when they only heartbeat, and the
match rate of 64 other pilots while they do.

    python scripts/benchmarks/bench_connected.py                          # 10,000 pilots
    python scripts/benchmarks/bench_connected.py --pilots 1000 --idle-seconds 30

A fresh central service (its own process, SQLite synchronous=full, security on) with
``--waiting`` jobs in 500 task queues over 60 sites (bench_match.py's fill) and one long job per
crowd pilot at a site of their own. Then, in order:

1. 64 pilot clients (bench_match.py's load generator) take ``--warmup`` jobs (not counted: the
   service's first matches after the fill are slower), then ``--matches`` jobs: the rate alone;
2. for ``--baseline-seconds`` nothing happens: the service's CPU with no crowd (its own
   background: checkpoints, metrics snapshots, deadlines);
3. ``--pilots`` pilots connect (connected_pilots.py: one CurveZMQ connection each, in load
   generator processes), each takes its job, reports it Running and heartbeats every 30 s (the
   real pilot's default), the first heartbeats spread over one interval;
4. for ``--idle-seconds`` nothing else happens: the central service's CPU (user + system, from
   psutil) over that window, as a share of one core — the issue's "< 20 %";
5. ``--rounds`` times: the crowd stops heartbeating (connected, silent) and the 64 clients take
   ``--matches`` jobs; the crowd heartbeats again and the 64 clients take ``--matches`` jobs;
6. the crowd disconnects and the 64 clients measure once more (alone, after).

Ratios printed: the mean of the heartbeating rounds over the mean of steps 1 and 6 (the
issue's "≥ 90 %", with the crowd against no crowd), and over the mean of the silent rounds (the
same connections, measured alternately: less exposed to the other load on a shared machine).
With each match rate, the service's CPU per match (less sensitive to the other load on the
machine than the rate); with each step, the crowd's own CPU (its load-generator processes, on
the same cores: how much of the machine it took from the service) and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import psutil  # type: ignore[import-untyped, unused-ignore]  # no stubs installed
from bench_match import config_text, drive, fill, pilot_frame, site_tokens
from connected_pilots import Crowd, CrowdSpec
from scratch import add_keep_option, scratch_folder

from dirac_like.client import Client, RetryPolicy
from dirac_like.processes import ServiceProcess

SLOW = RetryPolicy(timeout=600, retries=0)
CROWD_SITE = "BENCH.Crowd.org"
SETTLE = 1.0  # seconds after pausing or resuming the crowd's heartbeats, before measuring


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def load() -> str:
    return "load {:.2f} / {:.2f} / {:.2f}".format(*os.getloadavg())


def match_rate(
    endpoint: str,
    tokens: list,
    args: argparse.Namespace,
    central: psutil.Process,
    crowd: Crowd | None,
    what: str,
) -> float:
    """The 64 clients take ``args.matches`` jobs; prints the rate, the service's CPU per match
    and the crowd's CPU meanwhile."""
    service_before = cpu_seconds(central)
    crowd_before = crowd.cpu_seconds() if crowd is not None else 0.0
    count, _, elapsed = drive(endpoint, args.clients, 120.0, pilot_frame, args.matches, tokens)
    service_cpu = cpu_seconds(central) - service_before
    crowd_part = ""
    if crowd is not None:
        crowd_part = f"; crowd CPU {(crowd.cpu_seconds() - crowd_before) / elapsed:.1%} of a core"
    print(
        f"{args.clients} clients {what}: {count / elapsed:,.0f} matches/s, service CPU "
        f"{service_cpu / max(count, 1) * 1e6:.0f} us per match ({service_cpu / elapsed:.0%} of a "
        f"core){crowd_part}; {load()}",
        flush=True,
    )
    return count / elapsed


def alternate(
    endpoint: str, tokens: list, args: argparse.Namespace, central: psutil.Process, crowd: Crowd
) -> tuple[list[float], list[float]]:
    """``args.rounds`` pairs of match rates: the crowd connected but silent (its heartbeats
    skipped), then heartbeating; alternated, so that the machine's other load falls on both."""
    silent, beating = [], []
    for number in range(1, args.rounds + 1):
        crowd.pause()
        time.sleep(SETTLE)
        silent.append(
            match_rate(endpoint, tokens, args, central, crowd, f"#{number}, silent crowd")
        )
        crowd.resume()
        time.sleep(SETTLE)
        beating.append(
            match_rate(endpoint, tokens, args, central, crowd, f"#{number}, crowd beating")
        )
    return silent, beating


def main(args: argparse.Namespace) -> int:
    home = scratch_folder("bench-connected-")
    (home / "bench.toml").write_text(config_text("full"))
    service = ServiceProcess.start_central(home / "home", home / "bench.toml")
    os.environ["DIRAC_LIKE_IDENTITY"] = str(service.identity_path)
    crowd = None
    try:
        central = psutil.Process(service.pid)
        with Client(service.endpoint, SLOW) as admin:
            jdl = (
                f'Executable = "/bin/sleep"; Arguments = "86400 %s"; '
                f'Site = "{CROWD_SITE}"; Parameters = {args.pilots};'
            )
            admin.submit([jdl], owner="crowd", group="lhcb_mc")
            crowd_token = admin.pilot_token(CROWD_SITE)
        fill(service.endpoint, args.waiting)
        tokens = site_tokens(service.endpoint)
        if args.warmup:  # the service's first matches after the fill are slower: not counted
            drive(service.endpoint, args.clients, 120.0, pilot_frame, args.warmup, tokens)
        alone = match_rate(service.endpoint, tokens, args, central, None, "alone")

        cpu_before, wall_before = cpu_seconds(central), time.perf_counter()
        time.sleep(args.baseline_seconds)  # no crowd yet: the service's own background
        baseline = (cpu_seconds(central) - cpu_before) / (time.perf_counter() - wall_before)
        print(
            f"no crowd, nothing asked: central service CPU {baseline:.1%} of one core over "
            f"{args.baseline_seconds:g} s; {load()}",
            flush=True,
        )
        print(f"connecting {args.pilots:,} pilots; {load()}", flush=True)
        started, service_before = time.perf_counter(), cpu_seconds(central)
        spec = CrowdSpec(
            service.endpoint,
            crowd_token,
            CROWD_SITE,
            args.heartbeat_interval,
            metrics=args.heartbeat_metrics,
        )
        crowd = Crowd(spec, args.pilots)
        if not crowd.wait_running(args.connect_timeout):
            print("the crowd did not get its jobs Running in time")
            return 1
        connected = time.perf_counter() - started
        print(
            f"{args.pilots:,} pilots connected, each with its job Running, in {connected:.1f} s "
            f"(service CPU {cpu_seconds(central) - service_before:.1f} s, crowd CPU "
            f"{crowd.cpu_seconds():.1f} s); {load()}",
            flush=True,
        )
        time.sleep(args.heartbeat_interval)  # first heartbeats spread over one interval
        cpu_before, wall_before = cpu_seconds(central), time.perf_counter()
        crowd_before = crowd.cpu_seconds()
        time.sleep(args.idle_seconds)  # the measured window: the crowd only heartbeats
        window = time.perf_counter() - wall_before
        idle_cpu = (cpu_seconds(central) - cpu_before) / window
        crowd_cpu = (crowd.cpu_seconds() - crowd_before) / window
        per_beat = (idle_cpu - baseline) * args.heartbeat_interval / args.pilots
        print(
            f"{args.pilots:,} pilots heartbeating every {args.heartbeat_interval:g} s, nothing "
            f"else: central service CPU {idle_cpu:.1%} of one core over {args.idle_seconds:g} s "
            f"(above the baseline: {per_beat * 1e6:.0f} us per heartbeat; the crowd's processes: "
            f"{crowd_cpu:.1%}); {load()}",
            flush=True,
        )
        silent, beating = alternate(service.endpoint, tokens, args, central, crowd)
        report = crowd.stop()
        crowd = None
        after = match_rate(service.endpoint, tokens, args, central, None, "alone, after")
        print(
            f"crowd: {report.running:,} of {report.pilots:,} running, {report.heartbeats:,} "
            f"heartbeats answered, {report.errors} error replies"
        )
        busy = statistics.mean(beating)
        pairs = ", ".join(f"{b / q:.2f}" for b, q in zip(beating, silent, strict=True))
        print(
            f"match rate with the crowd heartbeating / alone (no crowd, before and after): "
            f"{busy / ((alone + after) / 2):.2f}; / the crowd connected but silent, alternated: "
            f"{busy / statistics.mean(silent):.2f} (round by round: {pairs})"
        )
    finally:
        if crowd is not None:
            crowd.stop()
        service.stop()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pilots", type=int, default=10_000)
    parser.add_argument("--waiting", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--matches", type=int, default=5_000)
    parser.add_argument("--warmup", type=int, default=2_000, help="matches first, not counted")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--baseline-seconds", type=float, default=10.0, help="idle, no crowd")
    parser.add_argument("--rounds", type=int, default=3, help="silent / heartbeating pairs")
    parser.add_argument("--heartbeat-interval", type=float, default=30.0)
    parser.add_argument("--connect-timeout", type=float, default=600.0)
    parser.add_argument(
        "--heartbeat-metrics",
        action="store_true",
        help="heartbeats carry a usage sample, as a real pilot's do (else bare heartbeats)",
    )
    add_keep_option(parser)
    sys.exit(main(parser.parse_args()))
