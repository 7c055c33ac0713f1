"""Fixtures for end-to-end tests over real sockets on 127.0.0.1.

The chain under test is client -> ``ApiServer`` -> ``DetectionService`` -> boto3 ->
``ModelEndpointServer``. CloudWatch, SNS and SQS are moto's server mode on a loopback port,
so boto3 sends real HTTP requests and the tests read back what the service published.
No fixture reaches AWS: credentials are fake, the instance metadata service is disabled and
every endpoint URL is a loopback address.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest
from jsonschema import Draft202012Validator
from moto.server import ThreadedMotoServer
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from anomaly_detector.config import ScoringConfig, ServiceConfig, Span
from anomaly_detector.handler import DetectionService
from anomaly_detector.local_model import LocalModel, ModelCard, train
from anomaly_detector.local_server import (
    ApiServer,
    ModelEndpointServer,
    openapi_document,
    start_in_thread,
)
from anomaly_detector.state import MemoryStreamStore

LOOPBACK = "127.0.0.1"
REGION = "us-east-1"
ENDPOINT_NAME = "local-model"
SERVICE_NAME = "anomaly-detector"
METRICS_NAMESPACE = "AnomalyDetection"
OPENAPI_URI = "urn:anomaly-detector:openapi"
FIRST_TIME = pd.Timestamp("2024-05-01T00:00:00Z")
# Standard deviation of the noise on y. The model's validation RMSE and threshold follow it.
NOISE_STD = 0.1

# A urllib opener that ignores any proxy settings, so requests go straight to 127.0.0.1.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def machine_rows(
    count: int,
    seed: int,
    start: pd.Timestamp = FIRST_TIME,
    offset: float = 0.0,
    offset_rows: slice = slice(0, 0),
) -> pd.DataFrame:
    """Generate one-minute rows with ``y = 2 * x1 + x2 + noise``, plus ``offset`` on some rows.

    The inputs stay inside the training range (x1 in [0, 10], x2 in [0, 5]), so only the
    offset moves the residuals far from zero.
    """
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(0.0, 10.0, count)
    x2 = rng.uniform(0.0, 5.0, count)
    y = 2.0 * x1 + x2 + rng.normal(0.0, NOISE_STD, count)
    y[offset_rows] += offset
    times = pd.date_range(start, periods=count, freq="1min")
    return pd.DataFrame(
        {
            "timestamp": times.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "x1": x1.round(6),
            "x2": x2.round(6),
            "y": y.round(6),
        }
    )


def free_loopback_port() -> int:
    """Return a loopback port that nothing listens on: bound once by the OS, then closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def make_rows() -> Callable[..., pd.DataFrame]:
    return machine_rows


@pytest.fixture
def closed_port_url() -> str:
    return f"http://{LOOPBACK}:{free_loopback_port()}"


@pytest.fixture(scope="module", autouse=True)
def fake_aws_environment() -> Iterator[None]:
    """Fake credentials and region for every boto3 client, with no metadata or profile lookup.

    Module scope keeps the patched environment from leaking into tests outside tests/e2e.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_SESSION_TOKEN", "testing")
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        patch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
        patch.setenv("NO_PROXY", f"{LOOPBACK},localhost")
        patch.setenv("no_proxy", f"{LOOPBACK},localhost")
        patch.delenv("AWS_PROFILE", raising=False)
        for name in ("SAGEMAKER_RUNTIME", "CLOUDWATCH", "SNS", "SQS"):
            patch.delenv(f"AWS_ENDPOINT_URL_{name}", raising=False)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        # boto3 caches its default session with the credentials it found, so a fresh session
        # is started here and the clients that DetectionService creates read the values above.
        patch.setattr(boto3, "DEFAULT_SESSION", None)
        yield


@pytest.fixture(scope="module")
def moto_url(fake_aws_environment) -> Iterator[str]:
    """Start moto's server on a free loopback port for CloudWatch, SNS and SQS."""
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class AwsReadBack:
    """Clients on moto's server that read back what the service published."""

    url: str
    cloudwatch: object
    sns: object
    sqs: object

    def metric(self, name: str, asset_id: str) -> list[dict]:
        """Return the datapoints (Sum, SampleCount, Maximum) of one request metric."""
        now = dt.datetime.now(dt.UTC)
        response = self.cloudwatch.get_metric_statistics(
            Namespace=METRICS_NAMESPACE,
            MetricName=name,
            Dimensions=[
                {"Name": "service", "Value": SERVICE_NAME},
                {"Name": "asset", "Value": asset_id},
            ],
            StartTime=now - dt.timedelta(minutes=10),
            EndTime=now + dt.timedelta(minutes=10),
            Period=3600,
            Statistics=["Sum", "SampleCount", "Maximum"],
        )
        return response["Datapoints"]

    def metric_names(self) -> set[str]:
        metrics = self.cloudwatch.list_metrics(Namespace=METRICS_NAMESPACE)["Metrics"]
        return {metric["MetricName"] for metric in metrics}


