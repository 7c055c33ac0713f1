"""Endpoint faults through the whole request path: each response of a misbehaving endpoint
becomes a fixed JSON error, and no residual is ever computed on predictions that could sit
on the wrong rows.

Faults come from three places: raw HTTP responses and transport errors returned to a real
boto3 client before it sends anything (so botocore parses them and retries as configured),
botocore's Stubber, and the local SageMaker-protocol endpoint on 127.0.0.1 serving models
that misbehave.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import boto3
import botocore.endpoint
import fixtures_handler
import numpy as np
import pandas as pd
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError
from botocore.stub import Stubber
from fixtures_handler import (
    ENDPOINT_NAME,
    FakeLambdaContext,
    expected_rows,
    load_event,
    make_config,
    parse_body,
)

from anomaly_detector import handler
from anomaly_detector.handler import DetectionService
from anomaly_detector.local_server import ModelEndpointServer, start_in_thread
from anomaly_detector.predictors import RETRY_ATTEMPTS, runtime_client_config

# pytest finds a fixture by its name in the test module, so the shared fixture is bound here.
aws_credentials = fixtures_handler.aws_credentials

# The sample event has 20 rows, 19 of them with every input.
SCORED_ROWS = 19
FAKE_URL = "http://127.0.0.1:9/endpoints/bearing-temperature-model/invocations"
# Remaining Lambda time that leaves 1.3 s for the first endpoint call, after the handler's
# 2 s margin: enough to start a call (1 s), too little for a slow endpoint.
SHORT_REMAINING_MS = 3_300
SLOW_ENDPOINT_SECONDS = 10


@dataclass
class Reply:
    """An HTTP response of the endpoint, or a JSON document of predictions with status 200."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})

    @classmethod
    def predictions(cls, values: list) -> Reply:
        return cls(body=json.dumps({"predictions": values}).encode())

    @classmethod
    def error(cls, status: int, code: str | None, document: dict | None = None) -> Reply:
        headers = {"Content-Type": "application/json"}
        if code is not None:
            headers["x-amzn-ErrorType"] = code
        body = b"" if document is None else json.dumps(document).encode()
        return cls(status, body, headers)


def formula_reply(rows: list[list[float]]) -> Reply:
    """Respond as the model of the sample data does: 0.1 x torque + ambient temperature."""
    return Reply.predictions([0.1 * torque + ambient for _, torque, ambient in rows])


Answer = Reply | BaseException | Callable[[list[list[float]]], Reply]


@dataclass
class ScriptedEndpoint:
    """Respond to the InvokeEndpoint attempts of a boto3 client in turn from ``answers``.

    Each answer is a ``Reply``, an exception raised as the transport's, or a function of the
    request's rows. After the list, ``then`` responds, and without it a further attempt fails
    the test. The hook runs before botocore sends anything, so no request leaves the process.
    """

    client: object
    answers: list[Answer]
    then: Callable[[list[list[float]]], Reply] | None = None
    attempts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client.meta.events.register_first(
            "before-send.sagemaker-runtime.InvokeEndpoint", self._answer
        )

    def _answer(self, request, **_) -> AWSResponse:
        rows = [[float(v) for v in line.split(",")] for line in request.body.decode().split()]
        self.attempts.append(len(rows))
        if self.answers:
            answer = self.answers.pop(0)
        elif self.then is not None:
            answer = self.then
        else:
            raise AssertionError(f"unexpected endpoint attempt {len(self.attempts)}")
        if isinstance(answer, BaseException):
            raise answer
        reply = answer(rows) if callable(answer) else answer
        return AWSResponse(request.url, reply.status, reply.headers, _Raw(reply.body))


class _Raw(io.BytesIO):
    # botocore reads a response body through stream() or read(), and a BytesIO has only read().
    def stream(self, **_) -> Iterator[bytes]:
        yield self.read()


@dataclass
class Run:
    """One request through DetectionService: the response and what the service did."""

    response: dict
    attempts: list[int]
    scored_calls: int
    seconds: float

    def error(self) -> dict:
        body = parse_body(self.response)
        assert list(body) == ["error"], "an error must not carry rows or a summary"
        return body["error"]


class _CountingScorer(handler.Scorer):
    calls = 0

    def score(self, *args, **kwargs):
        type(self).calls += 1
        return super().score(*args, **kwargs)


