"""Score a CSV or JSON file in chunks with a local model or an endpoint (CLI only).

Memory stays flat with file size: rows are read, scored and written chunk by chunk, the
scorer carries the rolling window and any open event across chunks, and the figures keep
a bounded sample of points and a fixed-bin histogram.

Reading the next chunk and writing the previous one run in worker threads while a chunk is
scored. The model's prediction releases the GIL (LightGBM and the endpoint call both do),
so on two or more cores the parsing and formatting overlap with it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, TextIO

import numpy as np
import pandas as pd

from .config import ScoringConfig
from .errors import EmptyRequestError, RequestError
from .pipeline import Summary, check_finite_events, detect_chunk, events_to_dicts
from .predictors import Predictor
from .reader import (
    UTF16_BOMS,
    check_column_count,
    check_column_names,
    count_csv_records,
    decode_text,
    read_json_lines_text,
    read_json_text,
    sniff_header,
)
from .scoring import Scorer

DEFAULT_CHUNK_ROWS = 100_000
# Files a detect run writes into its output folder. A new run removes them first, so that a
# run that fails leaves no results of an earlier run beside its own partial ones.
OUTPUT_FILES = (
    "scored.csv",
    "events.json",
    "summary.json",
    "evaluation.json",
    "observed_vs_predicted.png",
    "score.png",
    "score_histogram.png",
)
PARTIAL_SUFFIX = ".partial"
# Maximum length of a target folder name in bytes. File systems allow 255.
FOLDER_BYTES = 100
PLOT_POINTS_PER_CHUNK = 5_000
HISTOGRAM_BINS = 200
FORMAT_BLOCK_ROWS = 2_000
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
        if not sep or start < 0 or (end is not None and end <= start):
            raise RequestError(
                f"--rows must look like START:END with 0 <= START < END; got {text!r}."
            )
        return cls(start, end)

    def take(self, frame: pd.DataFrame, first_row: int) -> pd.DataFrame:
        """Return the part of a chunk (whose first row is ``first_row``) inside the range."""
        lo = max(self.start - first_row, 0)
        hi = len(frame) if self.end is None else max(min(self.end - first_row, len(frame)), 0)
        return frame.iloc[lo:hi] if lo < hi else frame.iloc[:0]


# The bytes read to find a file's encoding, delimiter and header, and the most read when
# they contain no line break.
HEADER_BYTES = 1 << 16
MAX_HEADER_BYTES = 1 << 20
# The bytes checked at a time for the field count of each line.
FIELD_CHECK_BYTES = 1 << 24


class FileHeader(NamedTuple):
    """The encoding, delimiter and column names with which a CSV file is read."""

    encoding: str
    delimiter: str
    names: list[str]


def read_header(path: Path) -> FileHeader:
    """Return the encoding, delimiter and column names of a CSV file, as iter_file_chunks reads it.

    UTF-8 (byte-order mark optional) and BOM-marked UTF-16 are read, as in a request. The
    first HEADER_BYTES are read, or more while they contain no line break, up to
    MAX_HEADER_BYTES.
    """
    with path.open("rb") as handle:
        head = handle.read(HEADER_BYTES)
        encoding = "utf-16" if head.startswith(UTF16_BOMS) else "utf-8-sig"
        whole = _whole_lines(head, encoding)
        while whole is None and len(head) < MAX_HEADER_BYTES:
            more = handle.read(HEADER_BYTES)
            if not more:
                whole = head  # The file is one line.
                break
            head += more
            whole = _whole_lines(head, encoding)
    if whole is None:
        raise RequestError(
            f"The first line of {path} is longer than {MAX_HEADER_BYTES // 1024} KiB. The "
            "first line must be the header row: check the line endings, and shorten the names."
        )
    text = decode_text(whole, str(path))
    if not text.strip():
        raise EmptyRequestError(f"{path} is empty.")
    delimiter, names = sniff_header(text)
    check_column_count(len(names), str(path))
    return FileHeader(encoding, delimiter, names)


def _whole_lines(head: bytes, encoding: str) -> bytes | None:
    """Cut a file's first bytes after their last line break, so that no character is split.

    A line break is LF, CR or CRLF. Returns None when the bytes contain none, unless they are
    shorter than HEADER_BYTES (the whole file).
    """
    if len(head) < HEADER_BYTES:
        return head
    if encoding != "utf-16":
        cut = max(head.rfind(b"\n"), head.rfind(b"\r"))
        return head[: cut + 1] if cut >= 0 else None
    # A UTF-16 code unit starts at an even offset (the byte-order mark counts).
    little = head.startswith(b"\xff\xfe")
    for unit in ("\n", "\r"):
        newline = unit.encode("utf-16-le" if little else "utf-16-be")
        end = len(head)
        while (cut := head.rfind(newline, 0, end)) >= 0:
            if cut % 2 == 0:
                return head[: cut + 2]
            end = cut + 1
    return None


def iter_file_chunks(
    path: Path, chunk_rows: int = DEFAULT_CHUNK_ROWS, text_columns: list[str] = ()
) -> Iterator[pd.DataFrame]:
    """Yield the data rows of a CSV (any dialect the reader accepts) or JSON file in chunks.

    A ``.json`` file is read as a JSON request is, and a ``.jsonl`` file has one record per
    line.
    """
    if path.suffix.lower() in (".json", ".jsonl"):
        text = decode_text(path.read_bytes(), str(path))
        try:
            if path.suffix.lower() == ".jsonl":
                frame = read_json_lines_text(text, str(path))
            else:
                frame = read_json_text(text)
        except RequestError as error:
            if str(path) in error.message:
                raise
            raise type(error)(f"{path}: {error.message}") from error
        yield frame
        return
    encoding, delimiter, names = read_header(path)
    drop_index = len(names) > 1 and names[0].strip() == ""
    check_column_names(names[1:] if drop_index else names)
    dtype = {name: "string" for name in names if name in set(text_columns)}
    try:
        check_file_fields(path, encoding, delimiter, len(names))
        # pandas decodes its first buffer here, and the rest as it reads the chunks.
        with pd.read_csv(
            path,
            sep=delimiter,
            encoding=encoding,
            dtype=dtype or None,
            chunksize=chunk_rows,
            skip_blank_lines=True,
        ) as reader:
            for chunk in reader:
                if drop_index:
                    chunk = chunk.iloc[:, 1:]
                if list(chunk.columns) != (names[1:] if drop_index else names):
                    raise RequestError(
                        f"The header of {path} reads {list(chunk.columns)} by the CSV rules, "
                        f"but {names} on its first line, so a quoted column name contains a line "
                        "break. Remove line breaks from the column names."
                    )
                yield chunk
    except pd.errors.ParserError as error:
        # pandas names the line (counted from 1, header included) and the field counts.
        raise RequestError(
            f"{path} cannot be parsed: {str(error).strip()}. Give every row one field per "
            f"header column (delimiter {delimiter!r}), and quote fields that contain the "
            "delimiter."
        ) from error
    except UnicodeDecodeError as error:
        # read_header decoded only its block, so the invalid byte lies after that block.
        name = "UTF-16" if encoding == "utf-16" else "UTF-8"
        raise RequestError(
            f"{path} is not valid {name} ({error.reason} after the header block). Save or "
            "export the file as UTF-8."
        ) from error


def check_file_fields(path: Path, encoding: str, delimiter: str, expected: int) -> None:
    """Reject a line whose field count differs from the header's, as requests are checked.

    pandas pads a short row with empty cells, and reads the first field as an index when
    only the first data row is long: both shift values silently. Unquoted UTF-8 lines with
    LF or CRLF endings are counted with numpy, a block at a time. A file with anything else
    (quotes, CR alone, blank lines, NUL bytes, UTF-16, one column) goes to the csv module,
    which words the error.
    """
    if encoding == "utf-16" or expected < 2 or not _simple_fields(path, delimiter, expected):
        with path.open(encoding=encoding, newline="") as lines:
            count_csv_records(_text_lines(lines, path), delimiter, expected, str(path))


def _text_lines(lines: Iterator[str], path: Path) -> Iterator[str]:
    """Pass the lines on, and reject a NUL character, which the csv module accepts."""
    for number, line in enumerate(lines, start=1):
        if "\x00" in line:
            raise RequestError(
                f"Line {number} of {path} contains a NUL byte, so it is not a text file. Save "
                "or export it as CSV text (UTF-16 needs a byte-order mark)."
            )
        yield line


def _simple_fields(path: Path, delimiter: str, expected: int) -> bool:
    """Return True when every line of an unquoted file has ``expected`` fields."""
    carry = b""
    with path.open("rb") as handle:
        while block := handle.read(FIELD_CHECK_BYTES):
            data = carry + block
            cut = data.rfind(b"\n") + 1
            carry = data[cut:]
            if len(carry) > FIELD_CHECK_BYTES or b"\r" in carry[:-1]:
                return (
                    False  # CR line endings or one very long line: the csv module checks the file
                )
            if cut and not _simple_lines(data[:cut], delimiter, expected):
                return False
    carry = carry.removeprefix(b"\xef\xbb\xbf")
    return not carry or _simple_lines(carry + b"\n", delimiter, expected)


def _simple_lines(data: bytes, delimiter: str, expected: int) -> bool:
    """Check complete lines: each ends with LF, has expected - 1 delimiters and some text."""
    if b'"' in data or b"\x00" in data:
        return False
    array = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(array == ord("\n"))
    returns = np.flatnonzero(array == ord("\r"))
    if len(returns) and not np.all(array[np.minimum(returns + 1, len(array) - 1)] == ord("\n")):
        return False  # pandas starts a new row at a CR inside a line, so the csv module checks
    per_line = np.diff(np.searchsorted(np.flatnonzero(array == ord(delimiter)), ends), prepend=0)
    lengths = np.diff(ends, prepend=-1) - 1 - np.isin(ends - 1, returns)
    # A line longer than the csv module's field limit goes to it, so both paths agree.
    return bool(
        np.all(per_line == expected - 1)
        and np.all(lengths > 0)
        and lengths.max(initial=0) <= csv.field_size_limit()
    )


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
        raise no_rows_error(path, rows, first)
    return frame


def no_rows_error(path: Path, rows: RowRange, data_rows: int) -> EmptyRequestError:
    """Return the error for no selected row: the file has none, or ``--rows`` selects none."""
    if data_rows == 0:
        return EmptyRequestError(f"{path} has no data rows. Add rows below the header.")
    end = "" if rows.end is None else rows.end
    return EmptyRequestError(
        f"--rows {rows.start}:{end} selects none of the {data_rows:,} data rows of {path} "
        f"(rows 0 to {data_rows - 1}). Give a range inside them."
    )


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
    """Score a file chunk by chunk and write ``scored.csv``, ``events.json``, ``summary.json``.

    Earlier results in ``out_dir`` are removed first. Rows go to ``scored.csv.partial``,
    renamed to ``scored.csv`` when the whole file has been scored.
    """
    _clear_outputs(path, out_dir)
    scored_path = out_dir / ("scored.csv" + PARTIAL_SUFFIX)
    scorer = Scorer(config, first_row=rows.start)
    summary = Summary(threshold=config.threshold)
    plot = PlotData(config.threshold)
    text_columns = [config.timestamp_column] if config.timestamp_column else []

    first_row = 0
    writing: Future | None = None
    with (
        scored_path.open("w", encoding="utf-8", newline="") as out,
        ThreadPoolExecutor(max_workers=2, thread_name_prefix="detect-file") as workers,
        closing(_read_ahead(iter_file_chunks(path, chunk_rows, text_columns), workers)) as chunks,
    ):
        for chunk in chunks:
            chunk_first = first_row
            first_row += len(chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))
            selected = rows.take(chunk, chunk_first).reset_index(drop=True)
            if not selected.empty:
                start = chunk_first + max(rows.start - chunk_first, 0)
                result = detect_chunk(selected, config, predictor, scorer, summary, start)
                plot.add(result)
                # Wait for the previous chunk, so that rows keep their order, a write error
                # stops the run, and at most one scored chunk waits in memory.
                header = writing is None
                if writing is not None:
                    writing.result()
                writing = workers.submit(_write_scored, out, result, header)
            if rows.end is not None and first_row >= rows.end:
                break
        if writing is not None:
            writing.result()

    if summary.rows == 0:
        raise no_rows_error(path, rows, first_row)
    events = events_to_dicts(scorer.finish())
    check_finite_events(events, config.target)
    summary.events = len(events)
    summary_dict = summary.to_dict(config)
    if config.baseline is not None:
        # The rows of the residual baseline. The API's summary contains its state instead.
        summary_dict["baseline_rows"] = config.baseline
    scored_path.replace(out_dir / "scored.csv")
    (out_dir / "events.json").write_text(json.dumps(events, indent=2) + "\n")
    (out_dir / "summary.json").write_text(json.dumps(summary_dict, indent=2) + "\n")
    return FileResult(summary_dict, events, plot)


@dataclass
class TargetResult:
    """One target's detection in a run over several targets, written to ``out_dir / folder``."""

    target: str
    folder: str
    result: FileResult


