"""A report as a picture, like DIRAC's accounting plots: one stacked bar per time step, a colour
per label (the largest ``MAX_LABELS``, the rest summed as "other"); CPU efficiency, a ratio that
does not add up, as one line per label. PNG or SVG (by the file's suffix), drawn with matplotlib's
Agg backend: no display, no network.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from dirac_like.accounting import Metric, Report
from dirac_like.errors import InvalidArgument

FORMATS = (".png", ".svg")
MAX_LABELS = 12
OTHER = "other"


def plot_report(report: Report, path: Path, title: str = "") -> None:
    """Draw ``report`` into ``path`` (.png or .svg); InvalidArgument for another suffix."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InvalidArgument(f"plot file {path.name!r}: the name must end in .png or .svg")
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: files only, never a window
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    times = mdates.date2num([datetime.fromtimestamp(time, UTC) for time in report.times])
    query = report.query
    figure, axes = plt.subplots(figsize=(10, 5.5), layout="constrained")
    try:
        series = _top_series(report)
        width = query.step / 86400 * 0.9  # bar width in days, as matplotlib's dates count
        if query.metric is Metric.CPU_EFFICIENCY:
            for label, values in series.items():
                axes.plot(times, values, marker="o", markersize=3, label=label)
        else:
            bottom = [0.0] * len(times)
            for label, values in series.items():
                axes.bar(times, values, width=width, bottom=bottom, label=label, align="edge")
                bottom = [low + value for low, value in zip(bottom, values, strict=True)]
        axes.set_title(title or f"{query.metric.value} by {query.by.value}")
        axes.set_ylabel(report.unit)
        axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(axes.xaxis.get_major_locator()))
        axes.grid(axis="y", alpha=0.3)
        if series:
            axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
        else:
            axes.text(
                0.5,
                0.5,
                "no data in this range",
                transform=axes.transAxes,
                ha="center",
                va="center",
            )
        figure.savefig(path, format=suffix[1:])
    finally:
        plt.close(figure)


def _top_series(report: Report) -> dict[str, list[float]]:
    """The largest labels' series; the others summed into one (not for CPU efficiency)."""
    labels = [label for label, _ in report.table()]
    top = {label: report.series[label] for label in labels[:MAX_LABELS]}
    rest = labels[MAX_LABELS:]
    if rest and report.query.metric is not Metric.CPU_EFFICIENCY:
        top[OTHER] = [
            sum(values) for values in zip(*(report.series[label] for label in rest), strict=True)
        ]
    return top
