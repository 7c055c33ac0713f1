"""Fixtures and helpers for the Lambda handler tests: events, configuration, AWS fakes.

The sample API Gateway events under ``tests/events/`` all carry the same 20-row machine data
set (one row per minute from 2024-03-06T08:00:00Z). Row 7 has no torque value, and rows 12
to 15 have a bearing temperature 4 to 5.5 K above what ``FormulaPredictor`` predicts.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anomaly_detector import handler
from anomaly_detector.config import ServiceConfig

EVENTS_DIR = Path(__file__).parent / "events"

INPUT_COLUMNS = ("motor_speed", "torque", "ambient_temperature")
TARGET_COLUMN = "bearing_temperature"
ENDPOINT_NAME = "bearing-temperature-model"
ASSET_ID = "press-line-7"

# The configuration of most tests: a 3-row window, a 2 K threshold, events of 2 rows or more.
# With the sample data this gives one event, rows 13 to 16, peak score 5.0 at row 14.
WINDOW_ROWS = 3
THRESHOLD = 2.0
BASE_ENV = {
    "ENDPOINT_NAME": ENDPOINT_NAME,
    "TARGET_COLUMN": TARGET_COLUMN,
    "INPUT_COLUMNS": ",".join(INPUT_COLUMNS),
    "TIMESTAMP_COLUMN": "timestamp",
    "THRESHOLD": str(THRESHOLD),
    "WINDOW": str(WINDOW_ROWS),
    "MIN_DURATION": "2",
    "METRICS_MODE": "off",
}

# Every variable that ServiceConfig.from_env reads, cleared before a test sets its own.
SERVICE_ENV_NAMES = (
    "THRESHOLD",
    "MODEL_RMSE",
    "TARGET_COLUMN",
    "INPUT_COLUMNS",
    "TIMESTAMP_COLUMN",
    "TIMEZONE",
    "WINDOW",
    "MIN_DURATION",
    "MERGE_GAP",
    "METRICS_MODE",
    "MAX_PAYLOAD_BYTES",
    "ENDPOINT_NAME",
    "ASSET_ID",
    "METRICS_NAMESPACE",
    "POWERTOOLS_SERVICE_NAME",
    "TOPIC_ARN",
    "MAX_REQUEST_BYTES",
    "ENDPOINT_READ_TIMEOUT",
    "BASELINE",
    "STATE_TABLE",
)


def load_event(name: str) -> dict:
    """Load ``tests/events/<name>.json`` as a fresh dict that a test may change."""
    return copy.deepcopy(json.loads((EVENTS_DIR / f"{name}.json").read_text()))


def make_config(**overrides: str | None) -> ServiceConfig:
    """Build a ServiceConfig from BASE_ENV with overrides. An override of None removes it."""
    env = {**BASE_ENV, **overrides}
    return ServiceConfig.from_env({k: v for k, v in env.items() if v is not None})


def reject_constant(name: str) -> float:
    raise AssertionError(f"JSON contains the non-standard constant {name}")


def parse_json(text: str) -> object:
    """Parse strict JSON: NaN, Infinity and -Infinity fail the test."""
    return json.loads(text, parse_constant=reject_constant)


def parse_body(response: dict) -> dict:
    """Check the proxy response envelope and return its strictly parsed JSON body."""
    assert response["headers"]["Content-Type"] == "application/json"
    assert response["isBase64Encoded"] is False
    return parse_json(response["body"])


@dataclass(frozen=True)
class MachineRow:
    timestamp: str
    motor_speed: float
    torque: float | None
    ambient_temperature: float
    bearing_temperature: float
    note: str


def machine_rows() -> list[MachineRow]:
    """Read the sample data set from the CSV event with the csv module, not with pandas."""
    text = load_event("post_csv")["body"]
    rows = []
    for record in csv.DictReader(io.StringIO(text)):
        rows.append(
            MachineRow(
                timestamp=record["timestamp"],
                motor_speed=float(record["motor_speed"]),
                torque=float(record["torque"]) if record["torque"] else None,
                ambient_temperature=float(record["ambient_temperature"]),
                bearing_temperature=float(record["bearing_temperature"]),
                note=record["note"],
            )
        )
    return rows


def formula(torque: float, ambient_temperature: float) -> float:
    """Predict the bearing temperature with the known model: 0.1 * torque + ambient."""
    return 0.1 * torque + ambient_temperature


@dataclass
class FormulaPredictor:
    """Predictor with a known formula that adds ``offset`` and records each input frame."""

    offset: float = 0.0
    calls: list[pd.DataFrame] = field(default_factory=list)

    def predict(self, inputs: pd.DataFrame) -> np.ndarray:
        self.calls.append(inputs.copy())
        torque = inputs["torque"].to_numpy(dtype=float)
        ambient = inputs["ambient_temperature"].to_numpy(dtype=float)
        return 0.1 * torque + ambient + self.offset


@dataclass(frozen=True)
class ExpectedRow:
    predicted: float | None
    residual: float | None
    score: float | None
    is_anomaly: bool


def expected_rows(offset: float = 0.0) -> list[ExpectedRow]:
    """Compute the expected per-row results with plain loops, independent of the service.

    The score of a row is the mean |residual| over the WINDOW_ROWS rows that end at it,
    counting only rows that were scored. Rows without torque are not scored. ``offset`` is
    the offset of the ``FormulaPredictor`` in use.
    """
    residuals: list[float | None] = []
    predictions: list[float | None] = []
    for row in machine_rows():
        if row.torque is None:
            predictions.append(None)
            residuals.append(None)
            continue
        predicted = formula(row.torque, row.ambient_temperature) + offset
        predictions.append(predicted)
        residuals.append(row.bearing_temperature - predicted)

    expected = []
    for index, residual in enumerate(residuals):
        if residual is None:
            expected.append(ExpectedRow(None, None, None, False))
            continue
        recent = residuals[max(0, index - WINDOW_ROWS + 1) : index + 1]
        magnitudes = [abs(value) for value in recent if value is not None]
        score = sum(magnitudes) / len(magnitudes)
        expected.append(ExpectedRow(predictions[index], residual, score, score > THRESHOLD))
    return expected


def scored_inputs_csv() -> bytes:
    """Build by hand the CSV body that SageMakerPredictor sends for the sample data."""
    lines = [
        f"{row.motor_speed!r},{row.torque!r},{row.ambient_temperature!r}\n"
        for row in machine_rows()
        if row.torque is not None
    ]
    return "".join(lines).encode()


def scored_predictions() -> list[float]:
    return [
        formula(row.torque, row.ambient_temperature)
        for row in machine_rows()
        if row.torque is not None
    ]


@dataclass
class FakeLambdaContext:
    """Stand-in for the Lambda context object, with the attributes that the handler reads."""

    remaining_ms: int = 25_000
    aws_request_id: str = "52fdfc07-2182-454f-963f-5f0f9a621d72"
    function_name: str = "anomaly-detector-scoring"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = (
        "arn:aws:lambda:eu-west-1:123456789012:function:anomaly-detector-scoring"
    )

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set fake credentials and a region, so no client looks for real ones or for IMDS."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    # Powertools drops EMF output in development mode or when metrics are disabled.
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_METRICS_NAMESPACE", raising=False)


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch):
    """Return a function that sets the service's environment and clears the cached service.

    Each keyword overrides a BASE_ENV value, and None removes that variable.
    """

    def set_env(**overrides: str | None) -> None:
        for name in SERVICE_ENV_NAMES:
            monkeypatch.delenv(name, raising=False)
        for name, value in {**BASE_ENV, **overrides}.items():
            if value is not None:
                monkeypatch.setenv(name, value)
        monkeypatch.setattr(handler, "_service", None)

    monkeypatch.setattr(handler, "_service", None)
    return set_env


class _CurrentStdout:
    """A stream that writes to whatever ``sys.stdout`` is at the time of the write."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def captured_stdout(capsys: pytest.CaptureFixture[str]):
    """Capture stdout, the Powertools log lines included, and return a reader of the text.

    The handler's logger keeps the stdout it saw at import. pytest 9.2 also replaces
    ``sys.stdout`` between fixture setup and the test call, and closes the old one. So the
    logger gets a stream that follows ``sys.stdout``, set as an attribute because
    ``setStream`` would flush the old, possibly closed, stream.
    """
    log_handler = handler.logger.registered_handler
    previous_stream = log_handler.stream
    log_handler.stream = _CurrentStdout()
    yield lambda: capsys.readouterr().out
    log_handler.stream = previous_stream


