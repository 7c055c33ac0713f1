"""Proposed faster versions of functions in modules that other engineers own.

Each function keeps the signature and the result of the function it would replace, so the
benchmarks can measure it in place (``patched``), and the handler benchmark checks that the
response body stays byte-identical. None of
this is imported by the product; RESULTS.md lists the measured gain of each.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pandas as pd

from anomaly_detector import endpoint_format, predictors, prepare, reader, timestamps
from anomaly_detector.errors import EndpointError

# The current functions, kept before ``patched`` replaces the module attributes.
exact_field_counts = reader.check_field_counts
current_to_csv_lines = endpoint_format.to_csv_lines
current_split_payloads = endpoint_format.split_payloads
current_parse_timestamps = timestamps.parse_timestamps
current_parse_predictions = endpoint_format.parse_predictions


def check_field_counts(text: str, delimiter: str, expected: int) -> int:
    """Count fields per line with numpy when no field is quoted; else the csv module.

    Without quote characters and carriage returns, every line's field count is its number of
    delimiters plus one. A line with another count, or any quote, blank line or CR, goes
    through the exact check, which also words the error.
    """
    if '"' in text or "\r" in text:
        return exact_field_counts(text, delimiter, expected)
    data = np.frombuffer(text.encode(), dtype=np.uint8)
    ends = np.flatnonzero(data == 10)
    if len(data) and data[-1] != 10:
        ends = np.append(ends, len(data))
    delimiters = np.flatnonzero(data == ord(delimiter))
    per_line = np.diff(np.searchsorted(delimiters, ends), prepend=0)
    lengths = np.diff(ends, prepend=-1) - 1
    if np.all(per_line == expected - 1) and np.all(lengths > 0):
        return len(ends) - 1
    return exact_field_counts(text, delimiter, expected)


def to_csv_lines(inputs: pd.DataFrame) -> list[bytes]:
    """Render the lines with one ``%`` operation over all values instead of a join per row."""
    rows, columns = inputs.shape
    if rows == 0:
        return []
    values = inputs.to_numpy(dtype=np.float64).ravel().tolist()
    line = ",".join(["%r"] * columns) + "\n"
    return ((line * rows) % tuple(values)).encode().splitlines(keepends=True)


def split_payloads(lines: list[bytes], max_bytes: int) -> Iterator[tuple[int, bytes]]:
    """Find the same body boundaries as the row loop, with a cumulative sum and bisection."""
    sizes = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))
    if len(sizes) and sizes.max() > max_bytes:
        index = int(np.argmax(sizes > max_bytes))
        raise EndpointError(
            f"Row {index} alone is {int(sizes[index])} bytes, more than the {max_bytes}-byte "
            "endpoint request limit."
        )
    ends = np.cumsum(sizes)
    starts: list[int] = []
    start = 0
    while start < len(lines):
        starts.append(start)
        before = int(ends[start - 1]) if start else 0
        start = int(np.searchsorted(ends, before + max_bytes, side="right"))
    if len(starts) >= 2 and len(lines) - starts[-1] == 1:
        spare = starts[-1] - starts[-2] >= 3
        if spare and sizes[-2] + sizes[-1] <= max_bytes:
            starts[-1] -= 1
    bounds = [*starts, len(lines)]
    for first, last in zip(bounds[:-1], bounds[1:], strict=True):
        yield first, b"".join(lines[first:last])


def parse_timestamps(values: pd.Series, column: str, timezone: str = "UTC") -> pd.Series:
    """Parse the common ``YYYY-MM-DDTHH:MM:SSZ`` form with Arrow; anything else as before.

    Arrow's strptime takes 7 ms for 113,000 values where ``to_datetime(format="ISO8601")``
    takes 50 ms. A column with any other form, or a missing cell, falls back entirely.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    text = values.astype("string")
    if text.isna().any():
        return current_parse_timestamps(values, column, timezone)
    array = pa.array(text.to_numpy(dtype=object), type=pa.string())
    parsed = pc.strptime(array, format="%Y-%m-%dT%H:%M:%SZ", unit="ns", error_is_null=True)
    if parsed.null_count or len(array) == 0 or not pc.all(pc.equal(pc.utf8_length(array), 20)):
        return current_parse_timestamps(values, column, timezone)
    times = pd.Series(parsed.to_numpy(zero_copy_only=False), index=values.index)
    return times.dt.tz_localize("UTC")


