"""Run the SKAB protocol with the product's own train, detect and evaluate code.

For each experiment file under the given folder that has an ``anomaly`` label column, the
first 400 rows train one local model per target and the remaining rows are scored by
``detect`` with all of them (one detector per target). A row counts as detected when it
lies inside an event of any target (a breach that lasted the minimum duration), as an
operator would be warned. Point-wise counts are pooled over all files:

    F1 = TP / (TP + (FN + FP) / 2),  FAR = FP / (FP + TN),  MAR = FN / (FN + TP)

It also prints SKAB's changepoint score: NAB with the standard, low-FP and low-FN profiles,
over 30-s windows centred on the rows that the ``changepoint`` column marks. The detected
changepoints are the rows where a warning begins (an event's onset) or ends.

Settings, each one a documented ``train`` or ``detect`` option. The window was fixed before
looking at any label. The threshold method was chosen between ``calibrated`` and ``extreme``
for its lower FAR on pieces of the unlabelled normal run (``--normal-runs``); both pass the
valve1 goal, and benchmarks/README.md gives both results. The minimum duration and the merge
gap come from skab_event_settings.py, which uses the normal run and steps injected into it,
and no label.

- Targets: the flow rate, the rig's characteristic measurement, and six more channels. Each
  gets a ``train --threshold-factor`` from the unlabelled normal run (``--choose-factors``
  prints it): 1 when its detector raises no event there, else twice the smallest factor of
  1, 2, 4, 8 or 16 that raises none. So pressure, motor current and voltage get 1,
  Accelerometer1RMS 8 (quiet from 4), Accelerometer2RMS and Thermocouple 16 (quiet from 8).
  Temperature also stays quiet at 1, but it is no target: on valve1 it rises during a closure
  and stays high for minutes after it, so that choice used valve1's labels. Each model
  predicts its target from all the other channels.
- ``--window 30s``: SKAB samples once a second and its faults last minutes, so half a minute
  of residuals is averaged.
- ``--merge-gap 60s`` and ``--min-duration 120s``: breaches at most a minute apart are one
  event, and a warning needs the event to last two minutes. Of the pairs that
  skab_event_settings.py tries, this one has the fewest false alarms on the normal pieces
  among those that miss no more of the injected flow steps than a 30-s minimum alone.
- ``--threshold-method extreme``: blocked 5-fold cross-validation gives every training row an
  out-of-time residual, and their 30-s scores are cut into 5 blocks. A Gumbel distribution
  is fitted to the blocks' highest scores, and the threshold is the level one block exceeds
  with 1 % probability (never below the highest score). The scored rows are twice the
  training rows, so the highest training score alone would be exceeded by chance.

``--product-defaults`` runs the product's plain defaults instead (the flow rate alone, 5-row
window, 1-row minimum, threshold 2 x validation RMSE) for comparison.

``--normal-runs`` also measures false alarms on normal operation: every file without the label
column (SKAB's ``anomaly-free.csv``) is cut into consecutive pieces as long as a typical
experiment (1,150 rows), and each piece runs the same protocol with every row labelled normal.
Their FAR is reported apart from the pooled figures.

``--injected-faults SD`` imitates fault kinds that the labelled files lack: in each
normal piece it adds a step of SD training standard deviations to one channel at a time,
for 300 scored rows, and reports per channel what the detectors find. ``--fault-shape``
makes it a ramp rising to SD instead, or zero-mean noise of standard deviation SD.

Usage: python benchmarks/skab.py ../shared/datasets/skab [--json PATH] [--markdown PATH]
       [--target COLUMN ... [--threshold-factor COLUMN=F ...]] [--product-defaults]
       [--normal-runs] [--injected-faults SD [--fault-shape step|ramp|noise]]
       [--choose-factors]

Exit status: 0 when every file runs, 1 when some files could not be run (they are listed
and not pooled), and 2 when no file runs or an option is wrong.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

# Packages of the project's environment (the `local` extra) that the benchmark imports.
_NEEDED = ("pandas", "lightgbm", "anomaly_detector")


def _use_project_venv() -> None:
    """Run this script again with the project's .venv when another Python started it.

    So ``python benchmarks/skab.py FOLDER`` works with any ``python`` once ``make demo``
    has set up .venv.
    """
    missing = [name for name in _NEEDED if importlib.util.find_spec(name) is None]
    if not missing:
        return
    venv = Path(__file__).resolve().parents[1] / ".venv"
    python = venv / "bin" / "python"
    if python.exists() and Path(sys.prefix).resolve() != venv.resolve():
        os.execv(python, [str(python), *sys.argv])
    sys.exit(
        f"error: this Python ({sys.executable}) lacks {', '.join(missing)}. Run `make demo` "
        "once to set up .venv, then `make skab` or `.venv/bin/python benchmarks/skab.py FOLDER`."
    )


if __name__ == "__main__":
    _use_project_venv()

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import asdict, dataclass, field, replace  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from anomaly_detector.batch import (  # noqa: E402
    RowRange,
    detect_file,
    detect_targets,
    read_header,
    read_table,
    target_folder,
)
from anomaly_detector.errors import DetectorError, RequestError  # noqa: E402
from anomaly_detector.evaluation import (  # noqa: E402
    ChangepointCounts,
    count_changepoints,
    evaluate,
    event_flags,
    flag_changes,
    nab_scores,
)
from anomaly_detector.local_model import (  # noqa: E402
    LocalModel,
    ModelCard,
    default_inputs,
    train,
)

TRAIN_ROWS = 400
# A typical SKAB experiment's length, used to cut long normal runs into experiment-sized pieces.
PIECE_ROWS = 1150
# Scored rows of a normal piece that --injected-faults shifts: five minutes from minute five.
INJECTED = (300, 600)
FAULT_SHAPES = ("step", "ramp", "noise")
LABEL = "anomaly"
CHANGEPOINT = "changepoint"
NOT_INPUTS = ["anomaly", "changepoint"]
FLOW = "Volume Flow RateRMS"
# Each target with its threshold factor. The flow rate is the rig's characteristic measurement.
# Every other channel is a target too. Its factor comes from the normal run (--choose-factors):
# 1 when its detector raises no event there, else twice the smallest factor of FACTOR_LADDER
# that raises none, because drift that needed a factor may grow past it in a longer run.
# A channel gets a baseline of BASELINE_ROWS when that lowers the smallest factor, and its
# factor is then chosen with the baseline. Temperature stays quiet at 1 but is left out,
# because it lags a valve closure and stays high for minutes after it.
BENCHMARK_TARGETS = {
    FLOW: 1.0,
    "Pressure": 1.0,
    "Current": 1.0,
    "Voltage": 1.0,
    "Accelerometer1RMS": 4.0,
    "Accelerometer2RMS": 8.0,
    "Thermocouple": 4.0,
}
# Ten minutes of SKAB's 1-s rows: longer than a labelled fault, and 300 or 1,200 rows give
# the same factors on the normal run.
BASELINE_ROWS = 600
BENCHMARK_BASELINES = dict.fromkeys(
    ("Accelerometer1RMS", "Accelerometer2RMS", "Thermocouple"), BASELINE_ROWS
)
FACTOR_LADDER = (1.0, 2.0, 4.0, 8.0, 16.0)
MARKDOWN_DEFAULT = Path(__file__).with_name("SKAB_RESULTS.md")
BENCHMARK_SETTINGS = {
    "window": "30s",
    "min_duration": "120s",
    "merge_gap": "60s",
    "threshold_method": "extreme",
    "baselines": BENCHMARK_BASELINES,
}
PRODUCT_DEFAULTS = {"window": "5", "min_duration": "1", "threshold_method": "rmse"}


@dataclass
class FoundFiles:
    """The CSV files under a folder, by what the benchmark does with them, in a stable order."""

    labelled: list[Path] = field(default_factory=list)  # experiments: they have the label
    unlabelled: list[Path] = field(default_factory=list)  # runs of normal operation
    # Files whose header cannot be read, or whose label column is misnamed: file, error.
    unreadable: list[dict] = field(default_factory=list)


def find_files(root: Path) -> FoundFiles:
    """Sort the files under root named *.csv (any case) by their header, as the product reads it."""
    found = FoundFiles()
    paths = (p for p in root.rglob("*") if p.suffix.lower() == ".csv" and p.is_file())
    for path in sorted(paths, key=_natural_key):
        try:
            names = read_header(path).names
        except DetectorError as error:
            found.unreadable.append({"file": str(path), "error": error.message})
            continue
        except OSError as error:
            found.unreadable.append({"file": str(path), "error": f"cannot be read: {error}"})
            continue
        misnamed = [name for name in names if name.strip().casefold() == LABEL]
        if LABEL in names:
            found.labelled.append(path)
        elif misnamed:
            found.unreadable.append(
                {
                    "file": str(path),
                    "error": f"its label column is named {misnamed[0]!r}. SKAB's protocol reads "
                    f"{LABEL!r}: rename the column.",
                }
            )
        else:
            found.unlabelled.append(path)
    return found


def normal_files(root: Path) -> list[Path]:
    """Return the CSV files under root without the label column: runs of normal operation."""
    return find_files(root).unlabelled


def normal_pieces(path: Path) -> list[tuple[str, pd.DataFrame]]:
    """Cut a normal run into experiment-sized pieces, named by file and rows."""
    try:
        frame = pd.read_csv(path, sep=None, engine="python", encoding="utf-8-sig")
    except (pd.errors.ParserError, csv.Error, ValueError) as error:
        raise RequestError(f"{path} cannot be read as a normal run: {error}") from error
    name = _short(path)
    return [
        (f"{name} rows {first}-{first + PIECE_ROWS - 1}", frame.iloc[first : first + PIECE_ROWS])
        for first in range(0, len(frame) - PIECE_ROWS + 1, PIECE_ROWS)
    ]


def run_normal_pieces(
    pieces: list[tuple[str, pd.DataFrame]], targets: dict[str, float], settings: dict
) -> list[dict]:
    """Run the protocol on each experiment-sized piece of a normal run."""
    return [
        _run_piece(name, piece.assign(**{LABEL: 0}), targets, settings) for name, piece in pieces
    ]


def _run_piece(name: str, piece: pd.DataFrame, targets: dict[str, float], settings: dict) -> dict:
    """Run the protocol on one labelled piece, naming the piece in any error."""
    with tempfile.TemporaryDirectory() as workdir:
        piece_path = Path(workdir) / "piece.csv"  # scratch copy, deleted with workdir
        piece.to_csv(piece_path, sep=";", index=False)
        try:
            result = run_file(piece_path, targets, Path(workdir), settings)
        except DetectorError as error:
            raise RequestError(f"{name}: {error.message}") from error
    return {**result, "file": name}


def fault_values(shape: str, size: float, rows: int, seed: int = 0) -> np.ndarray:
    """Return what a fault of ``shape`` adds to a channel, in its training standard deviations.

    ``step``: ``size`` on every row. ``ramp``: rising evenly from ``size / rows`` to ``size``,
    as a fault that grows (a widening leak). ``noise``: zero-mean Gaussian noise with standard
    deviation ``size``, as a machine that runs rough without moving its mean (seeded).
    """
    if shape == "step":
        return np.full(rows, size)
    if shape == "ramp":
        return size * np.arange(1, rows + 1) / rows
    if shape == "noise":
        return size * np.random.default_rng(seed).normal(0.0, 1.0, rows)
    raise ValueError(f"unknown fault shape {shape!r}; expected one of {', '.join(FAULT_SHAPES)}")


def run_injected_faults(
    pieces: list[tuple[str, pd.DataFrame]],
    targets: dict[str, float],
    settings: dict,
    size: float,
    shape: str = "step",
) -> dict[str, list[dict]]:
    """Add a fault to one channel at a time in each normal piece and run the protocol.

    The fault (see fault_values) is scaled by the standard deviation of the channel's
    training rows, and it lasts from the 300th to the 599th scored row, which are labelled
    anomalous. It imitates fault kinds that the labelled files lack: a fault that shows in
    one channel only.
    """
    fault = slice(TRAIN_ROWS + INJECTED[0], TRAIN_ROWS + INJECTED[1])
    added = fault_values(shape, size, fault.stop - fault.start)
    results: dict[str, list[dict]] = {}
    for name, piece in pieces:
        for channel in _channels(piece):
            values = piece[channel].to_numpy(dtype=float)
            spread = values[:TRAIN_ROWS].std(ddof=1)
            faulty = piece.assign(**{LABEL: 0})
            faulty.iloc[fault, faulty.columns.get_loc(channel)] = values[fault] + added * spread
            faulty.iloc[fault, faulty.columns.get_loc(LABEL)] = 1
            result = _run_piece(f"{name}, {shape} in {channel}", faulty, targets, settings)
            results.setdefault(channel, []).append({**result, "file": name})
    return results


def choose_factors(path: Path, workdir: Path, settings: dict) -> dict[str, float | None]:
    """Return per channel the smallest ladder factor whose detector stays quiet on a normal run.

    Each channel in turn is the target of a model trained on each piece's first 400 rows,
    and the rest of the piece is scored with the threshold times each factor of
    FACTOR_LADDER. None means that every factor raised an event.
    """
    pieces = normal_pieces(path)
    if not pieces:
        raise RequestError(
            f"{path} has fewer than {PIECE_ROWS:,} rows, the length of one piece of normal run."
        )
    quiet = {channel: set(FACTOR_LADDER) for channel in _channels(pieces[0][1])}
    for number, (_, piece) in enumerate(pieces):
        piece_path = workdir / f"piece{number}.csv"  # scratch copy, deleted with workdir
        piece.assign(**{LABEL: 0}).to_csv(piece_path, sep=";", index=False)
        head = read_table(piece_path, RowRange(0, TRAIN_ROWS), text_columns=["datetime"])
        for channel, factors in quiet.items():
            model_dir = workdir / "model"
            card = train_target(head, channel, model_dir, settings)
            model = LocalModel(model_dir)
            for factor in sorted(factors):
                config = replace(card.scoring_config(), threshold=card.threshold * factor)
                found = detect_file(
                    piece_path, config, model, workdir / "out", RowRange(TRAIN_ROWS, None)
                )
                if not found.events:
                    break  # a higher factor stays quiet too
                factors.discard(factor)
    return {channel: min(factors) if factors else None for channel, factors in quiet.items()}


def print_chosen_factors(root: Path, files: list[Path], settings: dict) -> int:
    """Print per channel of the unlabelled files the baseline and factor the rule chooses.

    choose_factors runs without a baseline and with one of BASELINE_ROWS on every channel. A
    channel gets the baseline when that lowers its smallest quiet factor.
    """
    if not files:
        print(f"error: no unlabelled files under {root} to choose factors on", file=sys.stderr)
        return 2
    plain = {**settings, "baselines": {}}
    followed = {**settings, "baselines": {"all": BASELINE_ROWS}}
    for path in files:
        try:
            with tempfile.TemporaryDirectory() as workdir:
                without = choose_factors(path, Path(workdir), plain)
                with_baseline = choose_factors(path, Path(workdir), followed)
        except DetectorError as error:
            print(f"error: {path}: {error}", file=sys.stderr)
            return 2
        print(f"{_short(path)}: smallest factor without an event, without a baseline and")
        print(f"with one of {BASELINE_ROWS} rows; the baseline chosen, and the factor with a")
        print("margin (1 stays 1, any other is doubled)")
        for channel, factor in without.items():
            lowered = with_baseline[channel]
            use = lowered is not None and (factor is None or lowered < factor)
            chosen = lowered if use else factor
            print(
                f"  {channel:<22} {_ladder_text(factor):<5} {_ladder_text(lowered):<5} "
                f"{BASELINE_ROWS if use else 0:<4} "
                f"{'none of the ladder' if chosen is None else f'{with_margin(chosen):g}'}"
            )
    return 0


def _ladder_text(factor: float | None) -> str:
    return "none" if factor is None else f"{factor:g}"


def with_margin(factor: float) -> float:
    """Return the factor a target gets: 1 stays 1, any other doubles.

    A channel that needed a factor drifts, and another file may drift further. Chosen on
    half of SKAB's normal run, the factor of Accelerometer2RMS or Thermocouple raised events
    on the other half in three of four splits, and doubled in two (benchmarks/README.md).
    """
    return factor if factor == 1 else 2 * factor


def _channels(frame: pd.DataFrame) -> list[str]:
    """Return the numeric measurement columns: every column but the time and the labels."""
    return [
        c
        for c in frame.columns
        if c not in ("datetime", *NOT_INPUTS) and pd.api.types.is_numeric_dtype(frame[c])
    ]


def _baseline_setting(text: str) -> tuple[str, int]:
    column, _, rows = text.rpartition("=")
    if not column or not rows.isdigit():
        raise argparse.ArgumentTypeError(f"expected COLUMN=ROWS, got {text!r}")
    return column, int(rows)


def _natural_key(path: Path) -> tuple:
    return (str(path.parent), int(path.stem) if path.stem.isdigit() else 10**9, path.stem)


def train_target(
    head: pd.DataFrame, target: str, model_dir: Path, settings: dict, factor: float = 1.0
) -> ModelCard:
    """Train a model of one channel from all the others on a file's training rows.

    ``settings["baselines"]`` maps a target (or "all") to its baseline in rows; others get
    none.
    """
    baselines = settings.get("baselines", {})
    return train(
        head,
        target=target,
        inputs=default_inputs(head, target, NOT_INPUTS, "datetime"),
        model_dir=model_dir,
        timestamp_column="datetime",
        threshold_factor=factor,
        baseline=str(baselines.get(target, baselines.get("all", 0))),
        **{name: value for name, value in settings.items() if name != "baselines"},
    )


def run_file(path: Path, targets: dict[str, float], workdir: Path, settings: dict) -> dict:
    """Train one model per target on the first 400 rows, detect on the rest, and count.

    A row counts as detected when any target's event covers it: the rows an operator with
    one detector per target is warned about. A target whose model cannot be trained on this
    file (a channel that is missing, or constant in the training rows) gets no detector here,
    as a user would deploy none; ``left_out`` gives the reason. When no target can be
    trained, the file fails.
    """
    first = read_table(path, RowRange(0, TRAIN_ROWS + 1), text_columns=["datetime"])
    if len(first) <= TRAIN_ROWS:
        rows = "1 data row" if len(first) == 1 else f"{len(first)} data rows"
        raise RequestError(
            f"only {rows}. SKAB's protocol trains on the first {TRAIN_ROWS} rows and scores "
            f"the rest, so a file needs more than {TRAIN_ROWS}."
        )
    head = first.iloc[:TRAIN_ROWS]
    models, thresholds, left_out = [], {}, {}
    for target, factor in targets.items():
        model_dir = workdir / "model" / target_folder(target)
        try:
            card = train_target(head, target, model_dir, settings, factor)
        except DetectorError as error:
            left_out[target] = error.message
            continue
        models.append((card.scoring_config(), LocalModel(model_dir)))
        thresholds[target] = card.threshold
    if not models:
        # Targets that failed for the same reason share one line.
        reasons: dict[str, list[str]] = {}
        for target, message in left_out.items():
            reasons.setdefault(message, []).append(target)
        raise RequestError(
            "no target could be trained: "
            + "; ".join(f"{', '.join(names)}: {message}" for message, names in reasons.items())
        )
    out = workdir / "out"
    results, _ = detect_targets(path, models, out, rows=RowRange(TRAIN_ROWS, None))
    flags = None
    for item in results:
        scored = pd.read_csv(out / item.folder / "scored.csv")
        # SKAB files are in time order, so the file order is the scoring order.
        mine = event_flags(item.result.events, scored["row"], scored["status"] == "scored")
        flags = mine if flags is None else flags | mine
    result = evaluate(flags, _labels(scored, LABEL) > 0.5)
    changepoints = None  # A file without the changepoint column has no NAB windows.
    if CHANGEPOINT in scored:
        times = pd.to_datetime(scored["timestamp"], utc=True).dt.tz_localize(None).to_numpy()
        marked = _labels(scored, CHANGEPOINT) > 0.5
        changepoints = asdict(count_changepoints(times[marked], flag_changes(times, flags)))
    return {
        "file": str(path),
        **result.to_dict(),
        "thresholds": thresholds,
        "left_out": left_out,
        "events_by_target": {item.target: len(item.result.events) for item in results},
        "changepoints": changepoints,
    }


def _labels(scored: pd.DataFrame, column: str) -> np.ndarray:
    """Return a label column of scored.csv as numbers, after checking that each is 0 or 1."""
    values = pd.to_numeric(scored[column], errors="coerce")
    bad = ~values.isin([0, 1])
    if bad.any():
        rows = scored.loc[bad, "row"].tolist()
        cells = [str(cell) for cell in scored.loc[bad, column]]
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        raise RequestError(
            f"the {column!r} column has the value(s) {', '.join(cells[:5])} at row(s) "
            f"{', '.join(map(str, rows[:5]))}{more} (rows counted from 0, header excluded). "
            "SKAB marks every row 0 or 1: fill in those cells."
        )
    return values.to_numpy(dtype=float)


def pooled(results: list[dict]) -> dict:
    tp, fp, tn, fn = (sum(r[k] for r in results) for k in ("tp", "fp", "tn", "fn"))
    nab = nab_scores([ChangepointCounts(**r["changepoints"]) for r in results if r["changepoints"]])
    return {
        "files": len(results),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "f1": round(tp / (tp + (fn + fp) / 2), 6) if tp + fn + fp else None,
        "far": round(fp / (fp + tn), 6) if fp + tn else None,
        "mar": round(fn / (fn + tp), 6) if fn + tp else None,
        "nab": nab,
    }


def _nab_text(nab: dict) -> str:
    names = {"standard": "standard", "low_fp": "low FP", "low_fn": "low FN"}
    return ", ".join(f"{names[k]} {'n/a' if v is None else f'{v:.2f}'}" for k, v in nab.items())


def _by_target(result: dict) -> str:
    counts = result["events_by_target"]
    return ", ".join(f"{target} {n}" for target, n in counts.items() if n) or "none"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def markdown(
    results: list[dict],
    total: dict,
    command: str,
    seconds: float,
    settings: dict,
    normal: list[dict] | None = None,
    failed: Sequence[dict] = (),
) -> str:
    lines = [
        "# SKAB results",
        "",
        f"Command: `{command}`",
        "",
        "Settings: " + ", ".join(f"{k} `{v}`" for k, v in settings.items()) + ".",
        "",
        f"Files: {total['files']}; wall time {seconds:.1f} s. Rates are pooled over every "
        "scored row of every file (SKAB's protocol: first 400 rows train, the rest are scored).",
        "",
        f"**Pooled: F1 {total['f1']:.3f}, FAR {_percent(total['far'])}, "
        f"MAR {_percent(total['mar'])}**",
        "",
        f"Changepoint score (NAB, 30-s windows centred on the `{CHANGEPOINT}` rows; detected "
        f"changepoints are where an event begins or ends): {_nab_text(total['nab'])}.",
        "",
        "| file | rows | F1 | FAR | MAR | labelled events hit | false runs | events by target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        name = _short(r["file"])
        f1 = "n/a" if r["f1"] is None else f"{r['f1']:.3f}"
        lines.append(
            f"| {name} | {r['rows']} | {f1} | {_percent(r['far'])} | {_percent(r['mar'])} | "
            f"{r['detected_labelled_events']}/{r['labelled_events']} | {r['false_runs']} | "
            f"{_by_target(r)} |"
        )
    left_out = [(r, t, m) for r in results for t, m in r["left_out"].items()]
    if left_out:
        lines += ["", "Detectors left out (their model could not be trained on the file):", ""]
        lines += [f"- {_short(r['file'])}, {target}: {message}" for r, target, message in left_out]
    if failed:
        lines += ["", f"## Files that failed ({len(failed)}, not pooled)", ""]
        lines += [f"- {_short(f['file'])}: {f['error']}" for f in failed]
    if normal is not None:
        lines += _normal_markdown(normal)
    return "\n".join(lines) + "\n"


def _error_line(path: str, message: str) -> str:
    """Format the error line of one file, naming the file once."""
    return f"error: {message}" if path in message else f"error: {path}: {message}"


def _short(path: str | Path) -> str:
    """Name a file by its folder and name, as SKAB's files are (valve1/3.csv)."""
    return "/".join(Path(path).parts[-2:])


