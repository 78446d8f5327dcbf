"""A dirac-like one release newer than this tree (for test_rolling_upgrade.py): the same code
with one more schema migration, which makes table ``newer_release_marker``.

    python newer_release_child.py ARGS...     # as ``dirac-like ARGS...``
"""

from __future__ import annotations

import sys

import dirac_like.store.postgres as postgres_store
from dirac_like.cli.main import main

MARKER_TABLE = "newer_release_marker"


def become_newer() -> None:
    """This process's code reads and writes schema SCHEMA_VERSION + 1 (PostgreSQL)."""
    current = postgres_store.migrations
    postgres_store.SCHEMA_VERSION += 1
    postgres_store.migrations = lambda: [
        *current(),
        [f"CREATE TABLE {MARKER_TABLE} (note TEXT NOT NULL)"],
    ]


if __name__ == "__main__":
    become_newer()
    sys.exit(main(sys.argv[1:]))
