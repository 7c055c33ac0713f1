"""Property-based tests of the request path, the reader and the scoring.

Any request bytes get a response with a JSON body and a status below 500. Any valid
table gets one output row per input row, in input order, with no NaN or infinity in the
JSON or the metrics. Scoring a series in chunks gives what scoring it whole gives.

The example counts are small so that ``make test`` stays fast. ``PROPERTY_EXAMPLES`` sets
a larger count for a longer campaign (``make fuzz`` does).
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
import math
import os

import fixtures_handler
import numpy as np
import pandas as pd
import pytest
from fixtures_handler import FormulaPredictor, make_config, parse_json
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from anomaly_detector.config import ScoringConfig, Span
from anomaly_detector.endpoint_format import parse_predictions
from anomaly_detector.errors import EndpointError
from anomaly_detector.handler import DetectionService
from anomaly_detector.publishing import request_metrics
from anomaly_detector.reader import read_request
from anomaly_detector.scoring import Scorer, score_all

# pytest finds a fixture by its name in the test module, so the shared fixture is bound here.
aws_credentials = fixtures_handler.aws_credentials

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "60"))
PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
HEADER = ["timestamp", "motor_speed", "torque", "ambient_temperature", "bearing_temperature"]
CLIENT_STATUSES = {400, 404, 405, 413, 415}
SERVICE = DetectionService(
    make_config(MAX_REQUEST_BYTES="20000", TIMEZONE="Europe/Berlin"), predictor=FormulaPredictor()
)


def event(body: bytes, headers: dict[str, str], encoded: bool) -> dict:
    return {
        "path": "/detect",
        "httpMethod": "POST",
        "headers": headers,
        "queryStringParameters": None,
        "body": base64.b64encode(body).decode() if encoded else body.decode("utf-8", "replace"),
        "isBase64Encoded": encoded,
    }


def check_response(response: dict, rows: int | None = None) -> dict:
    """Check the response: a status below 500, a strict JSON body, one row per input row."""
    status = response["statusCode"]
    assert status == 200 or status in CLIENT_STATUSES, response["body"][:300]
    assert "Traceback" not in response["body"]
    body = parse_json(response["body"])
    if status != 200:
        assert list(body) == ["error"]
        assert body["error"]["message"]
        return body
    assert len(body["rows"]) == body["summary"]["rows"]
    assert [row["row"] for row in body["rows"]] == list(range(body["summary"]["rows"]))
    if rows is not None:
        assert body["summary"]["rows"] == rows
    for value in request_metrics(body["summary"]).values():
        assert math.isfinite(value[0])
    return body


# -- any bytes --------------------------------------------------------------------------------

CONTENT_TYPES = st.sampled_from(
    ["text/csv", "application/json", "text/plain; charset=utf-8", "application/xml", ""]
)
ENCODINGS = st.sampled_from([None, "gzip", "identity", "br"])


@PROPERTY_SETTINGS
@given(body=st.binary(max_size=3000), content_type=CONTENT_TYPES, encoding=ENCODINGS,
       encoded=st.booleans(), compress=st.booleans())  # fmt: skip
def test_any_bytes_get_an_answer(body, content_type, encoding, encoded, compress):
    headers = {"Content-Type": content_type}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    if compress:
        body = gzip.compress(body, mtime=0)
        encoded = True

    check_response(SERVICE.handle(event(body, headers, encoded)))


# Cells of every kind that plant exports contain, numbers and junk alike.
CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**400), max_value=10**400).map(str),
    st.sampled_from(["", " ", "n/a", "NaN", "null", "true", "-", "1,5", "12 kW", "0x1f", "\t",
                     '"', '""', "2024-03-31 02:30", "2024-03-06T08:00:00Z", "=1+1", "\x00"]),
    st.text(max_size=8),
)  # fmt: skip
NAME_VARIANTS = st.sampled_from([str, str.upper, lambda n: f" {n} ", str.title])


@st.composite
def csv_tables(draw) -> tuple[str, int]:
    """CSV text with the service's columns (names varied) and cells of any kind."""
    names = [draw(NAME_VARIANTS)(name) for name in HEADER] + draw(
        st.lists(st.text(min_size=1, max_size=6), max_size=3)
    )
    count = draw(st.integers(min_value=1, max_value=12))
    rows = [[draw(CELLS) for _ in names] for _ in range(count)]
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator=newline).writerows([names, *rows])
    return out.getvalue(), count