def _injected_markdown(injected: dict[str, list[dict]], size: float, shape: str) -> list[str]:
    lines = [
        "",
        "## Injected faults",
        "",
        f"Each normal piece again, with a {_SHAPE_TEXT[shape].format(size=size)} added to one "
        f"channel from scored row {INJECTED[0]} to {INJECTED[1] - 1}, which are labelled "
        "anomalous. A fault in a target meets that target's own detector, and a fault in "
        "another channel only the targets' predictions. FAR includes the false events the "
        "normal pieces raise without a fault, and a fault counts as warned of when any event "
        "overlaps it.",
        "",
        f"| channel with the {shape} | F1 | FAR | MAR | faults warned of |",
        "|---|---|---|---|---|",
    ]
    for channel, runs in injected.items():
        total = pooled(runs)
        hit = sum(r["detected_labelled_events"] for r in runs)
        lines.append(
            f"| {channel} | {total['f1']:.3f} | {_percent(total['far'])} | "
            f"{_percent(total['mar'])} | {hit}/{len(runs)} |"
        )
    return lines


_SHAPE_TEXT = {
    "step": "step of {size:g} training standard deviations",
    "ramp": "ramp rising evenly to {size:g} training standard deviations",
    "noise": "zero-mean noise of {size:g} training standard deviations",
}


