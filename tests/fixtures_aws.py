"""Shared AWS test fixtures: fake credentials, moto's SageMaker runtime, a botocore Stubber.

Test modules load these with ``pytest_plugins = ["fixtures_aws"]`` and use them only as
fixtures, so that pytest imports this module once, as a plugin. No request leaves the
process. moto responds in-process, the Stubber returns its queued response before a request
is built, and the send hook of ``MotoRuntime.intercept_sends`` returns a fault or passes the
request on to moto.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_api._internal import moto_api_backend

from anomaly_detector.predictors import runtime_client_config

REGION = "eu-west-1"
# Short, so that a test that waits on a timeout by mistake fails fast.
READ_TIMEOUT_SECONDS = 5.0


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Set fake credentials and a region, so no client looks for real ones or a metadata service."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # Empty files, so that a developer's own profile, region or endpoint URL is not read.
    empty = tmp_path / "aws-empty"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    for name in (
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def moto_runtime(aws_credentials) -> Iterator[MotoRuntime]:
    """Yield a moto-served ``sagemaker-runtime`` client with the service's client settings."""
    with mock_aws():
        client = boto3.client(
            "sagemaker-runtime",
            region_name=REGION,
            config=runtime_client_config(READ_TIMEOUT_SECONDS),
        )
        yield MotoRuntime(client)


@pytest.fixture
def runtime_stubber(aws_credentials) -> Iterator[Stubber]:
    """Yield an active Stubber on a real ``sagemaker-runtime`` client (``stubber.client``).

    The test fails when a queued response was not used.
    """
    client = boto3.client(
        "sagemaker-runtime", region_name=REGION, config=runtime_client_config(READ_TIMEOUT_SECONDS)
    )
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


@dataclass(frozen=True)
class SentRequest:
    """One HTTP attempt as botocore was about to send it."""

    url: str
    headers: dict[str, str]
    body: bytes


@dataclass
class MotoRuntime:
    """A moto-served ``sagemaker-runtime`` client and the controls of its responses."""

    client: object

    def queue_results(self, *bodies: str, content_type: str = "application/json") -> None:
        """Queue moto's responses to ``invoke_endpoint``, one per distinct request, in order.

        moto returns the same response again for a request with the same body and Accept header.
        """
        # moto documents this as POST /moto-api/static/sagemaker/endpoint-results. This is the
        # function behind that route, called in-process so that no request is aimed at a host.
        for body in bodies:
            moto_api_backend.set_sagemaker_result(
                body=body,
                content_type=content_type,
                prod_variant=None,
                custom_attrs=None,
                account_id=DEFAULT_ACCOUNT_ID,
                region=REGION,
            )

    def intercept_sends(self, faults: Sequence[BaseException | str] = ()) -> list[SentRequest]:
        """Record every send attempt of the client and fail the first ones with ``faults``.

        A fault is an exception, raised as if the connection failed, or an error code,
        returned as an HTTP 400 error response with that code. Attempts after the faults go
        on to moto. Returns the list that the recorded attempts are appended to.
        """
        sent: list[SentRequest] = []
        pending = list(faults)

        def on_send(request, **_) -> AWSResponse | None:
            body = request.body if isinstance(request.body, bytes) else (request.body or b"")
            headers = {key: _text(value) for key, value in request.headers.items()}
            sent.append(SentRequest(url=request.url, headers=headers, body=body))
            if not pending:
                return None
            fault = pending.pop(0)
            if isinstance(fault, BaseException):
                raise fault
            return error_response(request.url, fault)

        # register_first: moto responds in the same event, so this hook has to run before it.
        self.client.meta.events.register_first(
            "before-send.sagemaker-runtime.InvokeEndpoint", on_send
        )
        return sent


def error_response(url: str, code: str, status: int = 400) -> AWSResponse:
    """Build the HTTP error response of a REST-JSON service for ``code``."""
    body = json.dumps({"__type": code, "message": f"{code} injected by the test"}).encode()
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": code}
    return AWSResponse(url, status, headers, _RawBody(body))


class _RawBody(io.BytesIO):
    # botocore reads a response body through stream() or read(), and a BytesIO has only read().
    def stream(self, **_) -> Iterator[bytes]:
        chunk = self.read()
        while chunk:
            yield chunk
            chunk = self.read()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
