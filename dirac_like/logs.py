"""Logging for daemons: to stderr and to a file in the home's logs folder."""

from __future__ import annotations

import logging
import os
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(name: str | None = None, home: Path | None = None, verbose: bool = False) -> None:
    """Log to stderr; for a daemon (``name`` and ``home`` given) also to ``home/logs/name.log``."""
    level = logging.DEBUG if verbose else logging.getLevelName(
        os.environ.get("DIRAC_LIKE_LOG_LEVEL", "INFO").upper()
    )
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if name and home:
        logs = home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(logs / f"{name}.log"))
    logging.basicConfig(level=level, format=FORMAT, handlers=handlers, force=True)
