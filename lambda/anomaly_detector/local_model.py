"""The local regression model that stands in for the SageMaker Canvas model.

``train`` fits a LightGBM gradient-boosted regressor on normal-operation rows, holding out the
last part of the training range (in time order) to measure its error, and writes a model
directory: ``model.txt`` (LightGBM's text format, loaded without unpickling) and
``model_card.json``. The Lambda never imports this module.

Two ways to set the threshold are recorded in the card as ``threshold_method``:

- ``rmse`` (default): 2 x the validation RMSE, the product's rule.
- ``calibrated``: blocked cross-validation in time order gives every training row an
  out-of-time residual. These are smoothed exactly as ``detect`` smooths live residuals
  (same window), and the threshold is the highest smoothed score. Nothing in the training
  data would have raised an alarm, and the threshold already accounts for the window, which
  2 x RMSE does not. The final model is then fitted on every training row.
- ``extreme``: as ``calibrated``, but the highest score of a few hundred training rows is
  itself exceeded often by longer stretches of normal operation. The smoothed scores are cut
  into one block per fold, a Gumbel distribution is fitted to the blocks' highest scores,
  and the threshold is the level that one block exceeds with 1 % probability (when that is
  above the highest score).
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import lightgbm
import numpy as np
import pandas as pd

from . import __version__
from .config import (
    DEFAULT_BASELINE,
    DEFAULT_MERGE_GAP,
    DEFAULT_MIN_DURATION,
    DEFAULT_WINDOW,
    MAX_THRESHOLD,
    ScoringConfig,
    Span,
    parse_baseline,
)
from .errors import ConfigurationError, RequestError
from .prepare import numbered, resolve_columns, to_numbers
from .scoring import Scorer
from .timestamps import parse_timestamps

MODEL_FILE = "model.txt"
CARD_FILE = "model_card.json"
# Format 2 added merge_gap and format 3 the baseline. Older cards read as merge_gap "0" and
# baseline "0", and an older version rejects a newer card instead of ignoring its settings.
CARD_FORMAT = 3
READABLE_CARD_FORMATS = (1, 2, 3)
DEFAULT_VALIDATION_FRACTION = 0.2
MIN_TRAINING_ROWS = 50
# Threshold = this many times the validation RMSE, the product's default.
THRESHOLD_RMSE_FACTOR = 2.0
THRESHOLD_METHODS = ("rmse", "calibrated", "extreme")
# Smallest threshold a card may hold after --threshold-factor; MAX_THRESHOLD bounds it above.
MIN_THRESHOLD = 1e-300
# For threshold_method "extreme": the chance that one block of normal rows (a fold's length)
# exceeds the threshold, read from a Gumbel fit to the blocks' highest scores.
BLOCK_EXCEEDANCE = 0.01
MIN_BLOCKS = 3
# A block's highest score stands for its stretch of time only when the block spans several
# windows. Below this many scores per block, or two windows of rows, the fit is rejected.
MIN_BLOCK_SCORES = 20
EULER_GAMMA = 0.5772156649015329
DEFAULT_CV_FOLDS = 5
# With fewer full-window scores than this, the maximum is too noisy to mark normal operation.
MIN_CALIBRATION_SCORES = 50
NUM_BOOST_ROUNDS = 300
LIGHTGBM_PARAMS = {
    "objective": "regression",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "seed": 0,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
    "verbose": -1,
}


@dataclass
class ModelCard:
    """What a model predicts, from what, how well, and the scoring defaults it suggests."""

    target: str
    inputs: list[str]
    validation_rmse: float
    validation_mae: float
    threshold: float
    timestamp_column: str | None = None
    window: str = DEFAULT_WINDOW
    min_duration: str = DEFAULT_MIN_DURATION
    merge_gap: str = DEFAULT_MERGE_GAP
    # Rows of the residual baseline; "0" for none.
    baseline: str = DEFAULT_BASELINE
    training_rows: int = 0
    validation_rows: int = 0
    dropped_rows: int = 0
    time_range: list[str] | None = None
    trained_at: str = ""
    algorithm: str = "LightGBM gradient-boosted trees"
    parameters: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    threshold_method: str = "rmse"
    # The threshold is this factor times the level that threshold_method gives.
    threshold_factor: float = 1.0
    # For threshold_method "calibrated" and "extreme": folds, window, out-of-time RMSE and
    # the number of smoothed scores. "extreme" adds the block maxima and the Gumbel fit.
    calibration: dict | None = None
    format: int = CARD_FORMAT

    def scoring_config(self) -> ScoringConfig:
        """Build the scoring settings this card records: target, inputs, threshold, window."""
        return ScoringConfig(
            target=self.target,
            inputs=tuple(self.inputs),
            threshold=self.threshold,
            timestamp_column=self.timestamp_column,
            window=Span.parse(self.window, "window"),
            min_duration=Span.parse(self.min_duration, "min_duration"),
            merge_gap=Span.parse_gap(self.merge_gap, "merge_gap"),
            baseline=parse_baseline(self.baseline, "baseline"),
        )

    def save(self, directory: Path) -> None:
        (directory / CARD_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> ModelCard:
        path = directory / CARD_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as error:
            raise ConfigurationError(
                f"No model card at {path}. Train a model first: anomaly-detector train DATA "
                "--target COLUMN --model-dir DIR."
            ) from error
        except json.JSONDecodeError as error:
            raise ConfigurationError(
                f"The model card {path} is not valid JSON: {error}."
            ) from error
        if data.get("format") not in READABLE_CARD_FORMATS:
            raise ConfigurationError(
                f"The model card {path} has format {data.get('format')!r}; this version reads "
                f"formats {', '.join(map(str, READABLE_CARD_FORMATS))}. Train the model again "
                "with this version."
            )
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


class LocalModel:
    """A trained model directory, usable as a ``Predictor``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.card = ModelCard.load(self.directory)
        model_path = self.directory / MODEL_FILE
        if not model_path.exists():
            raise ConfigurationError(f"No model file at {model_path}. Train the model again.")
        self.booster = lightgbm.Booster(model_file=str(model_path))

    def predict(self, inputs: pd.DataFrame) -> np.ndarray:
        # Columns arrive in training order; the check guards against a caller that reorders.
        if list(inputs.columns) != list(self.card.inputs):
            raise ConfigurationError(
                f"Model inputs {list(inputs.columns)} differ from the training order "
                f"{self.card.inputs}."
            )
        return self.booster.predict(inputs.to_numpy(dtype=np.float64), num_threads=1)