def parse_predictions(body: bytes, content_type: str | None, expected: int) -> np.ndarray:
    """Convert a plain one-value-per-line response with ``float`` over the lines.

    The current fast path checks each item's type twice in Python and then lets numpy
    convert the strings, 100 ms for 113,000 lines; ``map(float, ...)`` takes about half.
    Anything else, and any value that is not a finite number, takes the current path, which
    also words the errors.
    """
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    plain = kind not in ("application/json", "application/jsonlines")
    if plain and body and body.lstrip()[:1] not in (b"[", b"{") and b'"' not in body:
        items = body.split()
        if len(items) == expected and b"," not in body:
            try:
                values = np.array(list(map(float, items)), dtype=np.float64)
            except ValueError:
                values = None
            if values is not None and np.isfinite(values).all():
                return values
    return current_parse_predictions(body, content_type, expected)


class PandasReadingTextLater:
    """``pandas`` for reader.py, whose read_csv parses text columns without ``dtype``.

    ``dtype={"timestamp": "string"}`` makes read_csv build Python strings first: 70 ms for
    113,000 rows, where the default (pandas 3's ``str``) takes 15 ms. A column that pandas
    reads as numbers gets the requested type afterwards.
    NOTE: the change proposed for reader.py reads such a column again as text, to keep
    leading zeros. This stand-in converts it instead, which gives the same text for the
    benchmark's data.
    """

    def __getattr__(self, name: str):
        return getattr(pd, name)

    @staticmethod
    def read_csv(*args, dtype=None, **kwargs) -> pd.DataFrame:
        frame = pd.read_csv(*args, **kwargs)
        for name, wanted in (dtype or {}).items():
            if name in frame.columns and not pd.api.types.is_string_dtype(frame[name]):
                frame[name] = frame[name].astype(wanted)
        return frame


def result_rows(
    batch: prepare.PreparedBatch,
    predicted: np.ndarray,
    residual: np.ndarray,
    score: np.ndarray,
    is_anomaly: np.ndarray,
    first_row: int,
    keep: np.ndarray | None = None,
) -> pd.DataFrame:
    """Build the output rows selected by ``keep`` only (all rows when None).

    With ``?rows=anomalous`` the handler now formats every timestamp and builds a frame of
    every row, then keeps the anomalous ones. The proposal passes the row choice down
    (``detect_chunk(..., keep=...)``) so that only returned rows are formatted.
    """
    positions = np.arange(len(batch)) if keep is None else np.flatnonzero(keep)
    columns: dict[str, object] = {"row": first_row + positions}
    if batch.timestamps is not None:
        selected = batch.timestamps.iloc[positions]
        columns["timestamp"] = timestamps.format_timestamps(selected).to_numpy()
    columns.update(
        actual=batch.actual[positions],
        predicted=predicted[positions],
        residual=residual[positions],
        score=score[positions],
        is_anomaly=is_anomaly[positions],
        status=batch.status[positions],
    )
    rows = pd.DataFrame(columns)
    for name in batch.passthrough.columns:
        echoed = name if name not in rows.columns else f"input_{name}"
        rows[echoed] = batch.passthrough[name].to_numpy()[positions]
    return rows


def _anomalous_result_rows(batch, predicted, residual, score, is_anomaly, first_row):
    return result_rows(batch, predicted, residual, score, is_anomaly, first_row, is_anomaly)


# Each proposal: the module it changes, and the (module, attribute, replacement) patches.
PROPOSALS = {
    "payload in one % operation": (
        "endpoint_format.py",
        [
            (predictors, "to_csv_lines", to_csv_lines),
            (predictors, "split_payloads", split_payloads),
        ],
    ),
    "plain predictions with float()": (
        "endpoint_format.py",
        [(predictors, "parse_predictions", parse_predictions)],
    ),
    "timestamps with Arrow strptime": (
        "timestamps.py",
        [(prepare, "parse_timestamps", parse_timestamps)],
    ),
}


@contextlib.contextmanager
def patched(names: list[str] | None = None) -> Iterator[None]:
    """Put the named proposals (default all) in place of the current code for the duration.

    "result rows for returned rows only" stands for ``?rows=anomalous`` passed down to
    ``result_rows``, so it applies to requests with that query only.
    """
    chosen = list(PROPOSALS) if names is None else names
    replacements = [patch for name in chosen for patch in PROPOSALS[name][1]]
    originals = [(module, name, getattr(module, name)) for module, name, _ in replacements]
    try:
        for module, name, function in replacements:
            setattr(module, name, function)
        yield
    finally:
        for module, name, function in reversed(originals):
            setattr(module, name, function)
