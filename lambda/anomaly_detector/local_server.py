"""The deployed topology on one machine: a local API and a local SageMaker-protocol endpoint.

``ApiServer`` turns each HTTP request into the API Gateway REST proxy event that the Lambda
handler receives, calls the same ``DetectionService``, and turns its result back into an HTTP
response. ``ModelEndpointServer`` serves a trained model directory on the SageMaker Runtime
route ``POST /endpoints/{name}/invocations`` (CSV in, JSON out), so the handler's boto3
client reaches it through ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``, as it would a real
endpoint. Both listen on 127.0.0.1 only. The Lambda never imports this module.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pandas as pd
from aws_lambda_powertools import Logger

from .handler import DetectionService

logger = Logger(service="anomaly-detector-local")

LOOPBACK = "127.0.0.1"
# API Gateway REST APIs accept request bodies of at most 10 MB.
API_GATEWAY_BODY_LIMIT = 10 * 1024 * 1024
# Max bytes of a rejected body that are read and discarded before the error response.
_DISCARD_LIMIT = 64 * 1024 * 1024
_TEXT_TYPES = ("text/", "application/json", "application/csv")


def openapi_document() -> bytes:
    """Return the OpenAPI 3 description of the API, shipped with the package."""
    return resources.files(__package__).joinpath("openapi.json").read_bytes()


class _QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "anomaly-detector-local"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        # Request lines are not logged: paths and queries may carry request data.
        pass

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        self._send(status, body)

    def _read_body(self, limit: int) -> bytes | None:
        length_text = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            self._error(411, "length_required", "Send the body with a Content-Length header.")
            return None
        try:
            length = int(length_text or 0)
        except ValueError:
            self.close_connection = True
            self._error(400, "invalid_request", "The Content-Length header is not a number.")
            return None
        if length > limit:
            self.close_connection = True
            self._discard_body(length)
            self._error(
                413,
                "payload_too_large",
                f"The request body is {length} bytes; the limit is {limit} bytes.",
            )
            return None
        return self.rfile.read(length) if length else b""

    def _discard_body(self, length: int) -> None:
        # A client that is still sending when the server responds and closes the connection
        # gets a connection reset instead of the response, so the body is read first.
        # NOTE: a body over _DISCARD_LIMIT is left unread, so its client may still see a reset.
        remaining = min(length, _DISCARD_LIMIT)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)


class ApiRequestHandler(_QuietHandler):
    """HTTP front of the Lambda handler: the routes and responses of the deployed API."""

    server: ApiServer

    def do_GET(self) -> None:  # noqa: N802
        # A GET may carry a body too. It is read first, because unread bytes on a kept-alive
        # connection would be parsed as the next request.
        body = self._read_body(API_GATEWAY_BODY_LIMIT)
        if body is None:
            return
        path = urlsplit(self.path).path
        if path == "/openapi.json":
            self._send(200, openapi_document())
        elif path == "/health":
            self._send(200, b'{"status":"ok"}')
        else:
            self._proxy(body)

    def do_POST(self) -> None:  # noqa: N802
        body = self._read_body(API_GATEWAY_BODY_LIMIT)
        if body is not None:
            self._proxy(body)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST  # noqa: N815

    def _proxy(self, body: bytes) -> None:
        event = self.proxy_event(body)
        started = time.monotonic()
        try:
            result = self.server.service.handle(event, _LocalContext(self.server.timeout_seconds))
        except Exception:
            logger.exception(
                "handler failed", extra={"request_id": event["requestContext"]["requestId"]}
            )
            self._error(500, "internal_error", "The server failed; see its log for the cause.")
            return
        response_body = result.get("body") or ""
        raw = (
            base64.b64decode(response_body)
            if result.get("isBase64Encoded")
            else response_body.encode()
        )
        headers = {
            k: v for k, v in (result.get("headers") or {}).items() if k.lower() != "content-type"
        }
        content_type = (result.get("headers") or {}).get("Content-Type", "application/json")
        self._send(result["statusCode"], raw, content_type, headers)
        logger.debug(
            "request answered",
            extra={
                "status": result["statusCode"],
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )

    def proxy_event(self, body: bytes) -> dict:
        """Build the API Gateway REST proxy event for this request."""
        parts = urlsplit(self.path)
        content_type = self.headers.get("Content-Type", "")
        is_text = content_type.lower().startswith(_TEXT_TYPES) and not self.headers.get(
            "Content-Encoding"
        )
        text = None
        if is_text:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        query = dict(parse_qsl(parts.query)) or None
        request_id = str(uuid.uuid4())
        return {
            "resource": parts.path,
            "path": parts.path,
            "httpMethod": self.command,
            "headers": dict(self.headers.items()),
            "queryStringParameters": query,
            "requestContext": {"requestId": request_id, "stage": "local"},
            "body": text if text is not None else base64.b64encode(body).decode("ascii"),
            "isBase64Encoded": text is None,
        }


class _LocalContext:
    """The part of the Lambda context the handler uses: the time left."""

    def __init__(self, timeout_seconds: float) -> None:
        self.deadline = time.monotonic() + timeout_seconds
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self.deadline - time.monotonic()) * 1000), 0)


# socketserver's default listen backlog of 5 resets connections when dozens of clients
# connect at once; 128 is the usual kernel default for somaxconn.
LISTEN_BACKLOG = 128


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self, service: DetectionService, port: int = 0, timeout_seconds: float = 28.0
    ) -> None:
        self.service = service
        self.timeout_seconds = timeout_seconds
        super().__init__((LOOPBACK, port), ApiRequestHandler)


class EndpointRequestHandler(_QuietHandler):
    """SageMaker Runtime ``InvokeEndpoint`` for a local model: CSV rows in, JSON out."""

    server: ModelEndpointServer

    def do_GET(self) -> None:  # noqa: N802
        if urlsplit(self.path).path == "/ping":
            self._send(200, b"")
        else:
            self._model_error(404, "Unknown route; POST to /endpoints/{name}/invocations.")

    def do_POST(self) -> None:  # noqa: N802
        # The body is read before any response is sent, so that an error response leaves no
        # unread bytes on a kept-alive connection.
        body = self._read_body(6_000_000)
        if body is None:
            return
        parts = urlsplit(self.path).path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "endpoints" or parts[2] != "invocations":
            self._model_error(404, "Unknown route; POST to /endpoints/{name}/invocations.")
            return
        if parts[1] != self.server.endpoint_name:
            self._aws_error(
                400, "ValidationError", f"Endpoint {parts[1]} of account 000000000000 not found."
            )
            return
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "text/csv":
            self._model_error(415, "This endpoint accepts text/csv only.")
            return
        try:
            rows = pd.read_csv(io.BytesIO(body), header=None, dtype=float)
            predictions = self.server.model.predict(
                rows.set_axis(self.server.model.card.inputs, axis=1)
            )
        except Exception as error:  # the model container answers any failure as a model error
            self._model_error(400, f"The model could not score the rows: {type(error).__name__}.")
            return
        document = {"predictions": [{"score": float(v)} for v in np.asarray(predictions)]}
        self._send(200, json.dumps(document).encode())

    def _aws_error(self, status: int, code: str, message: str, extra: dict | None = None) -> None:
        body = json.dumps({"message": message, **(extra or {})}).encode()
        self._send(status, body, headers={"x-amzn-ErrorType": code})

    def _model_error(self, original_status: int, message: str) -> None:
        # SageMaker answers 424 ModelError when the container returns an error status.
        self._aws_error(
            424,
            "ModelError",
            message,
            {"OriginalStatusCode": original_status, "OriginalMessage": message},
        )


class ModelEndpointServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, model, endpoint_name: str = "local-model", port: int = 0) -> None:
        self.model = model
        self.endpoint_name = endpoint_name
        super().__init__((LOOPBACK, port), EndpointRequestHandler)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_address[1]}"


def start_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    """Serve in a daemon thread; stop with ``server.shutdown()`` then ``server.server_close()``."""
    thread = threading.Thread(target=server.serve_forever, name=type(server).__name__, daemon=True)
    thread.start()
    return thread