@pytest.fixture
def no_backoff(monkeypatch) -> list[float]:
    """Record botocore's retry delays instead of sleeping them; return the recorded delays.

    The retries still happen, with the service's own client configuration.
    """
    delays: list[float] = []

    class _Time:
        @staticmethod
        def sleep(seconds: float) -> None:
            delays.append(seconds)

    monkeypatch.setattr(botocore.endpoint, "time", _Time)
    return delays


@pytest.fixture
def run_request(aws_credentials, monkeypatch, no_backoff) -> Callable[..., Run]:
    """Return a function that sends the sample CSV event to an endpoint with scripted responses."""
    monkeypatch.setattr(handler, "Scorer", _CountingScorer)
    monkeypatch.setattr(_CountingScorer, "calls", 0)

    def run(
        answers: list[Answer],
        then: Callable | None = None,
        context: FakeLambdaContext | None = None,
        event: dict | None = None,
        **env: str,
    ) -> Run:
        client = boto3.client(
            "sagemaker-runtime", region_name="eu-west-1", config=runtime_client_config(5.0)
        )
        endpoint = ScriptedEndpoint(client, list(answers), then)
        service = DetectionService(make_config(**env), runtime_client=client)
        started = time.monotonic()
        response = service.handle(event or load_event("post_csv"), context or FakeLambdaContext())
        return Run(
            response, endpoint.attempts, _CountingScorer.calls, time.monotonic() - started
        )

    return run


def model_error(original_status: int) -> Reply:
    return Reply.error(
        424,
        "ModelError",
        {
            "message": f"Received client error ({original_status}) from primary",
            "OriginalStatusCode": original_status,
            "OriginalMessage": "the model container failed",
        },
    )


# (answers of the attempts, status, error code, fragments of the message)
FAULTS = {
    "throttling, HTTP 400 without message": (
        [Reply.error(400, "ThrottlingException")] * RETRY_ATTEMPTS,
        503, "endpoint_unavailable", ["busy or not ready", "ThrottlingException",
                                      f"after {RETRY_ATTEMPTS} attempts", "Try again later"],
    ),
    "throttling, code only in the body": (
        [Reply.error(400, None, {"__type": "ThrottlingException"})] * RETRY_ATTEMPTS,
        503, "endpoint_unavailable", ["ThrottlingException", "Try again later"],
    ),
    "HTTP 400 without any code": (
        [Reply.error(400, None)],
        502, "endpoint_error", [f"'{ENDPOINT_NAME}'", "returned an error (400)"],
    ),
    "model error, model status 400": (
        [model_error(400)],
        502, "endpoint_error", ["ModelError", "model status 400", "training columns"],
    ),
    "model error, model status 500": (
        [model_error(500)],
        502, "endpoint_error", ["ModelError", "model status 500"],
    ),
    "model error, model status 415": (
        [model_error(415)],
        500, "configuration_error", ["rejected the content type", "415", "text/csv"],
    ),
    # botocore reads no error code from a 5xx response without a body, only the status.
    "service unavailable, no body": (
        [Reply.error(503, "ServiceUnavailable")] * RETRY_ATTEMPTS,
        503, "endpoint_unavailable", ["(503)", "Try again later"],
    ),
    "service unavailable, JSON body": (
        [Reply.error(503, "ServiceUnavailable", {"message": "try later"})] * RETRY_ATTEMPTS,
        503, "endpoint_unavailable", ["ServiceUnavailable", "Try again later"],
    ),
    "internal failure, HTTP 500": (
        [Reply.error(500, "InternalFailure")] * RETRY_ATTEMPTS,
        502, "endpoint_error", ["(500)"],
    ),
    "connect timeout": (
        [ConnectTimeoutError(endpoint_url=FAKE_URL)] * RETRY_ATTEMPTS,
        504, "endpoint_timeout", ["did not respond in time", "fewer rows"],
    ),
    "read timeout": (
        [ReadTimeoutError(endpoint_url=FAKE_URL)] * RETRY_ATTEMPTS,
        504, "endpoint_timeout", ["did not respond in time"],
    ),
    "connection refused": (
        [EndpointConnectionError(endpoint_url=FAKE_URL)] * RETRY_ATTEMPTS,
        503, "endpoint_unavailable", ["cannot be reached"],
    ),
    "HTTP 406": (
        [Reply.error(406, "NotAcceptable")],
        500, "configuration_error", ["rejected the content type (HTTP 406)", "application/json"],
    ),
    "HTTP 415": (
        [Reply.error(415, "UnsupportedMediaType")],
        500, "configuration_error", ["rejected the content type (HTTP 415)", "text/csv"],
    ),
    "HTML instead of predictions": (
        [Reply(body=b"<html><body>502 Bad Gateway</body></html>", headers={})],
        502, "endpoint_error", [f"for {SCORED_ROWS} rows", "refusing to match"],
    ),
    "truncated JSON": (
        [Reply(body=b'{"predictions": [1.0, 2.0')],
        502, "endpoint_error", ["neither JSON nor JSON Lines"],
    ),
    "empty body": (
        [Reply(body=b"")],
        502, "endpoint_error", ["empty response"],
    ),
    "too few predictions": (
        [Reply.predictions([30.0] * (SCORED_ROWS - 1))],
        502, "endpoint_error", [f"{SCORED_ROWS - 1} predictions for {SCORED_ROWS} rows",
                                "refusing to match them to rows"],
    ),
    "too many predictions": (
        [Reply.predictions([30.0] * (SCORED_ROWS + 1))],
        502, "endpoint_error", [f"{SCORED_ROWS + 1} predictions for {SCORED_ROWS} rows"],
    ),
    "NaN prediction": (
        [Reply(body=b'{"predictions": [30.0, 30.0, NaN' + b", 30.0" * (SCORED_ROWS - 3) + b"]}")],
        502, "endpoint_error", ["Prediction 2", "not a finite number"],
    ),
    "infinite prediction": (
        [Reply.predictions([30.0] * (SCORED_ROWS - 1) + [1e400])],
        502, "endpoint_error", [f"Prediction {SCORED_ROWS - 1}", "not a finite number"],
    ),
    "text prediction": (
        [Reply.predictions(["warm"] + [30.0] * (SCORED_ROWS - 1))],
        502, "endpoint_error", ["Prediction 0 is not a number", "regression model"],
    ),
    "null prediction": (
        [Reply.predictions([30.0] * (SCORED_ROWS - 1) + [None])],
        502, "endpoint_error", [f"Prediction {SCORED_ROWS - 1} is not a number"],
    ),
    "boolean prediction": (
        [Reply.predictions([True] * SCORED_ROWS)],
        502, "endpoint_error", ["Prediction 0 is a boolean"],
    ),
    "classifier labels": (
        [Reply.predictions([{"predicted_label": "normal"}] * SCORED_ROWS)],
        502, "endpoint_error", ["Prediction 0 is not a number"],
    ),
    "row too large even alone": (
        [Reply.error(413, None)] * 16,
        502, "endpoint_error", ["rejected row 0 alone", "HTTP 413"],
    ),
}  # fmt: skip


