"""``service_status``: which instance of the central service leads, since when.

A service on SQLite is alone: it leads from its start. On PostgreSQL the instances of a pair note
themselves in the store (services/high_availability.py), and the leader answers from there.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Protocol

from dirac_like.protocol import NoArgs, Op, ServiceInstanceRow, ServiceStatusReply
from dirac_like.store.base import SCHEMA_VERSION

from .state import CentralState


class ServiceView(Protocol):
    def status(self, now: float) -> ServiceStatusReply: ...


class SingleInstance:
    """A service alone on its store (SQLite): it leads since it started."""

    def __init__(self, started: float, endpoint: Callable[[], str]) -> None:
        self.started = started
        self.endpoint = endpoint

    def status(self, now: float) -> ServiceStatusReply:
        host = socket.gethostname()
        row = ServiceInstanceRow(
            name=host, endpoint=self.endpoint(), host=host, pid=os.getpid(),
            role="leader", since=self.started, seen=now, code_schema=SCHEMA_VERSION,
        )  # fmt: skip
        return ServiceStatusReply(store="sqlite", instances=[row], schema=SCHEMA_VERSION)


def service_status(state: CentralState, args: NoArgs, now: float) -> ServiceStatusReply:
    if state.service_view is None:
        return SingleInstance(now, lambda: "").status(now)
    return state.service_view.status(now)


STATUS_HANDLERS = {Op.SERVICE_STATUS: service_status}
