"""Data management figures, on this machine, against a real central service and real XRootD SEs
(started with scripts/xrootd-se.sh; xrootd must be installed). Run by hand:

    python scripts/benchmarks/bench_data.py [--files 200000] [--jobs 200000] [--big-mb 1024]
        [--small 200] [--only catalog|big|small]

1. Catalog: bulk submission of M jobs (``--jobs``) vs bulk registration of the first M files
   (one replica each), both over the wire in requests of 10,000, in the same run; then the
   catalog grows to N files (``--files``, registration rate reported over all of it and over its
   last M); then lookups (catalog_files, 10,000 per request) of M LFNs drawn at random from the
   N, as LFNs per second at the full size.
2. One big file: the transfer agent (lease, copy, verify, Done) vs plain ``xrdcp``, third-party
   (XRootD -> XRootD) and streamed (XRootD -> file SE); third-party also vs ``xrdcp --cksum
   adler32`` (which verifies, as the agent does).
3. Many small files, streamed: the agent's time per file vs ``xrdcp`` in a loop.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from scratch import add_keep_option, scratch_folder

from dirac_like.agents.transfer import TransferAgent, TransferAgentConfig
from dirac_like.client import Client, RetryPolicy
from dirac_like.data_manager import DataManager
from dirac_like.processes import ServiceProcess
from dirac_like.protocol import FileItem, LfnsArgs, Op, RegisterArgs

REPO = Path(__file__).resolve().parents[2]
CHUNK = 10_000
RETRIES = RetryPolicy(timeout=600.0, retries=0, backoff=0.1, max_backoff=0.1)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def start_ses(base: Path) -> dict[str, str]:
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "xrootd-se.sh"), "start", str(base), "BENCH-A", "BENCH-B"],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(line.split() for line in out.stdout.splitlines())


def config_text(urls: dict[str, str], files: Path) -> str:
    return (
        "".join(
            f'[storage.{name}]\nprotocol = "xroot"\nendpoint = "{url}"\nbase_path = "/grid"\n'
            for name, url in urls.items()
        )
        + f'[storage.BENCH-FILE]\nbase_path = "{files}"\n'
    )


def lfn_of(i: int) -> str:
    return f"/vo/bench/{i // 1000}/f{i}"


def register_range(client: Client, start: int, end: int) -> float:
    """Register files start..end-1 (one replica each) in requests of CHUNK; seconds taken."""
    return timed(
        lambda: [
            client.call(
                Op.CATALOG_REGISTER,
                RegisterArgs(
                    [
                        FileItem(lfn_of(n), 1000, "0a0b0c0d", "BENCH-A")
                        for n in range(i, min(i + CHUNK, end))
                    ]
                ),
                600,
            )
            for i in range(start, end, CHUNK)
        ]
    )


def bench_catalog(client: Client, files: int, jobs: int) -> None:
    jdl = 'Executable = "/bin/true";'
    submit = timed(
        lambda: [
            client.submit([jdl] * min(CHUNK, jobs - i), "bench", timeout=600)
            for i in range(0, jobs, CHUNK)
        ]
    )
    first = register_range(client, 0, jobs)
    print(
        f"catalog: {jobs:,} jobs submitted in {submit:.2f} s ({jobs / submit:,.0f}/s); "
        f"the first {jobs:,} files registered in {first:.2f} s ({jobs / first:,.0f}/s)",
        flush=True,
    )
    total, last = first, first
    for start in range(jobs, files, jobs):  # in slices of M, reporting as it goes
        end = min(start + jobs, files)
        last = register_range(client, start, end)
        total += last
        print(f"  {end:,} files: last slice at {(end - start) / last:,.0f}/s", flush=True)
        if end in MILESTONES:
            print(f"  at {end:,} files: {lookup_rate(client, end, jobs):,.0f} LFNs/s looked up")
    print(
        f"catalog at {files:,} files: registered at {files / total:,.0f}/s overall; "
        f"{min(jobs, files):,} random LFNs looked up at {lookup_rate(client, files, jobs):,.0f} "
        "LFNs/s",
        flush=True,
    )


MILESTONES = {1_000_000, 2_000_000, 5_000_000}  # catalog sizes where lookups are measured too


def lookup_rate(client: Client, files: int, count: int) -> float:
    """LFNs per second looking up ``count`` LFNs drawn at random among the first ``files``."""
    sample = random.Random(17).sample(range(files), min(count, files))
    lfns = [lfn_of(n) for n in sample]
    seconds = timed(
        lambda: [
            client.call(Op.CATALOG_FILES, LfnsArgs(lfns[i : i + CHUNK]), 600)
            for i in range(0, len(lfns), CHUNK)
        ]
    )
    return len(lfns) / seconds


def xrdcp(*args: str) -> None:
    subprocess.run(["xrdcp", "-f", "-s", *args], check=True, stdin=subprocess.DEVNULL)


def agent_copy(client: Client, data: DataManager, lfn: str, destination: str) -> float:
    agent = TransferAgent(client, TransferAgentConfig("bench-agent"), data)
    data.replicate([lfn], destination)
    started = time.perf_counter()
    assert agent.run_once() == 1
    return time.perf_counter() - started


def bench_big(client: Client, urls: dict[str, str], folder: Path, megabytes: int) -> None:
    data = DataManager(client)
    local = folder / "big"
    with open(local, "wb") as file:
        for _ in range(megabytes):
            file.write(os.urandom(1024 * 1024))
    lfn = "/vo/bench/big.dat"
    data.put(local, lfn, "BENCH-A")
    source = f"{urls['BENCH-A']}//grid{lfn}"
    plain_tpc = timed(lambda: xrdcp("--tpc", "only", source, f"{urls['BENCH-B']}//plain.dat"))
    checked_tpc = timed(
        lambda: xrdcp(
            "--tpc", "only", "--cksum", "adler32", source, f"{urls['BENCH-B']}//checked.dat"
        )
    )
    agent_tpc = agent_copy(client, data, lfn, "BENCH-B")
    plain_stream = timed(lambda: xrdcp(source, str(folder / "plain.dat")))
    agent_stream = agent_copy(client, data, lfn, "BENCH-FILE")
    for name, plain, agent in (
        ("third-party", plain_tpc, agent_tpc),
        ("streamed", plain_stream, agent_stream),
    ):
        print(
            f"{megabytes} MB {name}: xrdcp {plain:.2f} s ({megabytes / plain:,.0f} MB/s), "
            f"agent {agent:.2f} s ({megabytes / agent:,.0f} MB/s): "
            f"{plain / agent:.2f}x of xrdcp's rate"
        )
    print(
        f"{megabytes} MB third-party, verified end to end: xrdcp --cksum adler32 "
        f"{checked_tpc:.2f} s; the agent (which checks the destination's adler32 against "
        f"the catalog) {agent_tpc:.2f} s: {checked_tpc / agent_tpc:.2f}x"
    )


def bench_small(client: Client, urls: dict[str, str], folder: Path, count: int) -> None:
    data = DataManager(client)
    local = folder / "small"
    local.write_bytes(os.urandom(10_000))
    lfns = [f"/vo/bench/small/f{i}" for i in range(count)]
    for lfn in lfns:
        data.put(local, lfn, "BENCH-A")
    plain = timed(
        lambda: [xrdcp(f"{urls['BENCH-A']}//grid{lfn}", str(folder / "x")) for lfn in lfns]
    )
    agent = TransferAgent(client, TransferAgentConfig("bench-agent"), data)
    data.replicate(lfns, "BENCH-FILE")
    through_agent = timed(lambda: [agent.run_once() for _ in lfns])
    print(
        f"{count} small files streamed: xrdcp loop {plain / count * 1000:.1f} ms/file, "
        f"agent {through_agent / count * 1000:.1f} ms/file"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000, help="catalog size (N)")
    parser.add_argument("--jobs", type=int, default=200_000, help="jobs submitted (M)")
    parser.add_argument("--only", choices=["catalog", "big", "small"], help="one part only")
    parser.add_argument("--big-mb", type=int, default=1024)
    parser.add_argument("--small", type=int, default=200)
    add_keep_option(parser)
    args = parser.parse_args()
    # SIGTERM (a `timeout`) stops the SEs and the service too, through the finally below
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    folder = scratch_folder("bench-data-")
    folder.chmod(0o755)  # the SEs' daemons run as nobody and must enter it
    urls = start_ses(folder / "ses")
    service = None
    try:
        config = folder / "central.toml"
        config.write_text(config_text(urls, folder / "file-se"))
        service = ServiceProcess.start_central(folder / "home", config, insecure=True)
        with Client(service.endpoint, RETRIES, insecure=True) as client:
            if args.only in (None, "catalog"):
                bench_catalog(client, args.files, args.jobs)
            if args.only in (None, "big"):
                bench_big(client, urls, folder, args.big_mb)
            if args.only in (None, "small"):
                bench_small(client, urls, folder, args.small)
    finally:
        if service is not None:
            service.stop()
        subprocess.run(
            ["bash", str(REPO / "scripts" / "xrootd-se.sh"), "stop", str(folder / "ses")],
            check=False,
            capture_output=True,
        )


if __name__ == "__main__":
    main()
