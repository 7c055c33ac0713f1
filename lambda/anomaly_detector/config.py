"""Scoring and service configuration, each validated once into a frozen object.

Every setting is defined here once. ``ScoringConfig`` is shared by the CLI and the Lambda
handler; ``ServiceConfig`` adds what only the deployed service needs. An explicit argument
always wins over the environment, so tests build configurations directly.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

import pandas as pd
from pandas.errors import OutOfBoundsTimedelta

from .errors import ConfigurationError

# Largest threshold accepted: far above any score, and still safe to plot.
MAX_THRESHOLD = 1e300

DEFAULT_WINDOW = "5"
DEFAULT_MIN_DURATION = "1"
# No merging: each run of anomalous rows is its own event.
DEFAULT_MERGE_GAP = "0"
# Rows of the residual baseline (0: none). The baseline is a median over that many rows.
# Over fewer than a few dozen it would follow a fault. The deployed service stores them as
# 8-byte floats in one DynamoDB item, and an item can be at most 400 KB.
DEFAULT_BASELINE = "0"
MIN_BASELINE_ROWS = 30
MAX_BASELINE_ROWS = 20_000
DEFAULT_MAX_REQUEST_BYTES = 5_500_000
# SageMaker real-time endpoints accept at most 6 MB per request; 4 MB leaves room.
DEFAULT_MAX_PAYLOAD_BYTES = 4_000_000
DEFAULT_READ_TIMEOUT_SECONDS = 20.0
ENDPOINT_PAYLOAD_LIMIT_BYTES = 6_000_000


@dataclass(frozen=True)
class Span:
    """A length in rows or in time: rolling windows and minimum event durations."""

    rows: int | None = None
    time: pd.Timedelta | None = None

    @classmethod
    def parse(cls, text: str | int, name: str) -> Span:
        """Parse ``"5"`` (rows) or a pandas time span such as ``"5min"``, ``"30s"``, ``"1h"``."""
        raw = str(text).strip()
        if re.fullmatch(r"\d+", raw):
            rows = int(raw)
            if rows < 1:
                raise ConfigurationError(f"{name} must be at least 1 row, got {raw!r}.")
            return cls(rows=rows)
        usage = (
            f"{name} must be a whole number of rows (e.g. 5) or a time span with a unit such "
            f"as 30s, 5min or 1h; got {raw!r}."
        )
        # pandas reads a number without a unit, such as "+5", as nanoseconds.
        if not re.search(r"[A-Za-z]", raw):
            raise ConfigurationError(usage)
        try:
            span = pd.Timedelta(raw)
        except OutOfBoundsTimedelta as error:
            raise ConfigurationError(
                f"{name} {raw!r} is longer than the longest time span supported, about "
                f"{pd.Timedelta.max.days:,} days. Choose a shorter span."
            ) from error
        except (ValueError, TypeError) as error:
            raise ConfigurationError(usage) from error
        if pd.isna(span) or span <= pd.Timedelta(0):
            raise ConfigurationError(f"{name} must be a positive time span, got {raw!r}.")
        return cls(time=span)

    @classmethod
    def parse_gap(cls, text: str | int, name: str) -> Span | None:
        """Parse a merge gap: ``"0"`` (no merging, None) or a span as ``parse`` reads it."""
        if str(text).strip() == "0":
            return None
        try:
            return cls.parse(text, name)
        except ConfigurationError as error:
            raise ConfigurationError(f"{error.message} Use 0 to merge nothing.") from error

    @property
    def is_time(self) -> bool:
        return self.time is not None

    def __str__(self) -> str:
        if self.time is not None:
            nanoseconds = self.time.value
            if nanoseconds % 1_000_000_000:  # not whole seconds: the largest exact unit
                for unit, size in (("ms", 1_000_000), ("us", 1_000), ("ns", 1)):
                    if nanoseconds % size == 0:
                        return f"{nanoseconds // size}{unit}"
            seconds = nanoseconds // 1_000_000_000
            if seconds % 3600 == 0:
                return f"{seconds // 3600}h"
            if seconds % 60 == 0:
                return f"{seconds // 60}min"
            return f"{seconds}s"
        return str(self.rows)


def parse_baseline(text: str | int, name: str) -> int | None:
    """Parse a baseline length: ``"0"`` (none, None) or a whole number of rows."""
    raw = str(text).strip()
    if not re.fullmatch(r"[0-9]+", raw):
        raise ConfigurationError(
            f"{name} must be a whole number of rows (e.g. 600), or 0 for no baseline; "
            f"got {raw!r}. A time span is not accepted here."
        )
    rows = int(raw)
    if rows == 0:
        return None
    if not MIN_BASELINE_ROWS <= rows <= MAX_BASELINE_ROWS:
        raise ConfigurationError(
            f"{name} must be 0 or from {MIN_BASELINE_ROWS} to {MAX_BASELINE_ROWS:,} rows, got {rows}."
        )
    return rows


@dataclass(frozen=True)
class ScoringConfig:
    """What to score and how.

    Parameters
    ----------
    target : column the model predicts; its observed value is ``actual``.
    inputs : model input columns in the model's training order; sent in this order.
    threshold : score above which a row is anomalous, in the target's unit.
    timestamp_column : optional column of ISO 8601 times; naive times are in ``timezone``.
    timezone : IANA zone name for timestamps without an offset (default UTC).
    window : rolling-mean window of |residual|, rows or a time span (default 5 rows).
    min_duration : shortest event, rows or a time span (default 1 row).
    merge_gap : runs of anomalous rows this close are one event: at most this many rows
        between them, or at most this long from the end of one to the start of the next.
        None (the default) merges nothing.
    baseline : None (the default) scores the residual as it is. A number of rows N makes
        the residual relative to a baseline that follows slow drift: the median residual
        of the last N scored rows that were not anomalous (see ``scoring``).
    """

    target: str
    inputs: tuple[str, ...]
    threshold: float
    timestamp_column: str | None = None
    timezone: str = "UTC"
    window: Span = field(default_factory=lambda: Span(rows=5))
    min_duration: Span = field(default_factory=lambda: Span(rows=1))
    merge_gap: Span | None = None
    baseline: int | None = None

    def __post_init__(self) -> None:
        # check: target and inputs are named, distinct and do not overlap
        if not self.target:
            raise ConfigurationError("The target column name is empty.")
        if not self.inputs:
            raise ConfigurationError("At least one input column is required.")
        if len(set(self.inputs)) != len(self.inputs):
            raise ConfigurationError(f"Input columns are repeated: {list(self.inputs)}.")
        if self.target in self.inputs:
            raise ConfigurationError(
                f"The target column {self.target!r} is also listed as an input; "
                "remove it from the inputs."
            )
        if self.timestamp_column and self.timestamp_column in (self.target, *self.inputs):
            raise ConfigurationError(
                f"The timestamp column {self.timestamp_column!r} cannot be the target or an input."
            )

        # check: the threshold is a positive finite number
        if not (isinstance(self.threshold, int | float) and math.isfinite(self.threshold)):
            raise ConfigurationError(
                f"The threshold must be a finite number, got {self.threshold!r}."
            )
        if self.threshold <= 0:
            raise ConfigurationError(f"The threshold must be greater than 0, got {self.threshold}.")
        if self.threshold >= MAX_THRESHOLD:
            # A threshold near the float limit overflows the histogram's bins, and no mean of
            # residuals comes near it anyway.
            raise ConfigurationError(
                f"The threshold must be below {MAX_THRESHOLD:g}, got {self.threshold:g}."
            )

        # check: the baseline is a count of rows
        if self.baseline is not None and not (
            isinstance(self.baseline, int)
            and MIN_BASELINE_ROWS <= self.baseline <= MAX_BASELINE_ROWS
        ):
            raise ConfigurationError(
                f"The baseline must be a whole number of rows from {MIN_BASELINE_ROWS} to "
                f"{MAX_BASELINE_ROWS:,}, or 0 for none; got {self.baseline!r}."
            )

        # check: time spans need timestamps
        for name, span in (
            ("window", self.window),
            ("min_duration", self.min_duration),
            ("merge_gap", self.merge_gap),
        ):
            if span is not None and span.is_time and not self.timestamp_column:
                raise ConfigurationError(
                    f"{name} {span} is a time span, so a timestamp column is required; "
                    "give the timestamp column or a number of rows."
                )

        # check: the time zone exists
        try:
            pd.Timestamp("2000-01-01").tz_localize(self.timezone)
        except Exception as error:
            raise ConfigurationError(
                f"Unknown time zone {self.timezone!r}; use an IANA name such as UTC or Europe/Berlin."
            ) from error


MetricsMode = Literal["emf", "cloudwatch", "off"]


@dataclass(frozen=True)
class ServiceConfig:
    """Settings of the deployed service (the Lambda handler and the local API)."""

    scoring: ScoringConfig
    endpoint_name: str
    asset_id: str | None = None
    metrics_namespace: str = "AnomalyDetection"
    service_name: str = "anomaly-detector"
    metrics_mode: MetricsMode = "emf"
    topic_arn: str | None = None
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS
    # DynamoDB table of the state of each stream (window tail and baseline); needed with a
    # baseline.
    state_table: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServiceConfig:
        """Build the configuration from environment variables; raise naming the bad variable."""
        env = os.environ if environ is None else environ
        reader = _EnvReader(env)

        threshold = reader.number("THRESHOLD", required=False)
        rmse = reader.number("MODEL_RMSE", required=False)
        if threshold is None and rmse is None:
            raise ConfigurationError(
                "Set THRESHOLD (score above which a row is anomalous, in the target's unit) "
                "or MODEL_RMSE (the threshold is then 2 x MODEL_RMSE)."
            )
        if threshold is None:
            threshold = 2.0 * rmse

        spans = {}
        for name, default, parse in (
            ("WINDOW", DEFAULT_WINDOW, Span.parse),
            ("MIN_DURATION", DEFAULT_MIN_DURATION, Span.parse),
            ("MERGE_GAP", DEFAULT_MERGE_GAP, Span.parse_gap),
        ):
            text = env.get(name) or default
            spans[name] = reader.wrap("scoring settings", partial(parse, text, name))
        baseline = reader.wrap(
            "scoring settings",
            partial(parse_baseline, env.get("BASELINE") or DEFAULT_BASELINE, "BASELINE"),
        )
        state_table = reader.text("STATE_TABLE", required=False)
        if state_table is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{3,255}", state_table):
            raise ConfigurationError(
                f"STATE_TABLE must be a DynamoDB table name: 3 to 255 letters, digits and "
                f"_ . - (got {len(state_table)} characters)."
            )
        if baseline is not None and state_table is None:
            raise ConfigurationError(
                "BASELINE is set, so the baseline of each stream must be kept between "
                "requests: set STATE_TABLE to the DynamoDB table that holds it."
            )
        timestamp_column = reader.text("TIMESTAMP_COLUMN", required=False)
        # check: time spans need TIMESTAMP_COLUMN, named as the variables are
        for name, span in spans.items():
            if span is not None and span.is_time and not timestamp_column:
                raise ConfigurationError(
                    f"{name} is the time span {env[name].strip()!r}, which needs timestamps. "
                    f"Set TIMESTAMP_COLUMN, or give {name} as a number of rows."
                )

        scoring = reader.wrap(
            "scoring settings",
            lambda: ScoringConfig(
                target=reader.text("TARGET_COLUMN"),
                inputs=reader.names("INPUT_COLUMNS"),
                threshold=threshold,
                timestamp_column=timestamp_column,
                timezone=reader.text("TIMEZONE", required=False) or "UTC",
                window=spans["WINDOW"],
                min_duration=spans["MIN_DURATION"],
                merge_gap=spans["MERGE_GAP"],
                baseline=baseline,
            ),
        )
        mode = (env.get("METRICS_MODE") or "emf").strip().lower()
        if mode not in ("emf", "cloudwatch", "off"):
            raise ConfigurationError(
                f"METRICS_MODE must be one of emf, cloudwatch, off; got {mode!r}."
            )
        max_payload = reader.integer("MAX_PAYLOAD_BYTES", DEFAULT_MAX_PAYLOAD_BYTES)
        if not 1_000 <= max_payload <= ENDPOINT_PAYLOAD_LIMIT_BYTES:
            raise ConfigurationError(
                f"MAX_PAYLOAD_BYTES must be between 1000 and {ENDPOINT_PAYLOAD_LIMIT_BYTES} "
                f"(the endpoint's request limit); got {max_payload}."
            )
        return cls(
            scoring=scoring,
            endpoint_name=reader.text("ENDPOINT_NAME"),
            asset_id=reader.text("ASSET_ID", required=False),
            metrics_namespace=reader.text("METRICS_NAMESPACE", required=False)
            or "AnomalyDetection",
            service_name=reader.text("POWERTOOLS_SERVICE_NAME", required=False)
            or "anomaly-detector",
            metrics_mode=mode,  # type: ignore[arg-type]
            topic_arn=reader.text("TOPIC_ARN", required=False),
            max_request_bytes=reader.integer("MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES),
            max_payload_bytes=max_payload,
            read_timeout_seconds=reader.number("ENDPOINT_READ_TIMEOUT", required=False)
            or DEFAULT_READ_TIMEOUT_SECONDS,
            state_table=state_table,
        )


class _EnvReader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str, required: bool = True) -> str | None:
        value = (self.env.get(name) or "").strip()
        if not value and required:
            raise ConfigurationError(f"Environment variable {name} is required but not set.")
        return value or None

    def names(self, name: str) -> tuple[str, ...]:
        raw = self.text(name)
        if raw.startswith("["):
            try:
                values = json.loads(raw)
            except json.JSONDecodeError as error:
                raise ConfigurationError(
                    f"{name} starts with '[' but is not a JSON list of column names: {error}."
                ) from error
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ConfigurationError(f"{name} must be a JSON list of column names.")
        else:
            values = raw.split(",")
        names = tuple(v.strip() for v in values if v.strip())
        if not names:
            raise ConfigurationError(f"{name} lists no column names.")
        return names

    def number(self, name: str, required: bool = True) -> float | None:
        raw = self.text(name, required=required)
        if raw is None:
            return None
        try:
            value = float(raw)
        except ValueError as error:
            raise ConfigurationError(f"{name} must be a number, got {raw!r}.") from error
        if not math.isfinite(value) or value <= 0:
            raise ConfigurationError(f"{name} must be a positive finite number, got {raw!r}.")
        return value

    def integer(self, name: str, default: int) -> int:
        raw = self.text(name, required=False)
        if raw is None:
            return default
        if not re.fullmatch(r"\d+", raw) or int(raw) < 1:
            raise ConfigurationError(f"{name} must be a positive whole number, got {raw!r}.")
        return int(raw)

    @staticmethod
    def wrap(what: str, build):
        try:
            return build()
        except ConfigurationError as error:
            raise ConfigurationError(
                f"Invalid {what} in the environment: {error.message}"
            ) from error
