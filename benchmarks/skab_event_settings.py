"""Choose the minimum duration and the merge gap of the SKAB benchmark without labels.

Both settings decide which breaches become warnings, so they trade false alarms against
missed faults. This script weighs them on data that carries no SKAB label:

- the unlabelled normal run, cut into experiment-sized pieces as ``skab.py --normal-runs``
  does: every row of a piece is normal, so every warned row is a false alarm;
- the same pieces with a step in the flow rate for 300 scored rows, once upwards and once
  downwards (as in a partial closure), for each step size of ``--steps``. The sizes are in
  training standard deviations (2, 3 and 5), and the rows of the steps are the faults to
  find.

For each piece the flow-rate model is trained on the first 400 rows with the benchmark's
window and threshold method, and its residuals are computed once. Each pair of settings then
runs the product's own ``Scorer`` over those residuals. A warned row lies from an event's
onset to its end, as in ``skab.py``.

The chosen pair has the lowest FAR on the normal pieces among the pairs that miss no more of
the injected steps than a 30-s minimum without merging (the former setting). Ties go to the
shorter minimum duration, then to the shorter gap.

``--halves`` also checks the choice on pieces it did not see. It chooses on half of the
pieces (the first or the last half, the even or the odd pieces). Then it prints the FAR of
the chosen pair and of the former setting on the other half.

Usage: python benchmarks/skab_event_settings.py ../shared/datasets/skab [--steps SD ...]
       [--halves]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from anomaly_detector.batch import RowRange, detect_file, read_table
from anomaly_detector.config import Span
from anomaly_detector.errors import DetectorError
from anomaly_detector.evaluation import event_flags
from anomaly_detector.local_model import LocalModel, default_inputs, train
from anomaly_detector.scoring import score_all

sys.path.insert(0, str(Path(__file__).resolve().parent))
import skab  # noqa: E402 - the benchmark's own protocol constants and piece cutting

MIN_DURATIONS = ("30s", "60s", "90s", "120s", "150s", "180s", "240s")
MERGE_GAPS = ("0", "30s", "45s", "60s", "90s", "120s")
BASELINE = ("30s", "0")


def piece_residuals(piece: pd.DataFrame, workdir: Path) -> dict:
    """Train the flow model on a piece's first rows and return its scored residuals and card."""
    path = workdir / "piece.csv"  # scratch copy, deleted with workdir
    piece.assign(**{skab.LABEL: 0}).to_csv(path, sep=";", index=False)
    head = read_table(path, RowRange(0, skab.TRAIN_ROWS), text_columns=["datetime"])
    card = train(
        head,
        target=skab.FLOW,
        inputs=default_inputs(head, skab.FLOW, skab.NOT_INPUTS, "datetime"),
        model_dir=workdir / "model",
        timestamp_column="datetime",
        window=skab.BENCHMARK_SETTINGS["window"],
        threshold_method=skab.BENCHMARK_SETTINGS["threshold_method"],
    )
    config = card.scoring_config()
    model = LocalModel(workdir / "model")
    detect_file(path, config, model, workdir / "out", RowRange(skab.TRAIN_ROWS, None))
    scored = pd.read_csv(workdir / "out" / "scored.csv")
    return {
        "residual": scored["residual"].to_numpy(dtype=float),
        "times": pd.to_datetime(scored["timestamp"], utc=True),
        "config": config,
        "sd": float(head[skab.FLOW].astype(float).std(ddof=1)),
    }


def warned(piece: dict, residual: np.ndarray, min_duration: str, merge_gap: str) -> np.ndarray:
    """Run the product's scorer with one pair of settings and flag the rows its events cover."""
    config = replace(
        piece["config"],
        min_duration=Span.parse(min_duration, "min_duration"),
        merge_gap=Span.parse_gap(merge_gap, "merge_gap"),
    )
    rows = len(residual)
    scorable = ~np.isnan(residual)
    _, events = score_all(config, residual, np.zeros(rows), scorable, piece["times"])
    return event_flags([e.to_dict() for e in events], np.arange(rows), scorable)


def measure(pieces: list[dict], steps: list[float]) -> list[dict]:
    """Return FAR on the normal pieces and MAR of the injected steps, per pair of settings."""
    return [
        {
            "min_duration": min_duration,
            "merge_gap": merge_gap,
            "far": normal_far(pieces, min_duration, merge_gap),
            "mar": step_mar(pieces, steps, min_duration, merge_gap),
        }
        for min_duration in MIN_DURATIONS
        for merge_gap in MERGE_GAPS
    ]