@pytest.fixture
def aws(moto_url: str) -> AwsReadBack:
    """Reset moto's state, so each test reads back only what it published."""
    request = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    with _DIRECT.open(request, timeout=10) as response:
        assert response.status == 200
    return AwsReadBack(
        url=moto_url,
        cloudwatch=boto3.client("cloudwatch", endpoint_url=moto_url),
        sns=boto3.client("sns", endpoint_url=moto_url),
        sqs=boto3.client("sqs", endpoint_url=moto_url),
    )


@dataclass
class WarningTopic:
    """An SNS topic with an SQS queue subscribed, to read the warnings published to it."""

    arn: str
    queue_url: str
    sqs: object

    def messages(self) -> list[dict]:
        """Receive and delete every queued notification, and return the SNS envelopes."""
        envelopes = []
        for _ in range(20):  # bounded: a test publishes a handful of messages at most
            response = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            batch = response.get("Messages", [])
            if not batch:
                break
            for message in batch:
                envelopes.append(json.loads(message["Body"]))
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
        return envelopes


@pytest.fixture
def warning_topic(aws: AwsReadBack) -> WarningTopic:
    topic_arn = aws.sns.create_topic(Name="anomaly-warnings")["TopicArn"]
    queue_url = aws.sqs.create_queue(QueueName="anomaly-warnings")["QueueUrl"]
    queue_arn = aws.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    # Without raw delivery the queue receives the SNS envelope, which carries the Subject.
    aws.sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return WarningTopic(arn=topic_arn, queue_url=queue_url, sqs=aws.sqs)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train the local LightGBM model once per module on 600 deterministic normal rows."""
    directory = tmp_path_factory.mktemp("model")
    train(
        machine_rows(600, seed=1),
        target="y",
        inputs=["x1", "x2"],
        model_dir=directory,
        timestamp_column="timestamp",
    )
    return directory


@pytest.fixture(scope="module")
def model_card(model_dir: Path) -> ModelCard:
    return ModelCard.load(model_dir)


@pytest.fixture(scope="module")
def model_endpoint(model_dir: Path) -> Iterator[ModelEndpointServer]:
    """Serve the trained model on the SageMaker Runtime route, on a free loopback port."""
    server = ModelEndpointServer(LocalModel(model_dir), ENDPOINT_NAME)
    start_in_thread(server)
    yield server
    server.shutdown()
    server.server_close()


class FailingModel:
    """A model with the trained model's card whose every prediction raises."""

    def __init__(self, card: ModelCard) -> None:
        self.card = card

    def predict(self, inputs: pd.DataFrame) -> np.ndarray:
        raise RuntimeError("model failure injected by the test")


@pytest.fixture
def failing_model_endpoint(model_card: ModelCard) -> Iterator[ModelEndpointServer]:
    """Serve a model that fails on every request, so the endpoint returns ModelError."""
    server = ModelEndpointServer(FailingModel(model_card), ENDPOINT_NAME)
    start_in_thread(server)
    yield server
    server.shutdown()
    server.server_close()


@dataclass
class LocalApi:
    """A running ``ApiServer`` and the configuration of the service behind it."""

    url: str
    port: int
    config: ServiceConfig


