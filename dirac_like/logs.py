"""Logging for daemons: to stderr and to a file in the home's logs folder.

The file is readable by its owner only (0600, in a 0700 folder: log lines name users, jobs and
sites) and rotates by size, so no daemon can fill a disk with its log.
"""

from __future__ import annotations

import logging
import os
from logging.handlers import RotatingFileHandler
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_MAX_BYTES = 64 * 1024 * 1024  # a log file rotates at this size ...
LOG_BACKUPS = 5  # ... keeping this many older files (name.log.1 ... name.log.5)


def setup_logging(name: str | None = None, home: Path | None = None, verbose: bool = False) -> None:
    """Log to stderr; for a daemon (``name`` and ``home`` given) also to ``home/logs/name.log``."""
    level = (
        logging.DEBUG
        if verbose
        else logging.getLevelName(os.environ.get("DIRAC_LIKE_LOG_LEVEL", "INFO").upper())
    )
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if name and home:
        handlers.append(private_log_file(home / "logs" / f"{name}.log"))
    logging.basicConfig(level=level, format=FORMAT, handlers=handlers, force=True)


def private_log_file(
    path: Path, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS
) -> RotatingFileHandler:
    """A size-rotated log file handler; the file and its folder are its owner's only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    os.chmod(path, 0o600)
    return RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups)
