"""The scored-file writer of the CLI: the same text as DataFrame.to_csv, and chunk handling."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from anomaly_detector.batch import _read_ahead, write_csv_rows

FLOAT_EDGES = [0.0, -0.0, 0.1, 1 / 3, 5.0, 1e-05, 1.5e-7, 1e16, 123456789.123, -2.5e300, np.inf]


def to_csv_text(frame: pd.DataFrame, header: bool = True) -> str:
    out = io.StringIO()
    frame.to_csv(out, header=header, index=False, lineterminator="\n")
    return out.getvalue()


def written_text(frame: pd.DataFrame, header: bool = True) -> str:
    out = io.StringIO()
    write_csv_rows(out, frame, header)
    return out.getvalue()


def result_like(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    predicted = rng.normal(30, 5, rows) * 10.0 ** rng.integers(-8, 8, rows)
    predicted[::7] = np.nan
    timestamps = np.array([f"2024-05-01T00:{i % 60:02d}:00Z" for i in range(rows)], dtype=object)
    timestamps[::11] = None
    return pd.DataFrame(
        {
            "row": np.arange(rows, dtype=np.int64),
            "timestamp": timestamps,
            "actual": rng.normal(30, 1, rows).round(2),
            "predicted": predicted,
            "is_anomaly": rng.random(rows) < 0.1,
            "status": np.where(np.isnan(predicted), "missing_input", "scored").astype(object),
            "label": rng.integers(0, 2, rows),
            "note": pd.array(["ok", None, "start", "'=1+2"] * (rows // 4), dtype="string"),
        }
    )


def test_writer_matches_to_csv_on_result_rows():
    frame = result_like(400)

    assert written_text(frame) == to_csv_text(frame)
    assert written_text(frame, header=False) == to_csv_text(frame, header=False)


@pytest.mark.parametrize("value", FLOAT_EDGES)
def test_writer_matches_to_csv_float_edge(value):
    frame = pd.DataFrame({"row": [0, 1], "x": [value, np.nan]})

    assert written_text(frame) == to_csv_text(frame)


@pytest.mark.parametrize(
    "text",
    ["a,b", 'say "hi"', "two\nlines", "CR and LF\r\n", "", " padded "],
)
def test_writer_matches_to_csv_text_needing_care(text):
    frame = pd.DataFrame({"row": [0, 1], "note": [text, "plain"]})

    assert written_text(frame) == to_csv_text(frame)


def test_writer_quotes_a_lone_carriage_return():
    frame = pd.DataFrame({"row": [0, 1], "note": ["carriage\rreturn", 'a "b"']})

    text = written_text(frame)

    # to_csv leaves the CR bare, and every CSV reader then ends the row there.
    assert text == 'row,note\n0,"carriage\rreturn"\n1,"a ""b"""\n'
    assert pd.read_csv(io.StringIO(text))["note"].tolist() == ["carriage\rreturn", 'a "b"']


@pytest.mark.parametrize(
    "frame",
    [
        # A column type that the fast writer leaves to to_csv (object, with a missing value).
        pd.DataFrame({"row": [0, 1], "flag": [True, None], "note": ["a\rb", 'say "hi"']}),
        pd.DataFrame({"row": [0, 1], "no\rte": ["a", "b"]}),
    ],
    ids=["cell in a to_csv column", "column name"],
)
def test_writer_quotes_carriage_return_in_any_column(frame):
    text = written_text(frame)

    cr_quoted = to_csv_text(frame).replace("a\rb", '"a\rb"').replace("no\rte", '"no\rte"')
    assert text == cr_quoted
    back = pd.read_csv(io.StringIO(text))
    assert list(back.columns) == list(frame.columns)
    assert back["row"].tolist() == [0, 1]


@pytest.mark.parametrize(
    "column",
    [
        pd.Series([1.5, None], dtype="Float64"),
        pd.Series([1, None], dtype="Int64"),
        pd.Series([1.5, 2.5], dtype=np.float32),
        pd.Series(pd.to_datetime(["2024-05-01", None])),
        pd.Series(["a", 1], dtype=object),
        pd.Series(["a", "b"], dtype="category"),
    ],
)
def test_writer_matches_to_csv_other_dtypes(column):
    frame = pd.DataFrame({"row": [0, 1], "other": column})

    assert written_text(frame) == to_csv_text(frame)


def test_writer_one_column_and_no_rows():
    one_column = pd.DataFrame({"note": ["", "x"]})
    empty = result_like(4).iloc[:0]

    assert written_text(one_column) == to_csv_text(one_column)
    assert written_text(empty) == to_csv_text(empty)


def test_read_ahead_keeps_order_and_closes_early():
    closed = []

    def numbers():
        try:
            yield from range(10)
        finally:
            closed.append(True)

    with ThreadPoolExecutor(max_workers=1) as workers:
        reader = _read_ahead(numbers(), workers)
        taken = [next(reader) for _ in range(3)]
        reader.close()

    assert taken == [0, 1, 2]
    assert closed == [True]


def test_read_ahead_raises_reading_error():
    def failing():
        yield 1
        raise ValueError("unreadable chunk")

    with ThreadPoolExecutor(max_workers=1) as workers:
        reader = _read_ahead(failing(), workers)

        assert next(reader) == 1
        with pytest.raises(ValueError, match="unreadable chunk"):
            next(reader)
