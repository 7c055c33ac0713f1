"""Tests of the Lambda handler with the sample API Gateway events under tests/events/.

The service runs for real: reading, preparing, scoring, metrics and warnings. The model is
either ``FormulaPredictor`` (predicted = 0.1 * torque + ambient), or the real
``SageMakerPredictor`` with a boto3 client under botocore's Stubber or moto's ``mock_aws``.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import io
import json

import boto3
import fixtures_handler
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from fixtures_handler import (
    ASSET_ID,
    ENDPOINT_NAME,
    TARGET_COLUMN,
    THRESHOLD,
    FakeLambdaContext,
    FormulaPredictor,
    emf_blobs,
    expected_rows,
    json_lines,
    load_event,
    machine_rows,
    make_config,
    parse_body,
    replace_cells,
    scored_inputs_csv,
    scored_predictions,
)
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sagemakerruntime.models import sagemakerruntime_backends

from anomaly_detector import handler
from anomaly_detector.handler import DetectionService, lambda_handler
from anomaly_detector.publishing import warning_message

# pytest finds a fixture by its name in the test module, so the shared fixtures are bound here.
aws_credentials = fixtures_handler.aws_credentials
captured_stdout = fixtures_handler.captured_stdout
lambda_env = fixtures_handler.lambda_env

RESULT_FIELDS = (
    "row",
    "timestamp",
    "actual",
    "predicted",
    "residual",
    "score",
    "is_anomaly",
    "status",
)
EVENT_FIELDS = ("start", "end", "rows", "peak_score", "direction")
SUMMARY_FIELDS = ("rows", "scored_rows", "anomalous_rows", "events", "threshold", "max_score")
METRIC_NAMES = {"Rows", "ScoredRows", "AnomalousRows", "Events", "MaxScore"}

# Expected results for the sample data under BASE_ENV (window 3 rows, threshold 2.0, minimum
# duration 2 rows), worked out by hand from the residuals in tests/events/.
MISSING_INPUT_ROW = 7
ANOMALOUS_ROWS = [13, 14, 15, 16]
EVENT_START = "2024-03-06T08:13:00Z"
EVENT_END = "2024-03-06T08:16:00Z"
# The first breach, row 13, averages rows 11-13 (all scored), so the onset is row 11.
EVENT_ONSET = "2024-03-06T08:11:00Z"
EVENT_ONSET_ROW = 11
PEAK_SCORE = 5.0  # mean of |4.5|, |5.0|, |5.5| at row 14

BODY_EVENTS = (
    "post_csv",
    "post_csv_base64",
    "post_json_list",
    "post_json_records",
    "post_csv_gzip_base64",
)


def detect(event: dict, predictor=None, context=None, **env: str | None) -> dict:
    """Run DetectionService.handle with the test configuration and return the response."""
    service = DetectionService(make_config(**env), predictor=predictor or FormulaPredictor())
    return service.handle(event, context)


def assert_error(response: dict, status: int, code: str, *fragments: str) -> str:
    """Check a 4xx/5xx response: status, the fixed error body, and words in the message."""
    assert response["statusCode"] == status
    body = parse_body(response)
    assert list(body) == ["error"]
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    message = body["error"]["message"]
    for fragment in fragments:
        assert fragment in message
    return message


def assert_sample_result(body: dict) -> None:
    """Check every row, the event and the summary of a scored sample request."""
    assert set(body) == {"summary", "events", "rows"}
    data = machine_rows()
    expected = expected_rows()
    rows = body["rows"]
    assert len(rows) == len(data)

    for index, (row, source, want) in enumerate(zip(rows, data, expected, strict=True)):
        assert set(RESULT_FIELDS) <= set(row)
        assert row["row"] == index
        assert row["timestamp"] == source.timestamp
        assert row["actual"] == pytest.approx(source.bearing_temperature, abs=1e-9)
        assert row["is_anomaly"] is want.is_anomaly
        if index == MISSING_INPUT_ROW:
            assert row["status"] == "missing_input"
            assert row["predicted"] is None
            assert row["residual"] is None
            assert row["score"] is None
            continue
        assert row["status"] == "scored"
        assert row["predicted"] == pytest.approx(want.predicted, abs=1e-9)
        assert row["residual"] == pytest.approx(want.residual, abs=1e-9)
        assert row["score"] == pytest.approx(want.score, abs=1e-9)

    assert [row["row"] for row in rows if row["is_anomaly"]] == ANOMALOUS_ROWS
    assert [row["note"] for row in rows[:2]] == ["shift start", None]

    assert len(body["events"]) == 1
    event = body["events"][0]
    assert set(EVENT_FIELDS) <= set(event)
    assert event["start"] == EVENT_START
    assert event["end"] == EVENT_END
    assert (event["onset"], event["onset_row"]) == (EVENT_ONSET, EVENT_ONSET_ROW)
    assert event["rows"] == len(ANOMALOUS_ROWS)
    assert event["peak_score"] == pytest.approx(PEAK_SCORE, abs=1e-6)
    assert event["direction"] == "above"

    summary = body["summary"]
    assert set(SUMMARY_FIELDS) <= set(summary)
    assert summary["rows"] == 20
    assert summary["scored_rows"] == 19
    assert summary["anomalous_rows"] == len(ANOMALOUS_ROWS)
    assert summary["events"] == 1
    assert summary["threshold"] == THRESHOLD
    assert summary["max_score"] == pytest.approx(PEAK_SCORE, abs=1e-6)
    assert summary["not_scored"] == {"missing_input": 1}


def endpoint_response(predictions: list[float]) -> dict:
    payload = json.dumps({"predictions": predictions}).encode()
    return {
        "Body": StreamingBody(io.BytesIO(payload), len(payload)),
        "ContentType": "application/json",
        "InvokedProductionVariant": "AllTraffic",
    }


def expected_invoke_params() -> dict:
    return {
        "EndpointName": ENDPOINT_NAME,
        "ContentType": "text/csv",
        "Accept": "application/json",
        "Body": scored_inputs_csv(),
    }


def metric_value(blob: dict, name: str) -> float:
    value = blob[name]
    values = value if isinstance(value, list) else [value]
    assert len(values) == 1
    return values[0]


@pytest.fixture
def runtime_stub():
    """Yield a real sagemaker-runtime client and its Stubber; a response left unused fails."""
    client = boto3.client("sagemaker-runtime", region_name="eu-west-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def aws():
    """Run moto's in-process AWS. Create clients inside this fixture's lifetime."""
    with mock_aws():
        yield


@pytest.fixture
def warning_queue(aws):
    """Create an SNS topic with an SQS queue subscribed (raw delivery off).

    Yield the topic ARN and a function that reads the notifications waiting in the queue.
    """
    sns = boto3.client("sns")
    sqs = boto3.client("sqs")
    topic_arn = sns.create_topic(Name="anomaly-warnings")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="anomaly-warnings-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)

    def read_notifications() -> list[dict]:
        response = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        return [json.loads(message["Body"]) for message in response.get("Messages", [])]

    yield topic_arn, read_notifications


# -- event files -----------------------------------------------------------------------------


def test_events_share_one_data_set():
    csv_body = load_event("post_csv")["body"]
    base64_body = base64.b64decode(load_event("post_csv_base64")["body"]).decode()
    gzip_body = gzip.decompress(base64.b64decode(load_event("post_csv_gzip_base64")["body"]))
    json_list = json.loads(load_event("post_json_list")["body"])
    json_records = json.loads(load_event("post_json_records")["body"])["records"]

    assert base64_body == csv_body
    assert gzip_body.decode() == csv_body
    assert json_records == json_list
    assert len(json_list) == len(machine_rows()) == 20
    assert json_list[MISSING_INPUT_ROW]["torque"] is None


# -- scoring through DetectionService.handle ---------------------------------------------------


def test_handle_csv_event_scores_every_row():
    response = detect(load_event("post_csv"))

    assert response["statusCode"] == 200
    assert_sample_result(parse_body(response))


@pytest.mark.parametrize("name", BODY_EVENTS)
def test_handle_body_formats_same_result(name):
    response = detect(load_event(name))

    assert response["statusCode"] == 200
    assert_sample_result(parse_body(response))


def test_handle_sends_inputs_in_training_order():
    predictor = FormulaPredictor()

    detect(load_event("post_json_list"), predictor=predictor)

    assert len(predictor.calls) == 1
    inputs = predictor.calls[0]
    assert list(inputs.columns) == ["motor_speed", "torque", "ambient_temperature"]
    assert len(inputs) == 19
    assert not inputs.isna().any().any()


@pytest.mark.parametrize(
    ("event_name", "header_name", "header_value"),
    [
        ("post_csv", "Content-Type", "text/csv"),
        ("post_csv", "content-type", "text/csv"),
        ("post_csv", "CONTENT-TYPE", "TEXT/CSV"),
        ("post_csv", "cOnTeNt-TyPe", "text/csv; charset=utf-8"),
        ("post_csv_gzip_base64", "Content-Encoding", "gzip"),
        ("post_csv_gzip_base64", "CONTENT-ENCODING", "GZIP"),
        ("post_csv_gzip_base64", "content-encoding", "x-gzip"),
    ],
)
def test_handle_header_names_any_case(event_name, header_name, header_value):
    event = load_event(event_name)
    lowered = header_name.lower()
    for headers in (event["headers"], event["multiValueHeaders"]):
        for name in [name for name in headers if name.lower() == lowered]:
            del headers[name]
    event["headers"][header_name] = header_value
    event["multiValueHeaders"][header_name] = [header_value]

    response = detect(event)

    assert response["statusCode"] == 200
    assert_sample_result(parse_body(response))


@pytest.mark.parametrize("choice", ["anomalous", "ANOMALOUS"])
def test_handle_rows_anomalous(choice):
    event = load_event("post_csv")
    event["queryStringParameters"] = {"rows": choice}
    event["multiValueQueryStringParameters"] = {"rows": [choice]}

    body = parse_body(detect(event))

    assert [row["row"] for row in body["rows"]] == ANOMALOUS_ROWS
    assert all(row["is_anomaly"] for row in body["rows"])
    assert body["rows"][0]["timestamp"] == EVENT_START
    # The summary and the events still cover every row of the request.
    assert body["summary"]["rows"] == 20
    assert len(body["events"]) == 1


def test_handle_rows_none():
    event = load_event("post_csv")
    event["queryStringParameters"] = {"rows": "none"}

    body = parse_body(detect(event))

    assert body["rows"] == []
    assert body["summary"]["rows"] == 20
    assert body["summary"]["anomalous_rows"] == len(ANOMALOUS_ROWS)
    assert [event["start"] for event in body["events"]] == [EVENT_START]


def test_handle_rows_unknown_choice_is_400():
    event = load_event("post_csv")
    event["queryStringParameters"] = {"rows": "some"}

    response = detect(event)

    assert_error(response, 400, "invalid_request", "rows", "'anomalous'", "'some'")


def test_handle_event_below_prediction():
    # Predicting 10 K too high makes every residual negative (-10.2 to -4.5 K), so every
    # scored row is anomalous and together they form one event.
    response = detect(load_event("post_csv"), predictor=FormulaPredictor(offset=10.0))

    body = parse_body(response)
    assert response["statusCode"] == 200
    assert len(body["events"]) == 1
    event = body["events"][0]
    assert event["start"] == "2024-03-06T08:00:00Z"
    assert event["end"] == "2024-03-06T08:19:00Z"
    assert event["rows"] == 19
    assert event["direction"] == "below"
    assert body["summary"]["anomalous_rows"] == 19
    scored = [row for row in body["rows"] if row["status"] == "scored"]
    expected = [want for want in expected_rows(offset=10.0) if want.score is not None]
    for row, want in zip(scored, expected, strict=True):
        assert row["residual"] == pytest.approx(want.residual, abs=1e-9)
        assert row["score"] == pytest.approx(want.score, abs=1e-9)


def test_handle_no_scorable_row():
    event = load_event("post_json_list")
    records = json.loads(event["body"])
    for record in records:
        record["torque"] = None
    event["body"] = json.dumps(records)
    predictor = FormulaPredictor()

    response = detect(event, predictor=predictor)

    body = parse_body(response)
    assert response["statusCode"] == 200
    assert predictor.calls == []
    assert body["events"] == []
    assert body["summary"]["scored_rows"] == 0
    assert body["summary"]["max_score"] is None
    assert body["summary"]["not_scored"] == {"missing_input": 20}
    for row in body["rows"]:
        assert row["status"] == "missing_input"
        assert row["predicted"] is None
        assert row["score"] is None
        assert row["is_anomaly"] is False


# -- rejected requests ------------------------------------------------------------------------

REJECTED_CASES = [
    (
        "post_xml_content_type",
        415,
        "unsupported_media_type",
        ("'application/xml'", "text/csv", "application/json"),
    ),
    ("post_empty_body", 400, "invalid_request", ("empty", "text/csv", "application/json")),
    ("post_missing_input_column", 400, "missing_column", ("input column 'torque'", "header")),
    (
        "post_missing_target_column",
        400,
        "missing_column",
        (f"target column '{TARGET_COLUMN}'", "header"),
    ),
    (
        "post_non_numeric_value",
        400,
        "invalid_value",
        ("'ambient_temperature'", "row(s) 4", "decimal separator"),
    ),
    ("get_detect", 405, "method_not_allowed", ("POST",)),
    ("post_unknown_path", 404, "not_found", ("'/predict'", "POST", "/detect")),
]


@pytest.mark.parametrize(("name", "status", "code", "fragments"), REJECTED_CASES)
def test_handle_rejects_bad_request(name, status, code, fragments):
    predictor = FormulaPredictor()

    response = detect(load_event(name), predictor=predictor)

    assert_error(response, status, code, *fragments)
    assert predictor.calls == []


@pytest.mark.parametrize(("name", "status", "code", "fragments"), REJECTED_CASES)
def test_lambda_handler_rejects_bad_request(lambda_env, name, status, code, fragments):
    lambda_env()

    response = lambda_handler(load_event(name), FakeLambdaContext())

    assert_error(response, status, code, *fragments)


def test_handle_body_over_limit_is_413():
    event = load_event("post_csv")
    size = len(event["body"].encode())
    assert size > 500

    response = detect(event, MAX_REQUEST_BYTES="500")

    assert_error(response, 413, "payload_too_large", "500 bytes", f"{size} bytes", "Split")


def test_handle_base64_body_over_limit_is_413():
    # The limit applies to the decoded body, not to its longer base64 text.
    event = load_event("post_csv_base64")
    decoded_size = len(base64.b64decode(event["body"]))
    limit = decoded_size - 1

    response = detect(event, MAX_REQUEST_BYTES=str(limit))

    assert_error(response, 413, "payload_too_large", f"{limit} bytes")
    assert detect(event, MAX_REQUEST_BYTES=str(decoded_size))["statusCode"] == 200


def test_handle_gzip_expanding_over_limit_is_413():
    event = load_event("post_csv_gzip_base64")
    compressed_size = len(base64.b64decode(event["body"]))
    expanded_size = len(load_event("post_csv")["body"].encode())
    limit = compressed_size + 100
    assert compressed_size < limit < expanded_size

    response = detect(event, MAX_REQUEST_BYTES=str(limit))

    assert_error(response, 413, "payload_too_large", "gzip", f"{limit}-byte limit")


def test_handle_reads_every_gzip_member():
    # Concatenated .gz files form one valid gzip stream of several members (RFC 1952).
    csv_body = load_event("post_csv")["body"]
    split_at = csv_body.index("2024-03-06T08:10:00Z")
    members = gzip.compress(csv_body[:split_at].encode()) + gzip.compress(
        csv_body[split_at:].encode()
    )
    event = load_event("post_csv_gzip_base64")
    event["body"] = base64.b64encode(members).decode()

    response = detect(event)

    assert response["statusCode"] == 200
    assert_sample_result(parse_body(response))


def test_handle_gzip_members_share_one_limit():
    # Each of the two members fits the limit alone, but not both together.
    csv_body = load_event("post_csv")["body"].encode()
    event = load_event("post_csv_gzip_base64")
    event["body"] = base64.b64encode(gzip.compress(csv_body) * 2).decode()

    response = detect(event, MAX_REQUEST_BYTES=str(len(csv_body) + 10))

    assert_error(response, 413, "payload_too_large", "gzip")


def test_handle_invalid_base64_is_400():
    event = load_event("post_csv_base64")
    event["body"] = "dGltZXN0YW1w!!not base64"

    response = detect(event)

    assert_error(response, 400, "invalid_request", "base64")


def test_handle_invalid_gzip_is_400():
    event = load_event("post_csv_gzip_base64")
    event["body"] = load_event("post_csv_base64")["body"]

    response = detect(event)

    assert_error(response, 400, "invalid_request", "gzip")


def test_handle_truncated_gzip_is_400():
    event = load_event("post_csv_gzip_base64")
    compressed = base64.b64decode(event["body"])
    event["body"] = base64.b64encode(compressed[: len(compressed) // 2]).decode()

    response = detect(event)

    assert_error(response, 400, "invalid_request", "truncated")


def test_handle_unknown_content_encoding_is_415():
    event = load_event("post_csv_gzip_base64")
    event["headers"]["content-encoding"] = "br"

    response = detect(event)

    assert_error(response, 415, "unsupported_media_type", "'br'", "gzip")


# -- SageMakerPredictor with a stubbed sagemaker-runtime client ---------------------------------


def test_stubbed_endpoint_gets_csv_rows(runtime_stub):
    client, stubber = runtime_stub
    stubber.add_response(
        "invoke_endpoint", endpoint_response(scored_predictions()), expected_invoke_params()
    )
    service = DetectionService(make_config(), runtime_client=client)

    response = service.handle(load_event("post_csv_base64"), FakeLambdaContext())

    assert response["statusCode"] == 200
    assert_sample_result(parse_body(response))


ENDPOINT_ERROR_CASES = [
    ("ModelError", 424, 502, "endpoint_error", ("ModelError", "model status 500")),
    ("ThrottlingException", 400, 503, "endpoint_unavailable", ("busy", "Try again later")),
    ("ServiceUnavailable", 503, 503, "endpoint_unavailable", ("Try again later",)),
    ("ModelNotReadyException", 429, 503, "endpoint_unavailable", ("not ready",)),
    ("InternalFailure", 500, 502, "endpoint_error", ("InternalFailure",)),
]


@pytest.mark.parametrize(
    ("error_code", "http_status", "status", "code", "fragments"), ENDPOINT_ERROR_CASES
)
def test_stubbed_endpoint_error_maps_to_status(
    runtime_stub, error_code, http_status, status, code, fragments
):
    client, stubber = runtime_stub
    modeled_fields = None
    if error_code == "ModelError":
        modeled_fields = {
            "OriginalStatusCode": 500,
            "OriginalMessage": "Internal server error in the model container",
            "LogStreamArn": "arn:aws:logs:eu-west-1:123456789012:log-group:"
            f"/aws/sagemaker/Endpoints/{ENDPOINT_NAME}",
        }
    stubber.add_client_error(
        "invoke_endpoint",
        service_error_code=error_code,
        service_message="stubbed endpoint failure",
        http_status_code=http_status,
        expected_params=expected_invoke_params(),
        modeled_fields=modeled_fields,
    )
    service = DetectionService(make_config(), runtime_client=client)

    response = service.handle(load_event("post_csv"), FakeLambdaContext())

    assert_error(response, status, code, f"'{ENDPOINT_NAME}'", *fragments)


def test_stubbed_endpoint_wrong_count_is_502(runtime_stub):
    client, stubber = runtime_stub
    stubber.add_response(
        "invoke_endpoint", endpoint_response(scored_predictions()[:-1]), expected_invoke_params()
    )
    service = DetectionService(make_config(), runtime_client=client)

    response = service.handle(load_event("post_csv"), FakeLambdaContext())

    assert_error(response, 502, "endpoint_error", "18 predictions for 19 rows")


def test_handle_near_lambda_deadline_is_504(runtime_stub):
    # 2.5 s left, minus the handler's 2 s margin, is less than the 1 s an endpoint call needs,
    # so the endpoint is never called (the stubber has no response queued).
    client, _ = runtime_stub
    service = DetectionService(make_config(), runtime_client=client)

    response = service.handle(load_event("post_csv"), FakeLambdaContext(remaining_ms=2_500))

    assert_error(response, 504, "endpoint_timeout", "fewer rows")


# -- lambda_handler, configured from the environment ------------------------------------------


def test_lambda_handler_with_stubbed_endpoint(lambda_env):
    lambda_env()
    service = handler.get_service()

    with Stubber(service.runtime) as stubber:
        stubber.add_response(
            "invoke_endpoint", endpoint_response(scored_predictions()), expected_invoke_params()
        )
        response = lambda_handler(load_event("post_json_records"), FakeLambdaContext())
        stubber.assert_no_pending_responses()

    assert response["statusCode"] == 200
    assert_sample_result(parse_body(response))
    assert handler.get_service() is service


def test_lambda_handler_under_moto(lambda_env, aws):
    lambda_env()
    backend = sagemakerruntime_backends[DEFAULT_ACCOUNT_ID]["eu-west-1"]
    predictions = json.dumps({"predictions": scored_predictions()})
    backend.results_queue.append((predictions, "application/json", "AllTraffic", ""))

    response = lambda_handler(load_event("post_csv"), FakeLambdaContext())

    assert response["statusCode"] == 200
    assert_sample_result(parse_body(response))
    # moto stores one result per distinct request (headers and body), and there is one. moto
    # 5.2.5 stores it under the endpoint name None, so the Stubber tests check the name.
    [answered] = backend.results.values()
    [request_key] = answered
    request = json.loads(base64.b64decode(request_key))
    assert request["Body"] == scored_inputs_csv().decode()
    assert request["Accept"] == "application/json"


def test_lambda_handler_missing_target_column_is_500(lambda_env):
    lambda_env(TARGET_COLUMN=None)

    response = lambda_handler(load_event("post_csv"), FakeLambdaContext())

    assert_error(response, 500, "configuration_error", "TARGET_COLUMN", "not set")
    assert handler._service is None


def test_lambda_handler_missing_threshold_is_500(lambda_env):
    lambda_env(THRESHOLD=None)

    response = lambda_handler(load_event("post_csv"), FakeLambdaContext())

    assert_error(response, 500, "configuration_error", "THRESHOLD", "MODEL_RMSE")


# -- metrics ----------------------------------------------------------------------------------


def test_emf_metrics_with_asset(captured_stdout):
    response = detect(
        load_event("post_csv"), METRICS_MODE="emf", ASSET_ID=ASSET_ID, METRICS_NAMESPACE="Plant"
    )

    assert response["statusCode"] == 200
    [blob] = emf_blobs(captured_stdout())
    [directive] = blob["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Plant"
    assert [sorted(dimensions) for dimensions in directive["Dimensions"]] == [["asset", "service"]]
    assert blob["service"] == "anomaly-detector"
    assert blob["asset"] == ASSET_ID
    units = {metric["Name"]: metric["Unit"] for metric in directive["Metrics"]}
    assert units == {
        "Rows": "Count",
        "ScoredRows": "Count",
        "AnomalousRows": "Count",
        "Events": "Count",
        "MaxScore": "None",
    }
    assert metric_value(blob, "Rows") == 20
    assert metric_value(blob, "ScoredRows") == 19
    assert metric_value(blob, "AnomalousRows") == len(ANOMALOUS_ROWS)
    assert metric_value(blob, "Events") == 1
    assert metric_value(blob, "MaxScore") == pytest.approx(PEAK_SCORE, abs=1e-6)


def test_emf_metrics_without_asset(captured_stdout):
    response = detect(load_event("post_csv"), METRICS_MODE="emf")

    assert response["statusCode"] == 200
    [blob] = emf_blobs(captured_stdout())
    [directive] = blob["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "AnomalyDetection"
    assert directive["Dimensions"] == [["service"]]
    assert "asset" not in blob


def test_emf_asset_dimension_not_shared(captured_stdout):
    # Powertools keeps metric state on the Metrics class, shared by every instance.
    detect(load_event("post_csv"), METRICS_MODE="emf", ASSET_ID=ASSET_ID)
    detect(load_event("post_csv"), METRICS_MODE="emf", ASSET_ID=ASSET_ID)
    detect(load_event("post_csv"), METRICS_MODE="emf")

    blobs = emf_blobs(captured_stdout())
    dimensions = [blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"] for blob in blobs]
    assert [[sorted(d) for d in item] for item in dimensions] == [
        [["asset", "service"]],
        [["asset", "service"]],
        [["service"]],
    ]
    assert [metric_value(blob, "Rows") for blob in blobs] == [20, 20, 20]


def test_emf_no_max_score_without_scored_rows(captured_stdout):
    event = load_event("post_json_list")
    records = json.loads(event["body"])
    for record in records:
        record["ambient_temperature"] = None
    event["body"] = json.dumps(records)

    response = detect(event, METRICS_MODE="emf", ASSET_ID=ASSET_ID)

    assert response["statusCode"] == 200
    [blob] = emf_blobs(captured_stdout())
    names = {metric["Name"] for metric in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert names == METRIC_NAMES - {"MaxScore"}
    assert "MaxScore" not in blob
    assert metric_value(blob, "Rows") == 20
    assert metric_value(blob, "ScoredRows") == 0


def test_metrics_off_writes_no_emf(captured_stdout):
    response = detect(load_event("post_csv"), METRICS_MODE="off")

    assert response["statusCode"] == 200
    assert emf_blobs(captured_stdout()) == []


def test_rejected_request_writes_no_emf(captured_stdout):
    response = detect(load_event("post_missing_input_column"), METRICS_MODE="emf")

    assert response["statusCode"] == 400
    assert emf_blobs(captured_stdout()) == []


def test_cloudwatch_metrics_under_moto(aws):
    cloudwatch = boto3.client("cloudwatch")
    config = make_config(METRICS_MODE="cloudwatch", ASSET_ID=ASSET_ID)
    service = DetectionService(config, predictor=FormulaPredictor(), cloudwatch_client=cloudwatch)

    response = service.handle(load_event("post_csv"))

    assert response["statusCode"] == 200
    dimensions = [
        {"Name": "asset", "Value": ASSET_ID},
        {"Name": "service", "Value": "anomaly-detector"},
    ]
    listed = cloudwatch.list_metrics(Namespace="AnomalyDetection")["Metrics"]
    assert {metric["MetricName"] for metric in listed} == METRIC_NAMES
    for metric in listed:
        assert sorted(metric["Dimensions"], key=lambda d: d["Name"]) == dimensions

    now = dt.datetime.now(dt.UTC)
    expected = {
        "Rows": (20, "Count"),
        "ScoredRows": (19, "Count"),
        "AnomalousRows": (len(ANOMALOUS_ROWS), "Count"),
        "Events": (1, "Count"),
        "MaxScore": (PEAK_SCORE, "None"),
    }
    for name, (value, unit) in expected.items():
        statistics = cloudwatch.get_metric_statistics(
            Namespace="AnomalyDetection",
            MetricName=name,
            Dimensions=dimensions,
            StartTime=now - dt.timedelta(minutes=10),
            EndTime=now + dt.timedelta(minutes=10),
            Period=3600,
            Statistics=["Sum", "SampleCount"],
        )
        [point] = statistics["Datapoints"]
        assert point["SampleCount"] == 1
        assert point["Sum"] == pytest.approx(value, abs=1e-6)
        assert point["Unit"] == unit


def test_lambda_handler_cloudwatch_metrics(lambda_env, aws):
    lambda_env(METRICS_MODE="cloudwatch")
    backend = sagemakerruntime_backends[DEFAULT_ACCOUNT_ID]["eu-west-1"]
    predictions = json.dumps({"predictions": scored_predictions()})
    backend.results_queue.append((predictions, "application/json", "AllTraffic", ""))

    response = lambda_handler(load_event("post_csv"), FakeLambdaContext())

    assert response["statusCode"] == 200
    listed = boto3.client("cloudwatch").list_metrics(Namespace="AnomalyDetection")["Metrics"]
    assert {metric["MetricName"] for metric in listed} == METRIC_NAMES


# -- SNS warnings -----------------------------------------------------------------------------


def test_warning_published_once(warning_queue):
    topic_arn, read_notifications = warning_queue
    config = make_config(TOPIC_ARN=topic_arn, ASSET_ID=ASSET_ID)
    service = DetectionService(config, predictor=FormulaPredictor(), sns_client=boto3.client("sns"))

    response = service.handle(load_event("post_csv"))

    assert response["statusCode"] == 200
    notifications = read_notifications()
    assert len(notifications) == 1
    notification = notifications[0]
    assert notification["Type"] == "Notification"
    assert notification["TopicArn"] == topic_arn
    subject = notification["Subject"]
    assert len(subject) < 100
    assert subject.isascii()
    assert ASSET_ID in subject
    message = notification["Message"]
    assert f"Asset: {ASSET_ID}" in message
    assert f"{EVENT_START} to {EVENT_END} (first alarming window from {EVENT_ONSET})" in message
    assert f"peak score {PEAK_SCORE:.4g}" in message
    event = parse_body(response)["events"][0]
    assert f"{abs(event['target_deviation']):.1f} x the normal error" in message
    assert "target above prediction" in message
    assert notification["MessageAttributes"]["asset"]["Value"] == ASSET_ID
    assert read_notifications() == []


def test_warning_subject_long_asset(warning_queue):
    topic_arn, read_notifications = warning_queue
    long_asset = "compressor-station-north-" + "x" * 120
    config = make_config(TOPIC_ARN=topic_arn, ASSET_ID=long_asset)
    service = DetectionService(config, predictor=FormulaPredictor(), sns_client=boto3.client("sns"))

    response = service.handle(load_event("post_csv"))

    assert response["statusCode"] == 200
    [notification] = read_notifications()
    assert len(notification["Subject"]) < 100
    assert f"Asset: {long_asset}" in notification["Message"]


def test_warning_many_events_under_limit(warning_queue):
    # Residuals alternate between 0 and 5 K, so every second row is a one-row event: 2000
    # events, whose full list would exceed the 256 KiB SNS message limit.
    topic_arn, read_notifications = warning_queue
    start = dt.datetime(2024, 3, 6, tzinfo=dt.UTC)
    lines = ["timestamp,motor_speed,torque,ambient_temperature,bearing_temperature"]
    for index in range(4000):
        time = (start + dt.timedelta(minutes=index)).strftime("%Y-%m-%dT%H:%M:%SZ")
        bearing = 30.0 + (5.0 if index % 2 else 0.0)
        lines.append(f"{time},1480,100,20,{bearing}")
    event = load_event("post_csv")
    event["body"] = "\n".join(lines) + "\n"
    event["queryStringParameters"] = {"rows": "none"}
    config = make_config(TOPIC_ARN=topic_arn, ASSET_ID=ASSET_ID, WINDOW="1", MIN_DURATION="1")
    service = DetectionService(config, predictor=FormulaPredictor(), sns_client=boto3.client("sns"))

    response = service.handle(event)

    assert response["statusCode"] == 200
    assert parse_body(response)["summary"]["events"] == 2000
    [notification] = read_notifications()
    message = notification["Message"]
    assert len(message.encode()) < 256 * 1024
    assert "Events: 2000" in message
    assert "Event 50: 2024-03-06T01:39:00Z to 2024-03-06T01:39:00Z" in message
    assert "Event 51:" not in message
    assert "1950 more events" in message


def test_no_warning_for_request_without_events(warning_queue):
    topic_arn, read_notifications = warning_queue
    config = make_config(TOPIC_ARN=topic_arn, ASSET_ID=ASSET_ID, THRESHOLD="100")
    service = DetectionService(config, predictor=FormulaPredictor(), sns_client=boto3.client("sns"))

    response = service.handle(load_event("post_csv"))

    assert response["statusCode"] == 200
    assert parse_body(response)["events"] == []
    assert read_notifications() == []


def test_lambda_handler_publishes_warning(lambda_env, warning_queue):
    topic_arn, read_notifications = warning_queue
    lambda_env(TOPIC_ARN=topic_arn, ASSET_ID=ASSET_ID)
    backend = sagemakerruntime_backends[DEFAULT_ACCOUNT_ID]["eu-west-1"]
    predictions = json.dumps({"predictions": scored_predictions()})
    backend.results_queue.append((predictions, "application/json", "AllTraffic", ""))

    response = lambda_handler(load_event("post_csv"), FakeLambdaContext())

    assert response["statusCode"] == 200
    notifications = read_notifications()
    assert len(notifications) == 1
    assert f"{EVENT_START} to {EVENT_END}" in notifications[0]["Message"]


# -- logs -------------------------------------------------------------------------------------

SECRET_NOTE = "SECRET-VALUE-123"
SECRET_NUMBER = "987654.321"


@pytest.fixture
def debug_logging():
    """Log at DEBUG for one test, so that every message the handler can write is seen."""
    previous = handler.logger.log_level
    handler.logger.setLevel("DEBUG")
    yield
    handler.logger.setLevel(previous)


def test_logs_omit_request_values(captured_stdout, debug_logging, runtime_stub):
    client, stubber = runtime_stub
    event = load_event("post_csv")
    event["body"] = replace_cells(event["body"], 3, motor_speed=SECRET_NUMBER, note=SECRET_NOTE)
    stubber.add_response("invoke_endpoint", endpoint_response(scored_predictions()))
    config = make_config(METRICS_MODE="emf", ASSET_ID=ASSET_ID)
    service = DetectionService(config, runtime_client=client)

    response = service.handle(event)

    assert response["statusCode"] == 200
    assert parse_body(response)["rows"][3]["note"] == SECRET_NOTE  # echoed to the caller only
    output = captured_stdout()
    assert SECRET_NOTE not in output
    assert SECRET_NUMBER not in output
    records = [line for line in json_lines(output) if "_aws" not in line]
    scored = [record for record in records if record["message"] == "request scored"]
    assert len(scored) == 1
    assert scored[0]["request_id"] == event["requestContext"]["requestId"]
    assert scored[0]["rows"] == 20


def test_rejection_logs_omit_request_values(captured_stdout, debug_logging):
    event = load_event("post_csv")
    event["body"] = replace_cells(event["body"], 3, bearing_temperature=SECRET_NOTE)

    response = detect(event, METRICS_MODE="emf")

    message = assert_error(response, 400, "invalid_value", f"'{TARGET_COLUMN}'", "row(s) 3")
    assert SECRET_NOTE not in message
    output = captured_stdout()
    assert SECRET_NOTE not in output
    [record] = json_lines(output)
    assert record["message"] == "request rejected"
    assert record["error_code"] == "invalid_value"
    assert record["request_id"] == event["requestContext"]["requestId"]


def test_handle_detect_behind_proxy_resource():
    event = load_event("post_csv")
    event["resource"] = "/{proxy+}"
    event["pathParameters"] = {"proxy": "detect"}
    event["requestContext"]["resourcePath"] = "/{proxy+}"

    response = detect(event)

    assert response["statusCode"] == 200
    assert_sample_result(parse_body(response))


def test_merge_gap_joins_runs_into_one_event():
    # Window 1, threshold 0.15: the sample's anomalous runs are rows 2-3, 9, 12-15 and 18. Two
    # scored rows lie between 9 and 12 and between 15 and 18; row 7 is not scored, so more
    # than two lie between 3 and 9. Alone, no run lasts 5 rows. Row 9 lies below the
    # prediction and the others above it.
    settings = {"WINDOW": "1", "THRESHOLD": "0.15", "MIN_DURATION": "5"}

    alone = parse_body(detect(load_event("post_csv"), **settings))
    merged = parse_body(detect(load_event("post_csv"), MERGE_GAP="2", **settings))

    assert alone["events"] == []
    assert alone["summary"]["merge_gap"] == "0"
    [event] = merged["events"]
    assert (event["start_row"], event["end_row"], event["rows"]) == (9, 18, 6)
    assert event["direction"] == "both"
    assert merged["summary"]["merge_gap"] == "2"
    assert merged["summary"]["anomalous_rows"] == alone["summary"]["anomalous_rows"] == 8


def test_lambda_handler_bad_merge_gap_is_500(lambda_env):
    lambda_env(MERGE_GAP="soon")

    response = lambda_handler(load_event("post_csv"), FakeLambdaContext())

    assert_error(response, 500, "configuration_error", "MERGE_GAP", "Use 0 to merge nothing")


def test_warning_text_of_event_on_both_sides():
    # The merged event of test_merge_gap_joins_runs_into_one_event: rows 9 (below) to 18.
    settings = {"WINDOW": "1", "THRESHOLD": "0.15", "MIN_DURATION": "5", "MERGE_GAP": "2"}
    body = parse_body(detect(load_event("post_csv"), **settings))

    _, text = warning_message(make_config(**settings), body["summary"], body["events"])

    assert "target above and below prediction" in text
    assert "mean residual" not in text


@pytest.mark.parametrize("name", ["WINDOW", "MIN_DURATION", "MERGE_GAP"])
def test_lambda_handler_time_span_without_timestamps_is_500(lambda_env, name):
    lambda_env(TIMESTAMP_COLUMN=None, **{name: "60s"})

    response = lambda_handler(load_event("post_csv"), FakeLambdaContext())

    assert_error(response, 500, "configuration_error", f"{name} is the time span '60s'")
    assert "Set TIMESTAMP_COLUMN" in parse_body(response)["error"]["message"]
