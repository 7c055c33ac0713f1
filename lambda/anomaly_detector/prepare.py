"""Select the model inputs by name, convert them to numbers and mark rows that cannot be scored.

Column matching rule: a configured name matches the column with exactly that name; when
there is none, it matches the one column whose name is equal after trimming surrounding
spaces and ignoring case. More than one such column is an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import ScoringConfig
from .errors import InvalidValueError, MissingColumnError, RequestError
from .timestamps import MAX_REPORTED_ROWS, parse_timestamps

STATUS_SCORED = "scored"
STATUS_MISSING_INPUT = "missing_input"
STATUS_MISSING_TARGET = "missing_target"
STATUS_MISSING_TIMESTAMP = "missing_timestamp"


@dataclass
class PreparedBatch:
    """A request ready for the model: inputs in training order plus what is echoed back."""

    inputs: pd.DataFrame  # model inputs, training order, float64; NaN where missing
    actual: np.ndarray  # observed target, float64; NaN where missing
    timestamps: pd.Series | None  # UTC times, NaT where missing; None without a timestamp column
    status: np.ndarray  # per-row status (object array of the STATUS_* strings)
    passthrough: pd.DataFrame  # every other column, echoed unchanged

    @property
    def scorable(self) -> np.ndarray:
        return self.status == STATUS_SCORED

    def __len__(self) -> int:
        return len(self.actual)


def resolve_columns(columns: list[str], wanted: list[str], role: str) -> dict[str, str]:
    """Map each wanted name to a column by the module's matching rule; raise naming the missing."""
    exact = set(columns)
    loose: dict[str, list[str]] = {}
    for column in columns:
        loose.setdefault(str(column).strip().casefold(), []).append(column)

    mapping: dict[str, str] = {}
    missing: list[str] = []
    for name in wanted:
        if name in exact:
            mapping[name] = name
            continue
        candidates = loose.get(name.strip().casefold(), [])
        if len(candidates) == 1:
            mapping[name] = candidates[0]
        elif len(candidates) > 1:
            raise RequestError(
                f"{role.capitalize()} column {name!r} matches several columns when case and "
                f"surrounding spaces are ignored: {candidates}. Rename the columns so that "
                "one matches exactly."
            )
        else:
            missing.append(name)
    if missing:
        found = ", ".join(repr(str(c)) for c in columns[:50])
        more = f" and {len(columns) - 50} more" if len(columns) > 50 else ""
        plural = "s" if len(missing) > 1 else ""
        # In training the names come from the user's options; otherwise from a model card.
        fix = (
            "Check the names given to --target and --inputs against them."
            if role == "training"
            else "Send a header row (or JSON keys) with these names."
        )
        raise MissingColumnError(
            f"Missing {role} column{plural} {', '.join(repr(m) for m in missing)}. "
            f"Columns found: {found}{more}. {fix}"
        )
    return mapping


def to_numbers(values: pd.Series, column: str, first_row: int = 0) -> np.ndarray:
    """Convert a column to float64; raise with the rows of cells that are not finite numbers.

    ``first_row`` is the row number of the first value, so that errors name rows of the file.
    """
    if pd.api.types.is_bool_dtype(values):
        raise InvalidValueError(
            f"Column {column!r} contains true/false values, not measurements. Send numbers."
        )
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.to_numpy(dtype="float64", na_value=np.nan)
        bad = np.isinf(numbers)
    else:
        as_text = values.astype("object")
        is_bool = as_text.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(dtype=bool)
        numbers = _coerce_numbers(as_text.where(~is_bool))
        blank = as_text.isna().to_numpy() | as_text.map(_is_blank).to_numpy(dtype=bool)
        bad = is_bool | (np.isnan(numbers) & ~blank & ~_is_nan_text(as_text)) | np.isinf(numbers)
    if bad.any():
        rows = first_row + np.flatnonzero(bad)
        listed = ", ".join(str(r) for r in rows[:MAX_REPORTED_ROWS])
        more = f" and {len(rows) - MAX_REPORTED_ROWS} more" if len(rows) > MAX_REPORTED_ROWS else ""
        raise InvalidValueError(
            f"Column {column!r} has values that are not finite numbers at row(s) {listed}{more} "
            "(rows counted from 0, header excluded). Use a dot as the decimal separator, no "
            "units or thousands separators, and leave the cell empty when a value is missing."
        )
    return numbers


def _coerce_numbers(values: pd.Series) -> np.ndarray:
    """Convert values to float64, with NaN for text that is not a number and inf for too large."""
    try:
        converted = pd.to_numeric(values, errors="coerce")
    except OverflowError:
        # pandas raises for a JSON integer beyond the float range (more than 308 digits)
        # instead of coercing it, so such integers become infinite and fail the check.
        converted = pd.to_numeric(values.map(_int_to_float), errors="coerce")
    return converted.to_numpy(dtype="float64", na_value=np.nan)


def _int_to_float(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return np.inf if value > 0 else -np.inf
    return value


def _is_blank(value: object) -> bool:
    return isinstance(value, str) and not value.strip()


def _is_nan_text(values: pd.Series) -> np.ndarray:
    # "NaN", "nan", "n/a", "NA", "null" in JSON strings mean missing, as they do in CSV cells.
    missing_words = {"nan", "n/a", "na", "null", "none", "-nan"}
    return values.map(lambda v: isinstance(v, str) and v.strip().lower() in missing_words).to_numpy(
        dtype=bool
    )


def prepare(frame: pd.DataFrame, config: ScoringConfig, first_row: int = 0) -> PreparedBatch:
    """Select, order and convert the model inputs; mark rows that cannot be scored.

    ``first_row`` is the row number of the frame's first row, used in error messages.
    """
    columns = [str(c) for c in frame.columns]
    frame.columns = columns

    # check: every input and the target are present (by the matching rule)
    inputs = resolve_columns(columns, list(config.inputs), "input")
    target = resolve_columns(columns, [config.target], "target")[config.target]
    timestamp = None
    if config.timestamp_column:
        timestamp = resolve_columns(columns, [config.timestamp_column], "timestamp")[
            config.timestamp_column
        ]

    # check: inputs and target hold numbers (missing cells allowed)
    matrix = pd.DataFrame(
        {name: to_numbers(frame[column], column, first_row) for name, column in inputs.items()},
        index=range(len(frame)),
    )
    actual = to_numbers(frame[target], target, first_row)

    # check: timestamps parse (missing cells allowed)
    times = None
    if timestamp is not None:
        times = parse_timestamps(
            numbered(frame[timestamp], first_row), timestamp, config.timezone
        ).reset_index(drop=True)

    # mark rows that cannot be scored, the most basic reason first
    status = np.full(len(frame), STATUS_SCORED, dtype=object)
    status[np.isnan(actual)] = STATUS_MISSING_TARGET
    status[matrix.isna().any(axis=1).to_numpy()] = STATUS_MISSING_INPUT
    if times is not None:
        status[times.isna().to_numpy()] = STATUS_MISSING_TIMESTAMP

    used = {*inputs.values(), target, *([timestamp] if timestamp else [])}
    passthrough = frame[[c for c in columns if c not in used]].reset_index(drop=True)
    return PreparedBatch(
        inputs=matrix, actual=actual, timestamps=times, status=status, passthrough=passthrough
    )


def numbered(values: pd.Series, first_row: int) -> pd.Series:
    """Return the values indexed by row number from ``first_row``, for errors that name rows."""
    index = pd.RangeIndex(first_row, first_row + len(values))
    return values if values.index.equals(index) else values.set_axis(index)
