"""Build the hostile-input corpus: request bodies under bodies/ and their cases in cases.json.

Run ``python tests/hostile/build.py`` after changing a case. ``test_hostile_inputs`` checks
that the stored files match what this script builds, so the corpus never drifts from it.

Every case is sent to the service configured as ``corpus.CONFIG`` describes: inputs
motor_speed, torque and ambient_temperature, target bearing_temperature, timestamp column
timestamp, time zone Europe/Berlin and a request limit of 65,536 bytes.
"""

from __future__ import annotations

import gzip
import json
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEADER = ["timestamp", "motor_speed", "torque", "ambient_temperature", "bearing_temperature", "note"]
LIMIT = 65_536
# The reader's column limit (anomaly_detector.reader.MAX_COLUMNS), repeated so that the
# corpus is plain data that does not change when the code does.
MAX_COLUMNS = 2_000
FIRST_TIME = datetime(2024, 3, 6, 8, 0)
CSV = "text/csv"
JSON = "application/json"


@dataclass
class Row:
    """One machine reading; None leaves the cell empty."""

    timestamp: str | None
    motor_speed: float | None
    torque: float | None
    ambient_temperature: float | None
    bearing_temperature: float | None
    note: str = ""

    def cells(self) -> list[str]:
        values = [
            self.timestamp,
            self.motor_speed,
            self.torque,
            self.ambient_temperature,
            self.bearing_temperature,
        ]
        cells = []
        for value in values:
            if value is None:
                cells.append("")
            elif isinstance(value, str):
                cells.append(value)
            else:
                cells.append(f"{value:g}")
        return [*cells, self.note]

    def record(self) -> dict:
        return dict(zip(HEADER, [*self.cells()[:1], *self.numbers(), self.note], strict=True))

    def numbers(self) -> list[float | None]:
        return [self.motor_speed, self.torque, self.ambient_temperature, self.bearing_temperature]


