"""Preparing requests for the model: column selection and order, numbers, statuses, timestamps."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from anomaly_detector.config import ScoringConfig
from anomaly_detector.endpoint_format import to_csv_lines
from anomaly_detector.errors import InvalidValueError, MissingColumnError, RequestError
from anomaly_detector.prepare import (
    STATUS_MISSING_INPUT,
    STATUS_MISSING_TARGET,
    STATUS_MISSING_TIMESTAMP,
    STATUS_SCORED,
    prepare,
)
from anomaly_detector.reader import read_request
from anomaly_detector.timestamps import parse_timestamps

CSV = "text/csv"
JSON = "application/json"

# The model's training order, which differs from the column order of most requests below.
INPUTS = ("torque", "motor_speed", "ambient_temperature")
TARGET = "bearing_temperature"


def config(timestamp_column: str | None = None, timezone: str = "UTC") -> ScoringConfig:
    return ScoringConfig(
        target=TARGET,
        inputs=INPUTS,
        threshold=2.0,
        timestamp_column=timestamp_column,
        timezone=timezone,
    )


def prepare_body(body: bytes, content_type: str = CSV, scoring: ScoringConfig | None = None):
    """Read and prepare a request body as the handler does, timestamps read as text."""
    scoring = scoring or config()
    text_columns = [scoring.timestamp_column] if scoring.timestamp_column else []
    frame = read_request(body, content_type, text_columns=text_columns)
    return prepare(frame, scoring)


# --- column selection and order ----------------------------------------------------------

HEADER_ORDERS = {
    "training order": (
        b"torque,motor_speed,ambient_temperature,bearing_temperature,note\n"
        b"42.5,1500,21.0,61.2,ok\n"
        b"43.25,1510,21.5,61.4,ok\n"
    ),
    "reversed": (
        b"note,bearing_temperature,ambient_temperature,motor_speed,torque\n"
        b"ok,61.2,21.0,1500,42.5\n"
        b"ok,61.4,21.5,1510,43.25\n"
    ),
    "semicolon, target first": (
        b"bearing_temperature;motor_speed;note;torque;ambient_temperature\n"
        b"61.2;1500;ok;42.5;21.0\n"
        b"61.4;1510;ok;43.25;21.5\n"
    ),
    "JSON": json.dumps(
        [
            {
                "motor_speed": 1500,
                "note": "ok",
                TARGET: 61.2,
                "ambient_temperature": 21.0,
                "torque": 42.5,
            },
            {
                "motor_speed": 1510,
                "note": "ok",
                TARGET: 61.4,
                "ambient_temperature": 21.5,
                "torque": 43.25,
            },
        ]
    ).encode(),
}
EXPECTED_REQUEST_BODY = b"42.5,1500.0,21.0\n43.25,1510.0,21.5\n"


@pytest.mark.parametrize("body", HEADER_ORDERS.values(), ids=HEADER_ORDERS.keys())
def test_inputs_in_training_order(body):
    # Given the same rows with the columns in another order
    content_type = JSON if body.startswith(b"[") else CSV

    # When
    batch = prepare_body(body, content_type)

    # Then the endpoint receives the same body
    assert list(batch.inputs.columns) == list(INPUTS)
    assert b"".join(to_csv_lines(batch.inputs)) == EXPECTED_REQUEST_BODY


def test_inputs_are_float64():
    batch = prepare_body(HEADER_ORDERS["reversed"])

    assert all(dtype == np.float64 for dtype in batch.inputs.dtypes)
    assert batch.actual.dtype == np.float64


def test_target_and_others_not_in_inputs():
    batch = prepare_body(HEADER_ORDERS["reversed"])

    assert TARGET not in batch.inputs.columns
    assert "note" not in batch.inputs.columns
    assert batch.actual.tolist() == [61.2, 61.4]


def test_passthrough_holds_other_columns():
    # Given columns that are neither inputs, target nor timestamp
    body = (
        b"timestamp,asset,torque,motor_speed,ambient_temperature,bearing_temperature,note\n"
        b"2024-03-06T08:00:00Z,press-7,42.5,1500,21.0,61.2,start\n"
        b"2024-03-06T08:01:00Z,press-7,43.0,1510,21.5,61.4,\n"
    )

    # When
    batch = prepare_body(body, scoring=config("timestamp"))

    # Then only they are echoed, unchanged and in request order
    assert list(batch.passthrough.columns) == ["asset", "note"]
    assert batch.passthrough["asset"].tolist() == ["press-7", "press-7"]
    assert batch.passthrough["note"].iloc[0] == "start"
    assert pd.isna(batch.passthrough["note"].iloc[1])


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        ("motor_speed,ambient_temperature,bearing_temperature", "Missing input column 'torque'."),
        (
            "motor_speed,bearing_temperature",
            "Missing input columns 'torque', 'ambient_temperature'.",
        ),
        ("torque,motor_speed,ambient_temperature", "Missing target column 'bearing_temperature'."),
        ("torque,motor_speed,ambient_temp,bearing_temperature", "'ambient_temperature'"),
    ],
    ids=["one input", "two inputs", "target", "misspelt input"],
)
def test_missing_column_named(header, missing):
    # Given a header that lacks a configured column
    values = ",".join(["1"] * len(header.split(",")))
    body = f"{header}\n{values}\n".encode()

    # When
    with pytest.raises(MissingColumnError) as caught:
        prepare_body(body)

    # Then the message names what is missing and lists what was found
    assert missing in caught.value.message
    found = ", ".join(f"'{name}'" for name in header.split(","))
    assert f"Columns found: {found}." in caught.value.message
    assert caught.value.status == 400


def test_missing_timestamp_column_named():
    body = b"torque,motor_speed,ambient_temperature,bearing_temperature\n1,2,3,4\n"

    with pytest.raises(MissingColumnError) as caught:
        prepare_body(body, scoring=config("timestamp"))

    assert "Missing timestamp column 'timestamp'." in caught.value.message


def test_missing_column_list_shortened():
    header = ",".join(f"sensor_{i}" for i in range(60)) + ",bearing_temperature"
    body = f"{header}\n{','.join(['1'] * 61)}\n".encode()

    with pytest.raises(MissingColumnError) as caught:
        prepare_body(body)

    assert "'sensor_49' and 11 more." in caught.value.message
    assert "sensor_50" not in caught.value.message


# --- column matching rule ----------------------------------------------------------------


@pytest.mark.parametrize(
    "torque_header",
    ["Torque", "TORQUE", " torque ", "torque ", "\tTorque"],
)
def test_column_match_ignores_case_and_spaces(torque_header):
    # Given the input column named with other case or surrounding spaces
    body = (
        f"{torque_header};motor_speed;ambient_temperature;bearing_temperature\n"
        "42.5;1500;21.0;61.2\n"
    ).encode()

    # When
    batch = prepare_body(body)

    # Then it is used as the input under its configured name
    assert batch.inputs["torque"].tolist() == [42.5]
    assert list(batch.passthrough.columns) == []


def test_column_match_exact_wins():
    # Given an exact match and a column that matches only when case is ignored
    body = (
        b"Torque,torque,motor_speed,ambient_temperature,bearing_temperature\n"
        b"99.0,42.5,1500,21.0,61.2\n"
    )

    # When
    batch = prepare_body(body)

    # Then the exact match is the input and the other column is echoed
    assert batch.inputs["torque"].tolist() == [42.5]
    assert batch.passthrough["Torque"].tolist() == [99.0]


@pytest.mark.parametrize(
    "header",
    [
        "Torque,TORQUE,motor_speed,ambient_temperature,bearing_temperature",
        "Torque, torque ,motor_speed,ambient_temperature,bearing_temperature",
    ],
    ids=["case", "case and spaces"],
)
def test_column_match_ambiguous_rejected(header):
    body = f"{header}\n1,2,3,4,5\n".encode()
    first, second = header.split(",")[:2]

    with pytest.raises(RequestError) as caught:
        prepare_body(body)

    assert "Input column 'torque' matches several columns" in caught.value.message
    assert f"[{first!r}, {second!r}]" in caught.value.message


def test_target_match_ambiguous_rejected():
    body = (
        b"torque,motor_speed,ambient_temperature,Bearing_Temperature,BEARING_TEMPERATURE\n"
        b"1,2,3,4,5\n"
    )

    with pytest.raises(RequestError) as caught:
        prepare_body(body)

    assert "Target column 'bearing_temperature' matches several columns" in caught.value.message


# --- values ------------------------------------------------------------------------------

CSV_HEADER = "torque,motor_speed,ambient_temperature,bearing_temperature"


def csv_with(column: str, value: str, row: int = 2) -> bytes:
    """Build a CSV body of three valid rows with ``value`` written into ``column`` of ``row``."""
    lines = [CSV_HEADER]
    for index in range(3):
        cells = {
            "torque": "42.5",
            "motor_speed": "1500",
            "ambient_temperature": "21.0",
            "bearing_temperature": "61.2",
        }
        if index == row:
            cells[column] = value
        lines.append(",".join(cells[name] for name in CSV_HEADER.split(",")))
    return ("\n".join(lines) + "\n").encode()


def json_records(*torques: str) -> bytes:
    """Build a JSON body of valid records, one per torque value given as raw JSON text."""
    record = (
        '{{"torque": {}, "motor_speed": 1500, "ambient_temperature": 21.0, '
        '"bearing_temperature": 61.2}}'
    )
    return ("[" + ", ".join(record.format(torque) for torque in torques) + "]").encode()


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("torque", "overheat"),
        ("torque", '"42,5"'),
        ("torque", "42.5 Nm"),
        ("motor_speed", '"1,500"'),
        ("motor_speed", "0x5DC"),
        ("bearing_temperature", "61.2°C"),
    ],
    ids=["word", "decimal comma", "unit", "thousands separator", "hex", "target with unit"],
)
def test_non_numeric_value_rejected(column, value):
    # When
    with pytest.raises(InvalidValueError) as caught:
        prepare_body(csv_with(column, value))

    # Then the message names the column and row, and never the value
    assert f"Column {column!r}" in caught.value.message
    assert "at row(s) 2 (rows counted from 0, header excluded)" in caught.value.message
    assert value.strip('"') not in caught.value.message
    assert caught.value.code == "invalid_value"


@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity", "1e309", "-1e309", "+inf"])
def test_infinite_value_rejected(value):
    with pytest.raises(InvalidValueError) as caught:
        prepare_body(csv_with("motor_speed", value, row=1))

    assert "Column 'motor_speed' has values that are not finite numbers" in caught.value.message
    assert "row(s) 1 " in caught.value.message


@pytest.mark.parametrize(
    "torque",
    ["1e309", '"1e309"', '"inf"', "Infinity", "-Infinity"],
    ids=["1e309 number", "1e309 string", "inf string", "Infinity constant", "-Infinity constant"],
)
def test_infinite_json_value_rejected(torque):
    with pytest.raises(InvalidValueError) as caught:
        prepare_body(json_records("42.5", torque), JSON)

    assert "Column 'torque' has values that are not finite numbers" in caught.value.message
    assert "row(s) 1 " in caught.value.message


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (f"{CSV_HEADER}\nTrue,1,2,3\nfalse,1,2,3\n".encode(), CSV, "true/false"),
        (csv_with("torque", "true", row=1), CSV, "row(s) 1 "),
        (json_records("true", "false"), JSON, "true/false"),
        (json_records("42.5", "false"), JSON, "row(s) 1 "),
    ],
    ids=["CSV column", "CSV cell", "JSON column", "JSON cell"],
)
def test_boolean_value_rejected(body, content_type, expected):
    with pytest.raises(InvalidValueError) as caught:
        prepare_body(body, content_type)

    assert "Column 'torque'" in caught.value.message
    assert expected in caught.value.message


def test_numbers_as_json_strings_converted():
    body = (
        b'[{"torque": "42.5", "motor_speed": " 1500 ", "ambient_temperature": "2.1e1", '
        b'"bearing_temperature": "61.2"}]'
    )

    batch = prepare_body(body, JSON)

    assert batch.inputs.iloc[0].tolist() == [42.5, 1500.0, 21.0]
    assert batch.actual.tolist() == [61.2]


@pytest.mark.parametrize("cell", ["", "NaN", "nan", "n/a", "N/A", "NA", "null", "  "])
@pytest.mark.parametrize(
    ("column", "status"),
    [("torque", STATUS_MISSING_INPUT), ("bearing_temperature", STATUS_MISSING_TARGET)],
)
def test_missing_cell_status(cell, column, status):
    # When a cell of row 1 is empty or a missing-value word
    batch = prepare_body(csv_with(column, cell, row=1))

    # Then only that row is marked and its value is NaN
    assert batch.status.tolist() == [STATUS_SCORED, status, STATUS_SCORED]
    assert batch.scorable.tolist() == [True, False, True]
    if column == TARGET:
        assert np.isnan(batch.actual).tolist() == [False, True, False]
    else:
        assert batch.inputs[column].isna().tolist() == [False, True, False]


@pytest.mark.parametrize("value", ["null", '""', '"NaN"', '"n/a"', '" "', "NaN"])
def test_missing_json_value_status(value):
    batch = prepare_body(json_records("42.5", value), JSON)

    assert batch.status.tolist() == [STATUS_SCORED, STATUS_MISSING_INPUT]
    assert np.isnan(batch.inputs.loc[1, "torque"])


def test_missing_json_key_status():
    body = (
        b'[{"torque": 42.5, "motor_speed": 1500, "ambient_temperature": 21, '
        b'"bearing_temperature": 61.2}, {"torque": 43, "motor_speed": 1510, '
        b'"ambient_temperature": 21}]'
    )

    batch = prepare_body(body, JSON)

    assert batch.status.tolist() == [STATUS_SCORED, STATUS_MISSING_TARGET]


@pytest.mark.parametrize(
    ("timestamp", "torque", "target", "status"),
    [
        ("2024-03-06T08:00:00Z", "42.5", "61.2", STATUS_SCORED),
        ("2024-03-06T08:00:00Z", "42.5", "", STATUS_MISSING_TARGET),
        ("2024-03-06T08:00:00Z", "", "61.2", STATUS_MISSING_INPUT),
        ("2024-03-06T08:00:00Z", "", "", STATUS_MISSING_INPUT),
        ("", "42.5", "61.2", STATUS_MISSING_TIMESTAMP),
        ("", "", "", STATUS_MISSING_TIMESTAMP),
        ("NaN", "42.5", "61.2", STATUS_MISSING_TIMESTAMP),
    ],
)
def test_status_most_basic_reason(timestamp, torque, target, status):
    # Given one row. A missing timestamp outranks a missing input, which outranks the target.
    body = (f"timestamp,{CSV_HEADER}\n{timestamp},{torque},1500,21.0,{target}\n").encode()

    # When
    batch = prepare_body(body, scoring=config("timestamp"))

    # Then
    assert batch.status.tolist() == [status]


# --- timestamps --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "timezone", "expected_utc"),
    [
        ("2024-03-06T09:00:00+01:00", "UTC", "2024-03-06T08:00:00"),
        ("2024-03-06T03:00:00-05:00", "Europe/Berlin", "2024-03-06T08:00:00"),
        ("2024-03-06T13:30:00+0530", "UTC", "2024-03-06T08:00:00"),
        ("2024-03-06T08:00:00Z", "Europe/Berlin", "2024-03-06T08:00:00"),
        ("2024-03-06T08:00:00z", "UTC", "2024-03-06T08:00:00"),
        ("2024-03-06 08:00:00.250Z", "UTC", "2024-03-06T08:00:00.250"),
        ("2024-03-06T09:00:00 +01:00", "Europe/Berlin", "2024-03-06T08:00:00"),
        ("2024-03-06T08:00:00", "UTC", "2024-03-06T08:00:00"),
        ("2024-03-06 08:00", "UTC", "2024-03-06T08:00:00"),
        ("2024-03-06T09:00:00", "Europe/Berlin", "2024-03-06T08:00:00"),
        ("2024-07-06T10:00:00", "Europe/Berlin", "2024-07-06T08:00:00"),
        ("2024-07-06", "Europe/Berlin", "2024-07-05T22:00:00"),
        ("2024-07-06T04:00:00", "America/New_York", "2024-07-06T08:00:00"),
    ],
    ids=[
        "offset",
        "negative offset, zone ignored",
        "offset without colon",
        "Z, zone ignored",
        "lower-case z",
        "space and fraction",
        "space before offset",
        "naive UTC",
        "naive without seconds",
        "naive Berlin winter",
        "naive Berlin summer",
        "date only Berlin",
        "naive New York",
    ],
)
def test_timestamp_parsed_to_utc(text, timezone, expected_utc):
    times = parse_timestamps(pd.Series([text]), "timestamp", timezone)

    assert str(times.dtype) == "datetime64[ns, UTC]"
    assert times.iloc[0] == pd.Timestamp(expected_utc, tz="UTC")


def test_timestamp_mixed_offsets_and_naive():
    values = pd.Series(["2024-03-06T08:00:00Z", "2024-03-06T09:01:00", "2024-03-06T10:02:00+02:00"])

    times = parse_timestamps(values, "timestamp", "Europe/Berlin")

    assert times.dt.strftime("%H:%M").tolist() == ["08:00", "08:01", "08:02"]


@pytest.mark.parametrize(
    ("values", "row"),
    [
        # 2024-10-27 02:00-03:00 happens twice in Berlin: clocks go back from 03:00 to 02:00.
        (["2024-10-27T01:30:00", "2024-10-27T02:30:00", "2024-10-27T03:30:00"], 1),
        # 2024-03-31 02:00-03:00 does not exist in Berlin: clocks go forward from 02:00 to 03:00.
        (["2024-03-31T01:30:00", "2024-03-31T03:30:00", "2024-03-31T02:30:00"], 2),
    ],
    ids=["ambiguous", "non-existent"],
)
def test_timestamp_dst_gap_rejected(values, row):
    with pytest.raises(InvalidValueError) as caught:
        parse_timestamps(pd.Series(values), "timestamp", "Europe/Berlin")

    assert "ambiguous or do not exist in Europe/Berlin" in caught.value.message
    assert f"at row(s) {row} " in caught.value.message
    assert "Add the UTC offset" in caught.value.message


@pytest.mark.parametrize(
    "text",
    ["2024-10-27T02:30:00+02:00", "2024-10-27T02:30:00+01:00", "2024-03-31T02:30:00Z"],
)
def test_timestamp_dst_hour_with_offset_accepted(text):
    times = parse_timestamps(pd.Series([text]), "timestamp", "Europe/Berlin")

    assert times.iloc[0] == pd.Timestamp(text).tz_convert("UTC")


def test_timestamp_dst_hour_naive_utc_accepted():
    # Without a configured zone the naive time is UTC, where every hour exists once.
    times = parse_timestamps(pd.Series(["2024-03-31T02:30:00"]), "timestamp")

    assert times.iloc[0] == pd.Timestamp("2024-03-31T02:30:00", tz="UTC")


@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "2024-13-01T00:00:00",
        "2024-02-30T00:00:00",
        "2024-03-06T25:00:00",
        "06/03/2024 08:00",
        "1709712000",
        "2024-03-06T08:00:00+25:00",
    ],
)
def test_timestamp_unparseable_rejected(text):
    values = pd.Series(["2024-03-06T08:00:00Z", "2024-03-06T08:01:00Z", text])

    with pytest.raises(InvalidValueError) as caught:
        parse_timestamps(values, "timestamp")

    assert "Column 'timestamp' has values that are not ISO 8601 times" in caught.value.message
    assert "at row(s) 2 " in caught.value.message


def test_timestamp_error_lists_five_rows():
    values = pd.Series(["bad"] * 8)

    with pytest.raises(InvalidValueError) as caught:
        parse_timestamps(values, "timestamp")

    assert "at row(s) 0, 1, 2, 3, 4 and 3 more " in caught.value.message


def test_timestamp_error_names_request_row():
    # Given an unparseable time in request row 3, after rows with missing times
    body = (
        f"timestamp,{CSV_HEADER}\n"
        "2024-03-06T08:00:00Z,1,2,3,4\n,1,2,3,4\n\n2024-03-06T08:02:00Z,1,2,3,4\nsoon,1,2,3,4\n"
    ).encode()

    with pytest.raises(InvalidValueError) as caught:
        prepare_body(body, scoring=config("timestamp"))

    assert "at row(s) 3 " in caught.value.message


@pytest.mark.parametrize("cell", ["", "  ", "NaN", "n/a"])
def test_timestamp_missing_status(cell):
    body = (f"timestamp,{CSV_HEADER}\n2024-03-06T08:00:00Z,1,2,3,4\n{cell},1,2,3,4\n").encode()

    batch = prepare_body(body, scoring=config("timestamp"))

    assert batch.status.tolist() == [STATUS_SCORED, STATUS_MISSING_TIMESTAMP]
    assert pd.isna(batch.timestamps.iloc[1])


def test_timestamp_json_null_status():
    body = (
        b'[{"timestamp": null, "torque": 1, "motor_speed": 2, "ambient_temperature": 3, '
        b'"bearing_temperature": 4}]'
    )

    batch = prepare_body(body, JSON, scoring=config("timestamp"))

    assert batch.status.tolist() == [STATUS_MISSING_TIMESTAMP]


def test_timestamps_configured_zone_used():
    body = f"Timestamp,{CSV_HEADER}\n2024-07-06 10:00:00,1,2,3,4\n".encode()

    batch = prepare_body(body, scoring=config("timestamp", "Europe/Berlin"))

    assert batch.timestamps.iloc[0] == pd.Timestamp("2024-07-06T08:00:00Z")


def test_no_timestamp_column_none():
    batch = prepare_body(HEADER_ORDERS["reversed"])

    assert batch.timestamps is None
