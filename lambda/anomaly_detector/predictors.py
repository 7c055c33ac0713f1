"""Predictors behind one interface: ``predict(inputs) -> predictions``.

``SageMakerPredictor`` calls a SageMaker real-time endpoint. The local LightGBM model lives
in ``local_model`` so that the Lambda never imports it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Protocol

import numpy as np
import pandas as pd
from aws_lambda_powertools import Logger
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from .endpoint_format import parse_predictions, split_payloads, to_csv_lines
from .errors import (
    ConfigurationError,
    EndpointError,
    EndpointTimeoutError,
    EndpointUnavailableError,
)

logger = Logger(service="anomaly-detector", child=True)

CONNECT_TIMEOUT_SECONDS = 2
# Standard retry mode backs off exponentially with jitter on throttling and transient errors.
# The count includes the first attempt.
RETRY_ATTEMPTS = 3
_UNAVAILABLE_CODES = {
    "ThrottlingException",
    "Throttling",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "ModelNotReadyException",
    "InternalDependencyException",
}


# Endpoint calls run here when a deadline applies, so the caller can stop waiting in time.
_CALLERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="endpoint-call")


class _PayloadRejectedError(EndpointError):
    """HTTP 413 from the endpoint, which means that the body was too large for it."""


class Predictor(Protocol):
    def predict(self, inputs: pd.DataFrame) -> np.ndarray:
        """Return one float prediction per row of ``inputs`` (columns in training order)."""
        ...


def runtime_client_config(read_timeout: float) -> Config:
    """Build the botocore configuration: connect and read timeouts, standard retries.

    ``read_timeout`` is the socket read timeout in seconds, the longest wait for the next
    bytes of a response. The connect timeout is ``CONNECT_TIMEOUT_SECONDS``.
    """
    # botocore retries a read timeout too, so one call may wait RETRY_ATTEMPTS x (connect +
    # read timeout), longer than API Gateway's 29 s. SageMakerPredictor therefore waits for
    # each call only until its deadline and answers 504 then.
    return Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=read_timeout,
        # botocore's "max_attempts" counts only retries, but "total_max_attempts" counts all.
        retries={"mode": "standard", "total_max_attempts": RETRY_ATTEMPTS},
    )


class SageMakerPredictor:
    """Call a SageMaker real-time endpoint with CSV rows and parse its predictions.

    Rows are sent in bodies of at most ``max_payload_bytes`` (the endpoint accepts 6 MB).
    When the endpoint rejects a body as too large (HTTP 413), that body's rows are sent again
    in two bodies of about half its size, and so on down to one row per call.
    ``deadline`` returns the seconds left for the whole request. No call starts when less
    than ``min_seconds_per_call`` remain, and no call is waited for past the deadline (it
    runs in a worker thread), so the API answers 504 rather than timing out.
    """

    def __init__(
        self,
        client,
        endpoint_name: str,
        max_payload_bytes: int = 4_000_000,
        deadline: Callable[[], float] | None = None,
        min_seconds_per_call: float = 1.0,
    ) -> None:
        self.client = client
        self.endpoint_name = endpoint_name
        self.max_payload_bytes = max_payload_bytes
        self.deadline = deadline
        self.min_seconds_per_call = min_seconds_per_call
        self.calls = 0

    def predict(self, inputs: pd.DataFrame) -> np.ndarray:
        predictions = np.empty(len(inputs))
        if len(inputs) == 0:
            return predictions
        lines = to_csv_lines(inputs)
        for first_row, body in split_payloads(lines, self.max_payload_bytes):
            rows = body.count(b"\n")
            predictions[first_row : first_row + rows] = self._predict_rows(lines, first_row, rows)
        return predictions

    def _predict_rows(self, lines: list[bytes], first_row: int, rows: int) -> np.ndarray:
        part = lines[first_row : first_row + rows]
        body = b"".join(part)
        try:
            return self._invoke(body, rows)
        except _PayloadRejectedError as error:
            if rows == 1:
                raise EndpointError(
                    f"The endpoint {self.endpoint_name!r} rejected row {first_row} alone as too "
                    f"large ({len(body)} bytes, HTTP 413). Check the endpoint's request limit."
                ) from error
            # Half the body plus the longest row packs the rows into two payloads, and one
            # byte less than the body still splits two rows.
            limit = min(len(body) // 2 + max(len(line) for line in part), len(body) - 1)
            logger.info(
                "endpoint rejected a request as too large; sending its rows in smaller parts",
                extra={"rows": rows, "bytes": len(body), "max_bytes": limit},
            )
        predictions = np.empty(rows)
        for start, smaller in split_payloads(part, limit):
            count = smaller.count(b"\n")
            predictions[start : start + count] = self._predict_rows(lines, first_row + start, count)
        return predictions

    def _invoke(self, body: bytes, rows: int) -> np.ndarray:
        if self.deadline is not None and self.deadline() < self.min_seconds_per_call:
            raise EndpointTimeoutError(
                "The endpoint did not score every row in the time the API allows; send "
                "fewer rows per request."
            )
        started = time.monotonic()
        try:
            if self.deadline is None:
                payload, content_type = self._call(body)
            else:
                future = _CALLERS.submit(self._call, body)
                payload, content_type = future.result(timeout=self.deadline())
        except FutureTimeoutError as error:
            raise EndpointTimeoutError(
                f"The endpoint {self.endpoint_name!r} did not respond within the time the API "
                f"allows ({time.monotonic() - started:.1f} s). Send fewer rows per request, or "
                "check the endpoint's latency."
            ) from error
        except ClientError as error:
            raise self._client_error(error) from error
        except (ReadTimeoutError, ConnectTimeoutError) as error:
            raise EndpointTimeoutError(
                f"The endpoint {self.endpoint_name!r} did not respond in time "
                f"({time.monotonic() - started:.1f} s). Send fewer rows per request, or check "
                "the endpoint's latency."
            ) from error
        except BotoConnectionError as error:
            raise EndpointUnavailableError(
                f"The endpoint {self.endpoint_name!r} cannot be reached. Try again later."
            ) from error
        except BotoCoreError as error:
            raise EndpointError(f"Calling the endpoint failed: {type(error).__name__}.") from error
        finally:
            self.calls += 1
        return parse_predictions(payload, content_type, rows)

    def _call(self, body: bytes) -> tuple[bytes, str | None]:
        response = self.client.invoke_endpoint(
            EndpointName=self.endpoint_name,
            ContentType="text/csv",
            Accept="application/json",
            Body=body,
        )
        return response["Body"].read(), response.get("ContentType")

    def _client_error(self, error: ClientError) -> Exception:
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        name = self.endpoint_name
        if code in _UNAVAILABLE_CODES or status in (429, 503):
            return EndpointUnavailableError(
                f"The endpoint {name!r} is busy or not ready ({code or status}) after "
                f"{RETRY_ATTEMPTS} attempts. Try again later."
            )
        original = error.response.get("OriginalStatusCode", "")
        if status == 413 or (code == "ModelError" and original == 413):
            return _PayloadRejectedError(
                f"The endpoint {name!r} rejected the request as too large."
            )
        if status in (406, 415) or (code == "ModelError" and original in (406, 415)):
            return ConfigurationError(
                f"The endpoint {name!r} rejected the content type (HTTP {original or status}); "
                "it must accept text/csv and answer application/json."
            )
        if code == "ModelError":
            return EndpointError(
                f"The model behind endpoint {name!r} failed on the request (ModelError, model "
                f"status {original or 'unknown'}). Check that the inputs and their order match "
                "the model's training columns."
            )
        if code == "ValidationError" and "not found" in str(error).lower():
            return EndpointUnavailableError(
                f"The endpoint {name!r} was not found. Check ENDPOINT_NAME and the endpoint's "
                "status in SageMaker."
            )
        return EndpointError(f"The endpoint {name!r} returned an error ({code or status}).")