def machine_rows(count: int, first_minute: int = 0) -> list[Row]:
    """Readings one minute apart whose target stays within 0.45 of 0.1 x torque + ambient."""
    rows = []
    for i in range(first_minute, first_minute + count):
        torque = 60.0 + 2 * (i % 40)
        ambient = round(21.0 + 0.1 * (i % 5), 1)
        bearing = round(0.1 * torque + ambient + 0.3 * ((i % 4) - 1.5), 2)
        time = (FIRST_TIME + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        rows.append(Row(time, 1480.0, torque, ambient, bearing))
    return rows


def csv_text(rows: list[Row], header=HEADER, delimiter: str = ",", newline: str = "\n") -> str:
    lines = [delimiter.join(header)] + [delimiter.join(row.cells()) for row in rows]
    return newline.join(lines) + newline


def json_text(rows: list[Row]) -> str:
    return json.dumps([row.record() for row in rows])


def with_cell(rows: list[Row], row: int, column: str, value: str) -> str:
    """Render rows as CSV with one cell replaced by ``value``."""
    table = [r.cells() for r in rows]
    table[row][HEADER.index(column)] = value
    return ",".join(HEADER) + "\n" + "".join(",".join(cells) + "\n" for cells in table)


def changed(row: Row, **values) -> Row:
    """Return a copy of ``row`` with some fields replaced."""
    return Row(**{**row.__dict__, **values})


@dataclass
class Case:
    """One request of the corpus and the response that the service must return."""

    name: str
    description: str
    body: bytes
    status: int
    content_type: str | None = CSV
    headers: dict[str, str] = field(default_factory=dict)
    code: str | None = None
    message: list[str] = field(default_factory=list)
    rows: list[Row] | None = None
    scored_rows: int | None = None
    # "any": as HTTP bytes or as an API Gateway event. Event only, as no HTTP client could
    # send them so: "event" stores the event's body marked base64, and "event_text" stores
    # bytes whose invalid UTF-8 reaches the event text as surrogate escapes.
    transport: str = "any"
    extension: str = "csv"

    def manifest(self) -> dict:
        headers = dict(self.headers)
        if self.content_type is not None:
            headers = {"Content-Type": self.content_type, **headers}
        expect: dict = {"status": self.status}
        if self.status == 200:
            expect["rows"] = len(self.rows)
            expect["scored_rows"] = self.scored_rows
            expect["actual"] = [row.bearing_temperature for row in self.rows]
            expect["inputs"] = [row.numbers()[:3] for row in self.rows]
        else:
            expect["code"] = self.code
            expect["message"] = self.message
        return {
            "name": self.name,
            "description": self.description,
            "body": f"bodies/{self.name.replace('/', '-')}.{self.extension}",
            "headers": headers,
            "transport": self.transport,
            "expect": expect,
        }


def accepted(name, description, body, rows, scored=None, **options) -> Case:
    """A request the service scores: 200 with one result row per input row."""
    scored = len(rows) if scored is None else scored
    return Case(name, description, _bytes(body), 200, rows=rows, scored_rows=scored, **options)


def rejected(name, description, body, status, code, *message, **options) -> Case:
    """A request the service rejects with ``status``, ``code`` and words of the message."""
    return Case(name, description, _bytes(body), status, code=code, message=list(message), **options)


def _bytes(body: str | bytes) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body


def encoding_cases() -> list[Case]:
    rows = machine_rows(3)
    text = csv_text(rows)
    latin_note = csv_text([changed(rows[0], note="Lager \u00e4u\u00dferst hei\u00df")])
    latin_header = csv_text(rows, [*HEADER[:5], "Bemerkung \u00b0C"])
    curly_quotes = csv_text([changed(rows[0], note="\u201cok\u201d")])
    letters = [changed(rows[0], note="\u00e4\u00df\u00e9 \u8f74\u627f \U0001f525")]
    control = [changed(row, note="bell\x07 escape\x1b[31m tab\tend") for row in rows]
    big = b"timestamp,motor_speed,torque,ambient_temperature,bearing_temperature\n" + b"0" * LIMIT
    return [
        accepted("encoding/utf8_bom", "UTF-8 with a byte-order mark", b"\xef\xbb\xbf" + text.encode(), rows),
        accepted("encoding/utf16le_bom", "UTF-16 little-endian with a byte-order mark",
                 b"\xff\xfe" + text.encode("utf-16-le"), rows, extension="bin"),
        accepted("encoding/utf16be_bom", "UTF-16 big-endian with a byte-order mark and CRLF",
                 b"\xfe\xff" + csv_text(rows, newline="\r\n").encode("utf-16-be"), rows,
                 extension="bin"),
        rejected("encoding/utf16le_no_bom", "UTF-16 without a byte-order mark",
                 text.encode("utf-16-le"), 400, "invalid_request", "NUL", "byte-order mark",
                 extension="bin"),
        rejected("encoding/utf32", "UTF-32 with its byte-order mark", text.encode("utf-32"),
                 400, "invalid_request", "NUL", extension="bin"),
        rejected("encoding/latin1_note", "Latin-1 umlauts in a text cell",
                 latin_note.encode("latin-1"), 400, "invalid_request", "not valid UTF-8", "offset",
                 extension="bin"),
        rejected("encoding/latin1_header", "a Latin-1 degree sign in a column name",
                 latin_header.encode("latin-1"), 400, "invalid_request", "not valid UTF-8",
                 extension="bin"),
        rejected("encoding/cp1252_quotes", "Windows-1252 curly quotes in a text cell",
                 curly_quotes.encode("cp1252"), 400, "invalid_request", "not valid UTF-8",
                 extension="bin"),
        accepted("encoding/utf8_text", "UTF-8 letters, CJK and an emoji in a text cell",
                 csv_text(letters), letters),
        accepted("encoding/control_chars_in_text", "bell, escape and tab characters in a text cell",
                 csv_text(control), control),
        rejected("encoding/control_char_in_number", "a bell character inside a number",
                 with_cell(rows, 1, "motor_speed", "14\x0780"), 400, "invalid_value",
                 "'motor_speed'", "row(s) 1"),
        rejected("encoding/nul_byte", "a NUL byte in the middle of a CSV body",
                 text.encode().replace(b"Z,1480", b"Z,14\x0080", 1), 400, "invalid_request", "NUL",
                 extension="bin"),
        rejected("encoding/invalid_base64", "an event body marked base64 that is not base64",
                 b"dGltZXN0YW1w!!not*base64", 400, "invalid_request", "base64",
                 transport="event", extension="txt"),
        accepted("encoding/gzip_csv", "a gzip-compressed CSV body with Content-Encoding: gzip",
                 gzip.compress(text.encode(), mtime=0), rows, headers={"Content-Encoding": "gzip"},
                 extension="csv.gz"),
        accepted("encoding/gzip_json", "a gzip-compressed JSON body with Content-Encoding: gzip",
                 gzip.compress(json_text(rows).encode(), mtime=0), rows, content_type=JSON,
                 headers={"Content-Encoding": "gzip"}, extension="json.gz"),
        rejected("encoding/gzip_bomb", "1 MB of zeros compressed to about 1 kB",
                 gzip.compress(b"0" * 1_000_000, mtime=0), 413, "payload_too_large",
                 f"{LIMIT}-byte limit", headers={"Content-Encoding": "gzip"}, extension="bin"),
        rejected("encoding/gzip_truncated", "a gzip body cut in half",
                 gzip.compress(text.encode(), mtime=0)[:60], 400, "invalid_request", "truncated",
                 headers={"Content-Encoding": "gzip"}, extension="bin"),
        rejected("encoding/gzip_header_on_plain_body", "Content-Encoding: gzip on plain CSV", text,
                 400, "invalid_request", "not valid gzip", headers={"Content-Encoding": "gzip"}),
        rejected("encoding/gzip_without_header", "a gzip body without Content-Encoding",
                 gzip.compress(text.encode(), mtime=0), 415, "unsupported_media_type",
                 "Content-Encoding: gzip", extension="bin"),
        rejected("encoding/brotli_declared", "Content-Encoding: br", text, 415,
                 "unsupported_media_type", "'br'", headers={"Content-Encoding": "br"}),
        rejected("encoding/over_size_limit", "a body one byte over the configured limit",
                 big[: LIMIT + 1], 413, "payload_too_large", f"{LIMIT + 1} bytes",
                 f"limit is {LIMIT} bytes"),
        rejected("encoding/empty_body", "no body at all", b"", 400, "invalid_request", "empty"),
        rejected("encoding/whitespace_body", "only spaces and line breaks", " \n\r\n\t\n", 400,
                 "empty_request", "empty"),
        rejected("encoding/no_content_type", "CSV without a Content-Type header", text, 415,
                 "unsupported_media_type", "text/csv", content_type=None),
        rejected("encoding/octet_stream", "CSV sent as application/octet-stream", text, 415,
                 "unsupported_media_type", "'application/octet-stream'",
                 content_type="application/octet-stream"),
    ]  # fmt: skip


def csv_cases() -> list[Case]:
    rows = machine_rows(4)
    text = csv_text(rows)
    lines = text.splitlines(keepends=True)
    def wide(columns: int) -> str:
        extra = columns - len(HEADER)
        header = HEADER + [f"sensor_{i}" for i in range(extra)]
        return ",".join(header) + "\n" + "".join(
            ",".join([*row.cells(), *("1" for _ in range(extra))]) + "\n" for row in rows
        )

    long_note = ",".join(rows[0].cells()[:5]) + "," + "x" * 40_000 + "\n"
    mixed_case = [" Timestamp", "MOTOR_SPEED", "torque ", "Ambient_Temperature", "bearing_temperature", "note"]
    ambiguous = ["timestamp", "motor_speed", "Torque", "TORQUE ", "ambient_temperature", "bearing_temperature"]
    ambiguous_rows = "".join(",".join([*r.cells()[:3], *r.cells()[2:5]]) + "\n" for r in rows)
    index_rows = "".join(f"{i}," + ",".join(r.cells()) + "\n" for i, r in enumerate(rows))
    decimal_comma = csv_text(rows, delimiter=";").replace("21.1", "21,1")
    excel = "\ufeff" + csv_text(rows, delimiter=";", newline="\r\n")
    return [
        accepted("csv/semicolon", "semicolon delimiter", csv_text(rows, delimiter=";"), rows),
        accepted("csv/tab", "tab delimiter", csv_text(rows, delimiter="\t"), rows),
        accepted("csv/excel_semicolon_bom_crlf", "a spreadsheet export: BOM, ';' and CRLF",
                 excel, rows),
        rejected("csv/pipe", "pipe delimiter, which is not one of , ; or tab",
                 csv_text(rows, delimiter="|"), 400, "missing_column", "Missing input columns"),
        rejected("csv/decimal_comma", "decimal commas with a ';' delimiter", decimal_comma, 400,
                 "invalid_value", "'ambient_temperature'", "row(s) 1", "decimal separator"),
        accepted("csv/quoted_delimiter", "a quoted text cell that contains commas",
                 text.replace(",\n", ',"stop, check, restart"\n'), rows),
        accepted("csv/escaped_quotes", "doubled quotes inside a quoted text cell",
                 text.replace(",\n", ',"operator said ""hot"""\n'), rows),
        accepted("csv/quoted_line_break", "a quoted text cell with a line break",
                 text.replace(",\n", ',"line one\nline two"\n'), rows),
        rejected("csv/backslash_quotes", "backslash-escaped quotes, which CSV does not use",
                 text.replace(",\n", ',"said \\"hot\\""\n', 1), 400,
                 "invalid_request", "line 2", "quotes"),
        rejected("csv/unbalanced_quote", "a quote that is never closed",
                 text.replace(",\n", ',"open\n', 1), 400, "invalid_request",
                 "quotes"),
        accepted("csv/quoted_numbers", "every cell quoted, numbers included",
                 "".join(",".join(f'"{c}"' for c in line.rstrip("\n").split(",")) + "\n"
                         for line in lines), rows),
        accepted("csv/blank_lines", "blank lines before, between and after rows",
                 "\n\n" + text.replace("\n", "\n\n") + "\n", rows),
        accepted("csv/whitespace_lines", "lines of spaces and tabs between rows",
                 text.replace("\n2024", "\n  \t \n2024"), rows),
        accepted("csv/cr_line_endings", "classic Mac CR line endings", csv_text(rows, newline="\r"),
                 rows),
        accepted("csv/crlf_line_endings", "Windows CRLF line endings",
                 csv_text(rows, newline="\r\n"), rows),
        accepted("csv/mixed_line_endings", "LF, CRLF and CR in one body",
                 lines[0] + lines[1].replace("\n", "\r\n") + lines[2].replace("\n", "\r")
                 + "".join(lines[3:]), rows),
        rejected("csv/header_only", "a header row and no data", lines[0], 400, "empty_request",
                 "no data rows"),
        rejected("csv/no_header", "data rows without a header row", "".join(lines[1:]), 400,
                 "missing_column", "no header row"),
        rejected("csv/no_header_with_text", "data rows with text in every cell, and no header",
                 csv_text([changed(r, note=f"check {i}") for i, r in enumerate(rows)])
                 .split("\n", 1)[1], 400, "missing_column", "Missing input columns"),
        rejected("csv/duplicate_column", "two columns named torque",
                 text.replace("ambient_temperature", "torque", 1), 400, "invalid_request",
                 "'torque' appears twice", "columns 3 and 4"),
        rejected("csv/blank_column_name", "an unnamed column in the middle of the header",
                 text.replace(",torque,", ",,", 1), 400, "invalid_request",
                 "Column 3 of the header has no name"),
        rejected("csv/trailing_delimiter", "a delimiter at the end of every line",
                 text.replace("\n", ",\n"), 400, "invalid_request", "Column 7", "trailing"),
        accepted("csv/names_case_and_spaces", "column names in other case with spaces around",
                 csv_text(rows, mixed_case), rows),
        rejected("csv/names_ambiguous", "two columns that both match torque loosely",
                 ",".join(ambiguous) + "\n" + ambiguous_rows, 400, "invalid_request",
                 "matches several columns", "'Torque'"),
        accepted("csv/unnamed_index_column", "the unnamed index column of a pandas export",
                 "," + lines[0] + index_rows, rows),
        accepted("csv/very_long_line", "a 40,000-character text cell",
                 lines[0] + long_note, rows[:1]),
        accepted("csv/thousands_of_columns", f"{MAX_COLUMNS:,} columns, the most accepted",
                 wide(MAX_COLUMNS), rows),
        rejected("csv/too_many_columns", f"{MAX_COLUMNS + 1:,} columns", wide(MAX_COLUMNS + 1),
                 400, "invalid_request", f"{MAX_COLUMNS + 1} columns", f"at most {MAX_COLUMNS}"),
        rejected("csv/extra_field", "a data row with one field more than the header",
                 "".join(lines[:2]) + lines[2].replace("\n", ",\n") + "".join(lines[3:]), 400,
                 "invalid_request",
                 "Line 3", "7 fields", "header has 6"),
        rejected("csv/missing_field", "a data row with one field less than the header",
                 lines[0] + lines[1] + lines[2].replace(",\n", "\n") + "".join(lines[3:]), 400,
                 "invalid_request", "Line 3", "5 fields"),
        accepted("csv/spaces_after_delimiter", "a space after every delimiter",
                 text.replace(",", ", "), rows),
        rejected("csv/sep_hint_line", "a spreadsheet's sep=, hint before the header",
                 "sep=,\n" + text, 400, "invalid_request", "sep=", "Remove that line"),
        rejected("csv/comment_line", "a comment line before the header",
                 "# exported from the plant historian\n" + text, 400, "invalid_request",
                 "Line 2", "header has 1"),
        rejected("csv/header_repeated", "a second header in the middle, as concatenated files have",
                 "".join(lines[:3]) + lines[0] + "".join(lines[3:]), 400, "invalid_value",
                 "'motor_speed'", "row(s) 2"),
        rejected("csv/quoted_blank_line", "a line holding only a quoted empty field",
                 "".join(lines[:2]) + '""\n' + "".join(lines[2:]), 400, "invalid_request",
                 "Line 3", "1 field"),
        rejected("csv/form_feed_line", "a line holding only a form feed",
                 "".join(lines[:2]) + "\f\n" + "".join(lines[2:]), 400, "invalid_request",
                 "Line 3", "1 field"),
    ]  # fmt: skip


def value_cases() -> list[Case]:
    rows = machine_rows(4)
    missing = [changed(rows[0]), changed(rows[1], torque=None),
               changed(rows[2], bearing_temperature=None), changed(rows[3])]  # fmt: skip

    five = machine_rows(5)
    missing_words = ",".join(HEADER) + "\n" + "".join(
        ",".join(cells) + "\n"
        for cells in (
            [*five[0].cells()[:2], "n/a", *five[0].cells()[3:]],
            [*five[1].cells()[:2], "NaN", *five[1].cells()[3:]],
            [*five[2].cells()[:4], "null", ""],
            [*five[3].cells()[:3], "NA", *five[3].cells()[4:]],
            five[4].cells(),
        )
    )
    five[0] = changed(five[0], torque=None)
    five[1] = changed(five[1], torque=None)
    five[2] = changed(five[2], bearing_temperature=None)
    five[3] = changed(five[3], ambient_temperature=None)

    categorical = ",".join(HEADER) + "\n" + "".join(
        ",".join([*r.cells()[:2], "high" if i % 2 else "low", *r.cells()[3:]]) + "\n"
        for i, r in enumerate(rows)
    )

    huge = [changed(r, bearing_temperature=1.7e308) for r in rows[:3]]
    tiny = [changed(rows[0], ambient_temperature=1e-320), *rows[1:]]
    signs = with_cell(rows, 0, "torque", "+60").replace(",21,", ",2.1e1,", 1)
    return [
        accepted("values/empty_cells", "an empty input cell and an empty target cell",
                 csv_text(missing), missing, scored=2),
        accepted("values/missing_words", "n/a, NaN, null and NA in numeric cells", missing_words,
                 five, scored=1),
        rejected("values/inf", "inf in an input", with_cell(rows, 2, "torque", "inf"), 400,
                 "invalid_value", "'torque'", "row(s) 2", "finite"),
        rejected("values/negative_infinity", "-Infinity in the target",
                 with_cell(rows, 1, "bearing_temperature", "-Infinity"), 400, "invalid_value",
                 "'bearing_temperature'", "row(s) 1"),
        rejected("values/overflow_1e309", "1e309, beyond the float range",
                 with_cell(rows, 3, "motor_speed", "1e309"), 400, "invalid_value", "'motor_speed'",
                 "row(s) 3"),
        rejected("values/residual_overflow", "targets near the float maximum, whose sums overflow",
                 csv_text(huge), 400, "invalid_value", "64-bit", "'bearing_temperature'"),
        accepted("values/subnormal", "a number below the smallest normal float",
                 csv_text(tiny), tiny),
        accepted("values/signs_and_exponents", "a leading plus and an exponent", signs, rows),
        rejected("values/booleans", "true and false in an input",
                 with_cell(rows, 0, "torque", "true").replace(",62,", ",false,"), 400,
                 "invalid_value",
                 "'torque'"),
        rejected("values/units", "a number with its unit", with_cell(rows, 2, "torque", "64 Nm"), 400,
                 "invalid_value", "'torque'", "row(s) 2", "units"),
        rejected("values/thousands_separator", "a quoted number with a thousands separator",
                 with_cell(rows, 1, "motor_speed", '"1,480"'), 400, "invalid_value", "'motor_speed'",
                 "row(s) 1", "thousands separators"),
        rejected("values/text_in_number", "an error text in the target",
                 with_cell(rows, 3, "bearing_temperature", "sensor fault"), 400, "invalid_value",
                 "'bearing_temperature'", "row(s) 3"),
        rejected("values/categorical_input", "an input of category labels", categorical, 400,
                 "invalid_value", "'torque'", "row(s) 0, 1, 2, 3"),
        rejected("values/hexadecimal", "a hexadecimal number", with_cell(rows, 0, "motor_speed", "0x5c8"),
                 400, "invalid_value", "'motor_speed'", "row(s) 0"),
        rejected("values/digit_separator", "a Python-style digit separator",
                 with_cell(rows, 0, "motor_speed", "1_480"), 400, "invalid_value", "'motor_speed'"),
    ]  # fmt: skip


def json_cases() -> list[Case]:
    rows = machine_rows(3)
    records = [row.record() for row in rows]

    def body(document) -> str:
        return json.dumps(document)

    nulls = [dict(r) for r in records]
    nulls[1]["torque"] = None
    strings = [{k: (str(v) if isinstance(v, float) else v) for k, v in r.items()} for r in records]
    mixed = [dict(r) for r in records]
    del mixed[0]["torque"]
    mixed[1]["vibration"] = 0.4
    mixed[2] = {k: mixed[2][k] for k in reversed(list(mixed[2]))}
    raw = body(records)
    return [
        rejected("json/number", "a bare number", "42", 400, "invalid_request", "list of records",
                 "a number", content_type=JSON),
        rejected("json/string", "a bare string", '"rows"', 400, "invalid_request", "a string",
                 content_type=JSON),
        rejected("json/null", "null", "null", 400, "invalid_request", "got null", content_type=JSON),
        rejected("json/object_without_records", "an object without a records key",
                 body({"rows": records}), 400, "invalid_request", '"records" key', "'rows'",
                 content_type=JSON),
        rejected("json/records_not_list", "records holding an object",
                 body({"records": records[0]}), 400, "invalid_request", "an object",
                 content_type=JSON),
        accepted("json/records_wrapper", "records wrapped in an object", body({"records": records}),
                 rows, content_type=JSON),
        rejected("json/nested_object", "a value that is an object",
                 raw.replace('"torque": 62.0', '"torque": {"value": 62.0, "unit": "Nm"}'), 400,
                 "invalid_request", "Record 1", "'torque'", "an object", content_type=JSON),
        rejected("json/nested_list", "a value that is a list",
                 raw.replace('"torque": 64.0', '"torque": [64.0]'), 400, "invalid_request",
                 "Record 2", "'torque'", "a list", content_type=JSON),
        accepted("json/nulls", "null in an input", body(nulls),
                 [rows[0], changed(rows[1], torque=None), rows[2]], scored=2,
                 content_type=JSON),
        accepted("json/numbers_as_strings", "every number sent as a string", body(strings), rows,
                 content_type=JSON),
        accepted("json/mixed_keys", "records with different and reordered keys", body(mixed),
                 [changed(rows[0], torque=None), *rows[1:]], scored=2, content_type=JSON),
        rejected("json/duplicate_key", "a key twice in one record",
                 raw.replace('"torque": 62.0,', '"torque": 62.0, "torque": 26.0,'), 400,
                 "invalid_request", "Record 1", "'torque' more than once", content_type=JSON),
        rejected("json/empty_list", "an empty list", "[]", 400, "empty_request", "no records",
                 content_type=JSON),
        rejected("json/list_of_lists", "rows as lists without names",
                 body([r.cells() for r in rows]), 400, "invalid_request", "Record 0", "a list",
                 content_type=JSON),
        rejected("json/deep_nesting", "30,000 nested lists", "[" * 30_000 + "]" * 30_000, 400,
                 "invalid_request", "nested too deeply", content_type=JSON),
        rejected("json/lone_surrogate", "an unpaired surrogate escape in a text value",
                 raw.replace('"note": ""', '"note": "\\ud83d"', 1), 400, "invalid_request",
                 "Record 0", "'note'", "surrogate", content_type=JSON),
        accepted("json/surrogate_pair", "a surrogate pair escape, which encodes one character",
                 raw.replace('"note": ""', '"note": "\\ud83d\\udd25"', 1), rows,
                 content_type=JSON),
        accepted("json/nan_literal", "the non-standard NaN literal, read as missing",
                 raw.replace('"motor_speed": 1480.0', '"motor_speed": NaN', 1),
                 [changed(rows[0], motor_speed=None), *rows[1:]], scored=2,
                 content_type=JSON),
        rejected("json/infinity_literal", "the non-standard Infinity literal",
                 raw.replace('"motor_speed": 1480.0', '"motor_speed": Infinity', 1), 400,
                 "invalid_value", "'motor_speed'", "row(s) 0", content_type=JSON),
        rejected("json/huge_integer", "an integer of 400 digits",
                 raw.replace('"motor_speed": 1480.0', '"motor_speed": ' + "9" * 400, 1), 400,
                 "invalid_value", "'motor_speed'", "row(s) 0", content_type=JSON),
        rejected("json/booleans", "true in an input",
                 raw.replace('"torque": 62.0', '"torque": true'), 400, "invalid_value",
                 "'torque'", content_type=JSON),
        rejected("json/trailing_comma", "a comma after the last record", raw[:-1] + ",]", 400,
                 "invalid_request", "not valid JSON", "line 1", content_type=JSON),
        rejected("json/json_lines", "JSON Lines sent as application/json",
                 "\n".join(json.dumps(r) for r in records), 400, "invalid_request",
                 "not valid JSON", "line 2", content_type=JSON),
        rejected("json/too_many_keys", f"records with {MAX_COLUMNS + 1:,} keys in all",
                 body([records[0] | {f"tag_{i}": i for i in range(MAX_COLUMNS - 5)}]), 400,
                 "invalid_request", f"{MAX_COLUMNS + 1} columns", content_type=JSON),
        rejected("json/csv_as_json", "a CSV body labelled application/json", csv_text(rows), 400,
                 "invalid_request", "not valid JSON", content_type=JSON),
        rejected("json/json_as_csv", "a JSON body labelled text/csv", raw, 415,
                 "unsupported_media_type", "is JSON", "application/json"),
    ]  # fmt: skip


def timestamp_cases() -> list[Case]:
    rows = machine_rows(4)

    def with_times(*times: str) -> str:
        table = [r.cells() for r in rows]
        for cells, time in zip(table, times, strict=True):
            cells[0] = time
        return ",".join(HEADER) + "\n" + "".join(",".join(cells) + "\n" for cells in table)

    return [
        rejected("timestamps/mixed_formats", "ISO 8601 mixed with a German date",
                 with_times("2024-03-06T08:00:00Z", "2024-03-06 08:01:00", "06.03.2024 08:02",
                            "2024-03-06T08:03:00Z"), 400, "invalid_value", "'timestamp'",
                 "row(s) 2", "ISO 8601"),
        accepted("timestamps/offsets_and_z", "Z, +01:00, -0500 and +00:00",
                 with_times("2024-03-06T08:00:00Z", "2024-03-06T09:01:00+01:00",
                            "2024-03-06T03:02:00-0500", "2024-03-06T08:03:00+00:00"), rows),
        accepted("timestamps/naive_local", "times without an offset, read as Europe/Berlin",
                 with_times("2024-03-06 09:00:00", "2024-03-06 09:01:00", "2024-03-06 09:02:00",
                            "2024-03-06 09:03:00"), rows),
        rejected("timestamps/dst_repeated_hour", "the repeated hour of 2024-10-27, no offset",
                 with_times("2024-10-27 01:58:00", "2024-10-27 02:15:00", "2024-10-27 02:45:00",
                            "2024-10-27 03:10:00"), 400, "invalid_value", "ambiguous",
                 "row(s) 1, 2", "+01:00"),
        rejected("timestamps/dst_skipped_hour", "the skipped hour of 2024-03-31, no offset",
                 with_times("2024-03-31 01:58:00", "2024-03-31 02:15:00", "2024-03-31 03:00:00",
                            "2024-03-31 03:01:00"), 400, "invalid_value", "do not exist",
                 "row(s) 1"),
        accepted("timestamps/dst_repeated_hour_with_offsets", "the repeated hour with offsets",
                 with_times("2024-10-27T02:15:00+02:00", "2024-10-27T02:45:00+02:00",
                            "2024-10-27T02:15:00+01:00", "2024-10-27T02:45:00+01:00"), rows),
        accepted("timestamps/unsorted", "rows out of time order",
                 with_times("2024-03-06T08:03:00Z", "2024-03-06T08:01:00Z", "2024-03-06T08:00:00Z",
                            "2024-03-06T08:02:00Z"), rows),
        accepted("timestamps/duplicated", "the same time on two rows",
                 with_times("2024-03-06T08:00:00Z", "2024-03-06T08:01:00Z", "2024-03-06T08:01:00Z",
                            "2024-03-06T08:02:00Z"), rows),
        rejected("timestamps/unparseable", "a word in the timestamp column",
                 with_times("2024-03-06T08:00:00Z", "yesterday", "2024-03-06T08:02:00Z",
                            "2024-03-06T08:03:00Z"), 400, "invalid_value", "row(s) 1"),
        accepted("timestamps/missing", "an empty timestamp cell",
                 with_times("2024-03-06T08:00:00Z", "", "2024-03-06T08:02:00Z",
                            "2024-03-06T08:03:00Z"),
                 rows, scored=3),
        rejected("timestamps/year_1", "year 1, outside the nanosecond range",
                 with_times("0001-01-01T00:00:00Z", "2024-03-06T08:01:00Z", "2024-03-06T08:02:00Z",
                            "2024-03-06T08:03:00Z"), 400, "invalid_value", "row(s) 0",
                 "1678-01-01"),
        rejected("timestamps/year_9999", "year 9999, outside the nanosecond range",
                 with_times("2024-03-06T08:00:00Z", "2024-03-06T08:01:00Z", "2024-03-06T08:02:00Z",
                            "9999-12-31 23:59:59"), 400, "invalid_value", "row(s) 3"),
        rejected("timestamps/epoch_seconds", "Unix seconds instead of ISO 8601",
                 with_times("1709712000", "1709712060", "1709712120", "1709712180"), 400,
                 "invalid_value", "row(s) 0, 1, 2, 3"),
        accepted("timestamps/date_only", "dates without a time of day",
                 with_times("2024-03-06", "2024-03-07", "2024-03-08", "2024-03-09"), rows),
        accepted("timestamps/lower_case", "lower-case t and z",
                 with_times("2024-03-06t08:00:00z", "2024-03-06t08:01:00z", "2024-03-06t08:02:00z",
                            "2024-03-06t08:03:00z"), rows),
        rejected("timestamps/february_30", "a date that does not exist",
                 with_times("2024-02-30T08:00:00Z", "2024-03-06T08:01:00Z", "2024-03-06T08:02:00Z",
                            "2024-03-06T08:03:00Z"), 400, "invalid_value", "row(s) 0"),
    ]  # fmt: skip


def shape_cases() -> list[Case]:
    rows = machine_rows(3)
    # The endpoint receives lines such as b"1480.0,60.0,21.0\n" of 17 bytes. 59 of them make
    # a 1,000-byte payload hold 58 rows, leaving one row for a last payload.
    chunked = [changed(r, torque=60.0, ambient_temperature=21.0) for r in machine_rows(59)]
    many = machine_rows(1000)
    unscorable = [changed(r, torque=None) for r in rows]
    clash = ",".join([*HEADER, "score", "status"]) + "\n" + "".join(
        ",".join([*r.cells(), "99", "ok"]) + "\n" for r in rows
    )
    return [
        accepted("shape/one_row", "a single data row", csv_text(rows[:1]), rows[:1]),
        accepted("shape/one_row_json", "a single JSON record", json_text(rows[:1]), rows[:1],
                 content_type=JSON),
        rejected("shape/target_missing", "no bearing_temperature column",
                 "\n".join(",".join(line.split(",")[:4] + line.split(",")[5:])
                           for line in csv_text(rows).splitlines()) + "\n",
                 400, "missing_column", "target column 'bearing_temperature'"),
        rejected("shape/input_missing", "no torque column",
                 "\n".join(",".join(line.split(",")[:2] + line.split(",")[3:])
                           for line in csv_text(rows).splitlines()) + "\n",
                 400, "missing_column", "input column 'torque'"),
        accepted("shape/extra_columns", "result column names among the extra columns", clash,
                 rows),
        accepted("shape/no_row_scorable", "every row without torque", csv_text(unscorable),
                 unscorable, scored=0),
        accepted("shape/last_payload_one_row", "59 rows: 58 fill a 1,000-byte payload",
                 csv_text(chunked), chunked),
        accepted("shape/thousand_rows", "1,000 rows", csv_text(many), many),
    ]  # fmt: skip


def fuzz_cases() -> list[Case]:
    """Findings of ``make fuzz``, kept as regression cases."""
    rows = machine_rows(2)
    invalid_utf8 = csv_text(rows).replace("ambient", "ambien\udcff\udcff")
    one_digit_hour = [changed(rows[0], timestamp="2024-03-06T8:00:00Z"), rows[1]]
    one_digit_offset = [rows[0], changed(rows[1], timestamp="2024-03-06T08:01:00+1")]
    after_junk = [changed(rows[0], timestamp="2024-03-06T08:00:0zZ"), one_digit_offset[1]]
    return [
        rejected("fuzz/surrogate_in_event_text", "invalid UTF-8 passed as event text",
                 invalid_utf8.encode("utf-8", "surrogateescape"), 400, "invalid_request",
                 "not valid UTF-8", transport="event_text", extension="bin"),
        accepted("fuzz/one_digit_hour", "an hour of one digit before Z",
                 csv_text(one_digit_hour), one_digit_hour),
        rejected("fuzz/one_digit_offset", "an offset of one digit, +1", csv_text(one_digit_offset),
                 400, "invalid_value", "offsets in an unsupported form", "row(s) 1"),
        rejected("fuzz/one_digit_offset_after_junk", "an unreadable time, then a +1 offset",
                 csv_text(after_junk), 400, "invalid_value", "row(s) 1"),
        rejected("fuzz/header_only_after_blank_lines", "blank lines, then a tab-led header only",
                 " \n\r\t>", 400, "empty_request", "no data rows"),
    ]  # fmt: skip


def build_cases() -> list[Case]:
    cases = [
        *encoding_cases(),
        *csv_cases(),
        *value_cases(),
        *json_cases(),
        *timestamp_cases(),
        *shape_cases(),
        *fuzz_cases(),
    ]
    names = [case.name for case in cases]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"case names repeat: {duplicates}")
    return cases


def write(directory: Path = HERE) -> int:
    """Write bodies/ and cases.json under ``directory``; return the number of cases."""
    cases = build_cases()
    bodies = directory / "bodies"
    bodies.mkdir(parents=True, exist_ok=True)
    for stale in bodies.iterdir():
        stale.unlink()
    manifest = []
    for case in cases:
        entry = case.manifest()
        (directory / entry["body"]).write_bytes(case.body)
        manifest.append(entry)
    document = {"limit_bytes": LIMIT, "cases": manifest}
    (directory / "cases.json").write_text(json.dumps(document, indent=1, ensure_ascii=True) + "\n")
    return len(cases)


if __name__ == "__main__":
    count = write(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
    print(f"wrote {count} cases")
