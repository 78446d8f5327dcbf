"""The dashboard's plots: SVG drawn on the server with matplotlib (no JavaScript, no network).

Text stays text in the SVG (``svg.fonttype = none``), so a browser renders it with its own fonts
and tests can read it; labels are passed with mathtext off, and matplotlib escapes them as XML.
Only the object-oriented API (``Figure``) is used, never pyplot's global state, so plots may be
drawn from several server threads at once.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot: no display here

from matplotlib.axes import Axes
from matplotlib.figure import Figure

STATUS_COLOURS = {
    "Received": "#9aa5b1",
    "Checking": "#9aa5b1",
    "Waiting": "#f0a202",
    "Matched": "#7fb3e6",
    "Running": "#2f6fbf",
    "Completing": "#5a8fd6",
    "Done": "#3a9a4a",
    "Failed": "#c8372d",
    "Killed": "#6b6b6b",
    "Stalled": "#d9721b",
    "Rescheduled": "#a07ad1",
    "Deleted": "#cccccc",
}
PILOT_COLOURS = {
    "Submitted": "#9aa5b1",
    "Waiting": "#f0a202",
    "Running": "#2f6fbf",
    "Done": "#3a9a4a",
    "Failed": "#c8372d",
    "Aborted": "#6b6b6b",
}
TRANSFER_COLOURS = {
    "Waiting": "#f0a202",
    "Assigned": "#7fb3e6",
    "Active": "#2f6fbf",
    "Done": "#3a9a4a",
    "Failed": "#c8372d",
}
SERIES_COLOURS = ("#2f6fbf", "#c8372d", "#3a9a4a", "#d9721b", "#7a4fb3", "#1b9aaa", "#6b6b6b")
RC: dict[Any, Any] = {
    "svg.fonttype": "none",
    "font.size": 9,
    "font.family": "sans-serif",
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def bar_chart(
    items: Sequence[tuple[str, int]],
    title: str,
    colours: Mapping[str, str] | None = None,
    empty: str = "nothing yet",
) -> str:
    """Horizontal bars, one per (label, value), as inline SVG."""
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(4.6, 0.6 + 0.28 * max(len(items), 1)))
        axes = figure.add_subplot()
        axes.set_title(title, loc="left", parse_math=False)
        if not items:
            return _empty_plot(figure, axes, empty)
        labels = [label for label, _ in items][::-1]
        values = [value for _, value in items][::-1]
        colour = [(colours or {}).get(label, SERIES_COLOURS[0]) for label in labels]
        bars = axes.barh(range(len(items)), values, color=colour)
        axes.set_yticks(range(len(items)), labels=labels, parse_math=False)
        axes.bar_label(bars, padding=3, fontsize=8)
        axes.set_xlim(0, max(values) * 1.18 or 1)
        axes.xaxis.set_visible(False)
        axes.spines["bottom"].set_visible(False)
        return _svg(figure)


def stacked_bars(
    rows: Sequence[tuple[str, Mapping[str, int]]],
    order: Sequence[str],
    title: str,
    colours: Mapping[str, str],
    empty: str = "nothing yet",
    unit: str = "jobs",
) -> str:
    """One horizontal bar per row label, stacked by key (in ``order``), with a legend."""
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(6.4, 0.9 + 0.32 * max(len(rows), 1)))
        axes = figure.add_subplot()
        axes.set_title(title, loc="left", parse_math=False)
        if not rows:
            return _empty_plot(figure, axes, empty)
        labels = [label for label, _ in rows][::-1]
        values = [counts for _, counts in rows][::-1]
        keys = [key for key in order if any(key in counts for counts in values)]
        left = [0] * len(rows)
        for key in keys:
            widths = [counts.get(key, 0) for counts in values]
            axes.barh(
                range(len(rows)), widths, left=left, color=colours.get(key, "#888888"), label=key
            )
            left = [a + b for a, b in zip(left, widths, strict=True)]
        axes.set_yticks(range(len(rows)), labels=labels, parse_math=False)
        axes.set_xlabel(unit)
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
        figure.subplots_adjust(right=0.75)
        return _svg(figure)


def share_timeline(
    series: Mapping[str, Sequence[tuple[float, float]]],
    targets: Mapping[str, float],
    title: str,
    now: float,
) -> str:
    """Each group's realised share over time (solid) against its target (dashed); the time
    axis in minutes before ``now``."""
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(6.4, 2.6))
        axes = figure.add_subplot()
        axes.set_title(title, loc="left", parse_math=False)
        points = [p for values in series.values() for p in values]
        if len(points) < 2 and not targets:
            return _empty_plot(figure, axes, "no samples yet")
        for number, group in enumerate(sorted(set(series) | set(targets))):
            colour = SERIES_COLOURS[number % len(SERIES_COLOURS)]
            values = series.get(group, [])
            if values:
                axes.plot(
                    [(t - now) / 60 for t, _ in values],
                    [100 * v for _, v in values],
                    color=colour,
                    label=f"{group} realised".replace("$", r"\$"),
                )
            if group in targets:
                axes.axhline(
                    100 * targets[group],
                    color=colour,
                    linestyle="--",
                    linewidth=1,
                    label=f"{group} target".replace("$", r"\$"),
                )
        axes.set_ylim(0, 100)
        axes.set_ylabel("% of the grid")
        axes.set_xlabel("minutes before now")
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
        figure.subplots_adjust(right=0.68)
        return _svg(figure)


def _empty_plot(figure: Figure, axes: Axes, message: str) -> str:
    """The plot with ``message`` in its middle instead of data, and no axes."""
    axes.text(
        0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes, parse_math=False
    )
    axes.set_axis_off()
    return _svg(figure)


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # inline: no XML prolog or doctype


def time_bars(
    times: Sequence[float],
    series: Mapping[str, Sequence[float]],
    title: str,
    unit: str,
    lines: bool = False,
    empty: str = "no data in this range",
) -> str:
    """A series per label over time (bucket starts, UTC): stacked bars like DIRAC's accounting
    plots, or one line per label (``lines``: a ratio such as CPU efficiency, which does not add
    up). The first :data:`MAX_SERIES` labels are drawn, the rest summed as "other" (as lines:
    left out)."""
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(6.4, 2.8))
        axes = figure.add_subplot()
        axes.set_title(title, loc="left", parse_math=False)
        if not series or not times:
            _empty(axes, empty)
            return _svg(figure)
        drawn = _top(series, not lines)
        hours = [(t - times[-1]) / 3600 for t in times]
        width = (hours[1] - hours[0]) * 0.85 if len(hours) > 1 else 0.85
        bottom = [0.0] * len(times)
        for number, (label, values) in enumerate(drawn.items()):
            colour = SERIES_COLOURS[number % len(SERIES_COLOURS)] if label != OTHER else "#aaaaaa"
            name = label.replace("$", r"\$")
            if lines:
                axes.plot(hours, values, marker="o", markersize=2, color=colour, label=name)
            else:
                axes.bar(hours, values, width=width, bottom=bottom, color=colour, label=name)
                bottom = [low + value for low, value in zip(bottom, values, strict=True)]
        axes.set_ylabel(unit)
        axes.set_xlabel("hours before the last step (UTC)")
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
        figure.subplots_adjust(right=0.72)
        return _svg(figure)


MAX_SERIES = 7
OTHER = "other"


def _top(series: Mapping[str, Sequence[float]], with_other: bool) -> dict[str, list[float]]:
    labels = list(series)  # reports list their labels largest first
    top = {label: list(series[label]) for label in labels[:MAX_SERIES]}
    rest = [series[label] for label in labels[MAX_SERIES:]]
    if rest and with_other:
        top[OTHER] = [sum(values) for values in zip(*rest, strict=True)]
    return top


def _empty(axes: Any, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, parse_math=False)
    axes.set_axis_off()


def usage_timeline(points: Sequence[tuple[float, float, float]], title: str, start: float) -> str:
    """A payload's CPU seconds and resident memory over its run: ``(time, cpu_seconds,
    rss_mb)`` points, the time axis in minutes since ``start``; CPU left, memory right."""
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(6.4, 2.6))
        axes = figure.add_subplot()
        axes.set_title(title, loc="left", parse_math=False)
        if not points:
            _empty(axes, "no sample from the watchdog yet")
            return _svg(figure)
        minutes = [(time - start) / 60 for time, _, _ in points]
        axes.plot(minutes, [cpu for _, cpu, _ in points], color=SERIES_COLOURS[0], marker="o",
                  markersize=2, label="CPU seconds")  # fmt: skip
        axes.set_ylabel("CPU seconds")
        axes.set_xlabel("minutes since the payload's first sample")
        memory = axes.twinx()
        memory.plot(minutes, [rss for _, _, rss in points], color=SERIES_COLOURS[1], marker="o",
                    markersize=2, label="memory (MB)")  # fmt: skip
        memory.set_ylabel("resident memory (MB)")
        memory.spines["right"].set_visible(True)
        figure.legend(loc="upper right", frameon=False, fontsize=8)
        return _svg(figure)