@PROPERTY_SETTINGS
@given(table=csv_tables(), encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
def test_any_csv_table_gets_an_answer(table, encoding):
    text, count = table
    try:
        body = text.encode(encoding)
    except UnicodeEncodeError:
        assume(False)

    response = SERVICE.handle(event(body, {"Content-Type": "text/csv"}, True))

    # Every row is a record of its own, so an accepted table returns one row for each.
    check_response(response, rows=count)


JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.floats(), st.integers(), st.text(max_size=6),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.none(), max_size=1),
)  # fmt: skip


@PROPERTY_SETTINGS
@given(records=st.lists(st.dictionaries(st.sampled_from([*HEADER, "note", "Torque"]),
                                        JSON_VALUES), max_size=10))  # fmt: skip
def test_any_json_records_get_an_answer(records):
    body = json.dumps(records).encode()

    response = SERVICE.handle(event(body, {"Content-Type": "application/json"}, False))

    check_response(response, rows=len(records) or None)


# -- valid tables -------------------------------------------------------------------------------

MEASUREMENTS = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), st.just(float("nan"))
)


# Text that a valid request may echo: anything but NUL, which marks a body as binary, and
# CR, which pandas leaves unquoted in a CSV cell, where it ends the line.
NOTES = st.text(alphabet=st.characters(exclude_characters="\x00\r", exclude_categories=("Cs",)),
                max_size=5)  # fmt: skip


@st.composite
def machine_frames(draw) -> pd.DataFrame:
    """A valid table: finite measurements or missing cells, times in any order, a text column."""
    count = draw(st.integers(min_value=1, max_value=40))
    columns = {name: draw(st.lists(MEASUREMENTS, min_size=count, max_size=count))
               for name in HEADER[1:]}  # fmt: skip
    minutes = draw(st.lists(st.integers(min_value=0, max_value=600), min_size=count,
                            max_size=count))  # fmt: skip
    times = pd.Timestamp("2024-03-06T08:00:00Z") + pd.to_timedelta(minutes, unit="min")
    stamps = [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in times]
    for index in draw(st.sets(st.integers(min_value=0, max_value=count - 1), max_size=3)):
        stamps[index] = None
    frame = pd.DataFrame({"timestamp": stamps, **columns})
    frame["note"] = draw(st.lists(NOTES, min_size=count, max_size=count))
    return frame


def frame_body(frame: pd.DataFrame, kind: str) -> bytes:
    if kind == "csv":
        return frame.to_csv(index=False).encode()
    records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    return json.dumps(records).encode()


@PROPERTY_SETTINGS
@given(frame=machine_frames(), kind=st.sampled_from(["csv", "json"]),
       window=st.sampled_from(["3", "1", "10min"]))  # fmt: skip
def test_valid_table_one_row_per_row(frame, kind, window):
    service = DetectionService(make_config(WINDOW=window, MIN_DURATION="1"),
                               predictor=FormulaPredictor())  # fmt: skip
    content_type = "text/csv" if kind == "csv" else "application/json"

    response = service.handle(event(frame_body(frame, kind), {"Content-Type": content_type}, False))

    assert response["statusCode"] == 200, response["body"][:300]
    body = check_response(response, rows=len(frame))
    actual = frame["bearing_temperature"].to_numpy()
    inputs = frame[HEADER[1:4]].to_numpy()
    for row, target, values, stamp in zip(body["rows"], actual, inputs, frame["timestamp"],
                                          strict=True):  # fmt: skip
        scorable = not np.isnan(target) and not np.isnan(values).any() and not pd.isna(stamp)
        assert (row["status"] == "scored") is scorable
        if np.isnan(target):
            assert row["actual"] is None
        else:
            assert row["actual"] == pytest.approx(target, rel=1e-9, abs=1e-9)
        if scorable:
            assert row["residual"] == pytest.approx(target - (0.1 * values[1] + values[2]),
                                                    rel=1e-6, abs=1e-6)  # fmt: skip
            assert row["score"] >= 0
        else:
            assert row["score"] is None


