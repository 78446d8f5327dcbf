"""Configuration: TOML files loaded once into frozen dataclasses.

A wrong key is an error naming it (``jobs.match_lase: unknown key``); a value of the wrong type
names the key and the expected type. Nothing here is read at import time.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dirac_like.errors import ConfigError
from dirac_like.protocol import MAX_INLINE_BYTES_PER_REQUEST
from dirac_like.storage import StorageElementConfig, check_storage, default_storage

DEFAULT_SERVER = "tcp://127.0.0.1:7700"


@dataclass(frozen=True)
class ServiceConfig:
    listen: str = DEFAULT_SERVER
    max_message_bytes: int = 16 * 1024 * 1024
    max_batch: int = 512  # requests drained and committed together
    reply_memory: float = 600.0  # seconds a reply is kept for retried request ids
    # Undecodable frames a connection may send (per second, and at once): past that its frames
    # are refused unread until it calms down (services/frame_guard.py).
    bad_frames_per_second: float = 5.0
    bad_frame_burst: float = 50.0
    # seconds a reply carrying a secret key (identity add, pilot token) is kept, in memory only
    secret_reply_memory: float = 60.0


@dataclass(frozen=True)
class StoreConfig:
    url: str = ""  # empty: sqlite file jobs.sqlite in the home
    synchronous: str = "full"  # full: fsync every commit; normal: survive kill -9, not power loss
    # SQLite at full: a batch's fsync runs in a thread while the loop serves the next batch (its
    # replies still wait for it); false: inside the COMMIT, in the loop
    overlap_sync: bool = True


@dataclass(frozen=True)
class JobsConfig:
    match_lease: float = 300.0  # Matched must become Running within this, or back to Waiting
    stalled_timeout: float = 1800.0  # Running without heartbeat this long -> Stalled
    stalled_to_reschedule: float = 1800.0  # Stalled this long -> Rescheduled (or Failed)
    max_reschedules: int = 3
    reschedule_holdoff: float = 60.0  # first hold-off in Rescheduled before Waiting again
    holdoff_factor: float = 4.0  # each further reschedule waits this many times longer
    max_cpu_time: int = 30 * 24 * 3600
    max_parametric_jobs: int = 100_000
    default_group: str = "user"


@dataclass(frozen=True)
class DrainConfig:
    """Draining a multi-core pilot toward the job of a group owed cores (dirac_like/draining.py).

    A pilot whose free cores are too few for that job may be told to hold them for up to
    ``hold_seconds`` instead of taking a smaller job of a group above its share; at a site at most
    ``max_idle_fraction`` of the cores its pilots have may be held idle at once."""

    hold_seconds: float = 600.0  # 0: never hold (the pre-draining behaviour)
    max_idle_fraction: float = 0.1


@dataclass(frozen=True)
class LimitsConfig:
    """What one identity may ask of the service (services/limits.py); a request over any of
    them is refused whole, with an error naming the limit."""

    max_jobs_per_request: int = 100_000  # jobs one submit makes, parametric expansion included
    max_waiting_jobs_per_user: int = 1_000_000  # an owner's jobs in Waiting at once
    max_description_bytes: int = 64 * 1024  # one job's stored description, after expansion
    # A submission of more jobs is acknowledged once recorded whole and its first slice made;
    # the others are made a slice at a time between requests (services/expansion.py). 0: never.
    expand_slice: int = 5_000


@dataclass(frozen=True)
class SharesConfig:
    half_life: float = 86400.0  # seconds for past usage to count half
    default_share: float = 1.0  # share of a group not listed in [shares.groups]
    groups: Mapping[str, float] = field(default_factory=dict)
    # group -> user -> share; users not listed split the group's share equally (share 1 each)
    users: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    drain: DrainConfig = field(default_factory=DrainConfig)


@dataclass(frozen=True)
class PilotsConfig:
    retention: float = 7 * 86400.0  # an ended pilot's record and output are kept this long
    max_output_bytes: int = 256 * 1024  # of a pilot's output, as a director uploads it


@dataclass(frozen=True)
class AccountingConfig:
    raw_retention: float = 90 * 86400.0  # a finished job's or pilot's own record is kept this long
    # hourly buckets older than this are folded into daily ones (daily buckets are kept)
    hourly_retention: float = 35 * 86400.0


@dataclass(frozen=True)
class MetricsConfig:
    # host:port of the /metrics HTTP endpoint (Prometheus); port 0: a free port (logged);
    # "": no endpoint
    listen: str = "127.0.0.1:0"
    refresh: float = 2.0  # seconds between the service's snapshots of its gauges


@dataclass(frozen=True)
class SandboxesConfig:
    max_input_bytes: int = 64 * 1024 * 1024  # one input sandbox archive (compressed)
    max_output_bytes: int = 64 * 1024 * 1024  # one output sandbox archive (compressed)
    max_chunk_bytes: int = 4 * 1024 * 1024  # one upload or download request
    collect_after: float = 3600.0  # unreferenced archives (and stale partial uploads) older go
    # An output sandbox of at most this many bytes (packed) may come inlined in the job's final
    # report instead of uploaded first (issue 15: one round trip less per job that prints a
    # little); the service tells each pilot this bound with its matches. 0: always uploaded.
    max_inline_output_bytes: int = 64 * 1024


@dataclass(frozen=True)
class SecurityConfig:
    pilot_token_lifetime: float = 2 * 86400.0  # a pilot token is refused this long after issue
    purge_expired_after: float = 86400.0  # expired pilot tokens leave the registry this later
    # The rate limit per identity (dirac_like/ratelimit.py): requests per second on average
    # (0: no limit), and how many at once after a quiet spell.
    rate_per_second: float = 1000.0
    rate_burst: float = 2000.0


@dataclass(frozen=True)
class BulkConfig:
    """Bulk actions (``job kill --select ...``): the caps and the batch size."""

    confirm_above: int = 100  # acting on more jobs at once needs a confirmation (--yes)
    admin_above: int = 10_000  # acting on more jobs at once needs an admin
    batch: int = 100  # jobs changed per loop of the service (the most it waits for a bulk)
    # While requests come in, a loop acts on at most this many jobs per request it served (and
    # at least one): requests keep most of the service's time while a bulk action goes on.
    busy_share: float = 0.1
    # The most of the service's time that work in the background (bulk actions, slices of big
    # submissions) may take while requests keep the service busy: after a piece that took t
    # seconds, requests waiting get t * (1 - duty) / duty seconds of the loop before the next
    # piece; when none is waiting the next piece runs at once (services/pacing.py). 1: no pause.
    duty: float = 0.2


@dataclass(frozen=True)
class SiteLimits:
    max_running: int = 0  # jobs matched or running at the site at once; 0: no limit


@dataclass(frozen=True)
class TransfersConfig:
    lease: float = 120.0  # an agent's hold on a request; renewed while it copies
    max_attempts: int = 5  # then the request is Failed, with the last reason
    retry_backoff: float = 10.0  # hold-off before the 2nd attempt; doubles each time after
    max_backoff: float = 600.0
    per_link: int = 2  # copies at once from one SE to another
    per_se: int = 4  # copies at once into or out of one SE


@dataclass(frozen=True)
class DataConfig:
    vos: tuple[str, ...] = ()  # allowed first folders of LFNs; empty: any
    max_bulk: int = 100_000  # files or replicas in one catalog request
    # False: a job with InputData runs only at sites whose SEs hold its files (DIRAC's default);
    # True: anywhere (the job reads its input from another site)
    input_data_anywhere: bool = False
    transfers: TransfersConfig = field(default_factory=TransfersConfig)


@dataclass(frozen=True)
class Config:
    service: ServiceConfig = field(default_factory=ServiceConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    shares: SharesConfig = field(default_factory=SharesConfig)
    pilots: PilotsConfig = field(default_factory=PilotsConfig)
    sandboxes: SandboxesConfig = field(default_factory=SandboxesConfig)
    accounting: AccountingConfig = field(default_factory=AccountingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    bulk: BulkConfig = field(default_factory=BulkConfig)
    sites: Mapping[str, SiteLimits] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    storage: Mapping[str, StorageElementConfig] = field(default_factory=dict)

    def storage_elements(self, home: Path) -> dict[str, StorageElementConfig]:
        """The configured SEs, or the embedded default (one ``file`` SE in ``home``)."""
        return dict(self.storage) or default_storage(home)

    def store_url(self, home: Path) -> str:
        return self.store.url or str(home / "jobs.sqlite")


def default_home() -> Path:
    return Path(os.environ.get("DIRAC_LIKE_HOME") or Path.home() / ".dirac-like")


def load_config(path: Path | None = None) -> Config:
    """The configuration in ``path`` over the defaults (the defaults alone when None)."""
    if path is None:
        return Config()
    config = from_mapping(Config, read_toml(path), "")
    validate(config)
    storage = types.MappingProxyType(check_storage(config.storage))
    return dataclasses.replace(config, storage=storage)


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a mapping; ConfigError naming the file if it cannot be read or parsed."""
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