@pytest.mark.parametrize(("answers", "status", "code", "fragments"), FAULTS.values(),
                         ids=FAULTS.keys())  # fmt: skip
def test_endpoint_fault_answered(run_request, answers, status, code, fragments):
    run = run_request(answers)

    assert run.response["statusCode"] == status
    error = run.error()
    assert error["code"] == code
    for fragment in fragments:
        assert fragment in error["message"], error["message"]
    assert "Traceback" not in run.response["body"]
    assert run.scored_calls == 0, "residuals were computed despite the fault"


def test_retries_follow_client_config(run_request, no_backoff):
    run = run_request([Reply.error(400, "ThrottlingException")] * RETRY_ATTEMPTS)

    assert run.attempts == [SCORED_ROWS] * RETRY_ATTEMPTS
    assert len(no_backoff) == RETRY_ATTEMPTS - 1


def test_throttling_then_success_scores(run_request):
    run = run_request([Reply.error(400, "ThrottlingException")], then=formula_reply)

    assert run.response["statusCode"] == 200
    assert run.attempts == [SCORED_ROWS, SCORED_ROWS]
    assert_sample_scored(parse_body(run.response))


def assert_sample_scored(body: dict) -> None:
    """Check that every scored row has the prediction of its own inputs."""
    rows = body["rows"]
    assert len(rows) == 20
    for row, want in zip(rows, expected_rows(), strict=True):
        if want.predicted is None:
            assert row["predicted"] is None
            continue
        assert row["predicted"] == pytest.approx(want.predicted, abs=1e-9)
        assert row["score"] == pytest.approx(want.score, abs=1e-9)


# -- 413: split the payload and try again --------------------------------------------------


