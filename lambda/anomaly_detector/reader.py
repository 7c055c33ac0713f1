"""Read request bytes (CSV or JSON) into a data frame with one row per data row.

CSV: a header row is required, and every data row has as many fields as the header. The
delimiter is ``,``, ``;`` or tab, detected from the header. The encoding is UTF-8 with or
without a byte-order mark, or UTF-16 with a byte-order mark. Line endings may be LF, CRLF or
CR, and blank lines are skipped. Quoted fields may contain delimiters and line breaks. A
first column with an empty name (the index a pandas export writes) is dropped.

JSON: a list of records (objects of column name to scalar value) or ``{"records": [...]}``.
A key repeated within one object and a string with an unpaired surrogate escape (``\\ud800``)
are rejected, because each would silently drop or garble a value.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from .errors import EmptyRequestError, MissingColumnError, RequestError, UnsupportedMediaTypeError

CSV_TYPES = ("text/csv", "application/csv", "text/plain")
JSON_TYPES = ("application/json",)
_DELIMITERS = (",", ";", "\t")
# A bound on request width. Handler time grows linearly with the echoed columns (about 0.2 s
# for 20 rows of 2,000 columns on a 2-core development machine), and no machine model needs
# more; the limit keeps pathological requests far from the Lambda timeout.
MAX_COLUMNS = 2_000
_UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# pandas skips a line as blank when it contains only these characters, unless one of them
# is the delimiter. Other Unicode whitespace (form feed, U+2028) makes a row of missing values.
_BLANK_LINE_CHARACTERS = frozenset(" \t")
# A JSON escape of a UTF-16 surrogate. Paired escapes encode one character, a lone one none.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def decode_text(body: bytes, source: str = "The body") -> str:
    """Decode request bytes as UTF-8 (byte-order mark optional) or BOM-marked UTF-16.

    ``source`` names the bytes in error messages: the request's body, or a file.
    """
    if body.startswith(UTF16_BOMS):
        try:
            text = body.decode("utf-16")
        except UnicodeDecodeError as error:
            raise RequestError(
                f"{source} starts with a UTF-16 byte-order mark but is not valid UTF-16 "
                f"(byte {error.start}). Save the file as UTF-8."
            ) from error
    else:
        skipped = len(_UTF8_BOM) if body.startswith(_UTF8_BOM) else 0
        try:
            text = body[skipped:].decode("utf-8")
        except UnicodeDecodeError as error:
            if b"\x00" in body:  # UTF-16 without a byte-order mark is not text either
                raise _nul_error(source) from error
            raise RequestError(
                f"{source} is not valid UTF-8 (first invalid byte at offset "
                f"{error.start + skipped}). Save or export the file as UTF-8."
            ) from error
    # A NUL character also shows UTF-32 text, whose mark starts like the UTF-16 one.
    if "\x00" in text:
        raise _nul_error(source)
    return text


def _nul_error(source: str) -> RequestError:
    return RequestError(
        f"{source} contains NUL bytes, so it is not a text file. Send CSV or JSON text "
        "(UTF-16 files need a byte-order mark)."
    )


def media_type(content_type: str | None) -> str:
    """Return the lower-case media type without parameters (``text/csv; charset=utf-8``)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def read_request(
    body: bytes, content_type: str | None, text_columns: Iterable[str] = ()
) -> pd.DataFrame:
    """Read a CSV or JSON request body; ``text_columns`` are kept as strings (CSV only)."""
    kind = media_type(content_type)
    if kind in CSV_TYPES or kind.endswith("+csv"):
        text = decode_text(body)
        check_not_json(text, kind)
        return read_csv_text(text, text_columns=text_columns)
    if kind in JSON_TYPES or kind.endswith("+json"):
        return read_json_text(decode_text(body))
    shown = kind or "none"
    raise UnsupportedMediaTypeError(
        f"Content-Type {shown!r} is not supported. Send text/csv (with a header row) or "
        "application/json (a list of records)."
    )


def check_not_json(text: str, kind: str) -> None:
    """Reject a JSON document sent with a CSV content type, naming the right type."""
    if text.lstrip()[:1] not in ("[", "{"):
        return
    try:
        json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return
    raise UnsupportedMediaTypeError(
        f"The body is JSON but the Content-Type is {kind!r}. Send it with Content-Type: "
        "application/json."
    )


