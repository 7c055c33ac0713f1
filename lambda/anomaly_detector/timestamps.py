"""Parse a timestamp column into UTC times, reporting unparseable cells by row."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import InvalidValueError

# An explicit UTC offset or Z at the end of an ISO 8601 time. The offset must follow a time
# of day, so the day of a date-only value such as 2024-05-01 is not taken for an offset.
_OFFSET_PATTERN = r"[Tt ]\d{2}(?::?\d{2}){0,2}(?:[.,]\d+)? ?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
MAX_REPORTED_ROWS = 5


def parse_timestamps(values: pd.Series, column: str, timezone: str = "UTC") -> pd.Series:
    """Parse ISO 8601 times (offset optional) into a ``datetime64[ns, UTC]`` series.

    Times without an offset are in ``timezone``. Missing cells become ``NaT``; a cell that
    is present but cannot be parsed, or names a local time that does not exist or is
    ambiguous at a daylight-saving change, raises ``InvalidValueError`` with its row.
    """
    text = values.astype("string").str.strip()
    present = text.notna() & (text != "")
    result = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    if not present.any():
        return result

    has_offset = text.str.contains(_OFFSET_PATTERN, regex=True, na=False)
    aware = present & has_offset
    naive = present & ~has_offset

    if aware.any():
        # pandas 3.1 parses only an upper-case Z, so a lower-case z is upper-cased first.
        upper = text[aware].str.upper()
        result[aware] = pd.to_datetime(upper, utc=True, format="ISO8601", errors="coerce")
    if naive.any():
        local = pd.to_datetime(text[naive], format="ISO8601", errors="coerce")
        result[naive] = _localize(local, column, timezone)

    unparsed = present & result.isna()
    if unparsed.any():
        rows = _row_list(unparsed)
        raise InvalidValueError(
            f"Column {column!r} has values that are not ISO 8601 times at row(s) {rows} "
            "(rows counted from 0, header excluded). Use e.g. 2024-05-01T12:00:00Z or "
            "2024-05-01 12:00:00+02:00; times without an offset are read as "
            f"{timezone}."
        )
    return result


def _localize(local: pd.Series, column: str, timezone: str) -> pd.Series:
    if timezone == "UTC":
        return local.dt.tz_localize("UTC")
    try:
        zoned = local.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
    except (ValueError, TypeError) as error:
        raise InvalidValueError(
            f"Column {column!r} cannot be read as {timezone} times: {error}"
        ) from error
    lost = local.notna() & zoned.isna()
    if lost.any():
        raise InvalidValueError(
            f"Column {column!r} has local times that are ambiguous or do not exist in "
            f"{timezone} (a daylight-saving change) at row(s) {_row_list(lost)} "
            "(rows counted from 0). Add the UTC offset to those times, e.g. +01:00."
        )
    return zoned.dt.tz_convert("UTC")


def _row_list(mask: pd.Series) -> str:
    rows = [int(r) for r in mask[mask].index[:MAX_REPORTED_ROWS]]
    more = int(mask.sum()) - len(rows)
    listed = ", ".join(str(r) for r in rows)
    return f"{listed} and {more} more" if more > 0 else listed


def format_timestamps(times: pd.Series) -> pd.Series:
    """Format UTC times as ISO 8601 strings ending in ``Z`` (missing stays missing)."""
    values = times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    present = ~np.isnat(values)
    # Whole seconds print as 12:00:00Z; otherwise as many fraction digits as needed, to 1 us.
    whole = (values[present].astype(np.int64) % 1_000_000_000 == 0).all()
    unit = "s" if whole else "us"
    text = np.datetime_as_string(values.astype(f"datetime64[{unit}]"), unit=unit)
    formatted = np.char.add(text.astype(object), "Z").astype(object)
    formatted[~present] = None
    return pd.Series(formatted, index=times.index, dtype=object)
