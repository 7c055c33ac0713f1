"""Parse a timestamp column into UTC times, reporting unparseable cells by row."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import InvalidValueError

# An explicit UTC offset or Z at the end of an ISO 8601 time. The offset must follow a time
# of day, so the day of a date-only value such as 2024-05-01 is not taken for an offset.
_OFFSET_PATTERN = r"[Tt ]\d{1,2}(?::?\d{2}){0,2}(?:[.,]\d+)? ?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
MAX_REPORTED_ROWS = 5
# Times are held as nanoseconds since 1970 in 64 bits, which reach from 1677-09-21 to
# 2262-04-11. Whole years inside that span leave room for any UTC offset.
EARLIEST_TIME = pd.Timestamp("1678-01-01")
LATEST_TIME = pd.Timestamp("2262-01-01")


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

    outside = pd.Series(False, index=values.index)
    if aware.any():
        # pandas 3.1 parses only an upper-case Z, so a lower-case z is upper-cased first.
        upper = text[aware].str.upper()
        parsed = pd.to_datetime(upper, utc=True, format="ISO8601", errors="coerce")
        result[aware], outside[aware] = _in_range(parsed, EARLIEST_TIME.tz_localize("UTC"))
    if naive.any():
        local = _parse_naive(text[naive], column)
        local, outside[naive] = _in_range(local, EARLIEST_TIME)
        result[naive] = _localize(local, column, timezone)

    if outside.any():
        raise InvalidValueError(
            f"Column {column!r} has times before {EARLIEST_TIME:%Y-%m-%d} or from "
            f"{LATEST_TIME:%Y-%m-%d} on at row(s) {_row_list(outside)} (rows counted from 0, "
            "header excluded). Check the year of those times."
        )

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


def _parse_naive(text: pd.Series, column: str) -> pd.Series:
    """Parse times in which the offset pattern found no offset, and raise if pandas finds one."""
    try:
        local = pd.to_datetime(text, format="ISO8601", errors="coerce")
    except ValueError:
        local = None
    if local is not None and local.dt.tz is None:
        return local
    hidden = pd.Series([_has_offset(value) for value in text.tolist()], index=text.index)
    raise InvalidValueError(
        f"Column {column!r} has UTC offsets in an unsupported form at row(s) "
        f"{_row_list(hidden)} (rows counted from 0, header excluded). Write the offset as "
        "Z, +HH, +HHMM or +HH:MM after the time of day, e.g. 2024-05-01T12:00:00+02:00."
    )


def _has_offset(value: str) -> bool:
    parsed = pd.to_datetime(value, errors="coerce", format="ISO8601")
    return not pd.isna(parsed) and parsed.tzinfo is not None


def _in_range(parsed: pd.Series, earliest: pd.Timestamp) -> tuple[pd.Series, pd.Series]:
    """Convert parsed times to nanoseconds and return them with the mask of those out of range.

    pandas 3 keeps a time such as 0001-01-01 in a coarser unit, which overflows nanoseconds.
    """
    latest = LATEST_TIME.tz_localize(earliest.tz) if earliest.tz else LATEST_TIME
    outside = parsed.notna() & ((parsed < earliest) | (parsed >= latest))
    return parsed.where(~outside).dt.as_unit("ns"), outside


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