def sniff_header(text: str) -> tuple[str, list[str]]:
    """Find the delimiter and the column names from the first non-blank line."""
    # newline=None splits on CR-only line endings too, as pandas does.
    for line in io.StringIO(text, newline=None):
        if line.strip():
            header_line = line
            break
    else:
        raise EmptyRequestError(
            "The CSV body is empty. Send a header row and at least one data row."
        )

    # check: the first line is the header, not the delimiter hint that spreadsheets write
    if header_line.strip().lower().startswith("sep="):
        raise RequestError(
            "The first line is a spreadsheet's delimiter hint (sep=...), not a header row. "
            "Remove that line so that the header comes first."
        )

    # check: the delimiter is the candidate that occurs most often outside quotes
    unquoted = header_line.split('"')[::2]
    counts = {d: sum(part.count(d) for part in unquoted) for d in _DELIMITERS}
    delimiter = max(_DELIMITERS, key=lambda d: counts[d])
    if counts[delimiter] == 0:
        delimiter = ","
    try:
        names = next(csv.reader([header_line.rstrip("\r\n")], delimiter=delimiter))
    except csv.Error as error:
        raise RequestError(
            f"The header row cannot be read: {error}. Shorten the column names, and check "
            "that their quotes are balanced."
        ) from error
    return delimiter, names


def read_csv_text(text: str, text_columns: Iterable[str] = ()) -> pd.DataFrame:
    """Parse CSV text with a header row; see the module docstring for the dialects read."""
    delimiter, names = sniff_header(text)
    check_column_count(len(names))
    drop_index = len(names) > 1 and names[0].strip() == ""
    try:
        check_column_names(names[1:] if drop_index else names)
    except RequestError as error:
        # A body without a header row has a data row in its place, whose empty or repeated
        # cells read as bad names. Its numbers show what is really wrong.
        if any(_is_number(name) for name in names):
            raise MissingColumnError(
                "The first row contains numbers, not column names, so the body seems to have no "
                "header row. Send a header row with the column names first."
            ) from error
        raise
    data_rows = check_field_counts(text, delimiter, len(names))
    if data_rows == 0:
        raise EmptyRequestError(
            "The CSV body has a header row but no data rows. Send at least one data row."
        )

    text_columns = set(text_columns)
    dtype = {name: "string" for name in names if name in text_columns}
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            dtype=dtype or None,
            skip_blank_lines=True,
            skipinitialspace=False,
            engine="c",
            low_memory=False,
        )
    except pd.errors.EmptyDataError as error:
        raise EmptyRequestError("The CSV body has no header row.") from error
    except (pd.errors.ParserError, ValueError) as error:
        raise RequestError(
            f"The CSV body cannot be parsed: {str(error).strip()}. Check that every row has "
            "as many fields as the header and that quotes are balanced "
            f"(delimiter {delimiter!r})."
        ) from error

    # check: pandas found the rows and columns that the field-count check found, so every
    # output row stands for one line of the request and every value keeps its column
    if frame.shape != (data_rows, len(names)):
        raise RequestError(
            f"The CSV body has {data_rows} data rows of {len(names)} fields by the CSV rules, "
            f"but {frame.shape[0]} rows of {frame.shape[1]} fields were read. Remove lines "
            "that hold only quotes, spaces or control characters."
        )
    if drop_index:
        frame = frame.iloc[:, 1:]
    frame.columns = names[1:] if drop_index else names
    return frame.reset_index(drop=True)


def check_column_count(count: int, source: str = "The request") -> None:
    """Reject a request or file (``source``) with more than ``MAX_COLUMNS`` columns."""
    if count > MAX_COLUMNS:
        raise RequestError(
            f"{source} has {count} columns; at most {MAX_COLUMNS} are accepted. Send the "
            "timestamp, the model inputs, the target and only the other columns that the "
            "result should echo."
        )


