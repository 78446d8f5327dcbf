"""The audit log: one JSON line per admin or operator action and per refusal.

``home/logs/audit.log`` gets a line for every state-changing operation an admin or operator runs
(whether it succeeded or failed), for every status the monitoring agent sets (automatic bans and
unbans), for every bulk action whoever asks (its selection and the count confirmed) and for every
request refused by the authorization check or the rate limit (another owner's job or sandbox
included: the client hears "not found", the audit log records the refusal). A line says when,
who (name and role), which operation, a short summary of the
arguments and the outcome::

    {"time": "2026-01-05T10:00:00.123Z", "epoch": 1767607200.123, "principal": "bob",
     "role": "user", "op": "kill", "args": {"job_ids": [12]}, "outcome": "refused",
     "reason": "[job_not_found] job 12 not found"}

The summary never carries secrets or bulk: fields whose name suggests a secret (key, token,
secret, password...) are redacted, bytes are replaced by their length, job descriptions by their
count, long strings and lists are cut, and a whole line is at most ``MAX_LINE_BYTES``. Each line
is one ``write`` to a file opened for appending, so lines from one process never interleave and
nothing waits in a buffer. Rate-limit refusals are written at most once per identity per
``RATE_LIMIT_QUIET`` seconds (with the count of those not written), so a flood does not flood
the log as well.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import logging
import math
import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dirac_like.authz import Principal, Role
from dirac_like.errors import DiracLikeError, RateLimited
from dirac_like.protocol import MUTATING_OPS, Op

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 4096
MAX_STRING = 200  # characters of a string argument kept
MAX_ITEMS = 10  # items of a list or map argument kept
MAX_DEPTH = 3  # nesting kept
RATE_LIMIT_QUIET = 60.0  # seconds between two rate-limit lines of one identity
MAX_QUIET_IDENTITIES = 10_000
AUDITED_ROLES = frozenset({Role.ADMIN, Role.OPERATOR})
AUDITED_OPS = MUTATING_OPS | {Op.IDENTITY_ADD, Op.IDENTITY_REVOKE, Op.PILOT_TOKEN}
# Audited whoever runs them: the monitoring agent's automatic bans and unbans, and bulk actions.
ALWAYS_AUDITED_OPS = frozenset({Op.SET_STATUS, Op.BULK})
_SECRET = re.compile(r"key|secret|token|password|credential|private", re.IGNORECASE)
_COUNTED = frozenset({"descriptions"})  # replaced by their number of items


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._rate_limited: OrderedDict[str, tuple[float, int]] = OrderedDict()

    @classmethod
    def in_home(cls, home: Path) -> AuditLog:
        return cls(home / "logs" / "audit.log")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what the service calls ------------------------------------------------------------------

    def done(
        self,
        principal: Principal,
        op: str,
        args: Any,
        now: float,
        error: DiracLikeError | None = None,
    ) -> bool:
        """An authorized request has run (``error``: the handler refused it). Written for the
        state-changing operations of admins and operators, and for the statuses the monitoring
        agent sets (its automatic bans); returns whether it was written."""
        audited = principal.role in AUDITED_ROLES and op in AUDITED_OPS
        if not audited and op not in ALWAYS_AUDITED_OPS:
            return False
        outcome, reason = ("ok", "") if error is None else ("failed", _reason(error))
        self._write(principal, op, args, now, outcome, reason)
        return True

    def refused(
        self, principal: Principal, op: str, args: Any, error: DiracLikeError, now: float
    ) -> bool:
        """A request refused by the authorization check or the rate limit. Returns whether it
        was written (rate-limit refusals are thinned out)."""
        reason = _reason(error)
        if isinstance(error, RateLimited):
            skipped = self._rate_limited_quietly(principal.name, now)
            if skipped is None:
                return False
            if skipped:
                reason += f" ({skipped} more refusals not logged)"
        self._write(principal, op, args, now, "refused", reason)
        return True

    # -- inside ----------------------------------------------------------------------------------

    def _rate_limited_quietly(self, name: str, now: float) -> int | None:
        """None if a rate-limit line of ``name`` was written recently (counted), else how
        many were skipped since the last one written."""
        last = self._rate_limited.get(name)
        if last is not None and now - last[0] < RATE_LIMIT_QUIET:
            self._rate_limited[name] = (last[0], last[1] + 1)
            return None
        self._rate_limited[name] = (now, 0)
        self._rate_limited.move_to_end(name)
        while len(self._rate_limited) > MAX_QUIET_IDENTITIES:
            self._rate_limited.popitem(last=False)
        return last[1] if last else 0

    def _write(
        self, principal: Principal, op: str, args: Any, now: float, outcome: str, reason: str
    ) -> None:
        self.record(audit_line(principal, op, args, now, outcome, reason), now)

    def record(self, line: str, now: float) -> None:
        """Append one line (a subclass may keep it elsewhere too)."""
        try:
            os.write(self._fd, line.encode() + b"\n")
        except OSError as exc:
            log.error(
                "cannot write the audit log %s: %s (entry: %s)", self.path, exc.strerror, line
            )


def audit_line(
    principal: Principal, op: str, args: Any, now: float, outcome: str, reason: str = ""
) -> str:
    """One JSON line (no newline), at most MAX_LINE_BYTES long."""
    entry: dict[str, Any] = {
        "time": _iso(now),
        "epoch": round(now, 3),
        "principal": principal.name[:64],
        "role": principal.role.value,
        "op": op[:64],
        "args": summarize(args),
        "outcome": outcome,
    }
    if reason:
        entry["reason"] = reason[:500]
    line = json.dumps(entry, ensure_ascii=True, default=repr)
    if len(line) > MAX_LINE_BYTES:
        entry["args"] = {"summary_too_long": json.dumps(entry["args"])[:1000]}
        line = json.dumps(entry, ensure_ascii=True, default=repr)
    return line


def summarize(args: Any) -> dict[str, Any]:
    """A short, secret-free view of an operation's arguments."""
    fields = _fields(args)
    if fields is None:
        return {"value": _summary(args, 1)}
    return _summary_of_map(fields, 0)


