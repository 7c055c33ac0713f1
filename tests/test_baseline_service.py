"""The deployed service's baseline: the real handler, its state in moto's DynamoDB."""

from __future__ import annotations

import json

import boto3
import fixtures_handler
import numpy as np
import pandas as pd
import pytest
from fixtures_handler import (
    FormulaPredictor,
    RecordingSns,
    create_state_table,
    json_lines,
    load_event,
    make_config,
    minute_rows_csv,
    parse_body,
    post_ok,
)
from moto import mock_aws

from anomaly_detector import handler
from anomaly_detector.config import ConfigurationError
from anomaly_detector.handler import DetectionService, lambda_handler
from anomaly_detector.scoring import BaselineState
from anomaly_detector.state import DynamoStreamStore, StoredStream

aws_credentials = fixtures_handler.aws_credentials
captured_stdout = fixtures_handler.captured_stdout
lambda_env = fixtures_handler.lambda_env

TABLE = "anomaly-detector-baseline"
BASELINE_ROWS = 60
ENV = {"BASELINE": str(BASELINE_ROWS), "STATE_TABLE": TABLE, "WINDOW": "3", "MIN_DURATION": "2"}
START = pd.Timestamp("2024-03-06T08:00:00Z")


@pytest.fixture
def dynamodb(aws_credentials):
    with mock_aws():
        client = boto3.client("dynamodb")  # in the region that aws_credentials sets
        create_state_table(client, TABLE)
        yield client


def rows_csv(
    first: int, count: int, drift_per_row: float = 0.01, start: pd.Timestamp = START
) -> str:
    """Rows a minute apart from row ``first``: the target is the formula plus a slow drift.

    The drift reaches 1.2 K by row 120, under the 2 K threshold, so no row is anomalous and
    the baseline takes in every row.
    """
    rng = np.random.default_rng(first)
    index = np.arange(first, first + count)
    torque = rng.uniform(40.0, 60.0, count)
    ambient = rng.uniform(20.0, 25.0, count)
    return minute_rows_csv(index, torque, ambient, drift_per_row * index, start)


post = post_ok


def throttle(detector: DetectionService, operation: str) -> None:
    """Make every call of one DynamoDB operation fail as a throttled request does."""
    client = detector.stream_store.client
    code = "ProvisionedThroughputExceededException"

    def fail(**_):
        raise getattr(client.exceptions, code)(
            {"Error": {"Code": code, "Message": "slow"}}, operation
        )

    client.meta.events.register(f"before-call.dynamodb.{operation}", fail)


def service(**env: str | None) -> DetectionService:
    return DetectionService(make_config(**{**ENV, **env}), predictor=FormulaPredictor())


def test_stream_requests_continue_one_baseline(dynamodb):
    detector = service()

    first = post(detector, rows_csv(0, 90), stream="pump-7")
    second = post(detector, rows_csv(90, 90), stream="pump-7")
    whole = post(service(), rows_csv(0, 180), stream="pump-8")

    assert first["summary"]["baseline"] == {
        "stream": "pump-7",
        "rows": BASELINE_ROWS,
        "residuals_kept": BASELINE_ROWS,
        # The median drift of the last 60 rows, 30 to 89, at the update after row 89.
        "level": pytest.approx(0.01 * 59.5, abs=1e-9),
        "saved": True,
    }
    levels = [row["baseline"] for row in first["rows"] + second["rows"]]
    assert levels == pytest.approx([row["baseline"] for row in whole["rows"]], abs=1e-9)
    # The second request starts from where the first left, not from 0.
    assert second["rows"][0]["baseline"] == pytest.approx(0.01 * 59.5, abs=1e-9)
    for row in second["rows"]:
        assert row["residual"] == pytest.approx(
            row["actual"] - row["predicted"] - row["baseline"], abs=1e-9
        )
    item = dynamodb.get_item(TableName=TABLE, Key={"stream": {"S": "pump-7"}})["Item"]
    assert item["version"] == {"N": "2"}
    assert item["last_time"] == {"S": "2024-03-06T10:59:00+00:00"}


def test_streams_keep_separate_baselines(dynamodb):
    detector = service()
    post(detector, rows_csv(0, 120), stream="a")

    other = post(detector, rows_csv(120, 30), stream="b")
    default = post(detector, rows_csv(120, 30))

    assert other["rows"][0]["baseline"] == 0.0
    assert default["summary"]["baseline"]["stream"] == "default"
    assert default["rows"][0]["baseline"] == 0.0


def test_retry_is_scored_not_saved(dynamodb, captured_stdout):
    detector = service()
    post(detector, rows_csv(0, 90), stream="s")
    post(detector, rows_csv(90, 90), stream="s")
    before = dynamodb.get_item(TableName=TABLE, Key={"stream": {"S": "s"}})["Item"]

    again = post(detector, rows_csv(90, 90), stream="s")

    assert again["summary"]["baseline"]["saved"] is False
    assert again["summary"]["baseline"]["not_saved_because"] == "rows_not_newer"
    assert dynamodb.get_item(TableName=TABLE, Key={"stream": {"S": "s"}})["Item"] == before
    warnings = [line for line in json_lines(captured_stdout()) if line["level"] == "WARNING"]
    assert [(w["message"], w["reason"], w["stream"]) for w in warnings] == [
        ("stream state not saved", "rows_not_newer", "s")
    ]


