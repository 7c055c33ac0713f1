"""Reading request bodies: CSV dialects and encodings, JSON records, and rejected bodies."""

from __future__ import annotations

import csv
import io
import json
import math

import pandas as pd
import pytest

from anomaly_detector.errors import (
    EmptyRequestError,
    RequestError,
    UnsupportedMediaTypeError,
)
from anomaly_detector.reader import read_request, sniff_header

CSV = "text/csv"
JSON = "application/json"

COLUMNS = ["motor_speed", "torque", "bearing_temperature"]
VALUES = [[1500.0, 42.5, 61.2], [1510.0, 43.0, 61.4]]


def machine_csv(delimiter: str = ",", newline: str = "\n") -> str:
    """Render COLUMNS and VALUES as CSV text with the given delimiter and line ending."""
    lines = [delimiter.join(COLUMNS)]
    lines += [delimiter.join(f"{value:g}" for value in row) for row in VALUES]
    return newline.join(lines) + newline


def utf16_be_with_bom(text: str) -> bytes:
    return b"\xfe\xff" + text.encode("utf-16-be")


# --- CSV dialects ------------------------------------------------------------------------

DIALECTS = {
    "comma LF": machine_csv().encode(),
    "semicolon LF": machine_csv(";").encode(),
    "tab LF": machine_csv("\t").encode(),
    "comma CRLF": machine_csv(newline="\r\n").encode(),
    "comma CR": machine_csv(newline="\r").encode(),
    "semicolon CR": machine_csv(";", "\r").encode(),
    "tab CRLF": machine_csv("\t", "\r\n").encode(),
    "UTF-8 BOM": b"\xef\xbb\xbf" + machine_csv().encode(),
    "UTF-8 BOM semicolon CRLF": b"\xef\xbb\xbf" + machine_csv(";", "\r\n").encode(),
    # Python's "utf-16" codec writes a byte-order mark, little-endian on this platform.
    "UTF-16 LE BOM": machine_csv().encode("utf-16"),
    "UTF-16 BE BOM": utf16_be_with_bom(machine_csv(";", "\r\n")),
    "blank lines": b"\n\n" + machine_csv().replace("\n", "\n\n").encode() + b"\n",
    "blank lines CRLF": b"\r\n" + machine_csv(newline="\r\n\r\n").encode(),
    "whitespace-only line": machine_csv().replace("\n1510", "\n   \n1510").encode(),
}


@pytest.mark.parametrize("body", DIALECTS.values(), ids=DIALECTS.keys())
def test_csv_dialect_read(body):
    # When
    frame = read_request(body, CSV)

    # Then
    assert list(frame.columns) == COLUMNS
    assert frame.to_numpy(dtype=float).tolist() == VALUES


@pytest.mark.parametrize(
    ("header", "delimiter"),
    [
        ("a,b,c\n", ","),
        ("a;b;c\n", ";"),
        ("a\tb\tc\n", "\t"),
        ("only_column\n", ","),
        ('"speed, rpm";torque\n', ";"),
        ('"a;b",c\n', ","),
    ],
)
def test_sniff_header_delimiter(header, delimiter):
    assert sniff_header(header)[0] == delimiter


QUOTED = {
    "comma in field": (b'note,torque\n"stop, restart",42.5\n', ","),
    "semicolon in field": (b'note;torque\n"a;b";42.5\n', ";"),
    "tab in field": (b'note\ttorque\n"a\tb"\t42.5\n', "\t"),
    "quote in field": (b'note,torque\n"say ""hi""",42.5\n', ","),
    "line break in field": (b'note,torque\n"line one\nline two",42.5\n', ","),
}


@pytest.mark.parametrize(("body", "delimiter"), QUOTED.values(), ids=QUOTED.keys())
def test_csv_quoted_field_kept(body, delimiter):
    # Given the expected note, read with the csv module rather than the reader
    expected_note = list(csv.reader(io.StringIO(body.decode()), delimiter=delimiter))[1][0]

    # When
    frame = read_request(body, CSV)

    # Then
    assert frame["note"].tolist() == [expected_note]
    assert frame["torque"].tolist() == [42.5]


