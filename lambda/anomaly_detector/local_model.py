"""The local regression model that stands in for the SageMaker Canvas model.

``train`` fits a LightGBM gradient-boosted regressor on normal-operation rows, holding out the
last part of the training range (in time order) to measure its error, and writes a model
directory: ``model.txt`` (LightGBM's text format, loaded without unpickling) and
``model_card.json``. The Lambda never imports this module.
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
from .config import DEFAULT_MIN_DURATION, DEFAULT_WINDOW
from .errors import ConfigurationError, RequestError
from .prepare import resolve_columns, to_numbers
from .timestamps import parse_timestamps

MODEL_FILE = "model.txt"
CARD_FILE = "model_card.json"
CARD_FORMAT = 1
DEFAULT_VALIDATION_FRACTION = 0.2
MIN_TRAINING_ROWS = 50
# Threshold = this many times the validation RMSE, the product's default.
THRESHOLD_RMSE_FACTOR = 2.0
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
    training_rows: int = 0
    validation_rows: int = 0
    dropped_rows: int = 0
    time_range: list[str] | None = None
    trained_at: str = ""
    algorithm: str = "LightGBM gradient-boosted trees"
    parameters: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    format: int = CARD_FORMAT

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
        if data.get("format") != CARD_FORMAT:
            raise ConfigurationError(
                f"The model card {path} has format {data.get('format')!r}; this version reads "
                f"format {CARD_FORMAT}. Train the model again."
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
    frame: pd.DataFrame, target: str, exclude: list[str], timestamp: str | None
) -> list[str]:
    """Every numeric column except the target, the timestamp and the excluded columns."""
    skipped = {target, *exclude, *([timestamp] if timestamp else [])}
    inputs = [
        str(c)
        for c in frame.columns
        if str(c) not in skipped and pd.api.types.is_numeric_dtype(frame[c])
    ]
    if not inputs:
        raise RequestError(
            f"No numeric input columns besides the target {target!r}. Name them with --inputs."
        )
    return inputs


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
) -> ModelCard:
    """Fit the model on normal-operation rows and write the model directory.

    The last ``validation_fraction`` of the rows (in time order when there is a timestamp)
    is held out; the validation RMSE and MAE come from those rows, in the target's unit,
    and the suggested threshold is 2 x RMSE.
    """
    if not 0 < validation_fraction < 1:
        raise ConfigurationError(
            f"validation_fraction must be between 0 and 1, got {validation_fraction}."
        )
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    mapping = resolve_columns(columns, [*inputs, target], "training")
    matrix = pd.DataFrame({name: to_numbers(frame[mapping[name]], name) for name in inputs})
    y = to_numbers(frame[mapping[target]], target)

    keep = ~(matrix.isna().any(axis=1).to_numpy() | np.isnan(y))
    times = None
    if timestamp_column:
        column = resolve_columns(columns, [timestamp_column], "timestamp")[timestamp_column]
        times = parse_timestamps(frame[column].reset_index(drop=True), column, timezone)
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

    booster = lightgbm.train(
        LIGHTGBM_PARAMS,
        lightgbm.Dataset(fit_x.to_numpy(), label=fit_y, params={"verbose": -1}),
        num_boost_round=NUM_BOOST_ROUNDS,
    )
    errors = val_y - booster.predict(val_x.to_numpy())
    rmse = float(np.sqrt(np.mean(errors**2)))
    mae = float(np.mean(np.abs(errors)))
    if not math.isfinite(rmse) or rmse <= 0:
        raise RequestError(
            "The validation error is zero or not a number, so no threshold can be derived: "
            "the target may be constant. Choose another target or more varied training data."
        )

    directory = Path(model_dir)
    directory.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(directory / MODEL_FILE))
    card = ModelCard(
        target=target,
        inputs=list(inputs),
        validation_rmse=round(rmse, 6),
        validation_mae=round(mae, 6),
        threshold=round(THRESHOLD_RMSE_FACTOR * rmse, 6),
        timestamp_column=timestamp_column,
        window=window,
        min_duration=min_duration,
        training_rows=int(split),
        validation_rows=int(len(y) - split),
        dropped_rows=dropped,
        time_range=None
        if times is None
        else [times.iloc[0].isoformat(), times.iloc[-1].isoformat()],
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
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
