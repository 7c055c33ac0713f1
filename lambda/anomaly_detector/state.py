"""Stream state that the deployed service keeps between requests.

Each stream of rows, one machine named by the query parameter ``stream``, has its own state:
one DynamoDB item in AWS, a dictionary entry for the local API. It keeps the window tail:
the last rows that the next request's first windows reach back to. It also keeps the runs
of anomalous rows that were still open. So requests sent one after another score, and find
events, as one long request would. With a residual baseline
(``ScoringConfig.baseline``) it also keeps the baseline's residuals.

A state records the target and the baseline length it was built for. After a new model or
another length it is not used, and the stream starts again from a baseline of 0. A state
kept for another window keeps its baseline but not its window tail, and one kept for other
event settings (threshold, window, minimum duration, merge gap, inputs) does not keep its
runs.

Each item carries a version, and a write succeeds only when the version is still the one
that was read. Of two requests of one stream that overlap in time, the second to finish
keeps its scores but does not store its state. The stored state then lacks that request's
rows, which shifts a median of hundreds of rows little.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd

from .config import ScoringConfig
from .errors import RequestError
from .scoring import (
    HUGE_RESIDUAL,
    MAX_CARRIED_ROWS,
    BaselineState,
    CarriedEvents,
    Event,
    WindowTail,
)

DEFAULT_STREAM = "default"
# How far rows may lie ahead of the service's clock. The handler rejects rows beyond it,
# because the state remembers the latest time and takes only later rows.
MAX_AHEAD = pd.Timedelta(days=1)
STREAM_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass(frozen=True)
class StoredStream:
    """A stream's baseline, window tail and open runs, the version it was read at (0: none
    stored), and the latest time of its rows.

    ``restarted`` gives the reason a stored state was not used: "model" (built for another
    target or length) or "unreadable" (an item this module did not write). A version of None
    (an item whose version cannot be read) lets the next save replace the item whatever it
    holds, since no version check could ever match it.
    """

    state: BaselineState
    tail: WindowTail = field(default_factory=WindowTail)
    events: CarriedEvents = field(default_factory=CarriedEvents)
    version: int | None = 0
    last_time: pd.Timestamp | None = None
    restarted: str | None = None


class StreamStore(Protocol):
    def load(self, stream: str, scoring: ScoringConfig) -> StoredStream: ...

    def save(
        self, stream: str, scoring: ScoringConfig, stored: StoredStream, read_version: int | None
    ) -> bool: ...


def check_stream(value: str | None) -> str:
    """Return the stream name of a request, ``default`` when it names none."""
    if value is None or value == "":
        return DEFAULT_STREAM
    if not STREAM_PATTERN.fullmatch(value):
        raise RequestError(
            "Query parameter stream must be 1 to 128 letters, digits or the characters . _ : -"
            f" (got {len(value)} characters). It names the machine whose rows these are."
        )
    return value


class MemoryStreamStore:
    """States in a dictionary, for the local API: they last as long as the process."""

    def __init__(self) -> None:
        self._items: dict[str, dict] = {}
        self._lock = threading.Lock()

    def load(self, stream: str, scoring: ScoringConfig) -> StoredStream:
        with self._lock:
            item = self._items.get(stream)
        if item is None:
            return StoredStream(BaselineState())
        return _from_record(item, scoring)

    def save(
        self, stream: str, scoring: ScoringConfig, stored: StoredStream, read_version: int | None
    ) -> bool:
        with self._lock:
            current = self._items.get(stream, {}).get("version", 0)
            if read_version is not None and current != read_version:
                return False
            self._items[stream] = _record(stream, scoring, stored, (read_version or 0) + 1)
            return True


class DynamoStreamStore:
    """States in a DynamoDB table whose partition key is the string attribute ``stream``.

    The baseline's residuals and the window tail's values are each stored as one binary
    attribute of little-endian 8-byte floats, the tail's times as 8-byte nanoseconds since
    1970 (UTC).
    """

    def __init__(self, client: Any, table_name: str) -> None:
        self.client = client
        self.table_name = table_name

    def load(self, stream: str, scoring: ScoringConfig) -> StoredStream:
        response = self.client.get_item(
            TableName=self.table_name, Key={"stream": {"S": stream}}, ConsistentRead=True
        )
        item = response.get("Item")
        if item is None:
            return StoredStream(BaselineState())
        record = _from_attributes(item)
        if "N" not in item.get("version", {}):
            record.pop("version", None)  # a version check against it could never match
        return _from_record(record, scoring)

    def save(
        self, stream: str, scoring: ScoringConfig, stored: StoredStream, read_version: int | None
    ) -> bool:
        record = _record(stream, scoring, stored, (read_version or 0) + 1)
        request: dict[str, Any] = {"TableName": self.table_name, "Item": _to_attributes(record)}
        if read_version == 0:
            request["ConditionExpression"] = "attribute_not_exists(#stream)"
            request["ExpressionAttributeNames"] = {"#stream": "stream"}
        elif read_version is not None:
            request["ConditionExpression"] = "#version = :read"
            request["ExpressionAttributeNames"] = {"#version": "version"}
            request["ExpressionAttributeValues"] = {":read": {"N": str(read_version)}}
        try:
            self.client.put_item(**request)
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True


def _record(
    stream: str, scoring: ScoringConfig, stored: StoredStream, version: int
) -> dict[str, Any]:
    state, tail = stored.state, stored.tail
    return {
        "stream": stream,
        "target": scoring.target,
        "length": scoring.baseline or 0,
        "window": str(scoring.window),
        "tail_values": np.asarray(tail.values, dtype="<f8").tobytes(),
        "tail_times": None
        if tail.times is None
        else tail.times.astype("datetime64[ns]").astype("<i8").tobytes(),
        "events": json.dumps(
            {
                "settings": _event_settings(scoring),
                "open": _event_record(stored.events.open),
                "ended": _event_record(stored.events.ended),
            },
            allow_nan=False,
        ),
        "residuals": np.asarray(state.residuals, dtype="<f8").tobytes(),
        "rows_since_update": state.rows_since_update,
        "anomalous_rows": state.anomalous_rows,
        "level": np.asarray([state.level], dtype="<f8").tobytes(),
        "last_time": None if stored.last_time is None else stored.last_time.isoformat(),
        "version": version,
        "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _from_record(record: dict[str, Any], scoring: ScoringConfig) -> StoredStream:
    """Rebuild a stored state; one built for another target or length starts again."""
    target, length = scoring.target, scoring.baseline or 0
    try:
        version = int(record["version"])
    except (KeyError, TypeError, ValueError):
        version = 0
    # This module writes versions from 1 on. DynamoDB keeps 38 digits, so a version it could
    # not increase is replaced too.
    if not 1 <= version < 2**53:
        return StoredStream(BaselineState(), version=None, restarted="unreadable")
    try:
        if record["target"] != target or int(record["length"]) != length:
            return StoredStream(BaselineState(), version=version, restarted="model")
        state = BaselineState.from_dict(
            {
                "residuals": np.frombuffer(record["residuals"], dtype="<f8"),
                "rows_since_update": record["rows_since_update"],
                "anomalous_rows": record["anomalous_rows"],
                "level": np.frombuffer(record["level"], dtype="<f8")[0],
            }
        )
        last_time = record.get("last_time")
        last_time = None if last_time is None else pd.Timestamp(last_time)
        if last_time is not None and (pd.isna(last_time) or last_time.tzinfo is None):
            raise ValueError("the last time has no time zone")
        # The service rejects rows so far ahead, so such a time was not written by it, and
        # it would make every later request look older.
        if last_time is not None and last_time > pd.Timestamp.now(tz="UTC") + MAX_AHEAD:
            raise ValueError("the last time lies in the future")
        tail = _tail_from_record(record, last_time)
        events = _events_from_record(record, scoring, last_time)
    except (
        KeyError,
        TypeError,
        ValueError,
        IndexError,
        AttributeError,
        OverflowError,
        RecursionError,
    ):
        return StoredStream(BaselineState(), version=version, restarted="unreadable")
    if record.get("window") != str(scoring.window):
        tail = WindowTail()  # kept for another window: its rows would weigh otherwise
    residuals = state.residuals[-length:] if length else state.residuals[:0]
    return StoredStream(replace(state, residuals=residuals), tail, events, version, last_time)


def _event_settings(scoring: ScoringConfig) -> str:
    """Name the settings that decide which rows form an event, and what its sums contain."""
    gap = scoring.merge_gap or 0
    # A digest of the input names, which may run to 2,000 long names.
    inputs = hashlib.sha256(json.dumps(scoring.inputs).encode()).hexdigest()
    return json.dumps(
        [repr(scoring.threshold), str(scoring.window), str(scoring.min_duration), str(gap)]
        + [bool(scoring.timestamp_column), inputs]
    )


def _event_record(event: Event | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {
        "start_row": event.start_row,
        "end_row": event.end_row,
        "rows": event.rows,
        "peak_score": event.peak_score,
        "peak_row": event.peak_row,
        "residual_sum": event.residual_sum,
        "onset_row": event.onset_row,
        "first_place": event.first_place,
        "last_place": event.last_place,
        "start_time": _time_text(event.start_time),
        "end_time": _time_text(event.end_time),
        "peak_time": _time_text(event.peak_time),
        "onset_time": _time_text(event.onset_time),
        # Sums of inputs near the float limit can overflow: the event then names no drivers.
        "input_sums": None
        if event.input_sums is None or not np.all(np.abs(event.input_sums) < HUGE_RESIDUAL)
        else [float(v) for v in event.input_sums],
        "sides": sorted(event.sides),
        "reported": event.reported,
    }


def _time_text(time: pd.Timestamp | None) -> str | None:
    return None if time is None else time.isoformat()


def _events_from_record(
    record: dict[str, Any], scoring: ScoringConfig, last_time: pd.Timestamp | None
) -> CarriedEvents:
    """Rebuild the carried runs; raise ValueError for anything this module did not write.

    Items written before runs were kept have none. Runs kept for other event settings or
    inputs are dropped, since their rows were judged against another threshold or duration.
    """
    if "events" not in record:
        return CarriedEvents()
    data = json.loads(record["events"])
    if not isinstance(data, dict) or not isinstance(data.get("settings"), str):
        raise ValueError("the carried runs are not a record this module wrote")
    if data["settings"] != _event_settings(scoring):
        return CarriedEvents()
    timed = bool(scoring.timestamp_column)
    return CarriedEvents(
        *(
            _event_from_record(data[key], len(scoring.inputs), timed, last_time)
            for key in ("open", "ended")
        )
    )


def _number(value: Any) -> float:
    """Return a stored float; raise ValueError unless it is a finite number of safe size."""
    if type(value) not in (int, float) or not abs(value) < HUGE_RESIDUAL:
        raise ValueError("a carried run's number is not a finite number of safe size")
    return float(value)


def _event_from_record(
    data: dict[str, Any] | None, inputs: int, timed: bool, last_time: pd.Timestamp | None
) -> Event | None:
    if data is None:
        return None
    whole = {name: data[name] for name in ("start_row", "end_row", "rows", "peak_row")}
    whole |= {name: data[name] for name in ("onset_row", "first_place", "last_place")}
    if not all(type(value) is int for value in whole.values()):
        raise ValueError("a row number of a carried run is not a whole number")
    numbered = [value for name, value in whole.items() if name != "rows"]
    if not all(-(2**62) < value < 0 for value in numbered):
        raise ValueError("a carried run has a row that is not before the request")
    span = whole["last_place"] - whole["first_place"] + 1
    if not 1 <= whole["rows"] <= span:
        raise ValueError("a carried run's row count does not fit its places")

    peak, total = _number(data["peak_score"]), _number(data["residual_sum"])
    if peak < 0:
        raise ValueError("a carried run's peak score is negative")
    sums = data["input_sums"]
    if sums is not None:
        if not isinstance(sums, list) or len(sums) != inputs:
            raise ValueError("a carried run's input sums do not match the inputs")
        sums = np.array([_number(value) for value in sums])

    sides = data["sides"]
    if not isinstance(sides, list) or not set(sides) <= {"above", "below"}:
        raise ValueError("a carried run's sides are invalid")
    if type(data["reported"]) is not bool:
        raise ValueError("a carried run's reported flag is not true or false")
    parsed = _times(data, timed, last_time)
    return Event(
        **whole,
        peak_score=peak,
        residual_sum=total,
        input_sums=sums,
        sides=set(sides),
        reported=data["reported"],
        **parsed,
    )


def _times(
    data: dict[str, Any], timed: bool, last_time: pd.Timestamp | None
) -> dict[str, pd.Timestamp | None]:
    """Read a carried run's times, in UTC nanoseconds.

    A timed stream's runs have all four, in order and not after the stream's last time. An
    untimed stream's runs have none.
    """
    names = ("start_time", "end_time", "peak_time", "onset_time")
    texts = [data[name] for name in names]
    if not timed:
        if any(text is not None for text in texts):
            raise ValueError("a carried run of an untimed stream has times")
        return dict.fromkeys(names)
    if not all(isinstance(text, str) for text in texts) or last_time is None:
        raise ValueError("a carried run of a timed stream lacks a time")
    times = [pd.Timestamp(text) for text in texts]
    if any(pd.isna(time) or time.tzinfo is None for time in times):
        raise ValueError("a carried run's time is invalid or has no time zone")
    times = [time.tz_convert("UTC").as_unit("ns") for time in times]
    start, end, peak, onset = times
    if not (onset <= start <= peak <= end <= last_time):
        raise ValueError("a carried run's times are out of order")
    return dict(zip(names, times, strict=True))


def _tail_from_record(record: dict[str, Any], last_time: pd.Timestamp | None) -> WindowTail:
    """Rebuild the window tail; raise ValueError for one this module did not write.

    Items written before the window tail was kept have none, and start with an empty one.
    """
    if "tail_values" not in record:
        return WindowTail()
    values = np.frombuffer(record["tail_values"], dtype="<f8").astype(float)
    times = None
    if record.get("tail_times") is not None:
        times = np.frombuffer(record["tail_times"], dtype="<i8").astype("datetime64[ns]")
        newest = times.max() if len(times) else None
        if newest is not None and (
            last_time is None or newest > last_time.tz_convert("UTC").tz_localize(None)
        ):
            raise ValueError("the window tail ends after the stream's last time")
    if len(values) > MAX_CARRIED_ROWS:
        raise ValueError(f"the window tail has more than {MAX_CARRIED_ROWS} rows")
    return WindowTail.checked(values, times)


def _to_attributes(record: dict[str, Any]) -> dict[str, dict]:
    attributes: dict[str, dict] = {}
    for name, value in record.items():
        if value is None:
            continue
        if isinstance(value, bytes):
            attributes[name] = {"B": value}
        elif isinstance(value, str):
            attributes[name] = {"S": value}
        else:
            attributes[name] = {"N": repr(value)}
    return attributes


def _from_attributes(item: dict[str, dict]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for name, value in item.items():
        if "B" in value:
            record[name] = bytes(value["B"])
        elif "S" in value:
            record[name] = value["S"]
        elif "N" in value:
            record[name] = value["N"]  # read as a number where it is used
    return record
