"""Score a CSV or JSON file in chunks with a local model or an endpoint (CLI only).

Memory stays flat with file size: rows are read, scored and written chunk by chunk, the
scorer carries the rolling window and any open event across chunks, and the figures keep
a bounded sample of points and a fixed-bin histogram.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import ScoringConfig
from .errors import EmptyRequestError, RequestError
from .pipeline import Summary, detect_chunk, events_to_dicts
from .predictors import Predictor
from .reader import check_column_names, decode_text, read_json_text, sniff_header
from .scoring import Scorer

DEFAULT_CHUNK_ROWS = 100_000
PLOT_POINTS_PER_CHUNK = 5_000
HISTOGRAM_BINS = 200
# Spreadsheet programs run cells that start with these as formulas.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class RowRange:
    """Data rows ``start`` (inclusive) to ``end`` (exclusive), counted from 0; None is open."""

    start: int = 0
    end: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> RowRange:
        """Parse ``START:END``, ``:END`` or ``START:`` (Python slice notation, no negatives)."""
        if not text:
            return cls()
        start_text, sep, end_text = text.partition(":")
        try:
            start = int(start_text) if start_text.strip() else 0
            end = int(end_text) if end_text.strip() else None
        except ValueError as error:
            raise RequestError(
                f"--rows must look like START:END, :END or START: with whole numbers; got {text!r}."
            ) from error
        if not sep or start < 0 or (end is not None and end < start):
            raise RequestError(
                f"--rows must look like START:END with 0 <= START <= END; got {text!r}."
            )
        return cls(start, end)

    def take(self, frame: pd.DataFrame, first_row: int) -> pd.DataFrame:
        """Return the part of a chunk (whose first row is ``first_row``) inside the range."""
        lo = max(self.start - first_row, 0)
        hi = len(frame) if self.end is None else max(min(self.end - first_row, len(frame)), 0)
        return frame.iloc[lo:hi] if lo < hi else frame.iloc[:0]


def iter_file_chunks(
    path: Path, chunk_rows: int = DEFAULT_CHUNK_ROWS, text_columns: list[str] = ()
) -> Iterator[pd.DataFrame]:
    """Yield the data rows of a CSV (any dialect the reader accepts) or JSON file in chunks."""
    if path.suffix.lower() in (".json", ".jsonl"):
        yield read_json_text(decode_text(path.read_bytes()))
        return
    with path.open("rb") as handle:
        head = handle.read(1 << 16)
    if not head.strip():
        raise EmptyRequestError(f"{path} is empty.")
    delimiter, names = sniff_header(decode_text(head).rsplit("\n", 1)[0] + "\n")
    drop_index = len(names) > 1 and names[0].strip() == ""
    check_column_names(names[1:] if drop_index else names)
    dtype = {name: "string" for name in names if name in set(text_columns)}
    reader = pd.read_csv(
        path,
        sep=delimiter,
        encoding="utf-8-sig",
        dtype=dtype or None,
        chunksize=chunk_rows,
        skip_blank_lines=True,
    )
    with reader:
        for chunk in reader:
            if drop_index:
                chunk = chunk.iloc[:, 1:]
            chunk.columns = names[1:] if drop_index else names
            yield chunk


def read_table(path: Path, rows: RowRange, text_columns: list[str] = ()) -> pd.DataFrame:
    """Read the selected rows of a file into one frame (for training)."""
    parts, first = [], 0
    for chunk in iter_file_chunks(path, text_columns=text_columns):
        parts.append(rows.take(chunk, first))
        first += len(chunk)
        if rows.end is not None and first >= rows.end:
            break
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if frame.empty:
        raise EmptyRequestError(
            f"No data rows selected from {path} (rows {rows.start}:{rows.end})."
        )
    return frame


def neutralize_formulas(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Prefix text cells that a spreadsheet would run as a formula with a single quote."""
    for column in columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            continue
        text = values.astype("string")
        numeric = pd.to_numeric(text, errors="coerce").notna()
        risky = text.str.startswith(_FORMULA_PREFIXES).fillna(False) & ~numeric
        if risky.any():
            frame[column] = text.where(~risky, "'" + text)
    return frame