def test_payload_413_split_and_retried(run_request):
    # Given an endpoint that rejects the whole payload once, then answers
    run = run_request([Reply.error(413, None)], then=formula_reply)

    # Then the rows went again in two halves, and every row has its own prediction
    assert run.response["statusCode"] == 200
    assert run.attempts[0] == SCORED_ROWS
    assert sum(run.attempts[1:]) == SCORED_ROWS
    assert len(run.attempts) == 3
    assert abs(run.attempts[1] - run.attempts[2]) <= 2
    assert_sample_scored(parse_body(run.response))


def test_payload_413_split_until_accepted(run_request):
    # Given an endpoint that accepts at most 4 rows per request
    def small_only(rows: list[list[float]]) -> Reply:
        return Reply.error(413, None) if len(rows) > 4 else formula_reply(rows)

    run = run_request([], then=small_only)

    # Then every accepted request had at most 4 rows, and all rows were scored in order
    assert run.response["statusCode"] == 200
    accepted = [rows for rows in run.attempts if rows <= 4]
    assert sum(accepted) == SCORED_ROWS
    assert_sample_scored(parse_body(run.response))


def test_payload_413_only_for_that_payload(run_request):
    # Given 60 rows in two payloads of at most 1,000 bytes, and an endpoint that rejects
    # the first payload once
    records = [
        {"timestamp": f"2024-03-06T{8 + i // 60:02d}:{i % 60:02d}:00Z", "motor_speed": 1480.0,
         "torque": 60.0, "ambient_temperature": 21.0, "bearing_temperature": 27.0 + i / 100}
        for i in range(60)
    ]  # fmt: skip
    event = load_event("post_json_list")
    event["body"] = json.dumps(records)

    run = run_request([Reply.error(413, None)], then=formula_reply, event=event,
                      MAX_PAYLOAD_BYTES="1000")  # fmt: skip

    # Then the first payload went again in halves and the second one whole
    assert run.response["statusCode"] == 200
    first, *rest = run.attempts
    assert sum(rest) == 60
    assert len(rest) == 3
    assert first == rest[0] + rest[1]
    body = parse_body(run.response)
    assert [row["actual"] for row in body["rows"]] == [r["bearing_temperature"] for r in records]
    assert all(row["predicted"] == pytest.approx(27.0) for row in body["rows"])


# -- the time the API allows ---------------------------------------------------------------


@pytest.fixture
def stalled() -> Iterator[threading.Event]:
    """An event that a slow endpoint waits on; set at teardown so its worker thread ends."""
    release = threading.Event()
    yield release
    release.set()


def test_slow_endpoint_answers_504_in_time(run_request, stalled):
    # Given an endpoint that answers only after the time the API allows
    def slow(rows: list[list[float]]) -> Reply:
        stalled.wait(SLOW_ENDPOINT_SECONDS)
        return formula_reply(rows)

    run = run_request([slow], context=FakeLambdaContext(remaining_ms=SHORT_REMAINING_MS))

    # Then the service stops waiting at its deadline and answers 504 with a JSON body
    assert run.response["statusCode"] == 504
    error = run.error()
    assert error["code"] == "endpoint_timeout"
    assert "did not respond within the time the API allows" in error["message"]
    assert run.seconds < 3.0
    assert run.scored_calls == 0


def test_slow_second_payload_no_partial_result(run_request, stalled):
    # Given two payloads, the first answered at once and the second only after the deadline
    def slow(rows: list[list[float]]) -> Reply:
        stalled.wait(SLOW_ENDPOINT_SECONDS)
        return formula_reply(rows)

    event = load_event("post_csv")
    lines = event["body"].splitlines(keepends=True)
    event["body"] = lines[0] + "".join(lines[1:]) * 4  # 80 rows, 76 with every input

    run = run_request([formula_reply, slow], event=event, MAX_PAYLOAD_BYTES="1000",
                      context=FakeLambdaContext(remaining_ms=SHORT_REMAINING_MS))  # fmt: skip

    # Then the answer is a 504 error, not the rows of the first payload
    assert len(run.attempts) == 2
    assert run.response["statusCode"] == 504
    assert run.error()["code"] == "endpoint_timeout"
    assert run.scored_calls == 0


def test_no_time_left_no_call(run_request):
    run = run_request([], context=FakeLambdaContext(remaining_ms=2_500))

    assert run.response["statusCode"] == 504
    assert "fewer rows" in run.error()["message"]
    assert run.attempts == []


# -- botocore Stubber ------------------------------------------------------------------------