@PROPERTY_SETTINGS
@given(frame=machine_frames())
def test_reader_round_trips_csv(frame):
    read = read_request(frame.to_csv(index=False).encode(), "text/csv", ["timestamp", "note"])

    assert list(read.columns) == list(frame.columns)
    assert len(read) == len(frame)
    numbers = read[HEADER[1:]].to_numpy(dtype=float)
    np.testing.assert_allclose(numbers, frame[HEADER[1:]].to_numpy(dtype=float), rtol=1e-12)


# -- endpoint responses ------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(body=st.binary(max_size=400), expected=st.integers(min_value=1, max_value=5),
       content_type=st.sampled_from(["application/json", "text/csv", None]))  # fmt: skip
def test_any_endpoint_body_parsed_or_rejected(body, expected, content_type):
    try:
        values = parse_predictions(body, content_type, expected)
    except EndpointError:
        return

    assert values.shape == (expected,)
    assert np.isfinite(values).all()


# -- scoring ----------------------------------------------------------------------------------


@st.composite
def residual_series(draw) -> tuple[np.ndarray, np.ndarray, list[int]]:
    count = draw(st.integers(min_value=1, max_value=60))
    residual = np.array(draw(st.lists(st.floats(min_value=-50, max_value=50), min_size=count,
                                      max_size=count)))  # fmt: skip
    scorable = np.array(draw(st.lists(st.booleans(), min_size=count, max_size=count)))
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=count), max_size=4)) | {count})
    return residual, scorable, cuts


@PROPERTY_SETTINGS
@given(series=residual_series(), window=st.integers(min_value=1, max_value=8),
       min_duration=st.integers(min_value=1, max_value=4),
       merge_gap=st.integers(min_value=0, max_value=3),
       baseline=st.sampled_from([None, 30]))  # fmt: skip
def test_scoring_in_chunks_equals_whole(series, window, min_duration, merge_gap, baseline):
    residual, scorable, cuts = series
    config = ScoringConfig(target="y", inputs=("x",), threshold=10.0,
                           window=Span(rows=window), min_duration=Span(rows=min_duration),
                           merge_gap=Span(rows=merge_gap) if merge_gap else None,
                           baseline=baseline)  # fmt: skip
    actual = np.where(scorable, residual, np.nan)
    predicted = np.where(scorable, 0.0, np.nan)

    whole, events = score_all(config, actual, predicted, scorable)
    scorer = Scorer(config)
    parts, start = [], 0
    for end in cuts:
        parts.append(scorer.score(actual[start:end], predicted[start:end], scorable[start:end]))
        start = end
    chunked_events = scorer.finish()

    score = np.concatenate([part.score for part in parts])
    np.testing.assert_allclose(score, whole.score, rtol=1e-9, atol=1e-12, equal_nan=True)
    if baseline is not None:
        levels = np.concatenate([part.baseline for part in parts])
        np.testing.assert_allclose(levels, whole.baseline, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(whole.residual, actual - whole.baseline, equal_nan=True)
    assert np.isnan(whole.score[~scorable]).all()
    assert np.isfinite(whole.score[scorable]).all()
    assert (whole.score[scorable] >= 0).all()
    assert (whole.is_anomaly == (np.nan_to_num(whole.score, nan=0) > 10.0)).all()
    assert [e.to_dict() for e in chunked_events] == [e.to_dict() for e in events]
    # Places in the order of scored rows: here the file order, as there are no timestamps.
    place = np.cumsum(scorable) - 1
    for event in events:
        assert place[event.end_row] - place[event.start_row] + 1 >= min_duration
        assert event.rows >= min_duration or merge_gap
        assert event.start_row <= event.peak_row <= event.end_row
    for before, after in zip(events, events[1:], strict=False):
        # Runs closer than the merge gap would have been one event.
        assert place[after.start_row] - place[before.end_row] - 1 > merge_gap