def check_column_names(names: list[str]) -> None:
    """Reject blank and duplicate column names, which would make columns ambiguous."""
    for position, name in enumerate(names):
        if not name.strip():
            raise RequestError(
                f"Column {position + 1} of the header has no name. Name every column, or remove "
                "the empty column (a trailing delimiter at the end of the header creates one)."
            )
    seen: dict[str, int] = {}
    for position, name in enumerate(names):
        if name in seen:
            raise RequestError(
                f"Column name {name!r} appears twice in the header (columns {seen[name] + 1} "
                f"and {position + 1}). Rename one of them."
            )
        seen[name] = position


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _simple_field_count(text: str, delimiter: str, expected: int) -> int | None:
    """Count data rows with numpy when no line can be special; None sends it to the csv check.

    Without quotes or carriage returns, each line's field count is its delimiter count plus
    one. A body with a quote, a CR, a blank line, a line of another count, or one column only
    (where a line of spaces would count as data) takes the exact check, which words errors.
    """
    if expected < 2 or '"' in text or "\r" in text:
        return None
    data = np.frombuffer(text.encode(), dtype=np.uint8)
    ends = np.flatnonzero(data == ord("\n"))
    if len(data) and data[-1] != ord("\n"):
        ends = np.append(ends, len(data))
    delimiters = np.flatnonzero(data == ord(delimiter))
    per_line = np.diff(np.searchsorted(delimiters, ends), prepend=0)
    lengths = np.diff(ends, prepend=-1) - 1
    if len(ends) and np.all(per_line == expected - 1) and np.all(lengths > 0):
        return len(ends) - 1  # the first line is the header
    return None


def check_field_counts(text: str, delimiter: str, expected: int) -> int:
    """Reject a data row whose field count differs from the header's; return the data rows.

    pandas pads a short row with missing values. When the first data row has one field more
    than the header, pandas makes the first field the index and shifts every value one column
    to the left without a warning. Neither is what the sender meant, so both are rejected.
    """
    fast = _simple_field_count(text, delimiter, expected)
    if fast is not None:
        return fast
    return count_csv_records(io.StringIO(text, newline=""), delimiter, expected)


def count_csv_records(
    lines: Iterable[str], delimiter: str, expected: int, source: str = "the CSV body"
) -> int:
    """Check every record's field count with the csv module, and return the data rows.

    ``lines`` yields the text with its line breaks (a StringIO, or a file opened with
    ``newline=""``), and ``source`` names it in errors.
    """
    rows = csv.reader(lines, delimiter=delimiter, strict=True)
    blank = _BLANK_LINE_CHARACTERS - {delimiter}
    records = 0
    try:
        for row in rows:
            # Blank lines and lines of spaces and tabs are skipped, as pandas skips them.
            if not row or (len(row) == 1 and row[0] and set(row[0]) <= blank):
                continue
            records += 1
            if len(row) != expected and records == 1:
                # The delimiter and names come from the first line alone.
                raise RequestError(
                    f"The header of {source} has {len(row)} fields by the CSV rules, but "
                    f"{expected} on its first line, so a quoted column name contains a line "
                    "break. Remove line breaks from the column names."
                )
            if len(row) != expected:
                fields = "field" if len(row) == 1 else "fields"
                raise RequestError(
                    f"Line {rows.line_num} of {source} has {len(row)} {fields}, but the "
                    f"header has {expected}. It is data row {records - 2} (counted from 0, "
                    "header excluded). Give every row one field per header column "
                    f"(delimiter {delimiter!r}), and quote fields that contain the delimiter."
                )
    except csv.Error as error:
        if "field limit" in str(error):
            raise RequestError(
                f"Line {rows.line_num} of {source} has a field longer than "
                f"{csv.field_size_limit():,} characters. Shorten it, or check that its quotes "
                "are balanced."
            ) from error
        raise RequestError(
            f"{source[0].upper()}{source[1:]} cannot be parsed at line {rows.line_num}: "
            f"{error}. Check that quotes are balanced and that a quoted field is followed by "
            "a delimiter."
        ) from error
    # The header is the first record.
    return max(records - 1, 0)