def target_folder(target: str) -> str:
    """Return the name of the folder for a target's results.

    Runs of characters other than letters, digits, '-' and '_' become '_', and the name is
    cut to 100 bytes of UTF-8. The folder then stays inside the output folder and never takes
    the name of a file there (those contain a dot).
    """
    name = re.sub(r"[^\w-]+", "_", target).strip("_")
    name = name.encode("utf-8")[:FOLDER_BYTES].decode("utf-8", errors="ignore").strip("_")
    return name or "target"


def detect_targets(
    path: Path,
    models: Sequence[tuple[ScoringConfig, Predictor]],
    out_dir: Path,
    rows: RowRange = RowRange(),
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    on_chunk: Callable[[int], None] | None = None,
) -> tuple[list[TargetResult], list[dict]]:
    """Run one detector per target over the same file and merge their events.

    Each target's ``scored.csv``, ``events.json`` and ``summary.json`` go to its own folder
    under ``out_dir`` (see :func:`target_folder`). ``out_dir / "events.json"`` lists every
    target's events, each with its ``target``, ordered by onset. ``summary.json`` contains each
    target's summary. A row is in a warning when any target's event covers it.
    """
    targets = [config.target for config, _ in models]
    folders = [target_folder(target) for target in targets]
    if len(set(targets)) < len(targets):
        repeated = sorted({t for t in targets if targets.count(t) > 1})
        raise RequestError(
            f"Two models predict the same target ({', '.join(repeated)}); give each target once."
        )
    # Case-insensitive file systems (macOS, Windows) would put Temp and temp in one folder.
    if len({folder.casefold() for folder in folders}) < len(folders):
        raise RequestError(
            f"The targets {targets} would share a results folder ({folders}); rename a column "
            "so that the names differ in letters or digits, not only in case or punctuation."
        )
    _clear_outputs(path, out_dir, folders)
    # Until the run ends, summary.json lists the folders it writes, so that the next run
    # removes them even if this one fails.
    pending = {
        "complete": False,
        "targets": [{"target": t, "folder": f} for t, f in zip(targets, folders, strict=True)],
    }
    (out_dir / "summary.json").write_text(json.dumps(pending, indent=2) + "\n")
    results = []
    for (config, predictor), folder in zip(models, folders, strict=True):
        result = detect_file(path, config, predictor, out_dir / folder, rows, chunk_rows, on_chunk)
        results.append(TargetResult(config.target, folder, result))
    events = [{"target": r.target, **event} for r in results for event in r.result.events]
    # By time when every event has one; a model without timestamps numbers rows only.
    timed = all(isinstance(event["onset"], str) for event in events)
    _add_other_targets(events, timed)
    events.sort(key=lambda e: _onset_key(e, timed))
    summary = {
        "complete": True,
        "events": len(events),
        "targets": [{"target": r.target, "folder": r.folder, **r.result.summary} for r in results],
    }
    (out_dir / "events.json").write_text(json.dumps(events, indent=2) + "\n")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return results, events


