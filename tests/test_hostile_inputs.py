"""The hostile-input corpus through the real handler, request values kept out of the logs,
and spreadsheet formulas kept out of the CLI's CSV.

Each corpus case (``tests/hostile/``) becomes the API Gateway event that the deployed Lambda
receives. The handler runs for real, with ``SageMakerPredictor`` on a boto3 client whose
requests a formula endpoint serves in-process, so that payload splitting and response
parsing are part of every accepted case.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import boto3
import fixtures_handler
import numpy as np
import pandas as pd
import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from fixtures_handler import FakeLambdaContext, make_config
from hostile import build
from hostile.corpus import SERVICE_ENVIRONMENT, Case, check_answer, load_cases

from anomaly_detector import handler
from anomaly_detector.cli import main as cli_main
from anomaly_detector.handler import DetectionService
from anomaly_detector.predictors import runtime_client_config

# pytest finds a fixture by its name in the test module, so the shared fixtures are bound here.
aws_credentials = fixtures_handler.aws_credentials
captured_stdout = fixtures_handler.captured_stdout

CASES = load_cases()
# At least this many cases in each group that the corpus must cover.
MIN_CASES_PER_GROUP = 5
CANARY = "CANARY-7f3a9c"
CANARY_NUMBER = "987654.125"


def formula(inputs: list[float | None]) -> float:
    """Predict the target as the formula endpoint does: 0.1 x torque + ambient temperature."""
    _, torque, ambient = inputs
    return 0.1 * torque + ambient


@dataclass
class FormulaEndpoint:
    """Respond to every InvokeEndpoint request of a boto3 client in-process with the formula.

    The hook receives the request that botocore built and signed, and returns the response
    before anything is sent, so botocore parses a real HTTP response.
    """

    client: object
    payload_rows: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client.meta.events.register_first(
            "before-send.sagemaker-runtime.InvokeEndpoint", self._answer
        )

    def _answer(self, request, **_) -> AWSResponse:
        lines = request.body.decode().splitlines()
        self.payload_rows.append(len(lines))
        values = [[float(cell) for cell in line.split(",")] for line in lines]
        document = {"predictions": [{"score": formula(row)} for row in values]}
        body = json.dumps(document).encode()
        return AWSResponse(request.url, 200, {"Content-Type": "application/json"}, _Raw(body))


class _Raw(io.BytesIO):
    # botocore reads a streaming response body through stream(), which BytesIO lacks.
    def stream(self, **_) -> Iterator[bytes]:
        yield self.read()


@pytest.fixture
def formula_endpoint(aws_credentials) -> FormulaEndpoint:
    client = boto3.client(
        "sagemaker-runtime", region_name="eu-west-1", config=runtime_client_config(5.0)
    )
    return FormulaEndpoint(client)


@pytest.fixture
def corpus_service(formula_endpoint: FormulaEndpoint) -> DetectionService:
    return DetectionService(
        make_config(**SERVICE_ENVIRONMENT), runtime_client=formula_endpoint.client
    )


# -- the corpus itself --------------------------------------------------------------------


def test_corpus_files_match_builder(tmp_path):
    build.write(tmp_path)

    stored = sorted(p.name for p in (build.HERE / "bodies").iterdir())
    built = sorted(p.name for p in (tmp_path / "bodies").iterdir())
    assert stored == built, "run python tests/hostile/build.py"
    for name in built:
        assert (build.HERE / "bodies" / name).read_bytes() == (
            tmp_path / "bodies" / name
        ).read_bytes(), name
    assert (build.HERE / "cases.json").read_text() == (tmp_path / "cases.json").read_text()


def test_corpus_covers_each_group():
    groups = ("encoding", "csv", "values", "json", "timestamps", "shape")
    counts = {group: sum(case.group == group for case in CASES) for group in groups}

    assert len(CASES) >= 60
    assert min(counts.values()) >= MIN_CASES_PER_GROUP, counts
    assert sum(case.accepted for case in CASES) >= 30


def test_corpus_limit_matches_service():
    document = json.loads((build.HERE / "cases.json").read_text())

    assert str(document["limit_bytes"]) == SERVICE_ENVIRONMENT["MAX_REQUEST_BYTES"]


# -- every case through the handler -------------------------------------------------------


@pytest.mark.filterwarnings("ignore::pandas.errors.PerformanceWarning")
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_case_handler(case, corpus_service, formula_endpoint):
    response = corpus_service.handle(case.event(), FakeLambdaContext())

    assert response["headers"]["Content-Type"] == "application/json"
    check_answer(case, response["statusCode"], response["body"], predict=formula)
    # Only an overflow of the residuals is found after the endpoint has responded.
    if not case.accepted and case.name != "values/residual_overflow":
        assert formula_endpoint.payload_rows == []


def test_last_payload_never_one_row(corpus_service, formula_endpoint):
    [case] = [case for case in CASES if case.name == "shape/last_payload_one_row"]

    response = corpus_service.handle(case.event(), FakeLambdaContext())

    assert response["statusCode"] == 200
    assert sum(formula_endpoint.payload_rows) == case.expect["rows"]
    assert len(formula_endpoint.payload_rows) == 2
    assert min(formula_endpoint.payload_rows) >= 2, formula_endpoint.payload_rows


# -- logs ---------------------------------------------------------------------------------


def canary_requests() -> dict[str, tuple[dict, int]]:
    """Requests that carry the canary in each place a value can travel, with their status."""
    rows = build.machine_rows(6)
    noted = [build.changed(row, note=f"{CANARY} {CANARY_NUMBER}") for row in rows]
    in_number = build.with_cell(rows, 2, "torque", CANARY)
    in_name = build.csv_text(rows, [*build.HEADER[:5], CANARY])
    records = [row.record() | {CANARY: CANARY_NUMBER} for row in rows]

    def event(body: str, content_type: str = "text/csv", query: dict | None = None) -> dict:
        case = Case("canary", "", body.encode(), {"Content-Type": content_type}, "any", {})
        return case.event() | {"queryStringParameters": query}

    return {
        "text cell, accepted": (event(build.csv_text(noted)), 200),
        "numeric cell, rejected": (event(in_number), 400),
        "column name, accepted": (event(in_name), 200),
        "JSON key and value": (event(json.dumps(records), "application/json"), 200),
        "query parameter": (event(build.csv_text(rows), query={"rows": CANARY}), 400),
        "missing column listed": (event(in_name.replace("torque", CANARY + "_2")), 400),
    }


@pytest.mark.parametrize("name", list(canary_requests()))
def test_logs_never_contain_request_values(name, captured_stdout, capsys, formula_endpoint):
    event, status = canary_requests()[name]
    service = DetectionService(
        make_config(METRICS_MODE="emf", **SERVICE_ENVIRONMENT),
        runtime_client=formula_endpoint.client,
    )

    response = service.handle(event, FakeLambdaContext())

    assert response["statusCode"] == status
    logs = captured_stdout() + capsys.readouterr().err
    assert logs.strip(), "the request wrote no log line"
    assert CANARY not in logs
    assert CANARY_NUMBER not in logs
    fields = [json.loads(line) for line in logs.splitlines() if line.startswith('{"level"')]
    assert all(line["request_id"] == FakeLambdaContext().aws_request_id for line in fields)
    if status == 200:
        [scored] = [line for line in fields if line["message"] == "request scored"]
        assert scored["rows"] == 6
    else:
        [rejected] = [line for line in fields if line["message"] == "request rejected"]
        assert rejected["error_code"] == json.loads(response["body"])["error"]["code"]


def test_logs_omit_model_error_message(captured_stdout):
    # Given a model whose error message quotes the request's values back
    client = boto3.client("sagemaker-runtime", region_name="eu-west-1")
    stubber = Stubber(client)
    stubber.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message=f"could not convert {CANARY} to float",
        http_status_code=424,
        modeled_fields={"OriginalStatusCode": 400, "OriginalMessage": f"bad value {CANARY}"},
    )
    service = DetectionService(make_config(), runtime_client=client)
    event = canary_requests()["text cell, accepted"][0]

    with stubber:
        response = service.handle(event, FakeLambdaContext())

    assert response["statusCode"] == 502
    logs = captured_stdout()
    assert CANARY not in logs
    assert CANARY not in response["body"]
    [failed] = [json.loads(line) for line in logs.splitlines() if '"request failed"' in line]
    assert failed["cause_code"] == "ModelError"


def test_unexpected_error_logs_no_message(captured_stdout, monkeypatch):
    # Given a defect whose exception message quotes a request value
    def broken(*_args, **_kwargs):
        raise ValueError(f"could not handle {CANARY}")

    monkeypatch.setattr(handler, "detect_chunk", broken)
    service = DetectionService(make_config(), predictor=fixtures_handler.FormulaPredictor())

    response = service.handle(canary_requests()["text cell, accepted"][0])

    assert response["statusCode"] == 500
    assert CANARY not in response["body"]
    logs = captured_stdout()
    assert CANARY not in logs
    assert "ValueError" in logs
    assert "Traceback" not in response["body"]


# -- spreadsheet formulas in the CLI's CSV ------------------------------------------------

FORMULA_CELLS = {
    "=HYPERLINK(\"http://example.invalid\",\"open\")": "'=HYPERLINK(\"http://example.invalid\",\"open\")",
    "+1+cmd|' /C calc'!A0": "'+1+cmd|' /C calc'!A0",
    "-2+3": "'-2+3",
    "@SUM(A1:A9)": "'@SUM(A1:A9)",
    "\tleading tab": "'\tleading tab",
    "-5": "-5",
    "plain note": "plain note",
}


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory) -> tuple:
    """Train a small model with the CLI on 80 generated rows; return the directory and rows."""
    directory = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x1": rng.uniform(0, 10, 80), "x2": rng.uniform(0, 5, 80)})
    frame["y"] = 2 * frame["x1"] + frame["x2"] + rng.normal(0, 0.1, 80)
    frame.to_csv(directory / "train.csv", index=False)
    model_dir = directory / "model"
    code = cli_main(
        ["train", str(directory / "train.csv"), "--target", "y", "--model-dir", str(model_dir)]
    )
    assert code == 0
    return directory, model_dir


def test_cli_csv_neutralises_formulas(cli_model, capsys):
    # Given a file whose echoed text column contains spreadsheet formulas
    directory, model_dir = cli_model
    notes = list(FORMULA_CELLS)
    frame = pd.DataFrame(
        {"x1": np.linspace(1, 9, len(notes)), "x2": 2.0, "note": notes, "x1_text": "=1+1"}
    )
    frame["y"] = 2 * frame["x1"] + frame["x2"]
    source = directory / "formulas.csv"
    frame.to_csv(source, index=False)
    out = directory / "out"

    # When the CLI scores it
    code = cli_main(["detect", str(source), "--model-dir", str(model_dir), "--out", str(out),
                     "--no-figures"])  # fmt: skip
    capsys.readouterr()

    # Then no cell of scored.csv starts a formula, and plain values stay as they were
    assert code == 0
    with (out / "scored.csv").open(newline="") as handle:
        records = list(csv.DictReader(handle))
    assert [record["note"] for record in records] == list(FORMULA_CELLS.values())
    assert all(record["x1_text"] == "'=1+1" for record in records)
    for record in records:
        for column, value in record.items():
            if column not in ("note", "x1_text"):
                assert not value.startswith(("=", "+", "@", "\t")), (column, value)