def _normal_markdown(normal: list[dict]) -> list[str]:
    lines = [
        "",
        "## Normal runs",
        "",
        f"Files without labels, cut into pieces of {PIECE_ROWS:,} rows, each run with the same "
        "protocol and every row counted as normal.",
        "",
        f"**FAR over {len(normal)} pieces: {_percent(pooled(normal)['far'])}**",
        "",
        "| piece | scored rows | FAR | false runs | events by target |",
        "|---|---|---|---|---|",
    ]
    for r in normal:
        lines.append(
            f"| {r['file']} | {r['rows']} | {_percent(r['far'])} | {r['false_runs']} | "
            f"{_by_target(r)} |"
        )
    return lines


def _targets_text(targets: dict[str, float]) -> str:
    return ", ".join(name if f == 1 else f"{name} x{f:g}" for name, f in targets.items())


def _factor_setting(text: str) -> tuple[str, float]:
    column, _, factor = text.rpartition("=")
    if not column:
        raise argparse.ArgumentTypeError(f"expected COLUMN=FACTOR, got {text!r}")
    return column, _positive_float(factor)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder searched for SKAB experiment CSV files")
    parser.add_argument(
        "--target",
        action="append",
        help="a column to predict, one detector per target; repeat for several (default: "
        f"{_targets_text(BENCHMARK_TARGETS)}; {FLOW} with --product-defaults)",
    )
    parser.add_argument(
        "--threshold-factor",
        action="append",
        default=[],
        type=_factor_setting,
        metavar="COLUMN=F",
        help="train --threshold-factor for one --target column (default 1); repeat for several",
    )
    parser.add_argument(
        "--choose-factors",
        action="store_true",
        help="only print, for every channel of the unlabelled files, the smallest factor of "
        f"{', '.join(f'{f:g}' for f in FACTOR_LADDER)} whose detector raises no event there",
    )
    parser.add_argument("--json", type=Path, help="write pooled and per-file figures as JSON")
    parser.add_argument(
        "--markdown",
        type=Path,
        default=MARKDOWN_DEFAULT,
        help=f"results page to write (default {MARKDOWN_DEFAULT.name})",
    )
    parser.add_argument(
        "--product-defaults",
        action="store_true",
        help="use the product's plain defaults (5-row window, 2 x RMSE) instead of the "
        "benchmark settings (30-s window and minimum, extreme-value threshold)",
    )
    parser.add_argument(
        "--normal-runs",
        action="store_true",
        help=f"also cut unlabelled files into {PIECE_ROWS:,}-row pieces and report their FAR",
    )
    parser.add_argument(
        "--injected-faults",
        type=_positive_float,
        metavar="SD",
        help="also add a fault of SD training standard deviations to one channel at a time "
        "in each normal piece, and report what the detectors find per channel",
    )
    parser.add_argument(
        "--fault-shape",
        choices=FAULT_SHAPES,
        help="the shape of --injected-faults: a step (default), a ramp that rises evenly to "
        "SD, or zero-mean noise of standard deviation SD",
    )
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        type=_baseline_setting,
        metavar="COLUMN=ROWS",
        help="train --baseline for one column (all for every target); repeat for several",
    )
    args = parser.parse_args(argv)
    if args.fault_shape is not None and args.injected_faults is None:
        parser.error("--fault-shape needs --injected-faults SD")
    args.fault_shape = args.fault_shape or "step"
    settings = PRODUCT_DEFAULTS if args.product_defaults else BENCHMARK_SETTINGS
    if args.baseline:
        requested = dict(args.baseline)
        # "all" replaces the baselines of the settings, and a column's own value wins over it.
        baselines = {} if "all" in requested else dict(settings.get("baselines", {}))
        settings = {**settings, "baselines": {**baselines, **requested}}
    if args.target:
        factors = dict(args.threshold_factor)
        unknown = sorted(set(factors) - set(args.target))
        if unknown:
            parser.error(f"--threshold-factor names {', '.join(unknown)}, which is no --target")
        targets = {target: factors.get(target, 1.0) for target in args.target}
    elif args.threshold_factor:
        parser.error("--threshold-factor needs --target for each column it names")
    else:
        targets = {FLOW: 1.0} if args.product_defaults else BENCHMARK_TARGETS
    if not args.root.is_dir():
        print(
            f"error: {args.root} is not a folder. Give the folder that contains SKAB's files.",
            file=sys.stderr,
        )
        return 2
    found = find_files(args.root)
    files, unlabelled = found.labelled, found.unlabelled
    if args.choose_factors:
        return print_chosen_factors(args.root, unlabelled, settings)
    pieces = []
    if args.normal_runs or args.injected_faults is not None:
        try:
            pieces = [piece for path in unlabelled for piece in normal_pieces(path)]
        except DetectorError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    for option, requested in (
        ("--normal-runs", args.normal_runs),
        ("--injected-faults", args.injected_faults is not None),
    ):
        if requested and not pieces:
            print(
                f"error: {option} needs an unlabelled file of at least {PIECE_ROWS:,} rows "
                f"under {args.root}, such as SKAB's anomaly-free.csv",
                file=sys.stderr,
            )
            return 2
    if not files and not found.unreadable:
        print(f"error: no labelled SKAB files under {args.root}", file=sys.stderr)
        return 2
    for option, path in (("--markdown", args.markdown), ("--json", args.json)):
        if path is not None and not path.parent.is_dir():
            print(f"error: {option}: the folder {path.parent} does not exist", file=sys.stderr)
            return 2
    started = time.monotonic()
    results, failed = [], list(found.unreadable)
    for item in failed:
        print(_error_line(item["file"], item["error"]), file=sys.stderr)
    print(f"{'file':<28} {'rows':>6} {'F1':>6} {'FAR':>8} {'MAR':>8}")
    for path in files:
        name = _short(path)
        try:
            with tempfile.TemporaryDirectory() as workdir:
                result = run_file(path, targets, Path(workdir), settings)
        except DetectorError as error:
            # One unusable file must not cost the figures of the others. It is listed with
            # its reason and left out of the pooled figures, and the exit status is 1.
            print(_error_line(str(path), error.message), file=sys.stderr)
            failed.append({"file": str(path), "error": error.message})
            continue
        results.append(result)
        for target, message in result["left_out"].items():
            print(f"note: {name}: no {target} detector: {message}", file=sys.stderr)
        if result["changepoints"] is None:
            print(
                f"note: {name} has no {CHANGEPOINT!r} column, so the changepoint score leaves "
                "it out",
                file=sys.stderr,
            )
        f1 = "n/a" if result["f1"] is None else f"{result['f1']:.3f}"
        print(
            f"{name:<28} {result['rows']:>6} {f1:>6} {_percent(result['far']):>8} "
            f"{_percent(result['mar']):>8}"
        )
    if not results:
        print(f"error: none of the {len(failed)} files could be run", file=sys.stderr)
        return 2
    total = pooled(results)
    normal = None
    if args.normal_runs:
        try:
            normal = run_normal_pieces(pieces, targets, settings)
        except DetectorError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        for result in normal:
            print(f"{result['file']:<40} {result['rows']:>6} FAR {_percent(result['far']):>8}")
    injected = None
    if args.injected_faults is not None:
        try:
            injected = run_injected_faults(
                pieces, targets, settings, args.injected_faults, args.fault_shape
            )
        except DetectorError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        for channel, runs in injected.items():
            total_channel = pooled(runs)
            print(
                f"{args.fault_shape} of {args.injected_faults:g} sd in {channel:<22} "
                f"F1 {total_channel['f1']:.3f}  "
                f"FAR {_percent(total_channel['far'])}  MAR {_percent(total_channel['mar'])}"
            )
    seconds = time.monotonic() - started
    recorded_settings = {"targets": _targets_text(targets), **settings}
    # The baselines of the targets in use, in rows, as train_target reads them.
    configured = recorded_settings.pop("baselines", {})
    baselines = {t: configured.get(t, configured.get("all", 0)) for t in targets}
    baselines = {target: rows for target, rows in baselines.items() if rows}
    if baselines:
        recorded_settings["baselines"] = baselines
    print(f"settings: {recorded_settings}")
    print(
        f"pooled over {total['files']} files: F1 {total['f1']:.3f}  "
        f"FAR {_percent(total['far'])}  MAR {_percent(total['mar'])}"
    )
    print(f"changepoint score (NAB): {_nab_text(total['nab'])}")
    if normal is not None:
        print(f"normal runs: FAR {_percent(pooled(normal)['far'])} over {len(normal)} pieces")
    if failed:
        print(
            f"error: {len(failed)} of {len(failed) + len(results)} files failed and are not "
            "pooled: " + ", ".join(_short(f["file"]) for f in failed),
            file=sys.stderr,
        )

    command = "python benchmarks/skab.py " + " ".join(
        shlex.quote(a) for a in (argv or sys.argv[1:])
    )
    args.markdown.write_text(
        markdown(results, total, command, seconds, recorded_settings, normal, failed)
    )
    if injected is not None:
        with args.markdown.open("a") as page:
            lines = _injected_markdown(injected, args.injected_faults, args.fault_shape)
            page.write("\n".join(lines) + "\n")
    if args.json:
        document = {**total, "per_file": results, "failed": failed}
        if normal is not None:
            document["normal_runs"] = {"far": pooled(normal)["far"], "per_piece": normal}
        if injected is not None:
            document["injected_faults"] = {
                "size_sd": args.injected_faults,
                "shape": args.fault_shape,
                "per_channel": {c: pooled(runs) for c, runs in injected.items()},
            }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    written = [str(path) for path in (args.markdown, args.json) if path is not None]
    print(f"written: {', '.join(written)}")
    return 1 if failed else 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
