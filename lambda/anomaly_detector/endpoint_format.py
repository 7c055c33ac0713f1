"""Serialize model inputs to the endpoint's CSV format and parse its prediction responses."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from .errors import EndpointError

# Keys under which regression endpoints return the predicted value, most specific first.
_VALUE_KEYS = ("score", "predicted_score", "predicted_label", "prediction", "predicted_value")


def to_csv_lines(inputs: pd.DataFrame) -> list[bytes]:
    """Render rows as CSV lines without header or index, each ending in ``\\n``.

    Values are written with Python's shortest round-trip ``repr`` of each float, the same
    text ``DataFrame.to_csv`` writes, at about a third of its cost.
    """
    columns = [map(repr, inputs[name].to_numpy(dtype=np.float64).tolist()) for name in inputs]
    return [(",".join(fields) + "\n").encode() for fields in zip(*columns, strict=True)]


def split_payloads(lines: list[bytes], max_bytes: int) -> Iterator[tuple[int, bytes]]:
    """Group lines into bodies of at most ``max_bytes``; yield (first row, body).

    Bodies are filled in row order. When the last body would hold a single row, the body
    before it gives up its last row if both bodies still fit. A one-line CSV response is read
    as comma-separated predictions, so an endpoint that adds fields to each line (a label, for
    example) answers a one-row request with a count that does not match.
    """
    starts: list[int] = []
    size = 0
    for index, line in enumerate(lines):
        if len(line) > max_bytes:
            raise EndpointError(
                f"Row {index} alone is {len(line)} bytes, more than the {max_bytes}-byte "
                "endpoint request limit."
            )
        if not starts or size + len(line) > max_bytes:
            starts.append(index)
            size = 0
        size += len(line)

    # avoid a one-row last body when the body before it has rows to spare
    if len(starts) >= 2 and len(lines) - starts[-1] == 1:
        spare = starts[-1] - starts[-2] >= 3
        if spare and len(lines[-2]) + len(lines[-1]) <= max_bytes:
            starts[-1] -= 1

    for start, end in pairwise([*starts, len(lines)]):
        yield start, b"".join(lines[start:end])


def parse_predictions(body: bytes, content_type: str | None, expected: int) -> np.ndarray:
    """Parse an endpoint response into ``expected`` float predictions.

    Accepted shapes: ``{"predictions": [...]}``, a bare JSON list, JSON Lines, and CSV (one
    value per line, or comma-separated). Each item is a number, a numeric string, or an object
    with ``score``, ``predicted_score`` or ``predicted_label``. A count that differs from
    ``expected`` or a value that is not a finite number raises ``EndpointError``.
    """
    try:
        text = body.decode("utf-8", errors="strict").strip() if body else ""
    except UnicodeDecodeError as error:
        raise EndpointError(
            f"The endpoint response is not valid UTF-8 (byte {error.start})."
        ) from error
    if not text:
        raise EndpointError("The endpoint returned an empty response.")
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    looks_json = text[0] in "[{" or kind in ("application/json", "application/jsonlines")

    if not looks_json and '"' not in text and "," not in text:
        items = text.split()  # the common CSV answer: one plain value per line
        if len(items) == expected:
            try:
                values = np.array(list(map(float, items)), dtype=np.float64)
            except ValueError:
                values = None  # the item path below names the value that is not a number
            if values is not None and np.isfinite(values).all():
                return values
    else:
        items = _json_items(text) if looks_json else _csv_items(text)

    if len(items) != expected:
        raise EndpointError(
            f"The endpoint returned {len(items)} predictions for {expected} rows; refusing to "
            "match them to rows. Check that the endpoint serves a regression model that "
            "returns one prediction per CSV row."
        )
    values = _fast_numbers(items)
    if values is None:
        # The item-by-item path names the first prediction that is not a finite number.
        values = np.fromiter((_number(item, i) for i, item in enumerate(items)), float, len(items))
    return values


def _fast_numbers(items: list[Any]) -> np.ndarray | None:
    """Convert uniform items in one numpy call; None when any item needs a closer look."""
    raw = items
    if items and isinstance(items[0], dict):
        key = next((k for k in _VALUE_KEYS if k in items[0]), None)
        if key is None:
            return None
        try:
            raw = [item[key] for item in items]
        except (KeyError, TypeError):
            return None
    if any(type(value) is not float and type(value) is not int for value in raw) and any(
        isinstance(value, bool | list | dict) or value is None for value in raw
    ):
        return None
    try:
        values = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if values.ndim != 1 or not np.isfinite(values).all():
        return None
    return values


def _json_items(text: str) -> list[Any]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return _json_lines(text)
    if isinstance(document, dict):
        for key in ("predictions", "Predictions", "scores", "outputs"):
            if key in document:
                document = document[key]
                break
        else:
            document = [document]
    if not isinstance(document, list):
        document = [document]
    # A single row sometimes comes back as [[value]] or as a row of one value.
    return [item[0] if isinstance(item, list) and len(item) == 1 else item for item in document]


def _json_lines(text: str) -> list[Any]:
    items = []
    for number, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise EndpointError(
                f"The endpoint response is neither JSON nor JSON Lines (line {number + 1}: "
                f"{error.msg})."
            ) from error
    return [item[0] if isinstance(item, list) and len(item) == 1 else item for item in items]


def _csv_items(text: str) -> list[str]:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) == 1:
        fields = next(csv.reader(io.StringIO(lines[0])))
        # Drop only a trailing delimiter's empty field. An empty field between values stays
        # and fails as "not a number", so that no prediction moves to another row.
        if len(fields) > 1 and not fields[-1].strip():
            fields = fields[:-1]
        return fields
    # One prediction per line; a line may carry extra fields (e.g. a label), take the first.
    return [next(csv.reader([line]))[0] for line in lines]


def _number(item: Any, index: int) -> float:
    if isinstance(item, dict):
        for key in _VALUE_KEYS:
            if key in item:
                item = item[key]
                break
        else:
            raise EndpointError(
                f"Prediction {index} is an object without any of the keys {list(_VALUE_KEYS)}."
            )
        if isinstance(item, list) and len(item) == 1:
            item = item[0]
    if isinstance(item, bool):
        raise EndpointError(f"Prediction {index} is a boolean, not a number.")
    try:
        value = float(item.strip() if isinstance(item, str) else item)
    except (TypeError, ValueError) as error:
        raise EndpointError(
            f"Prediction {index} is not a number; the endpoint must serve a regression model."
        ) from error
    if not math.isfinite(value):
        raise EndpointError(f"Prediction {index} is not a finite number ({value}).")
    return value