def _add_other_targets(events: list[dict], timed: bool) -> None:
    """Give each event ``other_targets``: the targets whose events overlap it in time.

    Each entry names a target and the largest ``target_deviation`` (by size) of its events
    that overlap, so that an operator sees which measurements deviate together and how far.
    Spans run from onset to end, by time when ``timed``, else by row.
    """

    def span(event: dict) -> tuple[int, int]:
        if timed:
            return pd.Timestamp(event["onset"]).value, pd.Timestamp(event["end"]).value
        return event["onset_row"], event["end_row"]

    by_target: dict[str, list[dict]] = {}
    for event in events:
        by_target.setdefault(event["target"], []).append(event)
    # In scoring order a target's onsets rise and so do its ends (an onset may precede the
    # previous event's end), so the events overlapping a span are one run of them.
    spans = {
        target: np.array([span(e) for e in own], dtype=np.int64).reshape(-1, 2)
        for target, own in by_target.items()
    }
    ordered = all(np.all(np.diff(s, axis=0) >= 0) for s in spans.values())
    if not ordered:
        # NOTE: only when a model without timestamps meets one that scored an unsorted file
        # by time. Rows then do not say which events overlap, so none is claimed.
        for event in events:
            event["other_targets"] = None
        return
    for event in events:
        start, end = span(event)
        others = []
        for target, own in by_target.items():
            if target == event["target"]:
                continue
            first = int(np.searchsorted(spans[target][:, 1], start, side="left"))
            last = int(np.searchsorted(spans[target][:, 0], end, side="right"))
            if first >= last:
                continue
            deviations = [
                e["target_deviation"] for e in own[first:last] if e["target_deviation"] is not None
            ]
            largest = max(deviations, key=abs) if deviations else None
            others.append({"target": target, "target_deviation": largest})
        event["other_targets"] = others


