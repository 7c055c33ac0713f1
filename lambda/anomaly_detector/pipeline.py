"""Wire the stages together: prepare, predict, score, and shape the per-row results.

Both the Lambda handler and the CLI call ``detect_chunk``; the CLI passes the same
``Scorer`` for every chunk of a long file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .config import ScoringConfig
from .errors import EndpointError, InvalidValueError
from .predictors import Predictor
from .prepare import PreparedBatch, prepare
from .scoring import Event, Scorer
from .timestamps import MAX_REPORTED_ROWS, format_timestamps

RESULT_COLUMNS = (
    "row",
    "timestamp",
    "actual",
    "predicted",
    "baseline",  # only with a residual baseline
    "residual",
    "score",
    "is_anomaly",
    "status",
)


@dataclass
class Summary:
    """Counts over everything scored so far; ``max_score`` is None until a row is scored."""

    threshold: float
    rows: int = 0
    scored_rows: int = 0
    anomalous_rows: int = 0
    max_score: float | None = None
    not_scored: dict[str, int] = field(default_factory=dict)
    events: int = 0

    def add(self, batch: PreparedBatch, score: np.ndarray, is_anomaly: np.ndarray) -> None:
        self.rows += len(batch)
        self.scored_rows += int(batch.scorable.sum())
        self.anomalous_rows += int(is_anomaly.sum())
        finite = score[np.isfinite(score)]
        if len(finite):
            chunk_max = float(finite.max())
            self.max_score = chunk_max if self.max_score is None else max(self.max_score, chunk_max)
        statuses, counts = np.unique(batch.status[~batch.scorable], return_counts=True)
        for status, count in zip(statuses, counts, strict=True):
            self.not_scored[str(status)] = self.not_scored.get(str(status), 0) + int(count)

    def to_dict(self, config: ScoringConfig) -> dict:
        return {
            "rows": self.rows,
            "scored_rows": self.scored_rows,
            "anomalous_rows": self.anomalous_rows,
            "events": self.events,
            "threshold": self.threshold,
            "max_score": None if self.max_score is None else round(self.max_score, 6),
            "window": str(config.window),
            "min_duration": str(config.min_duration),
            "merge_gap": str(config.merge_gap or 0),
            "not_scored": dict(sorted(self.not_scored.items())),
        }


def detect_chunk(
    frame: pd.DataFrame,
    config: ScoringConfig,
    predictor: Predictor,
    scorer: Scorer,
    summary: Summary,
    first_row: int = 0,
    keep: str = "all",
) -> pd.DataFrame:
    """Score one chunk of rows and return its result rows, one per input row, in input order.

    ``keep`` chooses the rows returned: ``all``, ``anomalous`` or ``none``. Every row is
    scored and counted in ``summary`` whatever it is.
    """
    batch = prepare(frame, config, first_row)
    scorable = batch.scorable

    predicted = np.full(len(batch), np.nan)
    if scorable.any():
        values = np.asarray(predictor.predict(batch.inputs[scorable]), dtype=float)
        if values.shape != (int(scorable.sum()),):
            raise EndpointError(
                f"The model returned {values.size} predictions for {int(scorable.sum())} rows."
            )
        if not np.all(np.isfinite(values)):
            raise EndpointError("The model returned predictions that are not finite numbers.")
        predicted[scorable] = values

    scores = scorer.score(
        batch.actual,
        predicted,
        scorable,
        batch.timestamps,
        batch.inputs.to_numpy(dtype=np.float64),
    )
    _check_finite(scores.residual, scores.score, scorable, first_row, config.target)
    summary.add(batch, scores.score, scores.is_anomaly)
    positions = None
    if keep == "anomalous":
        positions = np.flatnonzero(scores.is_anomaly)
    elif keep == "none":
        positions = np.empty(0, dtype=np.int64)
    return result_rows(
        batch,
        predicted,
        scores.residual,
        scores.score,
        scores.is_anomaly,
        first_row,
        positions,
        scores.baseline,
    )


def result_rows(
    batch: PreparedBatch,
    predicted: np.ndarray,
    residual: np.ndarray,
    score: np.ndarray,
    is_anomaly: np.ndarray,
    first_row: int,
    positions: np.ndarray | None = None,
    baseline: np.ndarray | None = None,
) -> pd.DataFrame:
    """Build the output table: result columns, then the echoed columns of the request.

    ``positions`` selects rows (all when None), so that rows not returned are not formatted.
    The ``baseline`` column is there only with a residual baseline, where the residual is
    ``actual - predicted - baseline``.
    """
    if positions is None:
        positions = np.arange(len(batch))
    columns: dict[str, object] = {"row": first_row + positions}
    if batch.timestamps is not None:
        columns["timestamp"] = format_timestamps(batch.timestamps.iloc[positions]).to_numpy()
    columns.update(actual=batch.actual[positions], predicted=predicted[positions])
    if baseline is not None:
        columns["baseline"] = baseline[positions]
    columns.update(
        residual=residual[positions],
        score=score[positions],
        is_anomaly=is_anomaly[positions],
        status=batch.status[positions],
    )
    rows = pd.DataFrame(columns)
    if batch.passthrough.columns.empty:
        return rows
    # An echoed column never takes a result column's name, nor "timestamp" when the rows were
    # not scored by time: it gets a prefix instead. The frame is joined once, because adding
    # columns one by one costs time quadratic in their count.
    reserved = {*rows.columns, "timestamp"}
    echoed = (
        batch.passthrough.iloc[positions]
        .set_axis(
            [name if name not in reserved else f"input_{name}" for name in batch.passthrough],
            axis=1,
        )
        .reset_index(drop=True)
    )
    return pd.concat([rows, echoed], axis=1)


def _check_finite(
    residual: np.ndarray, score: np.ndarray, scorable: np.ndarray, first_row: int, target: str
) -> None:
    # Values near the float maximum (about 1.8e308) pass the input checks, but their
    # differences and means can be infinite, which JSON cannot carry.
    overflow = scorable & ~(np.isfinite(residual) & np.isfinite(score))
    if overflow.any():
        raise _overflow_error((first_row + np.flatnonzero(overflow)).tolist(), target)


def check_finite_events(events: list[dict], target: str) -> None:
    """Reject events whose sums overflow 64-bit floats (see ``_check_finite``).

    An event that began in an earlier request of a stream (rows below 0) is named by the
    request's first row, since the earlier rows were carried on only when far from overflow.
    """
    overflow = [
        max(event["start_row"], 0)
        for event in events
        if not all(np.isfinite([event["peak_score"], event["mean_residual"]]))
    ]
    if overflow:
        raise _overflow_error(overflow, target)


def _overflow_error(rows: list[int], target: str) -> InvalidValueError:
    listed = ", ".join(str(row) for row in sorted(set(rows))[:MAX_REPORTED_ROWS])
    return InvalidValueError(
        f"The residuals or scores near row(s) {listed} exceed the 64-bit floating-point "
        "range (rows counted from 0). Check the values and units of the target column "
        f"{target!r} and of the model inputs at those rows."
    )


def events_to_dicts(events: list[Event]) -> list[dict]:
    return [event.to_dict() for event in events]


def finite_or_none(value: float | None) -> float | None:
    """Return the value when finite, otherwise None, so NaN never reaches JSON or metrics."""
    if value is None or not math.isfinite(value):
        return None
    return value
