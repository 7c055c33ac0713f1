"""SageMakerPredictor against moto, a botocore Stubber and fake clients, and client settings."""

from __future__ import annotations

import csv
import io
import json
import time

import numpy as np
import pandas as pd
import pytest
from botocore.exceptions import (
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.response import StreamingBody

from anomaly_detector.config import DEFAULT_READ_TIMEOUT_SECONDS
from anomaly_detector.errors import (
    ConfigurationError,
    DetectorError,
    EndpointError,
    EndpointTimeoutError,
    EndpointUnavailableError,
)
from anomaly_detector.predictors import (
    CONNECT_TIMEOUT_SECONDS,
    RETRY_ATTEMPTS,
    SageMakerPredictor,
    runtime_client_config,
)

pytest_plugins = ["fixtures_aws"]

ENDPOINT = "bearing-temperature-model"
JSON_TYPE = "application/json"
# API Gateway ends a REST API integration after 29 s.
API_TIMEOUT_SECONDS = 29
# The address in fake botocore errors. Nothing connects to it.
FAKE_URL = "http://127.0.0.1:9/endpoints/bearing-temperature-model/invocations"

INPUTS = pd.DataFrame(
    {"torque": [42.5, 43.25], "motor_speed": [1500.0, 1510.0], "ambient_temperature": [21.0, 21.5]}
)
INPUTS_BODY = b"42.5,1500.0,21.0\n43.25,1510.0,21.5\n"


def streaming(body: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(body), len(body))


def json_predictions(*values: float) -> str:
    return json.dumps({"predictions": [{"score": value} for value in values]})


# --- moto --------------------------------------------------------------------------------


def test_moto_predict_sends_csv(moto_runtime):
    # Given
    moto_runtime.queue_results(json_predictions(60.9, 61.1))
    sent = moto_runtime.intercept_sends()
    predictor = SageMakerPredictor(moto_runtime.client, ENDPOINT)

    # When
    predictions = predictor.predict(INPUTS)

    # Then the predictions come back in row order
    assert predictions.tolist() == [60.9, 61.1]
    # and moto received one CSV body without header or index
    assert len(sent) == 1
    assert sent[0].url.endswith(f"/endpoints/{ENDPOINT}/invocations")
    assert sent[0].headers["Content-Type"] == "text/csv"
    assert sent[0].headers["Accept"] == "application/json"
    assert sent[0].body == INPUTS_BODY
    assert b"torque" not in sent[0].body


def test_moto_csv_response_read(moto_runtime):
    moto_runtime.queue_results("60.9\n61.1\n", content_type="text/csv")
    predictor = SageMakerPredictor(moto_runtime.client, ENDPOINT)

    assert predictor.predict(INPUTS).tolist() == [60.9, 61.1]


def test_moto_split_bodies_in_order(moto_runtime):
    # Given 6 rows of 17 bytes and room for 2 rows per request
    inputs = pd.DataFrame({"torque": [40.0 + i for i in range(6)], "speed": 1500.0})
    moto_runtime.queue_results(
        json_predictions(0.0, 0.1), json_predictions(1.0, 1.1), json_predictions(2.0, 2.1)
    )
    sent = moto_runtime.intercept_sends()
    predictor = SageMakerPredictor(moto_runtime.client, ENDPOINT, max_payload_bytes=34)

    # When
    predictions = predictor.predict(inputs)

    # Then each response is placed at the rows of its request
    assert predictions.tolist() == [0.0, 0.1, 1.0, 1.1, 2.0, 2.1]
    assert [request.body for request in sent] == [
        b"40.0,1500.0\n41.0,1500.0\n",
        b"42.0,1500.0\n43.0,1500.0\n",
        b"44.0,1500.0\n45.0,1500.0\n",
    ]
    assert predictor.calls == 3


def test_moto_count_mismatch_rejected(moto_runtime):
    moto_runtime.queue_results(json_predictions(60.9))
    predictor = SageMakerPredictor(moto_runtime.client, ENDPOINT)

    with pytest.raises(EndpointError) as caught:
        predictor.predict(INPUTS)

    assert "returned 1 predictions for 2 rows" in caught.value.message


# --- retries of the configured client (faults injected before moto) ----------------------


def test_retry_throttling_then_success(moto_runtime):
    # Given an endpoint that throttles twice, then responds
    moto_runtime.queue_results(json_predictions(60.9, 61.1))
    sent = moto_runtime.intercept_sends(["ThrottlingException", "ThrottlingException"])
    predictor = SageMakerPredictor(moto_runtime.client, ENDPOINT)

    # When
    predictions = predictor.predict(INPUTS)

    # Then botocore retried the same request, so the predictor made one call
    assert predictions.tolist() == [60.9, 61.1]
    assert len(sent) == 3
    assert {request.body for request in sent} == {INPUTS_BODY}
    assert sent[-1].headers["amz-sdk-request"] == "attempt=3; max=3"
    assert predictor.calls == 1


def test_retry_throttling_exhausted_503(moto_runtime):
    sent = moto_runtime.intercept_sends(["ThrottlingException"] * 5)
    predictor = SageMakerPredictor(moto_runtime.client, ENDPOINT)

    with pytest.raises(EndpointUnavailableError) as caught:
        predictor.predict(INPUTS)

    assert len(sent) == RETRY_ATTEMPTS
    assert f"after {RETRY_ATTEMPTS} attempts" in caught.value.message
    assert caught.value.status == 503


def test_retry_read_timeout_504(moto_runtime):
    # Given an endpoint whose every response times out
    timeouts = [ReadTimeoutError(endpoint_url=FAKE_URL) for _ in range(5)]
    sent = moto_runtime.intercept_sends(timeouts)
    predictor = SageMakerPredictor(moto_runtime.client, ENDPOINT)

    # When
    with pytest.raises(EndpointTimeoutError) as caught:
        predictor.predict(INPUTS)

    # Then botocore retried the read timeout too, and the caller gets 504
    assert len(sent) == RETRY_ATTEMPTS
    assert caught.value.status == 504


# --- botocore Stubber --------------------------------------------------------------------


def expected_call(body: bytes = INPUTS_BODY) -> dict:
    return {
        "EndpointName": ENDPOINT,
        "ContentType": "text/csv",
        "Accept": "application/json",
        "Body": body,
    }


def test_stub_request_parameters(runtime_stubber):
    # Given a response that the Stubber gives only to exactly these parameters
    answer = json_predictions(60.9, 61.1).encode()
    runtime_stubber.add_response(
        "invoke_endpoint",
        {"Body": streaming(answer), "ContentType": "application/json"},
        expected_call(),
    )
    predictor = SageMakerPredictor(runtime_stubber.client, ENDPOINT)

    # When / Then
    assert predictor.predict(INPUTS).tolist() == [60.9, 61.1]


def test_stub_throttling_then_success(runtime_stubber):
    # Given a throttling error followed by a response (the Stubber never retries)
    runtime_stubber.add_client_error(
        "invoke_endpoint",
        service_error_code="ThrottlingException",
        service_message="Rate exceeded",
        http_status_code=400,
        expected_params=expected_call(),
    )
    runtime_stubber.add_response(
        "invoke_endpoint",
        {"Body": streaming(json_predictions(60.9, 61.1).encode()), "ContentType": JSON_TYPE},
        expected_call(),
    )
    predictor = SageMakerPredictor(runtime_stubber.client, ENDPOINT)

    # When the first request is throttled, the predictor does not retry it itself
    with pytest.raises(EndpointUnavailableError) as caught:
        predictor.predict(INPUTS)

    # Then the caller gets 503, and a later request succeeds
    assert caught.value.status == 503
    assert "(ThrottlingException)" in caught.value.message
    assert "Try again later" in caught.value.message
    assert predictor.predict(INPUTS).tolist() == [60.9, 61.1]


ERROR_CASES = {
    "throttling": ("ThrottlingException", 400, "Rate exceeded", None, EndpointUnavailableError),
    "model not ready": (
        "ModelNotReadyException",
        429,
        "Model is not ready",
        None,
        EndpointUnavailableError,
    ),
    "service unavailable": ("ServiceUnavailable", 503, "Try later", None, EndpointUnavailableError),
    "internal dependency": (
        "InternalDependencyException",
        530,
        "Dependency failed",
        None,
        EndpointUnavailableError,
    ),
    "endpoint not found": (
        "ValidationError",
        400,
        f"Endpoint {ENDPOINT} of account 123456789012 not found.",
        None,
        EndpointUnavailableError,
    ),
    "model error": (
        "ModelError",
        424,
        "Received server error (500) from primary with message ...",
        {"OriginalStatusCode": 500, "OriginalMessage": "feature count mismatch"},
        EndpointError,
    ),
    "other validation error": (
        "ValidationError",
        400,
        "1 validation error detected: Value at 'body' failed to satisfy constraint",
        None,
        EndpointError,
    ),
    "internal failure": ("InternalFailure", 500, "Internal failure", None, EndpointError),
    "content type rejected": (
        "UnsupportedMediaType",
        415,
        "text/csv is not supported",
        None,
        ConfigurationError,
    ),
}


@pytest.mark.parametrize(
    ("code", "http_status", "message", "modeled", "error_class"),
    ERROR_CASES.values(),
    ids=ERROR_CASES.keys(),
)
def test_stub_client_error_mapped(
    runtime_stubber, code, http_status, message, modeled, error_class
):
    runtime_stubber.add_client_error(
        "invoke_endpoint",
        service_error_code=code,
        service_message=message,
        http_status_code=http_status,
        modeled_fields=modeled,
    )
    predictor = SageMakerPredictor(runtime_stubber.client, ENDPOINT)

    with pytest.raises(DetectorError) as caught:
        predictor.predict(INPUTS)

    assert type(caught.value) is error_class
    assert caught.value.status == error_class.status
    assert ENDPOINT in caught.value.message


def test_stub_model_error_message(runtime_stubber):
    runtime_stubber.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message="Received server error (500) from primary",
        http_status_code=424,
        modeled_fields={"OriginalStatusCode": 500},
    )
    predictor = SageMakerPredictor(runtime_stubber.client, ENDPOINT)

    with pytest.raises(EndpointError) as caught:
        predictor.predict(INPUTS)

    assert caught.value.status == 502
    assert "failed on the request (ModelError, model status 500)" in caught.value.message
    assert "inputs and their order match the model's training columns" in caught.value.message