def _start_api(
    patch: pytest.MonkeyPatch,
    model_card: ModelCard,
    moto_url: str,
    endpoint_url: str,
    endpoint_name: str = ENDPOINT_NAME,
    topic_arn: str | None = None,
    asset_id: str = "press-7",
    baseline: int | None = None,
    stream_state: bool = False,
) -> tuple[ApiServer, LocalApi]:
    # boto3 reads the endpoint URL variables when a client is created, so they are set
    # before DetectionService creates its clients.
    patch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", endpoint_url)
    patch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", moto_url)
    patch.setenv("AWS_ENDPOINT_URL_SNS", moto_url)
    patch.setenv("AWS_ENDPOINT_URL_SQS", moto_url)
    config = ServiceConfig(
        scoring=ScoringConfig(
            target=model_card.target,
            inputs=tuple(model_card.inputs),
            threshold=model_card.threshold,
            timestamp_column="timestamp",
            window=Span.parse(model_card.window, "window"),
            min_duration=Span.parse(model_card.min_duration, "min_duration"),
            baseline=baseline,
        ),
        endpoint_name=endpoint_name,
        asset_id=asset_id,
        metrics_namespace=METRICS_NAMESPACE,
        service_name=SERVICE_NAME,
        metrics_mode="cloudwatch",
        topic_arn=topic_arn,
    )
    # As `serve` does: each stream's window tail (and baseline) kept in memory.
    store = MemoryStreamStore() if stream_state else None
    server = ApiServer(DetectionService(config, stream_store=store))
    start_in_thread(server)
    port = server.server_address[1]
    return server, LocalApi(url=f"http://{LOOPBACK}:{port}", port=port, config=config)


def _stop(server: ApiServer) -> None:
    server.shutdown()
    server.server_close()


@pytest.fixture
def start_api(
    monkeypatch: pytest.MonkeyPatch, model_card: ModelCard, aws: AwsReadBack
) -> Iterator[Callable[..., LocalApi]]:
    """Start local APIs whose boto3 clients reach the given model endpoint and moto.

    The factory takes the endpoint URL and, optionally, ``endpoint_name``, ``topic_arn``,
    ``asset_id``, ``baseline`` and ``stream_state``.
    """
    servers: list[ApiServer] = []

    def start(endpoint_url: str, **options) -> LocalApi:
        server, api = _start_api(monkeypatch, model_card, aws.url, endpoint_url, **options)
        servers.append(server)
        return api

    yield start
    for server in servers:
        _stop(server)


@pytest.fixture(scope="module")
def shared_api(
    model_card: ModelCard, moto_url: str, model_endpoint: ModelEndpointServer
) -> Iterator[LocalApi]:
    """One local API for a module's tests that need no topic and no special endpoint.

    Sharing it saves time, because each server shutdown waits up to socketserver's default
    poll interval of 0.5 s for its serving loop.
    """
    with pytest.MonkeyPatch.context() as patch:
        server, api = _start_api(patch, model_card, moto_url, model_endpoint.url)
        yield api
        _stop(server)


class OpenApiContract:
    """Validate response bodies against the schemas in the package's openapi.json."""

    def __init__(self, document: dict) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry = Registry().with_resource(OPENAPI_URI, resource)
        self.resolver = self.registry.resolver(base_uri=OPENAPI_URI)

    def response_schema_ref(self, path: str, method: str, status: int) -> str:
        """Return the URI of the JSON schema documented for this operation and status."""
        responses = self.document["paths"][path][method.lower()]["responses"]
        assert str(status) in responses, f"{method} {path} does not document status {status}"
        pointer = f"#/paths/{path.replace('/', '~1')}/{method.lower()}/responses/{status}"
        response = responses[str(status)]
        if "$ref" in response:
            pointer = response["$ref"]
            response = self.resolver.lookup(pointer).contents
        assert "application/json" in response["content"]
        return f"{OPENAPI_URI}{pointer}/content/application~1json/schema"

    def validate(self, body: dict, schema_ref: str) -> None:
        validator = Draft202012Validator({"$ref": schema_ref}, registry=self.registry)
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
        assert not errors, f"response does not match {schema_ref}: {errors[:5]}"

    def validate_response(self, path: str, method: str, status: int, body: dict) -> None:
        self.validate(body, self.response_schema_ref(path, method, status))

    def validate_error(self, body: dict) -> None:
        self.validate(body, f"{OPENAPI_URI}#/components/schemas/Error")


@pytest.fixture(scope="session")
def openapi() -> OpenApiContract:
    return OpenApiContract(json.loads(openapi_document()))
