"""Figures a domain expert reads to judge the model and choose a threshold (CLI only)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .batch import PlotData  # noqa: E402

FIGURE_SIZE = (12, 4.5)


def write_figures(plot: PlotData, events: list[dict], target: str, out_dir: Path) -> list[Path]:
    """Write the three PNG figures and return their paths."""
    # A '$' in a column name would start matplotlib's math text.
    target = target.replace("$", r"\$")
    rows = plot.frame()
    x, x_label = _x_axis(rows)
    paths = [
        _observed_vs_predicted(rows, x, x_label, target, out_dir / "observed_vs_predicted.png"),
        _score_over_time(rows, x, x_label, plot.threshold, events, out_dir / "score.png"),
        _score_histogram(plot, out_dir / "score_histogram.png"),
    ]
    return paths


def _x_axis(rows: pd.DataFrame) -> tuple[pd.Series, str]:
    if "timestamp" in rows.columns and rows["timestamp"].notna().any():
        times = pd.to_datetime(rows["timestamp"], utc=True, format="ISO8601").dt.tz_localize(None)
        return times, "time (UTC)"
    return rows["row"], "row"


def _observed_vs_predicted(rows, x, x_label, target, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=FIGURE_SIZE)
    ax.plot(x, rows["actual"], lw=0.8, color="tab:blue", label=f"observed {target}")
    ax.plot(x, rows["predicted"], lw=0.8, color="tab:orange", alpha=0.8, label="predicted")
    anomalous = rows["is_anomaly"].to_numpy(dtype=bool)
    ax.scatter(
        x[anomalous],
        rows["actual"][anomalous],
        s=6,
        color="tab:red",
        zorder=3,
        label="anomalous rows",
    )
    ax.set(xlabel=x_label, ylabel=target, title=f"Observed and predicted {target}")
    ax.legend(loc="upper left")
    return _save(fig, path)


def _score_over_time(rows, x, x_label, threshold, events, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=FIGURE_SIZE)
    ax.plot(x, rows["score"], lw=0.8, color="tab:blue", label="anomaly score")
    ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:.4g}")
    for event in events:
        start, end = event["start"], event["end"]
        if isinstance(start, str):
            start = pd.Timestamp(start).tz_localize(None)
            end = pd.Timestamp(end).tz_localize(None)
        ax.axvspan(start, end, color="tab:red", alpha=0.15)
    ax.set(
        xlabel=x_label,
        ylabel="score (rolling mean of |residual|)",
        title=f"Anomaly score, {len(events)} event(s) shaded",
    )
    ax.legend(loc="upper left")
    return _save(fig, path)


def _score_histogram(plot: PlotData, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=FIGURE_SIZE)
    edges = plot.bin_edges
    ax.bar(edges[:-1], plot.counts, width=np.diff(edges), align="edge", color="tab:blue")
    ax.axvline(
        plot.threshold, color="tab:red", ls="--", lw=1, label=f"threshold {plot.threshold:.4g}"
    )
    ax.set_yscale("log")
    note = f" ({plot.overflow} scores above {edges[-1]:.3g} not shown)" if plot.overflow else ""
    ax.set(
        xlabel="anomaly score",
        ylabel="rows (log scale)",
        title=f"Distribution of anomaly scores{note}",
    )
    ax.legend(loc="upper right")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
