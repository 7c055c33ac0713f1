"""The hostile-input corpus over HTTP through ``anomaly-detector serve`` on 127.0.0.1.

One ``serve`` process, started as an operator would start it, serves a LightGBM model
trained on the corpus's columns with the corpus's settings. Every corpus case that an HTTP
client can send goes to it as raw bytes with its own headers. The process's log output is
then searched for request values.
"""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anomaly_detector.local_model import LocalModel, train

# The corpus lives beside the unit tests, outside this folder.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hostile import build  # noqa: E402
from hostile.corpus import (  # noqa: E402
    SERVICE_ENVIRONMENT,
    Case,
    check_answer,
    load_cases,
    machine_frame,
)

pytestmark = pytest.mark.e2e

LOOPBACK = "127.0.0.1"
INPUTS = ["motor_speed", "torque", "ambient_temperature"]
HTTP_CASES = [case for case in load_cases() if case.transport == "any"]
START_SECONDS = 60
STOP_SECONDS = 15
HTTP_TIMEOUT_SECONDS = 30
CANARY = "CANARY-5be01d"


@dataclass
class Serve:
    """A running ``serve`` process: its address, its model and its captured output."""

    host: str
    port: int
    model: LocalModel
    output: list[str]

    def settled_output(self, quiet_seconds: float = 0.5, limit_seconds: float = 10.0) -> int:
        """Wait until no log line has arrived for ``quiet_seconds``; return the line count.

        The server writes a request's log line after it sends the response, so a line can
        arrive after the client already has its answer.
        """
        deadline = time.monotonic() + limit_seconds
        count = len(self.output)
        while time.monotonic() < deadline:
            time.sleep(quiet_seconds)
            if len(self.output) == count:
                break
            count = len(self.output)
        return count

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, str, str]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=HTTP_TIMEOUT_SECONDS)
        try:
            connection.request("POST", "/detect", body=body, headers=headers)
            response = connection.getresponse()
            text = response.read().decode("utf-8")
            return response.status, response.getheader("Content-Type", ""), text
        finally:
            connection.close()

    def predict(self, inputs: list[float]) -> float:
        frame = pd.DataFrame([inputs], columns=INPUTS, dtype=float)
        return float(self.model.predict(frame)[0])


def training_rows(count: int = 600) -> pd.DataFrame:
    """Rows over the corpus's value ranges, the same on every run."""
    return machine_frame(count, np.random.default_rng(11), start="2024-01-01")


def _pump(stream, output: list[str]) -> None:
    for line in stream:
        output.append(line)


@pytest.fixture(scope="module")
def serve(fake_aws_environment, tmp_path_factory) -> Iterator[Serve]:
    """Start ``anomaly-detector serve`` with the corpus settings on a free loopback port."""
    model_dir = tmp_path_factory.mktemp("hostile-model")
    train(training_rows(), target="bearing_temperature", inputs=INPUTS, model_dir=model_dir,
          timestamp_column="timestamp")  # fmt: skip
    executable = os.path.join(os.path.dirname(sys.executable), "anomaly-detector")
    command = [
        executable, "serve", "--model-dir", str(model_dir), "--port", "0",
        "--timezone", SERVICE_ENVIRONMENT["TIMEZONE"], "--threshold", "2.0", "--window", "3",
        "--min-duration", "2", "--max-request-bytes", SERVICE_ENVIRONMENT["MAX_REQUEST_BYTES"],
    ]  # fmt: skip
    env = {**os.environ}
    env.pop("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", None)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env)  # fmt: skip
    output: list[str] = []
    started = threading.Event()

    def read() -> None:
        for line in process.stdout:
            output.append(line)
            if line.startswith("API on "):
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(START_SECONDS), "".join(output)
        match = re.search(r"API on http://(127\.0\.0\.1):(\d+)", "".join(output))
        assert match, "".join(output)
        yield Serve(match.group(1), int(match.group(2)), LocalModel(model_dir), output)
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_SECONDS)
        reader.join(timeout=STOP_SECONDS)
        process.stdout.close()


def test_corpus_has_http_cases():
    assert len(HTTP_CASES) >= 60


@pytest.mark.parametrize("case", HTTP_CASES, ids=[case.name for case in HTTP_CASES])
def test_corpus_case_over_http(serve, case: Case):
    status, content_type, text = serve.post(case.body, case.headers)

    assert content_type == "application/json"
    check_answer(case, status, text, predict=serve.predict)


def test_serve_logs_no_request_values(serve):
    # Given requests that carry the canary in a text cell, a numeric cell and a column name
    rows = build.machine_rows(5)
    bodies = {
        "text cell": (build.csv_text([build.changed(r, note=CANARY) for r in rows]), 200),
        "numeric cell": (build.with_cell(rows, 3, "torque", CANARY), 400),
        "column name": (build.csv_text(rows, [*build.HEADER[:5], CANARY]), 200),
    }
    before = serve.settled_output()

    # When they are sent
    for name, (body, status) in bodies.items():
        answer = serve.post(body.encode(), {"Content-Type": "text/csv"})
        assert answer[0] == status, (name, answer)

    # Then the process logged the requests, but none of their values
    logged = "".join(serve.output[before : serve.settled_output()])
    assert logged.count('"request scored"') == 2, logged[-2000:]
    assert logged.count('"request rejected"') == 1
    assert CANARY not in "".join(serve.output)