ConfT = TypeVar("ConfT")


def from_mapping(cls: type[ConfT], raw: Any, where: str) -> ConfT:
    """Build the frozen dataclass ``cls`` from a TOML table, naming any wrong key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise ConfigError(f"{path}: unknown key")
        values[key] = _convert(hints[key], value, path)
    return cls(**values)


def _convert(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, where)  # type: ignore[arg-type]
    if typing.get_origin(hint) in (Mapping, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table")
        _, item = typing.get_args(hint)
        converted = {k: _convert(item, v, f"{where}.{k}") for k, v in value.items()}
        return types.MappingProxyType(converted)
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{where}: expected a list of strings")
        return tuple(value)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and type(value) is hint:
        return value
    raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def validate(config: Config) -> None:
    """Checks across values that the types alone do not catch."""
    jobs = config.jobs
    for name in ("match_lease", "stalled_timeout", "stalled_to_reschedule"):
        if getattr(jobs, name) <= 0:
            raise ConfigError(f"jobs.{name}: must be positive")
    if jobs.max_reschedules < 0 or jobs.holdoff_factor < 1 or jobs.reschedule_holdoff < 0:
        raise ConfigError(
            "jobs: max_reschedules >= 0, reschedule_holdoff >= 0, holdoff_factor >= 1"
        )
    _validate_shares(config)
    if config.store.synchronous not in ("full", "normal"):
        raise ConfigError("store.synchronous: must be 'full' or 'normal'")
    _validate_service(config)
    if config.pilots.retention < 0 or config.pilots.max_output_bytes < 0:
        raise ConfigError("pilots: retention and max_output_bytes must not be negative")
    _validate_sandboxes(config)
    _validate_bulk(config.bulk)
    _validate_monitoring(config)
    _validate_data(config.data)
    security = config.security
    if security.pilot_token_lifetime <= 0 or security.purge_expired_after < 0:
        raise ConfigError(
            "security: pilot_token_lifetime must be positive and purge_expired_after not negative"
        )
    if security.rate_per_second < 0 or security.rate_burst < 1:
        raise ConfigError(
            "security: rate_per_second must not be negative and rate_burst must be at least 1"
        )


def _validate_service(config: Config) -> None:
    """The service's own settings and what one identity may ask of it."""
    service = config.service
    if service.max_batch < 1 or service.max_message_bytes < 1024:
        raise ConfigError("service: max_batch >= 1 and max_message_bytes >= 1024")
    if service.bad_frames_per_second <= 0 or service.bad_frame_burst < 1:
        raise ConfigError(
            "service: bad_frames_per_second must be positive and bad_frame_burst at least 1"
        )
    if service.secret_reply_memory < 0:
        raise ConfigError("service.secret_reply_memory: must not be negative")
    limits = config.limits
    if (
        min(
            limits.max_jobs_per_request,
            limits.max_waiting_jobs_per_user,
            limits.max_description_bytes,
        )
        < 1
    ):
        raise ConfigError(
            "limits: max_jobs_per_request, max_waiting_jobs_per_user and "
            "max_description_bytes must be positive"
        )
    if limits.expand_slice < 0:
        raise ConfigError("limits.expand_slice: jobs made per slice (0: never sliced)")