def test_csv_quoted_header_keeps_delimiter():
    frame = read_request(b'"speed, rpm";torque\n1500;42.5\n', CSV)

    assert list(frame.columns) == ["speed, rpm", "torque"]


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_csv_pandas_index_dropped(delimiter):
    # Given a frame exported by pandas with its index, as DataFrame.to_csv writes it
    exported = pd.DataFrame(VALUES, columns=COLUMNS, index=[7, 8]).to_csv(sep=delimiter)

    # When
    frame = read_request(exported.encode(), CSV)

    # Then
    assert list(frame.columns) == COLUMNS
    assert frame.to_numpy(dtype=float).tolist() == VALUES
    assert frame.index.tolist() == [0, 1]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"torque,torque\n1,2\n", ["'torque' appears twice", "columns 1 and 2"]),
        (b"speed;torque;speed\n1;2;3\n", ["'speed' appears twice", "columns 1 and 3"]),
        (b"speed,,torque\n1,2,3\n", ["Column 2 of the header has no name"]),
        (b"speed, ,torque\n1,2,3\n", ["Column 2 of the header has no name"]),
        (b"speed,torque,\n1,2,\n", ["Column 3 of the header has no name", "trailing delimiter"]),
        (b",,torque\n1,2,3\n", ["Column 1 of the header has no name"]),
    ],
    ids=["duplicate", "duplicate apart", "blank", "spaces only", "trailing", "after index"],
)
def test_csv_column_names_rejected(body, expected):
    with pytest.raises(RequestError) as caught:
        read_request(body, CSV)

    for text in expected:
        assert text in caught.value.message
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "The CSV body is empty"),
        (b"\n\r\n  \n", "The CSV body is empty"),
        (b"motor_speed,torque\n", "no data rows"),
        (b"motor_speed,torque", "no data rows"),
        (b"motor_speed;torque\r\n\r\n\r\n", "no data rows"),
    ],
    ids=["empty", "blank lines", "header only", "header without newline", "header and blanks"],
)
def test_csv_empty_rejected(body, expected):
    with pytest.raises(EmptyRequestError) as caught:
        read_request(body, CSV)

    assert expected in caught.value.message
    assert caught.value.code == "empty_request"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b"speed,torque\n1,2\n3,4,5\n",
            "Line 3 of the CSV body has 3 fields, but the header has 2",
        ),
        (b"speed,torque\n1,2\n3\n", "Line 3 of the CSV body has 1 field, but the header has 2"),
        (b"speed;torque\n\n1;2\n3;4;5\n", "Line 4 of the CSV body has 3 fields"),
        (b"speed,torque\r\n1,2\r\n3,4,5\r\n", "Line 3 of the CSV body has 3 fields"),
        (b"speed,torque\r1,2\r3\r", "Line 3 of the CSV body has 1 field"),
        # pandas would take the first field for an index and shift the values left.
        (b"speed,torque\n1,2,3\n4,5,6\n", "Line 2 of the CSV body has 3 fields"),
    ],
    ids=["long", "short", "after blank line", "CRLF", "CR", "every row one field more"],
)
def test_csv_ragged_row_rejected(body, expected):
    with pytest.raises(RequestError) as caught:
        read_request(body, CSV)

    assert expected in caught.value.message


@pytest.mark.parametrize(
    "body",
    [b'speed,note\n1,"open quote\n2,x\n', b'speed,note\n1,"closed"then text\n'],
    ids=["unbalanced", "text after closing quote"],
)
def test_csv_bad_quotes_rejected(body):
    with pytest.raises(RequestError) as caught:
        read_request(body, CSV)

    assert "quotes are balanced" in caught.value.message


def test_csv_empty_cells_read_as_missing():
    frame = read_request(b"speed,torque\n1500,\n,43\n", CSV)

    assert math.isnan(frame.loc[0, "torque"])
    assert math.isnan(frame.loc[1, "speed"])


def test_csv_text_columns_kept_as_text():
    body = b"timestamp,batch,torque\n2024-03-06T08:00:00Z,007,42.5\n"

    frame = read_request(body, CSV, text_columns=["timestamp", "batch"])

    assert frame.loc[0, "timestamp"] == "2024-03-06T08:00:00Z"
    assert frame.loc[0, "batch"] == "007"


# --- encodings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "offset"),
    [
        # A header written as Latin-1: the degree sign is the single byte 0xB0.
        ("temperature_°C,torque\n61.2,42.5\n".encode("latin-1"), 12),
        (b"\xef\xbb\xbftemperature_\xb0C,torque\n61.2,42.5\n", 15),
        (b"speed,torque\n1500,42.5\xff\n", 22),
        # A UTF-8 sequence cut short: 0xC3 starts a two-byte character.
        (b"speed,torque\n1500,\xc3\n", 18),
    ],
    ids=["latin-1 header", "after UTF-8 BOM", "invalid byte", "truncated sequence"],
)
def test_invalid_utf8_names_offset(body, offset):
    with pytest.raises(RequestError) as caught:
        read_request(body, CSV)

    assert f"first invalid byte at offset {offset})" in caught.value.message


@pytest.mark.parametrize(
    "body",
    [
        b"speed,torque\n1500,\x0042.5\n",
        machine_csv().encode("utf-16-le"),
        "speed,torque,note\n1500,42.5,é\n".encode("utf-16-le"),
    ],
    ids=["NUL in field", "UTF-16 without BOM", "the same, not ASCII"],
)
def test_nul_bytes_rejected(body):
    with pytest.raises(RequestError) as caught:
        read_request(body, CSV)

    assert "NUL bytes" in caught.value.message
    assert "byte-order mark" in caught.value.message