def test_stubbed_throttling_no_message(aws_credentials):
    client = boto3.client("sagemaker-runtime", region_name="eu-west-1")
    service = DetectionService(make_config(), runtime_client=client)

    with Stubber(client) as stubber:
        stubber.add_client_error(
            "invoke_endpoint", service_error_code="ThrottlingException", http_status_code=400
        )
        response = service.handle(load_event("post_csv"), FakeLambdaContext())
        stubber.assert_no_pending_responses()

    assert response["statusCode"] == 503
    assert parse_body(response)["error"]["code"] == "endpoint_unavailable"


# -- the local SageMaker-protocol endpoint on 127.0.0.1 --------------------------------------


@dataclass
class _Card:
    inputs: list[str]


class MisbehavingModel:
    """A model behind the local endpoint whose answer a test sets."""

    card = _Card(["motor_speed", "torque", "ambient_temperature"])

    def __init__(self) -> None:
        self.answer: Callable[[pd.DataFrame], np.ndarray] = self.formula

    @staticmethod
    def formula(inputs: pd.DataFrame) -> np.ndarray:
        return 0.1 * inputs["torque"].to_numpy() + inputs["ambient_temperature"].to_numpy()

    def predict(self, inputs: pd.DataFrame) -> np.ndarray:
        return self.answer(inputs)


@pytest.fixture(scope="module")
def local_endpoint() -> Iterator[tuple[ModelEndpointServer, MisbehavingModel]]:
    model = MisbehavingModel()
    server = ModelEndpointServer(model, ENDPOINT_NAME)
    start_in_thread(server)
    yield server, model
    server.shutdown()
    server.server_close()


@pytest.fixture
def local_service(aws_credentials, local_endpoint, monkeypatch, no_backoff):
    """A service whose boto3 client calls the local endpoint over a loopback socket."""
    server, model = local_endpoint
    model.answer = model.formula
    monkeypatch.setattr(handler, "Scorer", _CountingScorer)
    monkeypatch.setattr(_CountingScorer, "calls", 0)
    client = boto3.client(
        "sagemaker-runtime",
        region_name="eu-west-1",
        endpoint_url=server.url,
        config=runtime_client_config(5.0),
    )
    return DetectionService(make_config(), runtime_client=client), model


LOCAL_FAULTS = {
    "model raises": (lambda inputs: 1 / 0, 502, "endpoint_error", "model status 400"),
    "one prediction short": (
        lambda inputs: MisbehavingModel.formula(inputs)[:-1], 502, "endpoint_error",
        f"{SCORED_ROWS - 1} predictions for {SCORED_ROWS} rows",
    ),
    "NaN prediction": (
        lambda inputs: np.where(np.arange(len(inputs)) == 5, np.nan, 30.0), 502,
        "endpoint_error", "Prediction 5",
    ),
    "infinite prediction": (
        lambda inputs: np.full(len(inputs), np.inf), 502, "endpoint_error", "Prediction 0",
    ),
}  # fmt: skip


@pytest.mark.e2e
@pytest.mark.parametrize(("answer", "status", "code", "fragment"), LOCAL_FAULTS.values(),
                         ids=LOCAL_FAULTS.keys())  # fmt: skip
def test_local_endpoint_fault(local_service, answer, status, code, fragment):
    service, model = local_service
    model.answer = answer

    response = service.handle(load_event("post_csv"), FakeLambdaContext())

    assert response["statusCode"] == status
    error = parse_body(response)["error"]
    assert error["code"] == code
    assert fragment in error["message"]
    assert _CountingScorer.calls == 0


@pytest.mark.e2e
def test_local_endpoint_slow_model_504(local_service, stalled):
    service, model = local_service

    def slow(inputs: pd.DataFrame) -> np.ndarray:
        stalled.wait(SLOW_ENDPOINT_SECONDS)
        return MisbehavingModel.formula(inputs)

    model.answer = slow
    started = time.monotonic()

    response = service.handle(
        load_event("post_csv"), FakeLambdaContext(remaining_ms=SHORT_REMAINING_MS)
    )

    assert response["statusCode"] == 504
    assert parse_body(response)["error"]["code"] == "endpoint_timeout"
    assert time.monotonic() - started < 3.0
    assert _CountingScorer.calls == 0


@pytest.mark.e2e
def test_local_endpoint_healthy_scores(local_service):
    service, _ = local_service

    response = service.handle(load_event("post_csv"), FakeLambdaContext())

    assert response["statusCode"] == 200
    assert_sample_scored(parse_body(response))
    assert _CountingScorer.calls == 1
