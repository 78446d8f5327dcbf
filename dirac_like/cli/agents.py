"""``dirac-like pilot`` and ``dirac-like agent director``: the agents a site runs.

The agents (``dirac_like.agents``) are imported inside the commands that run them, so that
every other command starts without loading them.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dirac_like.cli.common import names, positive_int, positive_seconds, seconds
from dirac_like.cli.identity import identity_of, identity_options, pilot_identity, server_for
from dirac_like.cli.monitoring import add_monitoring_agent_parser
from dirac_like.client import Client, RetryPolicy
from dirac_like.config import DEFAULT_SERVER, default_home
from dirac_like.errors import EXIT_OK, DiracLikeError
from dirac_like.logs import setup_logging
from dirac_like.sites import load_site

if TYPE_CHECKING:
    from dirac_like.agents.pilot import PilotConfig

log = logging.getLogger("dirac_like.pilot")
STOPPED_RETRIES = RetryPolicy(timeout=3.0, retries=1, backoff=0.2, max_backoff=0.5)


def cmd_pilot(args: argparse.Namespace) -> int:
    from dirac_like.agents import batch_env
    from dirac_like.agents import pilot as pilots

    setup_logging(verbose=args.verbose)
    workdir = Path(args.workdir or ".").resolve()
    node = pilots.discover(
        workdir, cores=args.cores or 0, memory_mb=args.memory or 0, platform_name=args.platform
    )
    from_batch = batch_env.time_left_from_batch(os.environ, time.time())
    time_left = batch_env.effective_time_left(args.time_left, from_batch)
    identity = pilot_identity(args)
    config = pilots.PilotConfig(
        server=server_for(args, identity),
        site=args.site,
        ce=args.ce,
        cores=node.cores,
        memory_mb=node.memory_mb,
        platform=node.platform,
        time_left=time_left,
        max_cpu_time=int(args.cpu_time),
        max_jobs=args.max_jobs,
        idle_timeout=args.idle_timeout,
        tags=names(args.tags),
        required_tags=names(args.required_tags),
        workdir=workdir,
        pilot_id=args.pilot_id or pilots.default_pilot_id(),
        heartbeat_interval=args.heartbeat,
        kill_grace=args.kill_grace,
        drain_margin=args.drain_margin,
        request_interval=args.request_interval,
        identity=identity,
        insecure=identity is None,
        keep_failed_for=args.keep_failed_for,
        keep_failed_max_mb=args.keep_failed_mb,
    )
    pilot = pilots.Pilot(config)
    pilot.install_signal_handlers()
    code = pilot.run()
    _report_stopped(config, code)
    return code


def _report_stopped(config: PilotConfig, code: int) -> None:
    """Tell the service this pilot stopped, which closes its record when no director follows
    it (a pilot started by hand); best effort: the pilot is leaving anyway."""
    try:
        with Client(
            config.server, STOPPED_RETRIES, identity=config.identity, insecure=config.insecure
        ) as client:
            client.pilot_stopped(config.pilot_id, code)
    except DiracLikeError as exc:
        log.warning("pilot %s: could not report its end: %s", config.pilot_id, exc.message)


def cmd_agent_director(args: argparse.Namespace) -> int:
    from dirac_like.agents import director as directors

    home = Path(args.home) if args.home else default_home()
    sites_dir = Path(args.sites_dir) if args.sites_dir else _default_sites_dir()
    site = load_site(directors.site_file(args.site, sites_dir))
    settings = directors.load_settings(Path(args.config) if args.config else None)
    setup_logging(f"director-{site.name}", home, args.verbose)
    identity = identity_of(args)
    with Client(
        server_for(args, identity),
        directors.DIRECTOR_RETRIES,
        identity=identity,
        insecure=identity is None,
    ) as client:
        director = directors.build_director(site, client, home, settings)
        return director.run_once() if args.once else director.run()


def cmd_agent_transfer(args: argparse.Namespace) -> int:
    from dirac_like.agents import transfer as transfers

    home = Path(args.home) if args.home else default_home()
    identity = identity_of(args)
    name = (
        args.name
        or (identity.name if identity is not None else "")
        or transfers.default_agent_name()
    )
    setup_logging(f"transfer-{name}", home, args.verbose)
    config = transfers.TransferAgentConfig(
        name=name, idle_interval=args.idle_interval, metrics_listen=args.metrics_listen
    )
    with Client(
        server_for(args, identity),
        transfers.TRANSFER_RETRIES,
        identity=identity,
        insecure=identity is None,
    ) as client:
        agent = transfers.TransferAgent(client, config)
        if args.once:
            agent.run_once()
            return EXIT_OK
        agent.install_signal_handlers()
        url = agent.serve_metrics()
        if url:
            print(f"transfer agent metrics on {url}", flush=True)
        return agent.run()


def _default_sites_dir() -> Path:
    local = Path("etc/sites")
    return local if local.is_dir() else default_home() / "sites"


# -- the parsers -------------------------------------------------------------------------------


def _server_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        metavar="URL",
        default=argparse.SUPPRESS,
        help=f"central service; a pair's two URLs comma-separated (default: "
        f"$DIRAC_LIKE_SERVER or {DEFAULT_SERVER})",
    )


def add_pilot_parser(groups: Any) -> None:
    text = "run a pilot: pull jobs that fit this node from the service, run them"
    pilot = groups.add_parser(
        "pilot", parents=[identity_options()], help=text, description=text[0].upper() + text[1:]
    )
    _server_option(pilot)
    pilot.add_argument("--site", required=True, help="the site this pilot runs at")
    pilot.add_argument("--ce", default="", help="the computing element")
    pilot.add_argument("--cores", type=positive_int, help="cores to use (default: all)")
    pilot.add_argument(
        "--memory",
        type=positive_int,
        metavar="MB",
        help="memory to offer in MB (default: the node's)",
    )
    pilot.add_argument(
        "--time-left",
        type=seconds,
        default=0.0,
        metavar="S",
        help="seconds this pilot may run (default 0: no limit)",
    )
    pilot.add_argument(
        "--cpu-time",
        type=seconds,
        default=0.0,
        metavar="S",
        help="CPU seconds per core a job may use here (the CE's limit; 0: none)",
    )
    pilot.add_argument(
        "--platform",
        default="",
        metavar="P",
        help="the platform offered (default: this node's, e.g. Linux_x86_64_glibc-2.36)",
    )
    pilot.add_argument(
        "--max-jobs",
        type=int,
        default=0,
        metavar="N",
        help="stop after N jobs (default 0: no limit)",
    )
    pilot.add_argument(
        "--idle-timeout",
        type=seconds,
        default=600.0,
        metavar="S",
        help="stop after S seconds with nothing to run (default 600; 0: never)",
    )
    pilot.add_argument("--tags", default="", metavar="T,...", help="tags this node offers")
    pilot.add_argument(
        "--required-tags", default="", metavar="T,...", help="only run jobs carrying these tags"
    )
    pilot.add_argument(
        "--workdir",
        metavar="DIR",
        help="where job working folders go (default: the current folder)",
    )
    pilot.add_argument(
        "--pilot-id",
        metavar="ID",
        help="this pilot's id (default: "
        "host-pid-random; a director passes the id of the record it made)",
    )
    pilot.add_argument(
        "--heartbeat",
        type=positive_seconds,
        default=30.0,
        metavar="S",
        help="seconds between heartbeats of a running job (default 30)",
    )
    pilot.add_argument(
        "--kill-grace",
        type=seconds,
        default=5.0,
        metavar="S",
        help="seconds between SIGTERM and SIGKILL of a payload (default 5)",
    )
    pilot.add_argument(
        "--drain-margin",
        type=seconds,
        default=60.0,
        metavar="S",
        help="seconds of --time-left kept to stop and report (default 60)",
    )
    pilot.add_argument(
        "--request-interval",
        type=positive_seconds,
        default=10.0,
        metavar="S",
        help="longest pause between job requests that found none (default 10)",
    )
    pilot.add_argument(
        "--keep-failed-for",
        type=seconds,
        default=86400.0,
        metavar="S",
        help="seconds the folder of a job that did not end Done is kept (default "
        "86400; a Done job's folder goes once its output is uploaded)",
    )
    pilot.add_argument(
        "--keep-failed-mb",
        type=int,
        default=1024,
        metavar="MB",
        help="disk the kept folders may take together, the oldest removed first (default 1024)",
    )
    pilot.add_argument("--verbose", action="store_true", help="log at DEBUG level")
    pilot.set_defaults(cli_command="")


def add_agent_parser(groups: Any) -> None:
    agent = groups.add_parser(
        "agent",
        help="run a site agent in the foreground",
        description="Run a site agent in the foreground.",
    )
    agents = agent.add_subparsers(dest="cli_command", metavar="AGENT", required=True)
    text = "keep pilots on a site's CEs while there is work for them"
    director = agents.add_parser(
        "director", parents=[identity_options()], help=text, description=text[0].upper() + text[1:]
    )
    director.add_argument("--site", required=True, help="the site (file SITE.toml in --sites-dir)")
    director.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file with a [director] table (idle_timeout, drain_margin, "
        "local_grace, pilot_args)",
    )
    director.add_argument(
        "--sites-dir",
        metavar="DIR",
        help="site files (default: etc/sites if it exists, else $DIRAC_LIKE_HOME/sites)",
    )
    _server_option(director)
    director.add_argument(
        "--home",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="state, logs and pilot output (default: $DIRAC_LIKE_HOME or ~/.dirac-like)",
    )
    director.add_argument(
        "--once",
        action="store_true",
        help="run one cycle and exit; the pilots it started keep running "
        "(local ones close their own records when they stop)",
    )
    director.add_argument("--verbose", action="store_true", help="log at DEBUG level")
    add_monitoring_agent_parser(agents)

    text = "copy files between storage elements: carry out transfer requests"
    transfer = agents.add_parser(
        "transfer",
        parents=[identity_options()],
        help=text,
        description=text[0].upper() + text[1:] + ". Several may run "
        "at once; the service keeps the per-link and per-SE limits.",
    )
    _server_option(transfer)
    transfer.add_argument(
        "--name",
        default="",
        help="this agent's name (default: its identity's name, else transfer-HOSTNAME)",
    )
    transfer.add_argument(
        "--home",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="where its log goes (default: $DIRAC_LIKE_HOME or ~/.dirac-like)",
    )
    transfer.add_argument(
        "--idle-interval",
        type=positive_seconds,
        default=5.0,
        metavar="S",
        help="seconds between requests that found nothing (default 5)",
    )
    transfer.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        default="127.0.0.1:0",
        help="serve Prometheus /metrics here (default 127.0.0.1:0, a free port, printed; "
        "'' for none)",
    )
    transfer.add_argument(
        "--once", action="store_true", help="carry out at most one transfer, then exit"
    )
    transfer.add_argument("--verbose", action="store_true", help="log at DEBUG level")


AGENT_COMMANDS = {
    ("pilot", ""): cmd_pilot,
    ("agent", "director"): cmd_agent_director,
    ("agent", "transfer"): cmd_agent_transfer,
}