def test_utf16_odd_length_rejected():
    body = machine_csv().encode("utf-16") + b"\x00"

    with pytest.raises(RequestError) as caught:
        read_request(body, CSV)

    assert "not valid UTF-16" in caught.value.message


# --- JSON --------------------------------------------------------------------------------

RECORDS = [dict(zip(COLUMNS, row, strict=True)) for row in VALUES]


@pytest.mark.parametrize(
    "document",
    [RECORDS, {"records": RECORDS}],
    ids=["list of records", "records key"],
)
def test_json_records_read(document):
    frame = read_request(json.dumps(document).encode(), JSON)

    assert list(frame.columns) == COLUMNS
    assert frame.to_numpy(dtype=float).tolist() == VALUES


def test_json_utf8_bom_read():
    body = b'\xef\xbb\xbf[{"torque": 42.5}]'

    frame = read_request(body, JSON)

    assert frame["torque"].tolist() == [42.5]


def test_json_mixed_keys_united():
    # Given records that each lack a key that another has
    body = b'[{"speed": 1500, "torque": 42.5}, {"torque": 43}, {"note": "x", "speed": 1520}]'

    # When
    frame = read_request(body, JSON)

    # Then the columns are in first-seen order and absent keys are missing values
    assert list(frame.columns) == ["speed", "torque", "note"]
    assert math.isnan(frame.loc[1, "speed"])
    assert math.isnan(frame.loc[2, "torque"])
    assert frame["note"].isna().tolist() == [True, True, False]


def test_json_numbers_as_strings_kept():
    # The reader keeps strings, and prepare converts them to numbers.
    frame = read_request(b'[{"torque": "42.5", "speed": " 1500 "}]', JSON)

    assert frame.loc[0, "torque"] == "42.5"
    assert frame.loc[0, "speed"] == " 1500 "


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'"rows"', "must be a list of records (objects)"),
        (b"42", "got a number"),
        (b"null", "got null"),
        (
            b'{"rows": []}',
            "must have a \"records\" key holding a list of records; found keys ['rows']",
        ),
        (b'{"records": {"torque": 1}}', "got an object"),
        (b"[1, 2]", "Record 0 of the JSON body is a number, not an object"),
        (b'[{"torque": 1}, "x"]', "Record 1 of the JSON body is a string"),
        (b'[{"torque": 1}, {"torque": {"value": 2}}]', "Record 1, key 'torque' contains an object"),
        (b'[{"torque": [1, 2]}]', "Record 0, key 'torque' contains a list"),
        (b'[{"torque": 1},]', "not valid JSON"),
    ],
    ids=[
        "string",
        "number",
        "null",
        "object without records",
        "records not a list",
        "record a number",
        "record a string",
        "nested object",
        "nested list",
        "invalid JSON",
    ],
)
def test_json_rejected(body, expected):
    with pytest.raises(RequestError) as caught:
        read_request(body, JSON)

    assert expected in caught.value.message
    assert caught.value.status == 400


def test_json_invalid_names_position():
    with pytest.raises(RequestError) as caught:
        read_request(b'[\n  {"torque": 1},\n  {"torque" 2}\n]', JSON)

    assert "line 3, column 13" in caught.value.message


@pytest.mark.parametrize("body", [b"", b"  \n", b"[]", b'{"records": []}'])
def test_json_empty_rejected(body):
    with pytest.raises(EmptyRequestError):
        read_request(body, JSON)


# --- content types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/csv; charset=utf-8", b"torque\n42.5\n"),
        ("TEXT/CSV", b"torque\n42.5\n"),
        ("application/csv", b"torque\n42.5\n"),
        ("text/plain", b"torque\n42.5\n"),
        ("application/json; charset=utf-8", b'[{"torque": 42.5}]'),
        ("application/vnd.machine-data+json", b'[{"torque": 42.5}]'),
    ],
)
def test_content_type_accepted(content_type, body):
    frame = read_request(body, content_type)

    assert frame["torque"].tolist() == [42.5]


@pytest.mark.parametrize(
    ("content_type", "shown"),
    [
        ("application/xml", "'application/xml'"),
        ("application/x-www-form-urlencoded", "'application/x-www-form-urlencoded'"),
        ("multipart/form-data; boundary=x", "'multipart/form-data'"),
        ("", "'none'"),
        (None, "'none'"),
    ],
)
def test_content_type_unsupported(content_type, shown):
    with pytest.raises(UnsupportedMediaTypeError) as caught:
        read_request(b"torque\n42.5\n", content_type)

    assert caught.value.status == 415
    assert f"Content-Type {shown} is not supported" in caught.value.message
