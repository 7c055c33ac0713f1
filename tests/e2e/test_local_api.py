"""The local API end to end: HTTP -> proxy event -> handler -> boto3 -> local model endpoint.

Every request goes over a real socket on 127.0.0.1. Metrics and warnings go through boto3 to
moto's server, and each test reads back what its requests published.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import Message

import pandas as pd
import pytest
from openapi_spec_validator import validate as validate_openapi_document

from anomaly_detector.config import DEFAULT_MAX_REQUEST_BYTES
from anomaly_detector.local_server import API_GATEWAY_BODY_LIMIT, openapi_document

pytestmark = pytest.mark.e2e

REQUEST_START = pd.Timestamp("2024-05-02T00:00:00Z")
# Added to y on rows 60..79 of the event request: about 30 x the training noise.
OFFSET = 3.0
OFFSET_ROWS = slice(60, 80)
EVENT_REQUEST_ROWS = 120
# Long enough that the warning subject must be cut to stay under SNS's 100 characters.
LONG_ASSET_ID = "plant-rotterdam/line-03/hydraulic-press-07/main-cylinder-pressure-sensor-a"
HTTP_TIMEOUT_SECONDS = 30
LOOPBACK_HOST = "127.0.0.1"
SUBPROCESS_START_SECONDS = 30
SUBPROCESS_STOP_SECONDS = 15

# Requests go straight to 127.0.0.1, whatever proxy the environment configures.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def send(
    method: str, url: str, body: bytes | None = None, content_type: str | None = None
) -> Reply:
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with _DIRECT.open(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            return Reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Reply(error.code, error.headers, error.read())


def post_csv(url: str, frame: pd.DataFrame, query: str = "") -> Reply:
    return send("POST", f"{url}/detect{query}", frame.to_csv(index=False).encode(), "text/csv")


def event_request(make_rows) -> pd.DataFrame:
    return make_rows(
        EVENT_REQUEST_ROWS, seed=2, start=REQUEST_START, offset=OFFSET, offset_rows=OFFSET_ROWS
    )


def assert_rows_echo_request(rows: list[dict], frame: pd.DataFrame) -> None:
    assert [row["row"] for row in rows] == list(range(len(frame)))
    assert [row["timestamp"] for row in rows] == frame["timestamp"].tolist()
    assert [row["actual"] for row in rows] == pytest.approx(frame["y"].tolist(), rel=1e-9)


def metric_sum(aws, name: str, asset_id: str) -> float:
    datapoints = aws.metric(name, asset_id)
    assert len(datapoints) == 1, f"{name}: expected one datapoint, got {datapoints}"
    return datapoints[0]["Sum"]


def test_openapi_document_is_valid_openapi_31():
    document = json.loads(openapi_document())

    validate_openapi_document(document)

    assert document["openapi"].startswith("3.1")


def test_openapi_document_served_unchanged(shared_api):
    reply = send("GET", f"{shared_api.url}/openapi.json")

    assert reply.status == 200
    assert reply.headers.get_content_type() == "application/json"
    assert reply.body == openapi_document()


@pytest.mark.parametrize("content_type", ["text/csv", "application/json"])
def test_detect_normal_rows(
    start_api, model_endpoint, aws, warning_topic, openapi, make_rows, content_type
):
    # Given rows of normal operation, sent as CSV or as JSON records
    api = start_api(model_endpoint.url, topic_arn=warning_topic.arn)
    frame = make_rows(60, seed=3, start=REQUEST_START)
    if content_type == "text/csv":
        body = frame.to_csv(index=False).encode()
    else:
        body = frame.to_json(orient="records").encode()

    # When they are posted to the local API
    reply = send("POST", f"{api.url}/detect", body, content_type)

    # Then every row is scored, nothing is anomalous and no warning goes out
    assert reply.status == 200
    assert reply.headers.get_content_type() == "application/json"
    result = reply.json()
    openapi.validate_response("/detect", "POST", 200, result)
    assert result["summary"]["rows"] == 60
    assert result["summary"]["scored_rows"] == 60
    assert result["summary"]["anomalous_rows"] == 0
    assert result["events"] == []
    assert {row["status"] for row in result["rows"]} == {"scored"}
    assert_rows_echo_request(result["rows"], frame)
    assert warning_topic.messages() == []

    # And the request's metrics reached CloudWatch through boto3
    asset_id = api.config.asset_id
    assert metric_sum(aws, "Rows", asset_id) == 60
    assert metric_sum(aws, "ScoredRows", asset_id) == 60
    assert metric_sum(aws, "AnomalousRows", asset_id) == 0
    assert metric_sum(aws, "Events", asset_id) == 0
    assert aws.metric("MaxScore", asset_id)[0]["Maximum"] == pytest.approx(
        result["summary"]["max_score"], rel=1e-6
    )


def test_detect_baseline_continues_across_requests(
    start_api, model_endpoint, model_card, openapi, make_rows
):
    # Given a local API with a 30-row baseline, and rows that all lie a little above the
    # model, as a drift would put them
    api = start_api(model_endpoint.url, baseline=30)
    offset = 0.3 * model_card.threshold
    first = make_rows(60, seed=5, start=REQUEST_START, offset=offset, offset_rows=slice(None))
    later = make_rows(
        30,
        seed=6,
        start=REQUEST_START + pd.Timedelta(minutes=60),
        offset=offset,
        offset_rows=slice(None),
    )

    # When two requests of one stream follow each other
    replies = [
        send("POST", f"{api.url}/detect?stream=press-7", rows.to_csv(index=False).encode(),
             "text/csv")
        for rows in (first, later)
    ]  # fmt: skip

    # Then the second starts from the baseline the first left, near the offset
    results = [reply.json() for reply in replies]
    for reply, result in zip(replies, results, strict=True):
        assert reply.status == 200
        openapi.validate_response("/detect", "POST", 200, result)
    level = results[0]["summary"]["baseline"]["level"]
    assert results[0]["summary"]["baseline"]["saved"] is True
    assert level == pytest.approx(offset, abs=0.1)
    assert results[1]["rows"][0]["baseline"] == pytest.approx(level)
    assert results[0]["rows"][0]["baseline"] == 0.0


def test_detect_stream_requests_score_as_one(start_api, model_endpoint, openapi, make_rows):
    # Given a local API that keeps stream state, and 40 rows a minute apart
    api = start_api(model_endpoint.url, stream_state=True)
    rows = make_rows(40, seed=8, start=REQUEST_START)

    # When they are posted as one request, and as eight requests of 5 rows to a stream
    whole = post_csv(api.url, rows, "?stream=whole").json()
    parts = [
        post_csv(api.url, rows.iloc[start : start + 5], "?stream=parts").json()
        for start in range(0, 40, 5)
    ]

    # Then each part's first windows reach back into the part before, and the scores agree
    for result in [whole, *parts]:
        openapi.validate_response("/detect", "POST", 200, result)
    carried = [part["summary"]["stream"]["window_rows_carried"] for part in parts]
    assert carried == [0] + [int(api.config.scoring.window.rows) - 1] * 7
    scores = [row["score"] for part in parts for row in part["rows"]]
    assert scores == pytest.approx([row["score"] for row in whole["rows"]], abs=1e-9)


def test_detect_offset_rows_publish_one_warning(
    start_api, model_endpoint, aws, warning_topic, openapi, make_rows
):
    # Given rows whose target is offset by +3 on rows 60..79, from an asset with a long name
    api = start_api(model_endpoint.url, topic_arn=warning_topic.arn, asset_id=LONG_ASSET_ID)
    frame = event_request(make_rows)

    # When they are posted to the local API
    reply = post_csv(api.url, frame)

    # Then one event covers the offset rows, with the target above its prediction
    assert reply.status == 200
    result = reply.json()
    openapi.validate_response("/detect", "POST", 200, result)
    assert result["summary"]["rows"] == EVENT_REQUEST_ROWS
    assert result["summary"]["events"] == 1
    assert len(result["events"]) == 1
    event = result["events"][0]
    assert event["start_row"] == OFFSET_ROWS.start
    assert event["end_row"] >= OFFSET_ROWS.stop - 1
    assert OFFSET_ROWS.start <= event["peak_row"] <= event["end_row"]
    assert event["direction"] == "above"
    assert event["start"] == frame["timestamp"][OFFSET_ROWS.start]
    assert event["end"] == frame["timestamp"][event["end_row"]]
    assert event["peak_score"] == result["summary"]["max_score"]
    anomalous = [row["row"] for row in result["rows"] if row["is_anomaly"]]
    assert anomalous == list(range(event["start_row"], event["end_row"] + 1))

    # And exactly one warning names the asset, the time range, the peak score and direction
    envelopes = warning_topic.messages()
    assert len(envelopes) == 1
    envelope = envelopes[0]
    assert envelope["TopicArn"] == warning_topic.arn
    assert len(envelope["Subject"]) < 100
    assert envelope["Subject"].startswith(f"Anomaly on {LONG_ASSET_ID}")
    message = envelope["Message"]
    assert f"Asset: {LONG_ASSET_ID}" in message
    assert event["start"] in message
    assert event["end"] in message
    assert f"{event['peak_score']:.4g}" in message
    assert "above" in message
    assert envelope["MessageAttributes"]["asset"]["Value"] == LONG_ASSET_ID
    assert envelope["MessageAttributes"]["events"]["Value"] == "1"

    # And the metrics count the event and its anomalous rows
    assert metric_sum(aws, "Rows", LONG_ASSET_ID) == EVENT_REQUEST_ROWS
    assert metric_sum(aws, "Events", LONG_ASSET_ID) == 1
    assert metric_sum(aws, "AnomalousRows", LONG_ASSET_ID) == len(anomalous)
    assert aws.metric("MaxScore", LONG_ASSET_ID)[0]["Maximum"] == pytest.approx(
        event["peak_score"], rel=1e-6
    )


def test_detect_rows_query_limits_rows_not_events(shared_api, openapi, make_rows):
    frame = event_request(make_rows)

    anomalous = post_csv(shared_api.url, frame, "?rows=anomalous")
    none = post_csv(shared_api.url, frame, "?rows=none")

    assert anomalous.status == 200
    assert none.status == 200
    openapi.validate_response("/detect", "POST", 200, anomalous.json())
    openapi.validate_response("/detect", "POST", 200, none.json())
    anomalous_rows = anomalous.json()["rows"]
    assert len(anomalous_rows) == anomalous.json()["summary"]["anomalous_rows"]
    assert all(row["is_anomaly"] for row in anomalous_rows)
    assert none.json()["rows"] == []
    assert len(none.json()["events"]) == 1


BAD_CSV = "timestamp,x1,x2,y\n2024-05-02T00:00:00Z,1.0,2.0,4.1\n"


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "status", "code"),
    [
        ("POST", "/detect", "timestamp,x1,x2\n2024-05-02T00:00:00Z,1,2\n", "text/csv", 400,
         "missing_column"),
        ("POST", "/detect", "timestamp,x1,x2,y\n2024-05-02T00:00:00Z,one,2,4\n", "text/csv", 400,
         "invalid_value"),
        ("POST", "/detect", "", "text/csv", 400, "invalid_request"),
        ("POST", "/detect", "timestamp,x1,x2,y\n", "text/csv", 400, "empty_request"),
        ("POST", "/detect", '{"rows": []}', "application/json", 400, "invalid_request"),
        ("POST", "/detect?rows=some", BAD_CSV, "text/csv", 400, "invalid_request"),
        ("POST", "/detect", BAD_CSV, "application/xml", 415, "unsupported_media_type"),
        ("GET", "/detect", None, None, 405, "method_not_allowed"),
        ("OPTIONS", "/detect", None, None, 405, "method_not_allowed"),
        ("POST", "/score", BAD_CSV, "text/csv", 404, "not_found"),
    ],
)  # fmt: skip
def test_detect_rejects_bad_request(
    shared_api, openapi, method, path, body, content_type, status, code
):
    data = None if body is None else body.encode()

    reply = send(method, f"{shared_api.url}{path}", data, content_type)

    assert reply.status == status
    assert reply.headers.get_content_type() == "application/json"
    error = reply.json()
    if path.startswith("/detect"):
        openapi.validate_response("/detect", "POST", status, error)
    else:
        openapi.validate_error(error)
    assert error["error"]["code"] == code


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(DEFAULT_MAX_REQUEST_BYTES + 1, id="over-handler-limit"),
        pytest.param(API_GATEWAY_BODY_LIMIT + 1, id="over-api-gateway-limit"),
    ],
)
def test_detect_oversize_body_returns_413(shared_api, openapi, size):
    body = b"timestamp,x1,x2,y\n" + b"0" * size

    reply = send("POST", f"{shared_api.url}/detect", body, "text/csv")

    assert reply.status == 413
    error = reply.json()
    openapi.validate_response("/detect", "POST", 413, error)
    assert error["error"]["code"] == "payload_too_large"


def test_api_connection_reusable_after_get_with_body(shared_api, make_rows):
    connection = http.client.HTTPConnection(
        LOOPBACK_HOST, shared_api.port, timeout=HTTP_TIMEOUT_SECONDS
    )
    body = make_rows(5, seed=5, start=REQUEST_START).to_csv(index=False).encode()
    try:
        connection.request("GET", "/detect", body, {"Content-Type": "text/csv"})
        first = connection.getresponse()
        first.read()
        connection.request("POST", "/detect", body, {"Content-Type": "text/csv"})
        second = connection.getresponse()
        second_body = json.loads(second.read())
    finally:
        connection.close()

    assert first.status == 405
    assert second.status == 200
    assert second_body["summary"]["rows"] == 5


def test_model_endpoint_connection_reusable_after_error(model_endpoint):
    connection = http.client.HTTPConnection(
        LOOPBACK_HOST, model_endpoint.server_address[1], timeout=HTTP_TIMEOUT_SECONDS
    )
    rows = b"1.5,2.5\n3.0,1.0\n"
    try:
        connection.request(
            "POST", "/endpoints/no-such-model/invocations", rows, {"Content-Type": "text/csv"}
        )
        first = connection.getresponse()
        first_body = json.loads(first.read())
        connection.request(
            "POST", "/endpoints/local-model/invocations", rows, {"Content-Type": "text/csv"}
        )
        second = connection.getresponse()
        second_body = json.loads(second.read())
    finally:
        connection.close()

    assert first.status == 400
    assert first.headers["x-amzn-ErrorType"] == "ValidationError"
    assert "not found" in first_body["message"]
    assert second.status == 200
    assert len(second_body["predictions"]) == 2


def test_detect_endpoint_unreachable_returns_503(start_api, closed_port_url, openapi, make_rows):
    # Given an API whose model endpoint URL is a loopback port that nothing listens on
    api = start_api(closed_port_url)

    # When rows are posted
    started = time.monotonic()
    reply = post_csv(api.url, make_rows(10, seed=4, start=REQUEST_START))

    # Then boto3's retries end and the API returns 503 with a documented error body
    assert reply.status == 503
    error = reply.json()
    openapi.validate_response("/detect", "POST", 503, error)
    assert error["error"]["code"] == "endpoint_unavailable"
    assert "cannot be reached" in error["error"]["message"]
    assert time.monotonic() - started < 15


def test_detect_unknown_endpoint_name_returns_503(start_api, model_endpoint, openapi, make_rows):
    api = start_api(model_endpoint.url, endpoint_name="no-such-model")

    reply = post_csv(api.url, make_rows(10, seed=4, start=REQUEST_START))

    assert reply.status == 503
    error = reply.json()
    openapi.validate_response("/detect", "POST", 503, error)
    assert error["error"]["code"] == "endpoint_unavailable"
    assert "no-such-model" in error["error"]["message"]
    assert "not found" in error["error"]["message"]


def test_detect_model_error_returns_502(start_api, failing_model_endpoint, openapi, make_rows):
    api = start_api(failing_model_endpoint.url)

    reply = post_csv(api.url, make_rows(10, seed=4, start=REQUEST_START))

    assert reply.status == 502
    error = reply.json()
    openapi.validate_response("/detect", "POST", 502, error)
    assert error["error"]["code"] == "endpoint_error"
    assert "ModelError" in error["error"]["message"]


def test_detect_concurrent_requests_keep_their_rows(
    start_api, model_endpoint, aws, openapi, make_rows
):
    # Given 8 clients that each send 3 requests, every request with its own row count
    api = start_api(model_endpoint.url, asset_id="press-concurrent")
    threads, requests_per_thread = 8, 3
    frames = {
        (thread, number): make_rows(
            10 + 3 * (thread * requests_per_thread + number),
            seed=100 + thread * requests_per_thread + number,
            start=REQUEST_START,
        )
        for thread in range(threads)
        for number in range(requests_per_thread)
    }

    def client(thread: int) -> list[tuple[pd.DataFrame, Reply]]:
        return [
            (frames[thread, number], post_csv(api.url, frames[thread, number]))
            for number in range(requests_per_thread)
        ]

    # When they post at the same time
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(client, thread) for thread in range(threads)]
        exchanges = [pair for future in futures for pair in future.result(timeout=60)]

    # Then every response carries exactly the rows of its own request
    assert len(exchanges) == threads * requests_per_thread
    for frame, reply in exchanges:
        assert reply.status == 200, reply.body[:300]
        result = reply.json()
        openapi.validate_response("/detect", "POST", 200, result)
        assert result["summary"]["rows"] == len(frame)
        assert len(result["rows"]) == len(frame)
        assert_rows_echo_request(result["rows"], frame)

    # And one metric datapoint was published per request
    datapoints = aws.metric("Rows", "press-concurrent")
    assert len(datapoints) == 1
    assert datapoints[0]["SampleCount"] == len(frames)
    assert datapoints[0]["Sum"] == sum(len(frame) for frame in frames.values())


def read_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def test_cli_serve_scores_then_stops_on_sigterm(
    model_dir, aws, warning_topic, openapi, make_rows, tmp_path
):
    # Given the real CLI serving the trained model on a free port
    executable = os.path.join(os.path.dirname(sys.executable), "anomaly-detector")
    assert os.path.exists(executable), f"console script missing: {executable}"
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_CLOUDWATCH": aws.url,
        "AWS_ENDPOINT_URL_SNS": aws.url,
    }
    env.pop("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", None)
    command = [
        executable, "serve", "--model-dir", str(model_dir), "--port", "0",
        "--metrics", "cloudwatch", "--asset-id", "press-cli", "--topic-arn", warning_topic.arn,
    ]  # fmt: skip
    stderr_path = tmp_path / "serve.stderr"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env
        )
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=read_lines, args=(process.stdout, lines), daemon=True)
    reader.start()
    try:
        first_line = lines.get(timeout=SUBPROCESS_START_SECONDS)
        assert first_line is not None, stderr_path.read_text()
        match = re.match(r"API on (http://127\.0\.0\.1:\d+): ", first_line)
        assert match, first_line
        url = match.group(1)

        # When rows with an event are posted and the OpenAPI document is fetched
        reply = post_csv(url, event_request(make_rows))
        document = send("GET", f"{url}/openapi.json")

        # Then the CLI's API returns what the in-process API returns
        assert reply.status == 200, reply.body[:300]
        result = reply.json()
        openapi.validate_response("/detect", "POST", 200, result)
        assert result["summary"]["rows"] == EVENT_REQUEST_ROWS
        assert result["summary"]["events"] == 1
        assert document.status == 200
        assert document.body == openapi_document()
        assert metric_sum(aws, "Rows", "press-cli") == EVENT_REQUEST_ROWS
        assert len(warning_topic.messages()) == 1

        # And SIGTERM stops it cleanly
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=SUBPROCESS_STOP_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=SUBPROCESS_STOP_SECONDS)
    reader.join(timeout=SUBPROCESS_STOP_SECONDS)
    process.stdout.close()

    assert exit_code == 0, stderr_path.read_text()
    output = []
    while (line := lines.get(timeout=1)) is not None:
        output.append(line)
    log_messages = [json.loads(line).get("message") for line in output if line.startswith("{")]
    assert "local API stopped" in log_messages, output