def test_store_rejects_stale_version(dynamodb):
    store = DynamoStreamStore(dynamodb, TABLE)
    scoring = make_config(**ENV).scoring
    read = store.load("s", scoring)
    state = BaselineState(np.array([0.5, 0.7]), 2, 0, 0.6)

    assert store.save("s", scoring, StoredStream(state), 0)
    assert not store.save("s", scoring, StoredStream(state), 0)
    again = store.load("s", scoring)
    assert read.version == 0
    assert again.version == 1
    assert again.state.to_dict() == state.to_dict()
    assert store.save("s", scoring, again, 1)


def test_state_of_other_model_restarts(dynamodb):
    post(service(), rows_csv(0, 120), stream="s")

    longer = post(service(BASELINE="90"), rows_csv(120, 30), stream="s")

    assert longer["summary"]["baseline"]["restarted_because"] == "model"
    assert longer["rows"][0]["baseline"] == 0.0
    assert longer["summary"]["baseline"]["saved"] is True


@pytest.mark.parametrize(
    "attributes",
    [
        {"residuals": {"B": b"\x00\x01\x02"}},  # not a whole number of floats
        {"residuals": {"S": "0.5"}},
        {"level": {"B": b""}},
        {"last_time": {"S": "yesterday"}},
        {"anomalous_rows": {"N": "1.5"}},
        {"last_time": {"S": "2024-03-06T09:00:00"}},  # no time zone
        {"last_time": {"S": "now"}},
        {"version": {"S": "abc"}},
        {"version": {"S": "1"}},
        {"version": {"N": "1.5"}},
        {"version": {"N": "0"}},
        {"version": {"N": "-1"}},
        {"anomalous_rows": {"N": "9" * 38}},
        {"last_time": {"S": "2200-01-01T00:00:00+00:00"}},
    ],
)
def test_unreadable_item_restarts_stream(dynamodb, attributes, captured_stdout):
    post(service(), rows_csv(0, 60), stream="s")
    item = dynamodb.get_item(TableName=TABLE, Key={"stream": {"S": "s"}})["Item"]
    dynamodb.put_item(TableName=TABLE, Item={**item, **attributes})

    result = post(service(), rows_csv(60, 60), stream="s")

    assert result["summary"]["baseline"]["restarted_because"] == "unreadable"
    assert result["summary"]["baseline"]["saved"] is True
    warnings = [line for line in json_lines(captured_stdout()) if line["level"] == "WARNING"]
    assert [w["message"] for w in warnings] == ["stream state restarted"]


def test_missing_table_is_500(aws_credentials, captured_stdout):
    with mock_aws():  # no table
        event = load_event("post_csv")
        event["body"] = rows_csv(0, 30)
        response = service().handle(event)

    assert response["statusCode"] == 500
    error = parse_body(response)["error"]
    assert error["code"] == "configuration_error"
    assert (
        f"The state table {TABLE} cannot be used (ResourceNotFoundException)" in (error["message"])
    )
    assert "Check STATE_TABLE" in error["message"]
    log = captured_stdout()
    assert "ResourceNotFoundException" in log
    assert "1500.0" not in log


def test_throttled_table_is_503(dynamodb, captured_stdout):
    detector = service()
    throttle(detector, "GetItem")
    event = load_event("post_csv")
    event["body"] = rows_csv(0, 30)
    response = detector.handle(event)

    assert response["statusCode"] == 503
    error = parse_body(response)["error"]
    assert error["code"] == "state_unavailable"
    assert "Send the request again later" in error["message"]
    log = captured_stdout()
    assert "ProvisionedThroughputExceededException" in log
    assert "1500.0" not in log


def test_oversized_response_saves_nothing(dynamodb, monkeypatch):
    sns = RecordingSns()
    config = make_config(**ENV, TOPIC_ARN="arn:aws:sns:eu-west-1:123456789012:warnings")
    detector = DetectionService(config, predictor=FormulaPredictor(offset=-5.0), sns_client=sns)
    monkeypatch.setattr(handler, "MAX_RESPONSE_BYTES", 5_000)
    event = load_event("post_csv")
    event["body"] = rows_csv(0, 90)

    response = detector.handle(event)

    assert response["statusCode"] == 413, response["body"]
    assert "?rows=anomalous" in parse_body(response)["error"]["message"]
    assert "Item" not in dynamodb.get_item(TableName=TABLE, Key={"stream": {"S": "default"}})
    assert sns.published == []
    # The retry that the error message suggests is saved and warns once.
    event["queryStringParameters"] = {"rows": "none"}
    retried = parse_body(detector.handle(event))
    assert retried["summary"]["baseline"]["saved"] is True
    assert retried["summary"]["events"] >= 1
    assert len(sns.published) == 1