def default_inputs(
    frame: pd.DataFrame,
    target: str,
    exclude: list[str],
    timestamp: str | None,
    first_row: int = 0,
) -> list[str]:
    """Every numeric column except the target, the timestamp and the excluded columns.

    A column of numbers with a few cells that are not numbers is an error naming those rows
    (``first_row`` is the file row of the frame's first row), not a text column to skip.
    """
    skipped = {target, *exclude, *([timestamp] if timestamp else [])}
    inputs = []
    for column in frame.columns:
        name = str(column)
        if name in skipped:
            continue
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            inputs.append(name)
        elif _mostly_numbers(values):
            try:
                to_numbers(values, name, first_row)
            except RequestError as error:
                raise type(error)(
                    f"{error} The column {name!r} was picked as an input because most of its "
                    f"cells are numbers: name the inputs with --inputs, or leave it out with "
                    f"--exclude {name!r}."
                ) from error
            inputs.append(name)  # numbers stored as text, with blank or missing cells
    if not inputs:
        raise RequestError(
            f"No numeric input columns besides the target {target!r}. Name them with --inputs."
        )
    return inputs


def _mostly_numbers(values: pd.Series) -> bool:
    """Tell whether more than half of the cells that are not blank read as numbers."""
    text = values.dropna().astype(str).str.strip()
    text = text[text != ""]
    if text.empty:
        return False
    return bool(pd.to_numeric(text, errors="coerce").notna().mean() > 0.5)


def detect_timestamp_column(frame: pd.DataFrame) -> str | None:
    """Return the first text column whose first values all parse as ISO 8601 times."""
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values):
            continue
        sample = values.dropna().astype(str).head(20)
        if sample.empty:
            continue
        parsed = pd.to_datetime(sample, format="ISO8601", errors="coerce", utc=True)
        if parsed.notna().all():
            return str(column)
    return None