def _clear_outputs(path: Path, out_dir: Path, folders: Sequence[str] = ()) -> None:
    """Create ``out_dir`` and remove an earlier run's results, refusing to delete ``path``.

    The results are those in ``out_dir``, in the target ``folders`` of this run, and in the
    target folders that an earlier run over several targets listed in its summary.json.
    """
    current = [out_dir / folder for folder in folders]
    # An earlier target folder that is now a link or a file is not detect's own: leave it.
    earlier = [
        out_dir / folder
        for folder in target_folders(out_dir)
        if folder not in folders
        and (out_dir / folder).is_dir()
        and not (out_dir / folder).is_symlink()
    ]
    written = [
        directory / name
        for directory in (out_dir, *current, *earlier)
        for name in (*OUTPUT_FILES, "scored.csv" + PARTIAL_SUFFIX)
    ]
    if any(path.resolve() == output.resolve() for output in written):
        raise RequestError(
            f"{path} is one of the files detect writes into {out_dir}, so the run would "
            "replace its own input. Give another --out folder."
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise RequestError(f"--out {out_dir} is a file, not a folder. Give a folder for results.")
    for directory in current:
        if directory.is_symlink():
            raise RequestError(
                f"{directory} is a symbolic link; detect writes a target's results only into "
                "a real folder. Remove the link or give another --out folder."
            )
        if directory.exists() and not directory.is_dir():
            raise RequestError(
                f"{directory} is a file, but a target's results go to that folder. Move the "
                "file or give another --out folder."
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    for output in written:
        output.unlink(missing_ok=True)
    for directory in earlier:
        with contextlib.suppress(OSError):  # the folder contains other files: keep it
            directory.rmdir()


def target_folders(out_dir: Path, strict: bool = False) -> list[str]:
    """Return the target folders that the summary.json of a run over several targets lists.

    Only names that :func:`target_folder` could have made count, so that no path leaves
    ``out_dir``. With ``strict``, a summary.json of an unfinished run or with any other entry
    is an error; otherwise such entries are passed over.
    """
    try:
        summary = json.loads((out_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return []
    targets = summary.get("targets") if isinstance(summary, dict) else None
    if not isinstance(targets, list):
        return []
    if strict and summary.get("complete") is not True:
        raise RequestError(
            f"{out_dir / 'summary.json'} is from a detect run that did not finish. Run detect "
            "again with every --model-dir."
        )
    folders = []
    for number, entry in enumerate(targets):
        folder = entry.get("folder") if isinstance(entry, dict) else None
        if isinstance(folder, str) and folder and target_folder(folder) == folder:
            folders.append(folder)
        elif strict:
            raise RequestError(
                f"Entry {number} of 'targets' in {out_dir / 'summary.json'} names no target "
                f"folder inside {out_dir}: {json.dumps(entry)[:200]}. Run detect again "
                "instead of editing summary.json."
            )
    return folders


def _onset_key(event: dict, timed: bool) -> tuple:
    """Order events by onset: their time when ``timed``, else their row."""
    time = pd.Timestamp(event["onset"]).value if timed else 0
    return (time, event["onset_row"], event["target"])


def _read_ahead(
    chunks: Iterator[pd.DataFrame], workers: ThreadPoolExecutor
) -> Iterator[pd.DataFrame]:
    """Yield the chunks, reading the next one in ``workers`` while the caller scores this one."""
    pending = workers.submit(next, chunks, None)
    try:
        while (chunk := pending.result()) is not None:
            pending = workers.submit(next, chunks, None)
            yield chunk
    finally:
        # The reading generator may still run in a worker, and it can be closed only after.
        wait([pending])
        chunks.close()


def _write_scored(out: TextIO, result: pd.DataFrame, header: bool) -> None:
    result = neutralize_formulas(result, _text_columns(result))
    write_csv_rows(out, result, header)


def write_csv_rows(out: TextIO, frame: pd.DataFrame, header: bool) -> None:
    """Write rows as ``frame.to_csv(out, header=header, index=False, lineterminator="\\n")``.

    The output is the same text, except that a text field with a CR is quoted: to_csv
    leaves it bare, and CSV readers then end the row there. Columns of int64, float64, bool
    and text are formatted with ``%`` over blocks of rows, at about 40 % of ``to_csv``'s
    cost. Any other column type sends the whole chunk through ``to_csv``.
    """
    fields = _csv_fields(frame)
    if any("\r" in str(name) for name in frame.columns) or (fields is None and _has_cr(frame)):
        _write_quoting_cr(out, frame, header)
        return
    if fields is None:
        frame.to_csv(out, header=header, index=False, lineterminator="\n")
        return
    if header:
        frame.iloc[:0].to_csv(out, index=False, lineterminator="\n")
    if len(frame) == 0:
        return
    line = ",".join(["%s"] * len(fields)) + "\n"
    values = itertools.chain.from_iterable(zip(*fields, strict=True))
    # One % operation holds the GIL until it returns, so rows are formatted in blocks to
    # let the scoring thread run in between.
    for start in range(0, len(frame), FORMAT_BLOCK_ROWS):
        rows = min(FORMAT_BLOCK_ROWS, len(frame) - start)
        out.write((line * rows) % tuple(itertools.islice(values, rows * len(fields))))


def _has_cr(frame: pd.DataFrame) -> bool:
    """Return whether a cell of a column that is not numeric has a CR in it."""
    return any(
        frame[name].astype(str).str.contains("\r", regex=False).any()
        for name in frame.columns
        if not pd.api.types.is_numeric_dtype(frame[name])
    )


class _LineFeedEnd:
    """Write each line of a csv.writer that ends lines with CRLF with a LF instead."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, line: str) -> int:
        return self.out.write(line[:-2] + "\n")


def _write_quoting_cr(out: TextIO, frame: pd.DataFrame, header: bool) -> None:
    """Write as to_csv does, but quote fields with a CR, which to_csv leaves bare.

    With CRLF line endings to_csv quotes them. The csv module then reads that text back and
    writes each row again, ending it with a LF. Only frames with a CR in a field or a
    column name take this slower path.
    """
    text = frame.to_csv(header=header, index=False, lineterminator="\r\n")
    writer = csv.writer(_LineFeedEnd(out), lineterminator="\r\n")
    writer.writerows(csv.reader(io.StringIO(text, newline="")))


def _csv_fields(frame: pd.DataFrame) -> list[list] | None:
    # Each column becomes a list whose items print, through str(), as to_csv prints them:
    # Python's float repr is the shortest round-trip text, as numpy's is, and a missing
    # value prints as the empty string. The csv module quotes an empty field when it is the
    # only field of a row, so one-column frames go through to_csv.
    if len(frame.columns) < 2:
        return None
    fields = []
    for name in frame.columns:
        series = frame[name]
        kind = series.dtype.kind if isinstance(series.dtype, np.dtype) else None
        if series.dtype == np.float64:
            values = series.to_numpy()
            items = values.astype(object)
            items[np.isnan(values)] = ""
        elif kind in ("b", "i", "u"):
            items = series.to_numpy()
        elif _is_text(series):
            items = series.to_numpy(dtype=object, na_value="")
            if _needs_quotes(items):
                items = np.array([_quoted(text) for text in items.tolist()], dtype=object)
        else:
            return None
        fields.append(items.tolist())
    return fields


def _is_text(series: pd.Series) -> bool:
    if isinstance(series.dtype, pd.StringDtype):
        return True
    if not pd.api.types.is_object_dtype(series.dtype):
        return False
    return pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty")


# to_csv quotes a field that contains the delimiter, the quote character or a line feed.
# A CR is quoted too, which to_csv does not do with "\n" line endings.
_QUOTED_CHARACTERS = ',"\r\n'


def _needs_quotes(items: np.ndarray) -> bool:
    text = "".join(items.tolist())
    return any(character in text for character in _QUOTED_CHARACTERS)


def _quoted(text: str) -> str:
    if any(character in text for character in _QUOTED_CHARACTERS):
        return '"' + text.replace('"', '""') + '"'
    return text


def _text_columns(result: pd.DataFrame) -> list[str]:
    fixed = {"row", "timestamp", "status"}
    return [
        c
        for c in result.columns
        if c not in fixed
        and not pd.api.types.is_numeric_dtype(result[c])
        and not pd.api.types.is_bool_dtype(result[c])
    ]