def _validate_shares(config: Config) -> None:
    if config.shares.half_life <= 0:
        raise ConfigError("shares.half_life: must be positive")
    drain = config.shares.drain
    if drain.hold_seconds < 0 or not 0 <= drain.max_idle_fraction <= 1:
        raise ConfigError(
            "shares.drain: hold_seconds must not be negative and "
            "max_idle_fraction must be between 0 and 1"
        )
    for group, share in config.shares.groups.items():
        if share <= 0:
            raise ConfigError(f"shares.groups.{group}: must be positive")


def _validate_bulk(bulk: BulkConfig) -> None:
    if bulk.batch < 1 or bulk.confirm_above < 0 or bulk.admin_above < bulk.confirm_above:
        raise ConfigError("bulk: batch >= 1, confirm_above >= 0, admin_above >= confirm_above")
    if not 0 < bulk.duty <= 1:
        raise ConfigError("bulk.duty: a share of the service's time, above 0 and at most 1")
    if not 0 < bulk.busy_share <= 100:
        raise ConfigError("bulk.busy_share: must be positive (jobs per request served)")


def _validate_sandboxes(config: Config) -> None:
    sandboxes = config.sandboxes
    if min(sandboxes.max_input_bytes, sandboxes.max_output_bytes, sandboxes.max_chunk_bytes) < 1:
        raise ConfigError(
            "sandboxes: max_input_bytes, max_output_bytes and max_chunk_bytes must be positive"
        )
    if sandboxes.collect_after < 0:
        raise ConfigError("sandboxes.collect_after: must not be negative")
    if not 0 <= sandboxes.max_inline_output_bytes <= MAX_INLINE_BYTES_PER_REQUEST:
        raise ConfigError(
            "sandboxes.max_inline_output_bytes: 0 (never inline) to "
            f"{MAX_INLINE_BYTES_PER_REQUEST} bytes"
        )


def _validate_monitoring(config: Config) -> None:
    accounting = config.accounting
    if accounting.raw_retention <= 0 or accounting.hourly_retention <= 0:
        raise ConfigError("accounting: raw_retention and hourly_retention must be positive")
    if config.metrics.refresh <= 0:
        raise ConfigError("metrics.refresh: must be positive")
    if config.metrics.listen:
        parse_listen(config.metrics.listen, "metrics.listen")


def parse_listen(text: str, where: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) as (host, port); ConfigError naming ``where``."""
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{where}: expected host:port (port 0: a free one), not {text!r}")
    return host, int(port)


def _validate_data(data: DataConfig) -> None:
    transfers = data.transfers
    if transfers.lease <= 0 or transfers.max_attempts < 1 or transfers.retry_backoff < 0:
        raise ConfigError("data.transfers: lease > 0, max_attempts >= 1, retry_backoff >= 0")
    if transfers.per_link < 1 or transfers.per_se < 1 or data.max_bulk < 1:
        raise ConfigError("data: transfers.per_link, transfers.per_se and max_bulk must be >= 1")