def train(
    frame: pd.DataFrame,
    target: str,
    inputs: list[str],
    model_dir: str | Path,
    timestamp_column: str | None = None,
    timezone: str = "UTC",
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    window: str = DEFAULT_WINDOW,
    min_duration: str = DEFAULT_MIN_DURATION,
    threshold_method: str = "rmse",
    cv_folds: int = DEFAULT_CV_FOLDS,
    first_row: int = 0,
    threshold_factor: float = 1.0,
    merge_gap: str = DEFAULT_MERGE_GAP,
    baseline: str = DEFAULT_BASELINE,
) -> ModelCard:
    """Fit the model on normal-operation rows and write the model directory.

    The last ``validation_fraction`` of the rows (in time order when there is a timestamp)
    is held out; the validation RMSE and MAE come from those rows, in the target's unit.
    With ``threshold_method="rmse"`` the threshold is 2 x RMSE and the model is the one
    fitted without the held-out rows. With ``"calibrated"`` the threshold is the highest
    ``window``-smoothed score of out-of-time residuals from ``cv_folds`` blocked folds, and
    the model is refitted on every row. ``"extreme"`` does the same and raises the threshold
    to the Gumbel level of the ``cv_folds`` block maxima (see ``gumbel_level``). The card's
    threshold is ``threshold_factor`` times the method's.

    ``baseline`` (rows, "0" for none) is recorded for ``detect``; training does not use it.

    ``first_row`` is the file row number of the frame's first row, used in error messages.
    """
    parse_baseline(baseline, "baseline")
    if not 0 < validation_fraction < 1:
        raise ConfigurationError(
            f"validation_fraction must be between 0 and 1, got {validation_fraction}."
        )
    if threshold_method not in THRESHOLD_METHODS:
        raise ConfigurationError(
            f"Unknown threshold method {threshold_method!r}; use one of "
            f"{', '.join(THRESHOLD_METHODS)}."
        )
    if not 2 <= cv_folds <= 20:
        raise ConfigurationError(
            f"The number of folds (--cv-folds) must be between 2 and 20, got {cv_folds}."
        )
    if not (math.isfinite(threshold_factor) and threshold_factor > 0):
        raise ConfigurationError(
            f"The threshold factor must be a positive number, got {threshold_factor}."
        )
    if threshold_method == "extreme" and cv_folds < MIN_BLOCKS:
        raise ConfigurationError(
            f"--threshold-method extreme fits a distribution to one maximum per fold, so it "
            f"needs at least {MIN_BLOCKS} folds; got --cv-folds {cv_folds}."
        )
    window_span = Span.parse(window, "window")
    for name, span in (
        ("window", window_span),
        ("minimum duration", Span.parse(min_duration, "min_duration")),
        ("merge gap", Span.parse_gap(merge_gap, "merge_gap")),
    ):
        if span is not None and span.is_time and not timestamp_column:
            raise ConfigurationError(
                f"The {name} {span} is a time span, so a timestamp column is required; "
                "give --timestamp or a number of rows."
            )
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    mapping = resolve_columns(columns, [*inputs, target], "training")
    matrix = pd.DataFrame(
        {name: to_numbers(frame[mapping[name]], name, first_row) for name in inputs}
    )
    y = to_numbers(frame[mapping[target]], target, first_row)

    keep = ~(matrix.isna().any(axis=1).to_numpy() | np.isnan(y))
    times = None
    if timestamp_column:
        column = resolve_columns(columns, [timestamp_column], "timestamp")[timestamp_column]
        times = parse_timestamps(numbered(frame[column], first_row), column, timezone)
        times = times.reset_index(drop=True)
        keep &= times.notna().to_numpy()
    dropped = int((~keep).sum())
    matrix, y = matrix[keep].reset_index(drop=True), y[keep]
    if times is not None:
        times = times[keep].reset_index(drop=True)
        order = np.argsort(times.to_numpy(), kind="stable")
        matrix, y, times = matrix.iloc[order], y[order], times.iloc[order]

    # check: enough complete rows to fit and to validate
    if len(y) < MIN_TRAINING_ROWS:
        raise RequestError(
            f"Only {len(y)} complete training rows (rows with every input and the target); "
            f"at least {MIN_TRAINING_ROWS} are needed."
        )
    split = int(round(len(y) * (1 - validation_fraction)))
    fit_x, fit_y = matrix.iloc[:split], y[:split]
    val_x, val_y = matrix.iloc[split:], y[split:]

    booster = _fit(fit_x.to_numpy(), fit_y)
    errors = val_y - booster.predict(val_x.to_numpy())
    rmse = float(np.sqrt(np.mean(errors**2)))
    mae = float(np.mean(np.abs(errors)))
    if not math.isfinite(rmse) or rmse <= 0:
        raise RequestError(
            "The validation error is zero or not a number, so no threshold can be derived: "
            "the target may be constant. Choose another target or more varied training data."
        )
    threshold = THRESHOLD_RMSE_FACTOR * rmse
    calibration = None
    if threshold_method in ("calibrated", "extreme"):
        x_all = matrix.to_numpy()
        residuals = out_of_time_residuals(x_all, y, cv_folds)
        threshold, calibration = calibrated_threshold(
            residuals,
            window_span,
            None if times is None else times.reset_index(drop=True),
            blocks=cv_folds if threshold_method == "extreme" else None,
        )
        calibration["folds"] = cv_folds
        booster = _fit(x_all, y)
    threshold *= threshold_factor
    if not (math.isfinite(threshold) and MIN_THRESHOLD < threshold < MAX_THRESHOLD):
        raise ConfigurationError(
            f"--threshold-factor {threshold_factor:g} gives a threshold of {threshold:g}, "
            f"outside {MIN_THRESHOLD:g} to {MAX_THRESHOLD:g}. Choose a factor nearer 1."
        )
    if calibration is not None:
        calibration["threshold_over_cv_rmse"] = round(threshold / calibration["cv_rmse"], 4)

    directory = Path(model_dir)
    directory.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(directory / MODEL_FILE))
    card = ModelCard(
        target=target,
        inputs=list(inputs),
        validation_rmse=_significant(rmse),
        validation_mae=_significant(mae),
        threshold=_significant(threshold),
        timestamp_column=timestamp_column,
        window=window,
        min_duration=min_duration,
        merge_gap=merge_gap,
        baseline=str(parse_baseline(baseline, "baseline") or 0),
        training_rows=int(len(y) if threshold_method != "rmse" else split),
        validation_rows=int(len(y) - split),
        dropped_rows=dropped,
        time_range=None
        if times is None
        else [times.iloc[0].isoformat(), times.iloc[-1].isoformat()],
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        threshold_method=threshold_method,
        threshold_factor=threshold_factor,
        calibration=calibration,
        parameters={**LIGHTGBM_PARAMS, "num_boost_round": NUM_BOOST_ROUNDS},
        versions={
            "anomaly_detector": __version__,
            "python": platform.python_version(),
            "lightgbm": lightgbm.__version__,
            "pandas": pd.__version__,
            "numpy": np.__version__,
        },
    )
    card.save(directory)
    return card