def read_json_text(text: str) -> pd.DataFrame:
    """Parse a JSON list of records, or an object whose ``records`` key contains that list."""
    if not text.strip():
        raise EmptyRequestError('The JSON body is empty. Send [{"column": value, ...}, ...].')
    try:
        document = json.loads(text, object_pairs_hook=_JsonObject.from_pairs)
    except json.JSONDecodeError as error:
        raise RequestError(
            f"The body is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})."
        ) from error
    except RecursionError as error:
        raise RequestError(
            "The JSON body is nested too deeply. Send a flat list of records."
        ) from error
    if isinstance(document, dict):
        _check_unique_keys(document, "The JSON object body")
        if "records" not in document:
            raise RequestError(
                'A JSON object body must have a "records" key holding a list of records; '
                f"found keys {sorted(document)[:10]}."
            )
        document = document["records"]
    if not isinstance(document, list):
        raise RequestError(
            "The JSON body must be a list of records (objects), or an object with a "
            f'"records" list; got {_json_type(document)}.'
        )
    return _records_frame(document, text)


def read_json_lines_text(text: str, source: str) -> pd.DataFrame:
    """Parse JSON Lines (one record per line, blank lines skipped), named ``source`` in errors.

    Lines end at CR or LF only, because JSON strings may contain U+2028 and the other breaks
    that str.splitlines() splits on.
    """
    records = []
    for number, line in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line, object_pairs_hook=_JsonObject.from_pairs))
        except (json.JSONDecodeError, RecursionError) as error:
            detail = error.msg if isinstance(error, json.JSONDecodeError) else "nested too deeply"
            raise RequestError(
                f"Line {number} of {source} is not valid JSON ({detail}). Write one record per "
                'line of a .jsonl file, such as {"column": value, ...}.'
            ) from error
    return _records_frame(records, text)


def _records_frame(document: list, text: str) -> pd.DataFrame:
    """Check parsed JSON records (``text`` is their source) and return them as a frame."""
    if not document:
        raise EmptyRequestError("The JSON body contains no records. Send at least one record.")
    for row, record in enumerate(document):
        check_record(row, record)
    if _SURROGATE_ESCAPE.search(text):
        _check_strings_encodable(document)
    columns: dict[str, None] = {}
    for record in document:
        columns.update(dict.fromkeys(record))
    check_column_count(len(columns))
    frame = pd.DataFrame.from_records(document, columns=list(columns))
    return frame.reset_index(drop=True)


def check_record(row: int, record: Any) -> None:
    if not isinstance(record, dict):
        raise RequestError(
            f"Record {row} of the JSON body is {_json_type(record)}, not an object. "
            'Send each row as {"column": value, ...}.'
        )
    _check_unique_keys(record, f"Record {row} of the JSON body")
    for key, value in record.items():
        if isinstance(value, dict | list):
            raise RequestError(
                f"Record {row}, key {key!r} contains {_json_type(value)}; values must be numbers, "
                "strings, booleans or null. Flatten nested values into their own columns."
            )


class _JsonObject(dict):
    """A parsed JSON object that remembers the first key its text repeated."""

    repeated_key: str | None = None

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, Any]]) -> _JsonObject:
        parsed = cls(pairs)
        if len(parsed) == len(pairs):
            return parsed
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                parsed.repeated_key = key
                break
            seen.add(key)
        return parsed


def _check_unique_keys(document: dict, where: str) -> None:
    key = getattr(document, "repeated_key", None)
    if key is not None:
        raise RequestError(
            f"{where} has the key {key!r} more than once, so one of its values would be lost. "
            "Send each key once per object."
        )


def _check_strings_encodable(records: list[dict]) -> None:
    # json.loads turns an unpaired surrogate escape such as \ud800 into a character that
    # no encoding can write, so the response could not echo it.
    for row, record in enumerate(records):
        for key, value in record.items():
            for text in (key, value):
                if isinstance(text, str) and not _encodable(text):
                    raise RequestError(
                        f"Record {row}, key {key!r} contains "
                        "an unpaired UTF-16 surrogate escape (\\ud800 to \\udfff). Escape "
                        "characters outside the Basic Multilingual Plane as surrogate pairs, "
                        "or send them as UTF-8."
                    )


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_type(value: Any) -> str:
    names = {list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)