def test_stub_endpoint_not_found_message(runtime_stubber):
    runtime_stubber.add_client_error(
        "invoke_endpoint",
        service_error_code="ValidationError",
        service_message=f"Endpoint {ENDPOINT} of account 123456789012 not found.",
        http_status_code=400,
    )
    predictor = SageMakerPredictor(runtime_stubber.client, ENDPOINT)

    with pytest.raises(EndpointUnavailableError) as caught:
        predictor.predict(INPUTS)

    assert caught.value.status == 503
    assert f"The endpoint {ENDPOINT!r} was not found" in caught.value.message
    assert "Check ENDPOINT_NAME" in caught.value.message


# --- fake clients ------------------------------------------------------------------------


class RaisingRuntime:
    """A runtime client whose ``invoke_endpoint`` raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def invoke_endpoint(self, **_) -> dict:
        self.calls += 1
        raise self.error


class TimeoutBody:
    """A response body whose read times out, as a slow streaming response does."""

    def read(self) -> bytes:
        raise ReadTimeoutError(endpoint_url=FAKE_URL)


class EchoRuntime:
    """A runtime client that predicts 10 x the first value of each row it receives.

    Responses alternate between JSON and CSV, so each call also tests another response shape.
    """

    def __init__(self, drop_last: bool = False) -> None:
        self.bodies: list[bytes] = []
        self.drop_last = drop_last

    def invoke_endpoint(self, *, Body: bytes, **_) -> dict:
        self.bodies.append(Body)
        rows = list(csv.reader(io.StringIO(Body.decode())))
        predictions = [10 * float(row[0]) for row in rows]
        if self.drop_last:
            predictions = predictions[:-1]
        if len(self.bodies) % 2:
            answer, content_type = json_predictions(*predictions), JSON_TYPE
        else:
            answer, content_type = "".join(f"{p!r}\n" for p in predictions), "text/csv"
        return {"Body": io.BytesIO(answer.encode()), "ContentType": content_type}


@pytest.mark.parametrize(
    ("error", "error_class", "expected"),
    [
        (ReadTimeoutError(endpoint_url=FAKE_URL), EndpointTimeoutError, "did not respond in time"),
        (
            ConnectTimeoutError(endpoint_url=FAKE_URL),
            EndpointTimeoutError,
            "did not respond in time",
        ),
        (
            EndpointConnectionError(endpoint_url=FAKE_URL),
            EndpointUnavailableError,
            "cannot be reached",
        ),
        (NoCredentialsError(), EndpointError, "Calling the endpoint failed: NoCredentialsError"),
    ],
    ids=["read timeout", "connect timeout", "connection refused", "other botocore error"],
)
def test_transport_error_mapped(error, error_class, expected):
    predictor = SageMakerPredictor(RaisingRuntime(error), ENDPOINT)

    with pytest.raises(EndpointError) as caught:
        predictor.predict(INPUTS)

    assert type(caught.value) is error_class
    assert expected in caught.value.message
    assert caught.value.__cause__ is error


def test_read_timeout_504():
    predictor = SageMakerPredictor(
        RaisingRuntime(ReadTimeoutError(endpoint_url=FAKE_URL)), ENDPOINT
    )

    with pytest.raises(EndpointTimeoutError) as caught:
        predictor.predict(INPUTS)

    assert caught.value.status == 504
    assert caught.value.code == "endpoint_timeout"


def test_body_read_timeout_504():
    # Given a response that starts but whose body times out
    class SlowRuntime:
        def invoke_endpoint(self, **_) -> dict:
            return {"Body": TimeoutBody(), "ContentType": JSON_TYPE}

    predictor = SageMakerPredictor(SlowRuntime(), ENDPOINT)

    with pytest.raises(EndpointTimeoutError):
        predictor.predict(INPUTS)


def test_payloads_aligned_with_rows():
    # Given 40 rows of different widths and room for a few rows per request
    first = [float(i) + i / 1000 for i in range(40)]
    inputs = pd.DataFrame({"torque": first, "speed": [1500.0 + 7.5 * i for i in range(40)]})
    runtime = EchoRuntime()
    predictor = SageMakerPredictor(runtime, ENDPOINT, max_payload_bytes=64)

    # When
    predictions = predictor.predict(inputs)

    # Then every prediction belongs to its own row
    assert len(runtime.bodies) > 3
    assert all(len(body) <= 64 for body in runtime.bodies)
    assert sum(body.count(b"\n") for body in runtime.bodies) == 40
    assert predictions.tolist() == [10 * value for value in first]
    assert predictor.calls == len(runtime.bodies)


def test_payloads_count_mismatch_rejected():
    # Given an endpoint that drops the last prediction of each request
    predictor = SageMakerPredictor(EchoRuntime(drop_last=True), ENDPOINT, max_payload_bytes=64)
    inputs = pd.DataFrame({"torque": np.arange(20.0), "speed": 1500.0})

    # Then the request fails rather than shifting predictions to other rows
    with pytest.raises(EndpointError) as caught:
        predictor.predict(inputs)

    assert "refusing to match them to rows" in caught.value.message


def test_no_rows_no_call():
    runtime = RaisingRuntime(AssertionError("no call expected"))
    predictor = SageMakerPredictor(runtime, ENDPOINT)

    predictions = predictor.predict(INPUTS.iloc[:0])

    assert predictions.shape == (0,)
    assert runtime.calls == 0


# --- deadline ----------------------------------------------------------------------------


def test_deadline_stops_further_calls():
    # Given a deadline that leaves time for two calls only
    # Each call reads the deadline twice: before it starts and to bound its wait.
    remaining = iter([12.0, 12.0, 6.0, 6.0, 0.5, 0.5])
    runtime = EchoRuntime()
    inputs = pd.DataFrame({"torque": np.arange(20.0), "speed": 1500.0})
    predictor = SageMakerPredictor(
        runtime, ENDPOINT, max_payload_bytes=64, deadline=lambda: next(remaining)
    )

    # When
    with pytest.raises(EndpointTimeoutError) as caught:
        predictor.predict(inputs)

    # Then no third call starts and the caller gets 504
    assert len(runtime.bodies) == 2
    assert predictor.calls == 2
    assert caught.value.status == 504
    assert "send fewer rows per request" in caught.value.message


def test_deadline_passed_no_call():
    runtime = RaisingRuntime(AssertionError("no call expected"))
    predictor = SageMakerPredictor(runtime, ENDPOINT, deadline=lambda: 0.99)

    with pytest.raises(EndpointTimeoutError):
        predictor.predict(INPUTS)

    assert runtime.calls == 0


def test_deadline_with_time_left_calls():
    runtime = EchoRuntime()
    predictor = SageMakerPredictor(runtime, ENDPOINT, deadline=lambda: 1.0)

    assert predictor.predict(INPUTS).tolist() == [425.0, 432.5]


# --- client settings ---------------------------------------------------------------------


def test_client_config_standard_retries():
    config = runtime_client_config(DEFAULT_READ_TIMEOUT_SECONDS)

    assert config.retries["mode"] == "standard"
    # botocore's "total_max_attempts" includes the first attempt, "max_attempts" does not.
    assert config.retries["total_max_attempts"] == RETRY_ATTEMPTS
    assert "max_attempts" not in config.retries


@pytest.mark.parametrize("read_timeout", [5.0, DEFAULT_READ_TIMEOUT_SECONDS])
def test_client_config_timeouts(read_timeout):
    config = runtime_client_config(read_timeout)

    assert config.connect_timeout == CONNECT_TIMEOUT_SECONDS
    assert config.read_timeout == read_timeout


def test_client_config_one_attempt_fits_api_timeout():
    config = runtime_client_config(DEFAULT_READ_TIMEOUT_SECONDS)

    assert config.connect_timeout + config.read_timeout <= API_TIMEOUT_SECONDS


def test_slow_endpoint_stops_at_deadline():
    class SlowClient:
        def invoke_endpoint(self, **kwargs):
            time.sleep(3)
            raise AssertionError("the predictor waited for a call past its deadline")

    left = {"seconds": 0.3}
    predictor = SageMakerPredictor(
        SlowClient(), "slow", deadline=lambda: left["seconds"], min_seconds_per_call=0.1
    )
    started = time.monotonic()

    with pytest.raises(EndpointTimeoutError, match="did not respond within the time"):
        predictor.predict(pd.DataFrame({"x": [1.0, 2.0]}))
    assert time.monotonic() - started < 2.0