@dataclass
class PlotData:
    """A bounded sample of result rows and a fixed-bin histogram of every score."""

    threshold: float
    samples: list[pd.DataFrame] = field(default_factory=list)
    bin_edges: np.ndarray = field(init=False)
    counts: np.ndarray = field(init=False)
    overflow: int = 0

    def __post_init__(self) -> None:
        self.bin_edges = np.linspace(0.0, 5.0 * self.threshold, HISTOGRAM_BINS + 1)
        self.counts = np.zeros(HISTOGRAM_BINS, dtype=np.int64)

    def add(self, rows: pd.DataFrame) -> None:
        scores = rows["score"].to_numpy(dtype=float)
        finite = scores[np.isfinite(scores)]
        self.counts += np.histogram(finite, bins=self.bin_edges)[0]
        self.overflow += int((finite > self.bin_edges[-1]).sum())
        keep = ["row", "actual", "predicted", "score", "is_anomaly"]
        if "timestamp" in rows.columns:
            keep.insert(1, "timestamp")
        step = max(1, len(rows) // PLOT_POINTS_PER_CHUNK)
        sampled = rows.iloc[::step][keep]
        anomalous = rows.loc[rows["is_anomaly"].to_numpy(dtype=bool), keep]
        self.samples.append(pd.concat([sampled, anomalous]).drop_duplicates("row"))

    def frame(self) -> pd.DataFrame:
        if not self.samples:
            return pd.DataFrame()
        return pd.concat(self.samples, ignore_index=True).sort_values("row", kind="stable")


@dataclass
class FileResult:
    summary: dict
    events: list[dict]
    plot: PlotData


def detect_file(
    path: Path,
    config: ScoringConfig,
    predictor: Predictor,
    out_dir: Path,
    rows: RowRange = RowRange(),
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    on_chunk: Callable[[int], None] | None = None,
) -> FileResult:
    """Score a file chunk by chunk and write ``scored.csv``, ``events.json``, ``summary.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    scored_path = out_dir / "scored.csv"
    scorer = Scorer(config)
    summary = Summary(threshold=config.threshold)
    plot = PlotData(config.threshold)
    text_columns = [config.timestamp_column] if config.timestamp_column else []

    first_row = 0
    wrote_header = False
    with scored_path.open("w", encoding="utf-8", newline="") as out:
        for chunk in iter_file_chunks(path, chunk_rows, text_columns):
            chunk_first = first_row
            first_row += len(chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))
            selected = rows.take(chunk, chunk_first).reset_index(drop=True)
            if not selected.empty:
                start = chunk_first + max(rows.start - chunk_first, 0)
                result = detect_chunk(selected, config, predictor, scorer, summary, start)
                plot.add(result)
                result = neutralize_formulas(result, _text_columns(result))
                result.to_csv(out, header=not wrote_header, index=False, lineterminator="\n")
                wrote_header = True
            if rows.end is not None and first_row >= rows.end:
                break

    if summary.rows == 0:
        raise EmptyRequestError(f"No data rows selected from {path}.")
    events = events_to_dicts(scorer.finish())
    summary.events = len(events)
    summary_dict = summary.to_dict(config)
    (out_dir / "events.json").write_text(json.dumps(events, indent=2) + "\n")
    (out_dir / "summary.json").write_text(json.dumps(summary_dict, indent=2) + "\n")
    return FileResult(summary_dict, events, plot)


def _text_columns(result: pd.DataFrame) -> list[str]:
    fixed = {"row", "timestamp", "status"}
    return [
        c
        for c in result.columns
        if c not in fixed
        and not pd.api.types.is_numeric_dtype(result[c])
        and not pd.api.types.is_bool_dtype(result[c])
    ]