def normal_far(pieces: list[dict], min_duration: str, merge_gap: str) -> float:
    """Return the share of the pieces' scored rows that events with these settings cover."""
    flags = [warned(piece, piece["residual"], min_duration, merge_gap) for piece in pieces]
    return sum(int(f.sum()) for f in flags) / sum(len(f) for f in flags)


def step_mar(pieces: list[dict], steps: list[float], min_duration: str, merge_gap: str) -> float:
    """Return the share of the injected steps' rows that no event with these settings covers."""
    first, last = skab.INJECTED
    missed = fault_rows = 0
    for piece in pieces:
        for shift in (sign * step for step in steps for sign in (1, -1)):
            faulty = piece["residual"].copy()
            faulty[first:last] += shift * piece["sd"]
            flags = warned(piece, faulty, min_duration, merge_gap)
            missed += int((~flags[first:last]).sum())
            fault_rows += last - first
    return missed / fault_rows


def print_halves(pieces: list[dict], steps: list[float]) -> None:
    """Choose on each half of the pieces and print the FAR on the other half."""
    count = len(pieces)
    halves = {
        "first half": range(count // 2),
        "last half": range(count // 2, count),
        "even pieces": range(0, count, 2),
        "odd pieces": range(1, count, 2),
    }
    print("chosen on       pair          FAR on the other half: chosen  former")
    for name, chosen_on in halves.items():
        seen = [pieces[i] for i in chosen_on]
        unseen = [piece for i, piece in enumerate(pieces) if i not in chosen_on]
        chosen = choose(measure(seen, steps))
        pair = (chosen["min_duration"], chosen["merge_gap"])
        print(
            f"{name:<15} {', '.join(pair):<13} {normal_far(unseen, *pair):>29.2%} "
            f"{normal_far(unseen, *BASELINE):>7.2%}"
        )


def choose(table: list[dict]) -> dict:
    """Return the pair with the lowest normal FAR among those missing no more than BASELINE."""
    baseline = next(r for r in table if (r["min_duration"], r["merge_gap"]) == BASELINE)
    eligible = [r for r in table if r["mar"] <= baseline["mar"] + 1e-12]
    order = {value: rank for rank, value in enumerate((*MIN_DURATIONS, *MERGE_GAPS))}
    return min(
        eligible,
        key=lambda r: (round(r["far"], 12), order[r["min_duration"]], order[r["merge_gap"]]),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="SKAB data folder with the unlabelled normal run")
    parser.add_argument(
        "--steps",
        type=float,
        nargs="+",
        default=[2.0, 3.0, 5.0],
        help="sizes of the injected steps, in training standard deviations (default 2 3 5)",
    )
    parser.add_argument(
        "--halves",
        action="store_true",
        help="also choose on each half of the pieces and print the FAR on the other half",
    )
    args = parser.parse_args(argv)

    files = skab.normal_files(args.root)
    if not files:
        print(
            f"error: no unlabelled files under {args.root}. Add a run of normal operation "
            "without the label column, such as SKAB's anomaly-free.csv.",
            file=sys.stderr,
        )
        return 2
    pieces = []
    try:
        for path in files:
            for _, piece in skab.normal_pieces(path):
                with tempfile.TemporaryDirectory() as workdir:
                    pieces.append(piece_residuals(piece, Path(workdir)))
    except DetectorError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 2
    if not pieces:
        print(
            f"error: no unlabelled file under {args.root} has {skab.PIECE_ROWS:,} rows, the "
            "length of one piece. Add a longer run of normal operation.",
            file=sys.stderr,
        )
        return 2

    table = measure(pieces, args.steps)
    chosen = choose(table)
    sizes = ", ".join(f"{step:g}" for step in args.steps)
    print(f"{len(pieces)} normal pieces; steps of {sizes} sd up and down in the flow rate")
    print(f"{'min duration':>12} {'merge gap':>9} {'normal FAR':>10} {'step MAR':>8}")
    for row in table:
        mark = "  <- chosen" if row is chosen else ""
        print(
            f"{row['min_duration']:>12} {row['merge_gap']:>9} {row['far']:>10.2%} "
            f"{row['mar']:>8.2%}{mark}"
        )
    if args.halves:
        print_halves(pieces, args.steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
