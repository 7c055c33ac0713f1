"""Endpoint wire format: CSV request lines, payload splitting and every prediction response."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from anomaly_detector.endpoint_format import parse_predictions, split_payloads, to_csv_lines
from anomaly_detector.errors import EndpointError

JSON = "application/json"
JSONL = "application/jsonlines"
CSV = "text/csv"

EXPECTED = [1.5, 2.25, -0.5]


# --- request lines -----------------------------------------------------------------------


def test_csv_lines_no_header_no_index():
    inputs = pd.DataFrame({"torque": [42.5, 43.0], "motor_speed": [1500.0, 1510.0]}, index=[7, 9])

    lines = to_csv_lines(inputs)

    assert lines == [b"42.5,1500.0\n", b"43.0,1510.0\n"]


def test_csv_lines_round_trip_floats():
    # Given values whose shortest decimal form needs all 17 significant digits
    values = [0.1 + 0.2, 1 / 3, 1e-300, -2.5e12, 123456789.123456789]
    inputs = pd.DataFrame({"x": values})

    # When
    lines = to_csv_lines(inputs)

    # Then every value reads back exactly
    assert [float(line) for line in lines] == values


def test_csv_lines_empty_frame():
    assert to_csv_lines(pd.DataFrame({"x": []}, dtype=float)) == []


# --- payload splitting -------------------------------------------------------------------


def ten_byte_rows(count: int) -> list[bytes]:
    """Return up to 10 CSV rows of exactly 10 bytes each, the first b"1000.25,0\\n"."""
    return [f"{1000 + i}.25,{i}\n".encode() for i in range(count)]


def bodies(lines: list[bytes], max_bytes: int) -> list[tuple[int, int]]:
    """Split and return (first row, row count) for each body."""
    return [(start, body.count(b"\n")) for start, body in split_payloads(lines, max_bytes)]


def test_split_rows_are_ten_bytes():
    assert {len(line) for line in ten_byte_rows(10)} == {10}


def test_split_exactly_max_bytes_one_body():
    assert bodies(ten_byte_rows(4), 40) == [(0, 4)]


def test_split_one_byte_over_splits():
    # Greedy filling would send 3 rows and then 1, so the rows are balanced instead.
    assert bodies(ten_byte_rows(4), 39) == [(0, 2), (2, 2)]


@pytest.mark.parametrize(
    ("row_count", "max_bytes", "expected"),
    [
        (5, 40, [(0, 3), (3, 2)]),
        (7, 30, [(0, 3), (3, 2), (5, 2)]),
        (9, 40, [(0, 4), (4, 3), (7, 2)]),
        # Unavoidable: every split of 3 rows into bodies of at most 2 rows has a one-row body.
        (3, 25, [(0, 2), (2, 1)]),
        (2, 15, [(0, 1), (1, 1)]),
        (1, 10, [(0, 1)]),
    ],
)
def test_split_avoids_single_row_body(row_count, max_bytes, expected):
    assert bodies(ten_byte_rows(row_count), max_bytes) == expected


def test_split_single_row_kept_when_pair_too_large():
    # Given a last row that does not fit in one body with the row before it
    lines = [b"1.0\n", b"2.0\n", b"3.0\n", b"4444444444.0\n"]

    # Then it is sent alone rather than over the limit
    assert bodies(lines, 16) == [(0, 3), (3, 1)]


def test_split_bodies_concatenate_to_rows():
    lines = to_csv_lines(pd.DataFrame({"x": np.linspace(0, 1, 50), "y": np.arange(50.0)}))

    parts = list(split_payloads(lines, 64))

    assert b"".join(body for _, body in parts) == b"".join(lines)
    assert all(len(body) <= 64 for _, body in parts)


def test_split_row_over_limit_rejected():
    lines = [b"1.0\n", b"123456789.0,2.0\n", b"3.0\n"]

    with pytest.raises(EndpointError) as caught:
        list(split_payloads(lines, 10))

    assert "Row 1 alone is 16 bytes, more than the 10-byte" in caught.value.message
    assert caught.value.status == 502


def test_split_no_rows_no_body():
    assert list(split_payloads([], 100)) == []


@given(
    lengths=st.lists(st.integers(min_value=2, max_value=40), min_size=1, max_size=60),
    extra=st.integers(min_value=0, max_value=200),
)
def test_split_preserves_rows_property(lengths, extra):
    # Given rows of about the drawn lengths, each starting with its number
    lines = [f"{i},{'9' * length}\n".encode() for i, length in enumerate(lengths)]
    max_bytes = max(len(line) for line in lines) + extra

    # When
    parts = list(split_payloads(lines, max_bytes))

    # Then rows keep their order, each body fits and each start is the row count before it
    assert b"".join(body for _, body in parts) == b"".join(lines)
    assert all(len(body) <= max_bytes for _, body in parts)
    counts = [body.count(b"\n") for _, body in parts]
    assert [start for start, _ in parts] == [sum(counts[:i]) for i in range(len(counts))]


# --- prediction responses ----------------------------------------------------------------

SHAPES = {
    "predictions score": (
        '{"predictions": [{"score": 1.5}, {"score": 2.25}, {"score": -0.5}]}',
        JSON,
    ),
    "predictions predicted_label": (
        '{"predictions": [{"predicted_label": 1.5}, {"predicted_label": 2.25}, '
        '{"predicted_label": -0.5}]}',
        JSON,
    ),
    "predictions predicted_score": (
        '{"predictions": [{"predicted_score": 1.5}, {"predicted_score": 2.25}, '
        '{"predicted_score": -0.5}]}',
        JSON,
    ),
    "predictions numbers": ('{"predictions": [1.5, 2.25, -0.5]}', JSON),
    "predictions strings": ('{"predictions": ["1.5", " 2.25", "-0.5 "]}', JSON),
    "score strings": (
        '{"predictions": [{"score": "1.5"}, {"score": "2.25"}, {"score": "-5e-1"}]}',
        JSON,
    ),
    "score in one-item list": (
        '{"predictions": [{"score": [1.5]}, {"score": [2.25]}, {"score": [-0.5]}]}',
        JSON,
    ),
    "bare list": ("[1.5, 2.25, -0.5]", JSON),
    "bare list of strings": ('["1.5", "2.25", "-0.5"]', JSON),
    "bare list of one-item lists": ("[[1.5], [2.25], [-0.5]]", JSON),
    "bare list of objects": ('[{"score": 1.5}, {"score": 2.25}, {"score": -0.5}]', JSON),
    "JSON Lines objects": ('{"score": 1.5}\n{"score": 2.25}\n{"score": -0.5}\n', JSONL),
    "JSON Lines numbers": ("1.5\n2.25\n-0.5\n", JSONL),
    "JSON Lines without content type": ('{"score": 1.5}\n{"score": 2.25}\n{"score": -0.5}', None),
    "CSV one per line": ("1.5\n2.25\n-0.5\n", CSV),
    "CSV one per line CRLF": ("1.5\r\n2.25\r\n-0.5\r\n", CSV),
    "CSV with label field": ("1.5,normal\n2.25,normal\n-0.5,low\n", CSV),
    "CSV single line": ("1.5,2.25,-0.5", CSV),
    "CSV single line trailing comma": ("1.5,2.25,-0.5,\n", CSV),
    "CSV single line spaces": ("1.5, 2.25, -0.5\n", CSV),
    "CSV quoted": ('"1.5"\n"2.25"\n"-0.5"\n', CSV),
    "content type parameters": ("[1.5, 2.25, -0.5]", "application/json; charset=utf-8"),
    "numbers labelled text/csv": ("[1.5, 2.25, -0.5]", CSV),
}


@pytest.mark.parametrize(("body", "content_type"), SHAPES.values(), ids=SHAPES.keys())
def test_parse_response_shape(body, content_type):
    predictions = parse_predictions(body.encode(), content_type, expected=3)

    assert predictions.tolist() == EXPECTED
    assert predictions.dtype == np.float64


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"predictions": [{"score": 4.0}]}', JSON),
        ("[[4.0]]", JSON),
        ("4.0", CSV),
        ("4.0\n", JSONL),
        ('{"score": 4.0}', JSON),
    ],
)
def test_parse_single_prediction(body, content_type):
    assert parse_predictions(body.encode(), content_type, expected=1).tolist() == [4.0]


@pytest.mark.parametrize(
    ("body", "content_type", "returned"),
    [
        ("[1.5, 2.25]", JSON, 2),
        ("[1.5, 2.25, -0.5, 7.0]", JSON, 4),
        ('{"predictions": [{"score": 1.5}]}', JSON, 1),
        ("1.5\n2.25\n", CSV, 2),
        ("1.5,2.25\n", CSV, 2),
        ('{"score": 1.5}\n{"score": 2.25}\n', JSONL, 2),
        ("[]", JSON, 0),
    ],
)
def test_parse_count_mismatch_rejected(body, content_type, returned):
    # When the endpoint returns another number of predictions than rows sent
    with pytest.raises(EndpointError) as caught:
        parse_predictions(body.encode(), content_type, expected=3)

    # Then nothing is matched to rows
    assert f"returned {returned} predictions for 3 rows" in caught.value.message
    assert caught.value.status == 502


def test_parse_empty_field_not_dropped():
    # Given an empty field between predictions: dropping it would move later ones up a row
    with pytest.raises(EndpointError) as caught:
        parse_predictions(b"1.5,,-0.5,7.0", CSV, expected=4)

    assert "Prediction 1 is not a number" in caught.value.message


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        ("[1.5, NaN, 2.0]", JSON, "Prediction 1 is not a finite number (nan)"),
        ('[1.5, "nan", 2.0]', JSON, "Prediction 1 is not a finite number (nan)"),
        ("1.5\nNaN\n2.0\n", CSV, "Prediction 1 is not a finite number (nan)"),
        ("[1.5, Infinity, 2.0]", JSON, "Prediction 1 is not a finite number (inf)"),
        ("[1.5, 1e999, 2.0]", JSON, "Prediction 1 is not a finite number (inf)"),
        ('[1.5, "-inf", 2.0]', JSON, "Prediction 1 is not a finite number (-inf)"),
        ('[1.5, "normal", 2.0]', JSON, "Prediction 1 is not a number"),
        ("1.5\nnormal\n2.0\n", CSV, "Prediction 1 is not a number"),
        (
            '{"predictions": [{"score": 1}, {"predicted_label": "anomaly"}, {"score": 2}]}',
            JSON,
            "Prediction 1 is not a number",
        ),
        ("[1.5, null, 2.0]", JSON, "Prediction 1 is not a number"),
        ('[1.5, "", 2.0]', JSON, "Prediction 1 is not a number"),
        ("[1.5, true, 2.0]", JSON, "Prediction 1 is a boolean"),
        ('[{"score": 1}, {"score": false}, {"score": 2}]', JSON, "Prediction 1 is a boolean"),
        ("[1.5, [2.0, 3.0], 2.0]", JSON, "Prediction 1 is not a number"),
        ('[{"score": 1}, {"value": 2}, {"score": 3}]', JSON, "Prediction 1 is an object without"),
    ],
    ids=[
        "NaN constant",
        "nan string",
        "CSV NaN",
        "Infinity constant",
        "overflow",
        "-inf string",
        "text",
        "CSV text",
        "text label",
        "null",
        "empty string",
        "boolean",
        "boolean score",
        "two values",
        "unknown key",
    ],
)
def test_parse_invalid_value_rejected(body, content_type, expected):
    with pytest.raises(EndpointError) as caught:
        parse_predictions(body.encode(), content_type, expected=3)

    assert expected in caught.value.message


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"", JSON, "empty response"),
        (b"  \n", CSV, "empty response"),
        (b"\xff\xfe1.5", CSV, "not valid UTF-8 (byte 0)"),
        (b'{"score": 1.5}\n{"score": \n', JSONL, "neither JSON nor JSON Lines (line 2"),
    ],
    ids=["empty", "blank", "not UTF-8", "broken JSON Lines"],
)
def test_parse_unreadable_response_rejected(body, content_type, expected):
    with pytest.raises(EndpointError) as caught:
        parse_predictions(body, content_type, expected=2)

    assert expected in caught.value.message
    assert caught.value.code == "endpoint_error"


def test_parse_predictions_in_row_order():
    # Given a response whose order differs from sorted order
    body = json.dumps({"predictions": [{"score": v} for v in (3.0, 1.0, 2.0)]}).encode()

    assert parse_predictions(body, JSON, expected=3).tolist() == [3.0, 1.0, 2.0]