def test_size_check_counts_json_escapes(dynamodb):
    result = service().handle({**load_event("post_csv"), "body": rows_csv(0, 40)})

    body = result["body"]
    # The proxy response contains the body as a JSON string, with its quotes escaped.
    assert handler._encoded_size(body) == len(json.dumps(body)) - 2
    assert handler._encoded_size(body) > len(body) + 40 * 10


def test_huge_state_is_not_saved(dynamodb):
    detector = service()
    # The same rows with a target near the float limit; it is the last column.
    header, *lines = rows_csv(0, 100).splitlines()
    assert header.endswith(",bearing_temperature")
    lines = [line.rsplit(",", 1)[0] + ",1.9e306" for line in lines]
    first = post(detector, "\n".join([header, *lines]) + "\n", stream="x")

    later = post(detector, rows_csv(100, 200), stream="x")

    assert first["summary"]["baseline"]["not_saved_because"] == "values_out_of_range"
    assert later["summary"]["baseline"]["saved"] is True
    assert later["rows"][0]["baseline"] == 0.0


def test_future_rows_are_rejected(dynamodb):
    event = load_event("post_csv")
    event["body"] = rows_csv(0, 30, start=pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=2))

    response = service().handle(event)

    assert response["statusCode"] == 400
    assert "more than a day after the service's clock" in parse_body(response)["error"]["message"]
    assert "Item" not in dynamodb.get_item(TableName=TABLE, Key={"stream": {"S": "default"}})


def test_one_row_retry_is_not_saved(dynamodb):
    detector = service()
    post(detector, rows_csv(0, 60), stream="s")
    post(detector, rows_csv(60, 1), stream="s")

    again = post(detector, rows_csv(60, 1), stream="s")

    assert again["summary"]["baseline"]["not_saved_because"] == "rows_not_newer"


def test_unwritable_table_is_500(dynamodb):
    detector = service()
    client = detector.stream_store.client

    def deny(**_):
        raise client.exceptions.ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "PutItem"
        )

    client.meta.events.register("before-call.dynamodb.PutItem", deny)
    event = load_event("post_csv")
    event["body"] = rows_csv(0, 30)
    response = detector.handle(event)

    assert response["statusCode"] == 500
    message = parse_body(response)["error"]["message"]
    assert f"The state table {TABLE} cannot be written (AccessDeniedException)" in message


def test_row_at_last_time_is_new(dynamodb):
    detector = service()
    post(detector, rows_csv(0, 60), stream="s")

    # Starts at row 59's time: times may repeat, so this is not a retry.
    result = post(detector, rows_csv(59, 30), stream="s")

    assert result["summary"]["baseline"]["saved"] is True


def test_failed_write_keeps_scores(dynamodb, captured_stdout):
    detector = service()
    throttle(detector, "PutItem")
    result = post(detector, rows_csv(0, 30), stream="s")

    assert len(result["rows"]) == 30
    assert result["summary"]["baseline"]["not_saved_because"] == "store_error"
    errors = [line for line in json_lines(captured_stdout()) if line["level"] == "ERROR"]
    assert [(e["message"], e["error_code"]) for e in errors] == [
        ("stream state not saved", "ProvisionedThroughputExceededException")
    ]


@pytest.mark.parametrize("stream", ["a b", "x" * 129, "pump/7", "é"])
def test_bad_stream_name_is_400(dynamodb, stream):
    event = load_event("post_csv")
    event["queryStringParameters"] = {"stream": stream}

    response = service().handle(event)

    assert response["statusCode"] == 400
    assert "Query parameter stream must be 1 to 128" in parse_body(response)["error"]["message"]


def test_unsorted_rows_are_400(dynamodb):
    lines = rows_csv(0, 10).splitlines()
    lines[5], lines[6] = lines[6], lines[5]
    event = load_event("post_csv")
    event["body"] = "\n".join(lines) + "\n"

    response = service().handle(event)

    assert response["statusCode"] == 400
    message = parse_body(response)["error"]["message"]
    assert "back in time at row 5" in message and "sort the rows by time" in message


def test_baseline_needs_valid_table():
    with pytest.raises(ConfigurationError, match="set STATE_TABLE"):
        make_config(BASELINE="600")
    with pytest.raises(ConfigurationError, match="STATE_TABLE must be a DynamoDB table name"):
        make_config(BASELINE="600", STATE_TABLE="a b/c")
    with pytest.raises(ConfigurationError, match="BASELINE must be 0 or from 30"):
        make_config(BASELINE="10", STATE_TABLE=TABLE)


def test_lambda_handler_builds_table_client(dynamodb, lambda_env):
    lambda_env(**ENV)
    event = load_event("post_csv")

    response = lambda_handler(event, None)

    # The sample rows are scored by the real endpoint client, which has no endpoint here,
    # so only the configuration and the table client are checked.
    body = json.loads(response["body"])
    assert response["statusCode"] in (502, 503, 504), body
    assert body["error"]["code"].startswith("endpoint")