def _fields(value: Any) -> Mapping[Any, Any] | None:
    """A dataclass or a map as a map; None for anything else."""
    if isinstance(value, Mapping):
        return value
    names = _dataclass_fields(type(value))
    if names is None:
        return None
    return {name: getattr(value, name) for name in names}


_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def _dataclass_fields(cls: type) -> tuple[str, ...] | None:
    """The field names of the dataclass ``cls`` (None if it is not one); once per type."""
    if cls not in _FIELD_NAMES:
        is_dataclass = dataclasses.is_dataclass(cls)
        _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls)) if is_dataclass else None
    return _FIELD_NAMES[cls]


@functools.lru_cache(maxsize=4096)
def _is_secret(name: str) -> bool:
    """Whether a field called ``name`` may hold a secret (decided once per name)."""
    return _SECRET.search(name) is not None


def _summary_of_map(fields: Mapping[Any, Any], depth: int) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for index, (key, value) in enumerate(fields.items()):
        if index == MAX_ITEMS:
            summary["..."] = f"{len(fields) - MAX_ITEMS} more"
            break
        name = str(key)[:64]
        if _is_secret(name):
            summary[name] = "<redacted>"
        elif name in _COUNTED and isinstance(value, list | tuple):
            summary[name] = f"<{len(value)} items>"
        else:
            summary[name] = _summary(value, depth + 1)
    return summary


_PLAIN = frozenset({type(None), bool, int, float})


def _summary(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind in _PLAIN:  # the common cases first, by exact type (subclasses below)
        return value
    if kind is str and len(value) <= MAX_STRING:
        return value
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        if len(value) <= MAX_STRING:
            return value
        return f"{value[:MAX_STRING]}...({len(value)} chars)"
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if depth >= MAX_DEPTH:
        return f"<{type(value).__name__}>"
    fields = _fields(value)
    if fields is not None:
        return _summary_of_map(fields, depth)
    if isinstance(value, list | tuple):
        items = [_summary(item, depth + 1) for item in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            items.append(f"... {len(value) - MAX_ITEMS} more")
        return items
    return repr(value)[:MAX_STRING]


def _reason(error: DiracLikeError) -> str:
    return f"[{error.code}] {error.message}"


def _iso(now: float) -> str:
    """``now`` in ISO 8601 UTC to the millisecond (the seconds formatted once per second)."""
    second = math.floor(now)
    micro = round((now - second) * 1_000_000)  # rounded as datetime.fromtimestamp does
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    return f"{_iso_second(second)}{micro // 1000:03d}Z"


@functools.lru_cache(maxsize=4)
def _iso_second(second: int) -> str:
    return datetime.datetime.fromtimestamp(second, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.")
