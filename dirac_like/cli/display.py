"""Output for people and for scripts: aligned tables (rich), JSON, times, id lists.

Tables have no colour and no highlighting when the output is not a terminal, so they can be piped
to grep or awk. Used by the CLI and the demo.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.table import Table

# A column: the key in each row and its header; a header ending in ">" is right-aligned.
Column = tuple[str, str]

PIPE_WIDTH = 160  # width of tables written to a pipe or file (rich's own default is 80)
# Columns never folded nor cut, however narrow the terminal: ids are copied and pasted (the
# table grows wider than the terminal rather than cut one).
NARROWEST = 10  # the width other columns are folded down to before the table grows wider
WHOLE_KEYS = frozenset(
    {"job_id", "pilot_id", "task_queue_id", "fabric_ref", "site", "name", "status", "state"}
)


def make_console(file: TextIO | None = None) -> Console:
    """A console without syntax highlighting; wide enough not to fold tables into a pipe."""
    stream = file or sys.stdout
    width = None if stream.isatty() or "COLUMNS" in os.environ else PIPE_WIDTH
    return Console(file=stream, highlight=False, width=width)


def print_json(data: Any, file: TextIO | None = None) -> None:
    json.dump(data, file or sys.stdout, indent=2, sort_keys=False)
    (file or sys.stdout).write("\n")


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(item) for item in value) or "-"
    return str(value)


def format_time(timestamp: float) -> str:
    """A Unix time as UTC ISO 8601 to the second: 2024-05-01T12:00:00Z."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_percent(fraction: float) -> str:
    return f"{100 * fraction:.1f}%"


def format_ids(ids: Iterable[int]) -> str:
    """Job ids in order, runs of more than three consecutive ids as ranges: ``1 2 3 7-12 20``."""
    parts: list[str] = []
    for start, end in _runs(sorted(ids)):
        if end - start >= 3:
            parts.append(f"{start}-{end}")
        else:
            parts.extend(str(number) for number in range(start, end + 1))
    return " ".join(parts)


def _runs(ids: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for number in ids:
        if runs and number == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], number)
        elif not runs or number != runs[-1][1]:
            runs.append((number, number))
    return runs


def make_table(
    columns: Sequence[Column], title: str | None = None, widths: Mapping[str, int] | None = None
) -> Table:
    """A table of ``columns``; a column in ``widths`` is kept at least that wide, unwrapped."""
    table = Table(
        box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False, show_edge=False
    )
    for key, header in columns:
        right = header.endswith(">")
        whole = (widths or {}).get(key)
        table.add_column(
            header.rstrip(">"),
            justify="right" if right else "left",
            no_wrap=whole is not None,
            min_width=whole,
            overflow="fold",
        )
    return table


def print_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    title: str | None = None,
    empty: str = "(nothing)",
    console: Console | None = None,
) -> None:
    """Print ``rows`` as an aligned table of ``columns``; ``empty`` when there are no rows."""
    console = console or make_console()
    if not rows:
        console.print(f"{title}: {empty}" if title else empty)
        return
    if title:
        console.print()
    cells = [[format_value(row.get(key)) for key, _ in columns] for row in rows]
    widths = {
        key: max(len(header.rstrip(">")), *(len(line[index]) for line in cells))
        for index, (key, header) in enumerate(columns)
        if key in WHOLE_KEYS
    }
    table = make_table(columns, title, widths)
    for line in cells:
        table.add_row(*line)
    needed = sum(widths.values()) + NARROWEST * (len(columns) - len(widths)) + 2 * len(columns)
    if needed > console.width:  # wider than the terminal rather than an id cut or a column lost
        console = Console(file=console.file, highlight=False, width=needed)
    console.print(table)


def count_by(rows: Iterable[Mapping[str, Any]], *keys: str) -> dict[tuple[Any, ...], int]:
    """How many rows share each combination of values of ``keys``."""
    counts: dict[tuple[Any, ...], int] = {}
    for row in rows:
        value = tuple(row.get(key) for key in keys)
        counts[value] = counts.get(value, 0) + 1
    return counts