def json_lines(text: str) -> list[dict]:
    """Parse each non-blank line of captured stdout as strict JSON."""
    return [parse_json(line) for line in text.splitlines() if line.strip()]


def emf_blobs(text: str) -> list[dict]:
    """Return the Embedded Metric Format documents among the captured stdout lines."""
    return [line for line in json_lines(text) if "_aws" in line]


def replace_cells(csv_body: str, row: int, **values: str) -> str:
    """Return the CSV body with the named cells of one data row (counted from 0) replaced."""
    records = list(csv.reader(io.StringIO(csv_body)))
    header, data = records[0], records[1:]
    for name, value in values.items():
        data[row][header.index(name)] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *data])
    return out.getvalue()


class RecordingSns:
    """SNS client stand-in that records each published message."""

    def __init__(self) -> None:
        self.published: list[dict] = []

    def publish(self, **request) -> dict:
        self.published.append(request)
        return {"MessageId": f"m-{len(self.published)}"}


def create_state_table(client, name: str) -> None:
    """Create a stream state table as the stack does: keyed by the string ``stream``."""
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "stream", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "stream", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def minute_rows_csv(
    index: np.ndarray, torque: np.ndarray, ambient: np.ndarray, extra: np.ndarray, start
) -> str:
    """CSV of machine rows a minute apart from ``start`` (row ``index``), with the bearing
    temperature the formula of torque and ambient plus ``extra``."""
    frame = pd.DataFrame(
        {
            "timestamp": (start + pd.to_timedelta(index, unit="min")).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "motor_speed": 1500.0,
            "torque": torque,
            "ambient_temperature": ambient,
            "bearing_temperature": formula(torque, ambient) + extra,
        }
    )
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue()


def post_ok(service, body: str, **query: str) -> dict:
    """POST a CSV body to /detect with the query, check for 200, return the parsed body."""
    event = load_event("post_csv")
    event["body"] = body
    event["queryStringParameters"] = query or None
    response = service.handle(event)
    assert response["statusCode"] == 200, response["body"]
    return parse_body(response)
