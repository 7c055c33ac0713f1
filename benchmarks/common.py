"""Shared parts of the benchmarks: deterministic motor data, endpoint stand-ins, timing, results.

The generated data imitates the sample data set at one row per second. An electric motor
runs batches of four recipes with idle stops between them, the ambient temperature follows
a daily cycle, and the bearing temperature follows speed, load and ambient with a thermal
lag. Every draw comes
from one ``numpy.random.Generator`` with a fixed seed, so a given numpy and pyarrow version
always write the same bytes. Files are cached under ``benchmarks/.data/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / ".data"
RESULTS_DIR = DATA_DIR / "results"
PYTHON = sys.executable

# Bump when the generator changes, so cached files are written again.
GENERATOR_VERSION = 1
FIRST_TIME = np.datetime64("2024-01-01T00:00:00", "s")
SECONDS_PER_DAY = 86_400
TARGET = "bearing_temperature"
INPUTS = ("motor_speed", "torque", "ambient_temperature")
COLUMNS = ("timestamp", *INPUTS, TARGET)

# Operating points (shaft speed in rpm, load torque in N·m), as in sample_data/generate.py.
RECIPES = np.array([(700.0, 60.0), (950.0, 115.0), (1200.0, 80.0), (1480.0, 105.0)])
IDLE_SHARE = 0.2
SEGMENT_ROWS = (600, 7_200)  # each batch or stop lasts 10 min to 2 h
DRIVE_TIME_CONSTANT_S = 30.0  # speed and torque ramps
THERMAL_TIME_CONSTANT_S = 2.0
RATED_SPEED_RPM = 1480.0
RATED_TORQUE_NM = 130.0
NO_LOAD_TORQUE_NM = 6.0
SPEED_HEATING_K = 4.0
LOAD_HEATING_K = 8.0
AMBIENT_MEAN_C = 21.0
AMBIENT_DAILY_AMPLITUDE_K = 0.9
AMBIENT_WARMEST_HOUR = 15.0
NOISE = {"speed": 1.5, "torque": 0.3, "ambient": 0.05, "bearing": 0.35}
# One cooling failure every ANOMALY_EVERY_ROWS rows, the first at ANOMALY_FIRST_ROW: the
# bearing runs up to ANOMALY_PEAK_K hotter than normal for ANOMALY_ROWS rows.
ANOMALY_FIRST_ROW = 50_000
ANOMALY_EVERY_ROWS = 250_000
ANOMALY_ROWS = 900
ANOMALY_RISE_ROWS = 300
ANOMALY_PEAK_K = 6.0
# Threshold for the stand-in endpoint, which predicts the noise-free bearing temperature:
# the rolling mean of |noise| over 5 rows stays near 0.28 K, so 1.5 K flags only anomalies.
PERFECT_MODEL_THRESHOLD_K = 1.5


@dataclass(frozen=True)
class MotorData:
    """Columns of generated rows; ``expected`` is the noise-free, anomaly-free target."""

    seconds: np.ndarray  # seconds since FIRST_TIME
    columns: dict[str, np.ndarray]
    expected: np.ndarray


def _lag(values: np.ndarray, time_constant_s: float) -> np.ndarray:
    # A first-order lag sampled once per second is an exponentially weighted mean.
    alpha = 1.0 - np.exp(-1.0 / time_constant_s)
    return pd.Series(values).ewm(alpha=alpha, adjust=False).mean().to_numpy()


def generate_motor(rows: int, seed: int, first_second: int = 0, anomalies: bool = True):
    """Generate ``rows`` one-second rows of the motor; return a ``MotorData``."""
    rng = np.random.default_rng(seed)

    # operating schedule: batches of one recipe or idle stops, 10 min to 2 h each
    segments = rows // SEGMENT_ROWS[0] + 1
    lengths = rng.integers(SEGMENT_ROWS[0], SEGMENT_ROWS[1], segments)
    recipe = rng.integers(0, len(RECIPES), segments)
    idle = rng.random(segments) < IDLE_SHARE
    commanded = np.where(idle[:, None], 0.0, RECIPES[recipe])
    commanded = np.repeat(commanded, lengths, axis=0)[:rows]

    # drive: lagged commands plus sensor noise
    speed_clean = _lag(commanded[:, 0], DRIVE_TIME_CONSTANT_S)
    load_clean = _lag(commanded[:, 1], DRIVE_TIME_CONSTANT_S)
    turning = speed_clean > 1.0
    torque_clean = load_clean + NO_LOAD_TORQUE_NM * turning
    speed = np.clip(speed_clean + rng.normal(0, NOISE["speed"], rows) * turning, 0, None)
    torque = np.clip(torque_clean + rng.normal(0, NOISE["torque"], rows) * turning, 0, None)

    # ambient: daily cycle, warmest in the afternoon
    seconds = np.arange(first_second, first_second + rows, dtype=np.int64)
    hours = (seconds % SECONDS_PER_DAY) / 3600.0
    phase = 2 * np.pi * (hours - AMBIENT_WARMEST_HOUR + 6.0) / 24.0
    ambient_clean = AMBIENT_MEAN_C + AMBIENT_DAILY_AMPLITUDE_K * np.sin(phase)
    ambient = ambient_clean + rng.normal(0, NOISE["ambient"], rows)

    # bearing: steady-state rise from speed and load, through the thermal lag
    rise = (
        speed_clean
        / RATED_SPEED_RPM
        * (SPEED_HEATING_K + LOAD_HEATING_K * torque_clean / RATED_TORQUE_NM)
    )
    expected = ambient_clean + _lag(rise, THERMAL_TIME_CONSTANT_S)
    bearing = expected + rng.normal(0, NOISE["bearing"], rows)
    if anomalies:
        bearing += _cooling_failures(rows)

    columns = {
        "motor_speed": speed.round(1),
        "torque": torque.round(2),
        "ambient_temperature": ambient.round(2),
        TARGET: bearing.round(2),
    }
    return MotorData(seconds=seconds, columns=columns, expected=expected)


def _cooling_failures(rows: int) -> np.ndarray:
    offset = np.zeros(rows)
    shape = np.minimum(np.arange(ANOMALY_ROWS) / ANOMALY_RISE_ROWS, 1.0) * ANOMALY_PEAK_K
    for start in range(ANOMALY_FIRST_ROW, rows, ANOMALY_EVERY_ROWS):
        end = min(start + ANOMALY_ROWS, rows)
        offset[start:end] = shape[: end - start]
    return offset


def iso_seconds(seconds: np.ndarray) -> np.ndarray:
    """Format seconds since FIRST_TIME as ``YYYY-MM-DDTHH:MM:SSZ`` bytes (dtype ``S20``).

    Arrow's strftime took 1.5 us per value here. Each day and each second of the day is
    formatted once instead, and rows are assembled by indexing.
    """
    day_zero = FIRST_TIME.astype("datetime64[D]")
    first_day, last_day = int(seconds[0] // SECONDS_PER_DAY), int(seconds[-1] // SECONDS_PER_DAY)
    days = day_zero + np.arange(first_day, last_day + 1)
    day_text = np.char.add(np.datetime_as_string(days, unit="D").astype("S10"), b"T")
    of_day = np.datetime64("2000-01-01T00:00:00", "s") + np.arange(SECONDS_PER_DAY)
    clock = np.datetime_as_string(of_day, unit="s").astype("S19")
    clock_text = np.char.add(clock, b"Z").view(np.uint8).reshape(-1, 20)[:, 11:]

    text = np.empty((len(seconds), 20), dtype=np.uint8)
    text[:, :11] = day_text.view(np.uint8).reshape(-1, 11)[seconds // SECONDS_PER_DAY - first_day]
    text[:, 11:] = clock_text[seconds % SECONDS_PER_DAY]
    return text.view("S20").ravel()


def write_motor_csv(path: Path, data: MotorData) -> None:
    """Write the rows as comma-separated UTF-8 with a header, as a spreadsheet export would."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    table = pa.table(
        {
            "timestamp": pa.array(iso_seconds(data.seconds)).cast(pa.string()),
            **{name: pa.array(data.columns[name]) for name in (*INPUTS, TARGET)},
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with partial.open("wb") as out:
        out.write((",".join(COLUMNS) + "\n").encode())
        options = pa_csv.WriteOptions(include_header=False, quoting_style="none")
        pa_csv.write_csv(table, out, write_options=options)
    partial.replace(path)


def motor_csv(rows: int, seed: int, anomalies: bool = True, first_second: int = 0) -> Path:
    """Return the cached CSV of ``rows`` generated rows, writing it first if needed."""
    kind = "anomalies" if anomalies else "normal"
    name = f"motor-v{GENERATOR_VERSION}-{rows}-{seed}-{kind}-{first_second}.csv"
    path = DATA_DIR / name
    if not path.exists():
        started = time.perf_counter()
        write_motor_csv(path, generate_motor(rows, seed, first_second, anomalies))
        print(f"  wrote {path.name} in {time.perf_counter() - started:.1f} s", flush=True)
    return path


# -- stand-ins for AWS clients --------------------------------------------------------------


class FakeBody:
    """The streaming body of an InvokeEndpoint response."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self) -> bytes:
        return self.data


class InstantRuntimeClient:
    """A sagemaker-runtime client whose ``invoke_endpoint`` returns at once, in process.

    It returns one prediction per CSV line received, one value per line (``text/csv``),
    taking the values in order from ``predictions``. Responses are built once per (first
    row, rows) and then reused, so the stand-in costs almost nothing. Call ``rewind``
    before each request.
    """

    def __init__(self, predictions: np.ndarray) -> None:
        self.items = [b"%r" % v for v in np.asarray(predictions, dtype=float).tolist()]
        self.position = 0
        self.calls = 0
        self._responses: dict[tuple[int, int], bytes] = {}

    def rewind(self) -> None:
        self.position = 0

    def invoke_endpoint(self, *, EndpointName, ContentType, Accept, Body):  # noqa: N803
        rows = Body.count(b"\n")
        key = (self.position, rows)
        if key not in self._responses:
            items = self.items[self.position : self.position + rows]
            self._responses[key] = b"\n".join(items) + b"\n"
        self.position += rows
        self.calls += 1
        return {"Body": FakeBody(self._responses[key]), "ContentType": "text/csv"}


class InstantSnsClient:
    """An SNS client stand-in whose ``publish`` returns a message id at once."""

    def __init__(self) -> None:
        self.published = 0

    def publish(self, **_kwargs) -> dict:
        self.published += 1
        return {"MessageId": f"message-{self.published}"}


class LambdaContext:
    """The part of the Lambda context the handler reads, with 25 s to run."""

    aws_request_id = "benchmark-request"

    def __init__(self, timeout_seconds: float = 25.0) -> None:
        self.deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


def fake_aws_environment() -> dict[str, str]:
    """Environment that keeps boto3 away from AWS: fake keys, a region, no metadata service."""
    return {
        "AWS_ACCESS_KEY_ID": "benchmark",
        "AWS_SECRET_ACCESS_KEY": "benchmark",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def service_environment(threshold: float = PERFECT_MODEL_THRESHOLD_K) -> dict[str, str]:
    """The Lambda environment the CDK stack sets for the motor example (cdk.json)."""
    return {
        "ENDPOINT_NAME": "anomaly-detector",
        "TARGET_COLUMN": TARGET,
        "INPUT_COLUMNS": json.dumps(list(INPUTS)),
        "TIMESTAMP_COLUMN": "timestamp",
        "TIMEZONE": "UTC",
        "THRESHOLD": repr(threshold),
        "WINDOW": "5",
        "MIN_DURATION": "1",
        "METRICS_NAMESPACE": "AnomalyDetection",
        "POWERTOOLS_METRICS_NAMESPACE": "AnomalyDetection",
        "POWERTOOLS_SERVICE_NAME": "anomaly-detector",
        "METRICS_MODE": "emf",
        "MAX_REQUEST_BYTES": "5500000",
        "ENDPOINT_READ_TIMEOUT": "20",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:anomaly-detector-benchmark",
    }


def proxy_event(body: str, query: dict[str, str] | None = None) -> dict:
    """An API Gateway REST proxy event for ``POST /detect`` with a CSV body."""
    return {
        "resource": "/detect",
        "path": "/detect",
        "httpMethod": "POST",
        "headers": {"Content-Type": "text/csv"},
        "queryStringParameters": query,
        "requestContext": {"requestId": "benchmark-request", "stage": "v1"},
        "body": body,
        "isBase64Encoded": False,
    }


@contextlib.contextmanager
def stdout_discarded() -> Iterator[None]:
    """Send file descriptor 1 to /dev/null: Powertools writes logs and EMF metrics there."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


# -- timing and results -----------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


@dataclass
class Goal:
    """A goal checked by a benchmark: the measured ``ratio`` must be at most ``limit``."""

    name: str
    ratio: float
    limit: float
    detail: str = ""
    measure: str = "ratio"  # what ``ratio`` holds: a ratio, or a count such as errors

    @property
    def met(self) -> bool:
        return self.ratio <= self.limit

    def line(self) -> str:
        verdict = "met" if self.met else "NOT met"
        value = f"{self.ratio:.2f}" if self.measure == "ratio" else f"{self.ratio:g}"
        return f"GOAL {self.name}: {self.measure} {value} (limit {self.limit:g}) {verdict}"


@dataclass
class Report:
    """What one benchmark measured: goals, a Markdown section, and raw numbers."""

    name: str
    title: str
    goals: list[Goal] = field(default_factory=list)
    markdown: str = ""
    numbers: dict = field(default_factory=dict)

    def save(self) -> Path:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.name}.json"
        document = {
            "name": self.name,
            "title": self.title,
            "goals": [{**vars(goal), "met": goal.met} for goal in self.goals],
            "markdown": self.markdown,
            "numbers": self.numbers,
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
        for goal in self.goals:
            print(goal.line(), flush=True)
        return path


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_description() -> dict[str, str]:
    """CPU model, cores, memory, Python and library versions of this run."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024**2:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    import boto3
    import lightgbm
    import pyarrow

    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": f"pandas {pd.__version__}, numpy {np.__version__}, pyarrow "
        f"{pyarrow.__version__}, boto3 {boto3.__version__}, lightgbm {lightgbm.__version__}",
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(not set)"),
    }