def _fit(x: np.ndarray, y: np.ndarray) -> lightgbm.Booster:
    return lightgbm.train(
        LIGHTGBM_PARAMS,
        lightgbm.Dataset(x, label=y, params={"verbose": -1}),
        num_boost_round=NUM_BOOST_ROUNDS,
    )


def out_of_time_residuals(x: np.ndarray, y: np.ndarray, folds: int) -> np.ndarray:
    """Return the residual of every row from a model fitted without that row's block of time.

    The rows, in time order, are cut into ``folds`` contiguous blocks. Each block is predicted
    by a model fitted on the other blocks. Contiguous blocks keep neighbouring, correlated
    rows out of the fit, so the residuals show the error on unseen time, as in detect.
    """
    bounds = np.linspace(0, len(y), folds + 1).astype(int)
    residuals = np.empty(len(y))
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        keep = np.r_[0:start, end : len(y)]
        model = _fit(x[keep], y[keep])
        residuals[start:end] = y[start:end] - model.predict(x[start:end])
    return residuals


def _significant(value: float) -> float:
    """Round to 6 significant digits, so that small units keep their precision."""
    return float(f"{value:.6g}")


def calibrated_threshold(
    residuals: np.ndarray, window: Span, times: pd.Series | None, blocks: int | None = None
) -> tuple[float, dict]:
    """Return the highest score of ``residuals`` smoothed as detect smooths them, after warm-up.

    Rows before the first full window are left out: their partial windows average fewer
    residuals, so their scores are noisier than any later row's.

    With ``blocks``, the scores are cut into that many blocks in time order and the threshold
    is raised to the extreme-value level (see ``gumbel_level``) when that is higher.

    NOTE: training drops rows with a missing input or target before this, so with a
    row-count window a score averages the last N complete rows, while detect averages the
    scored rows among the last N rows. The two agree when every training row is complete.
    """
    config = ScoringConfig(
        target="target",
        inputs=("input",),
        # Only the scores are used: a threshold no score reaches spares finding events.
        threshold=MAX_THRESHOLD / 2,
        timestamp_column="time" if times is not None else None,
        window=window,
    )
    scored = Scorer(config).score(
        residuals, np.zeros(len(residuals)), np.ones(len(residuals), dtype=bool), times
    )
    if window.is_time:
        first = times.min()
        full = (times >= first + window.time).to_numpy()
    else:
        full = np.arange(len(residuals)) >= window.rows - 1
    scores = scored.score[full]
    scores = scores[np.isfinite(scores)]
    if len(scores) < MIN_CALIBRATION_SCORES:
        raise RequestError(
            f"Only {len(scores)} training {'row has' if len(scores) == 1 else 'rows have'} a "
            f"full window of {window}; at least "
            f"{MIN_CALIBRATION_SCORES} are needed to calibrate the threshold. Use a shorter "
            "window or more training rows."
        )
    threshold = float(np.max(scores))
    if not math.isfinite(threshold) or threshold <= 0:
        raise RequestError(
            "The out-of-time residuals are all zero, so no threshold can be calibrated: the "
            "target may be constant. Choose another target or more varied training data."
        )
    rmse = float(np.sqrt(np.mean(residuals**2)))
    details = {}
    if blocks is not None:
        _check_blocks(len(scores), blocks, window, times)
        maxima = [float(np.max(block)) for block in np.array_split(scores, blocks)]
        level, location, scale = gumbel_level(maxima, BLOCK_EXCEEDANCE)
        threshold = max(threshold, level)
        details = {
            "block_maxima": [_significant(m) for m in maxima],
            "block_rows": int(len(scores) // blocks),
            "gumbel_location": _significant(location),
            "gumbel_scale": _significant(scale),
            "block_exceedance": BLOCK_EXCEEDANCE,
        }
    return threshold, {
        "cv_rmse": _significant(rmse),
        "window": str(window),
        "scored_rows": int(len(scores)),
        "threshold_over_cv_rmse": round(threshold / rmse, 4),
        **details,
    }


def _check_blocks(scores: int, blocks: int, window: Span, times: pd.Series | None) -> None:
    """Reject blocks too short for their maxima to stand for separate stretches of time."""
    if window.is_time:
        step = times.sort_values().diff().dropna().dt.total_seconds().median()
        # Times all alike put every row in one window.
        window_rows = window.time.total_seconds() / step if step > 0 else scores
    else:
        window_rows = window.rows
    needed = max(MIN_BLOCK_SCORES, math.ceil(2 * window_rows))
    if scores // blocks < needed:
        raise RequestError(
            f"The {scores} out-of-time scores make {blocks} blocks of {scores // blocks}; the "
            f"extreme-value fit needs at least {needed} per block ({MIN_BLOCK_SCORES}, and two "
            f"windows of {window}, about {window_rows:.0f} rows each). Use fewer --cv-folds, a "
            "shorter window or more training rows."
        )


def gumbel_level(maxima: list[float], exceedance: float) -> tuple[float, float, float]:
    """Fit a Gumbel distribution to block maxima and return the level and the fit's parameters.

    The highest score of a block of normal rows follows, for long blocks, an extreme-value
    distribution; a Gumbel fit by the method of moments (scale = sd x sqrt(6) / pi, location =
    mean - Euler's constant x scale) needs no optimiser and is stable with a handful of
    blocks. The level is the score that one block exceeds with probability ``exceedance``.
    """
    values = np.asarray(maxima, dtype=float)
    scale = float(np.std(values, ddof=1) * math.sqrt(6) / math.pi)
    location = float(np.mean(values) - EULER_GAMMA * scale)
    level = location - scale * math.log(-math.log(1 - exceedance))
    return level, location, scale
