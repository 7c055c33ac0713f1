"""Lambda handler: API Gateway REST proxy event in, JSON detection result out.

Routes: ``POST /detect`` with a CSV (``text/csv``) or JSON (``application/json``) body;
``?rows=all|anomalous|none`` chooses which result rows come back (default all). With a state
table (or a baseline in the local API), ``?stream=NAME`` names the machine whose earlier
rows the request continues (default ``default``): its window tail and its baseline; see
``state``.
Configuration comes from environment variables (see ``config.ServiceConfig.from_env``),
validated once at cold start.
"""

from __future__ import annotations

import base64
import binascii
import time
import traceback
import zlib
from typing import Any

import boto3
import pandas as pd
from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from .config import ServiceConfig
from .errors import (
    ConfigurationError,
    DetectorError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    RequestError,
    StateUnavailableError,
    UnsupportedMediaTypeError,
)
from .pipeline import Summary, check_finite_events, detect_chunk, events_to_dicts
from .predictors import Predictor, SageMakerPredictor, runtime_client_config
from .publishing import MetricsPublisher, publish_warning, to_json
from .reader import read_request
from .scoring import Scorer
from .state import (
    MAX_AHEAD,
    DynamoStreamStore,
    MemoryStreamStore,
    StoredStream,
    StreamStore,
    check_stream,
)

logger = Logger(service="anomaly-detector")

# Lambda rejects responses over 6 MB; the rest of the proxy response needs a little room.
MAX_RESPONSE_BYTES = 5_900_000
# Room for the body's keys and the summary's stream and baseline objects, which are added
# after the size check: each names the stream (at most 128 characters) and has numbers of
# at most about 25 characters.
RESPONSE_RESERVE_BYTES = 1000
# Time kept back from the Lambda deadline to build and return an error response.
DEADLINE_MARGIN_SECONDS = 2.0
ROW_CHOICES = ("all", "anomalous", "none")
# DynamoDB errors after which the same request may succeed; any other is a setup fault.
RETRYABLE_TABLE_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)

GZIP_MAGIC = b"\x1f\x8b"


class DetectionService:
    """The request path, with its clients and configuration built once per container."""

    def __init__(
        self,
        config: ServiceConfig,
        predictor: Predictor | None = None,
        runtime_client: Any = None,
        sns_client: Any = None,
        cloudwatch_client: Any = None,
        stream_store: StreamStore | None = None,
    ) -> None:
        self.config = config
        self.runtime = runtime_client
        if predictor is None and runtime_client is None:
            self.runtime = boto3.client(
                "sagemaker-runtime", config=runtime_client_config(config.read_timeout_seconds)
            )
        self.predictor = predictor
        self.sns = sns_client
        if self.sns is None and config.topic_arn:
            self.sns = boto3.client("sns")
        if cloudwatch_client is None and config.metrics_mode == "cloudwatch":
            cloudwatch_client = boto3.client("cloudwatch")
        self.metrics = MetricsPublisher(config, cloudwatch_client)
        self.stream_store = stream_store
        if stream_store is None and config.state_table:
            self.stream_store = DynamoStreamStore(boto3.client("dynamodb"), config.state_table)
        elif stream_store is None and config.scoring.baseline is not None:
            # Without a table (the local API) the states last as long as the process.
            self.stream_store = MemoryStreamStore()

    def handle(self, event: dict, context: Any = None) -> dict:
        started = time.monotonic()
        request_id = getattr(context, "aws_request_id", None) or _request_id(event)
        try:
            result = self._detect(event, context, request_id)
        except DetectorError as error:
            _log_error(error, request_id)
            return error_response(error)
        except Exception as error:
            # A defect, not a request problem: answer with the fixed 500 body. The log keeps
            # the exception type and the stack frames but not the message, which may quote
            # request values.
            logger.error(
                "request failed unexpectedly",
                extra={
                    "request_id": request_id,
                    "error_type": type(error).__name__,
                    "stack": traceback.format_tb(error.__traceback__),
                },
            )
            return error_response(
                DetectorError("The service failed unexpectedly; the request id is in its log.")
            )
        logger.info(
            "request scored",
            extra={
                "request_id": request_id,
                "rows": result["summary"]["rows"],
                "scored_rows": result["summary"]["scored_rows"],
                "anomalous_rows": result["summary"]["anomalous_rows"],
                "events": result["summary"]["events"],
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        return result["response"]

    def _detect(self, event: dict, context: Any, request_id: str | None) -> dict:
        # check: the route and the method
        # Match the request path, not the resource template, because behind a greedy
        # /{proxy+} resource the template never ends in /detect.
        path = event.get("path") or event.get("resource") or ""
        if not path.rstrip("/").endswith("/detect"):
            raise NotFoundError(f"No route {path!r}. POST rows to /detect.")
        if (event.get("httpMethod") or "").upper() != "POST":
            raise MethodNotAllowedError("Use POST to send rows to /detect.")

        # check: the body is present, decodable and within the size limit
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        body = self._body(event, headers)
        query = event.get("queryStringParameters") or {}
        rows_choice = (query.get("rows") or "all").lower()
        if rows_choice not in ROW_CHOICES:
            raise RequestError(
                f"Query parameter rows must be one of {ROW_CHOICES}, got {rows_choice!r}."
            )

        # read, predict, score
        scoring = self.config.scoring
        # The timestamp column needs no string dtype: ISO times are read as text anyway, and
        # parse_timestamps rejects numbers there with the row. Skipping the dtype saves ~10 %.
        frame = read_request(body, headers.get("content-type"))
        scorer = Scorer(scoring)
        stream, stored = None, None
        if self.stream_store is not None:
            stream = check_stream(query.get("stream"))
            stored = self._load_stream(stream, request_id)
            if stored is not None:
                scorer.baseline = stored.state
                scorer.carry_window(stored.tail, stored.events, stored.last_time)
        summary = Summary(threshold=scoring.threshold)
        predictor = self.predictor or SageMakerPredictor(
            self.runtime,
            self.config.endpoint_name,
            max_payload_bytes=self.config.max_payload_bytes,
            deadline=_deadline(context),
        )
        rows = detect_chunk(frame, scoring, predictor, scorer, summary, keep=rows_choice)
        found = scorer.finish()
        events = events_to_dicts(found)
        check_finite_events(events, scoring.target)
        for event, record in zip(found, events, strict=True):
            # Without stream state no later request extends an event.
            record["ongoing"] = event.ongoing and stream is not None
            record["reported_before"] = event.reported
        _mark_earlier_rows(events)
        summary.events = len(events)
        summary_dict = summary.to_dict(scoring)
        if stream is not None:
            summary_dict["new_events"] = sum(not event.reported for event in found)
            _check_not_future(scorer.time_range[1])

        # check: the response fits, before anything is saved or published, so that the
        # retry that the error suggests neither counts its rows twice nor warns twice
        rows_json = rows.to_json(orient="records", double_precision=10)
        events_json = to_json(events)
        size = sum(_encoded_size(part) for part in (rows_json, events_json, to_json(summary_dict)))
        if size + RESPONSE_RESERVE_BYTES > MAX_RESPONSE_BYTES:
            raise PayloadTooLargeError(
                f"The response would be about {size} bytes, over Lambda's 6 MB response "
                "limit. Send fewer rows per request, or add ?rows=anomalous to return only "
                "the anomalous rows (events and summary always cover every row)."
            )
        if stream is not None:
            self._save_stream(stream, stored, scorer, summary_dict, request_id)

        # publish, then answer: a failed publish is logged but does not void the scores
        self._publish(summary_dict, [e for e in events if not e["reported_before"]], request_id)
        body_text = (
            '{"summary":' + to_json(summary_dict) + ',"events":' + events_json
            + ',"rows":' + rows_json + "}"
        )  # fmt: skip
        return {"summary": summary_dict, "response": _response(200, body_text)}

    def _load_stream(self, stream: str, request_id: str | None) -> StoredStream | None:
        """Read the stream's state. Return None when DynamoDB throttled or failed and there
        is no baseline: the rows are then scored with fresh windows, and nothing is saved."""
        scoring = self.config.scoring
        try:
            stored = self.stream_store.load(stream, scoring)
        except (ClientError, BotoCoreError) as error:
            fields = _aws_error_fields(error, request_id)
            logger.error("stream state not read", extra=fields)
            code = fields["error_code"]
            if isinstance(error, ClientError) and code not in RETRYABLE_TABLE_ERRORS:
                # A missing table, a wrong key or a missing permission: a retry cannot help.
                raise ConfigurationError(
                    f"The state table {self.config.state_table} cannot be used ({code}), "
                    "so the rows were not scored. Check STATE_TABLE, the table's key (the "
                    "string attribute stream) and the function's permissions."
                ) from error
            if scoring.baseline is None:
                return None  # fresh windows differ from carried ones in the first rows only
            raise StateUnavailableError(
                "The state of this stream could not be read from its table, so the rows "
                "were not scored. Send the request again later."
            ) from error
        if stored.restarted:
            logger.warning(
                "stream state restarted",
                extra={"request_id": request_id, "stream": stream, "reason": stored.restarted},
            )
        return stored

    def _save_stream(
        self,
        stream: str,
        stored: StoredStream | None,
        scorer: Scorer,
        summary: dict,
        request_id: str | None,
    ) -> None:
        """Save the state that the request ends with, unless its rows are not newer.

        Add the summary's ``stream`` object, which gives whether it was saved, and with a
        baseline its ``baseline`` object.
        """
        scoring = self.config.scoring
        first, last = scorer.time_range
        reason = None
        known = None if stored is None else stored.last_time
        tail, runs = scorer.window_tail(), scorer.carry_out()
        if stored is None:
            # The read failed: a save without the version read could overwrite a newer state.
            reason = "store_error"
        elif not (scorer.baseline.storable and tail.storable and runs.storable):
            # Values near the float limit would make every later request overflow.
            reason = "values_out_of_range"
        elif known is not None and first is not None and (first < known or last <= known):
            # A retry, or rows sent late: scored against the stored baseline, not stored.
            # Rows from the stored last time on are new if some are later: times may repeat.
            reason = "rows_not_newer"
        else:
            new = StoredStream(scorer.baseline, tail, runs, last_time=last or stored.last_time)
            try:
                saved = self.stream_store.save(stream, scoring, new, stored.version)
                reason = None if saved else "concurrent_update"
            except (ClientError, BotoCoreError) as error:
                fields = _aws_error_fields(error, request_id)
                logger.error("stream state not saved", extra=fields)
                if isinstance(error, ClientError) and fields["error_code"] not in (
                    RETRYABLE_TABLE_ERRORS
                ):
                    # Every later request would fail the same way, so fail with a 500.
                    raise ConfigurationError(
                        f"The state table {self.config.state_table} cannot be written "
                        f"({fields['error_code']}). Check STATE_TABLE, the table's key and the "
                        "function's permissions."
                    ) from error
                reason = "store_error"
        if reason is not None and reason != "store_error":
            logger.warning(
                "stream state not saved",
                extra={"request_id": request_id, "stream": stream, "reason": reason},
            )
        outcome: dict[str, Any] = {"saved": reason is None}
        if reason is not None:
            outcome["not_saved_because"] = reason
        if stored is not None and stored.restarted is not None:
            outcome["restarted_because"] = stored.restarted
        summary["stream"] = {
            "name": stream,
            "window_rows_carried": scorer.carried_rows,
            "window_rows_kept": len(tail),
            **outcome,
        }
        if scoring.baseline is not None:
            summary["baseline"] = {
                "stream": stream,
                "rows": scoring.baseline,
                "residuals_kept": len(scorer.baseline.residuals),
                "level": round(scorer.baseline.level, 10),
                **outcome,
            }

    def _publish(self, summary: dict, events: list[dict], request_id: str | None) -> None:
        try:
            self.metrics.publish(summary)
        except (ClientError, BotoCoreError) as error:
            logger.error("metrics not published", extra=_aws_error_fields(error, request_id))
        if not (events and self.sns is not None and self.config.topic_arn):
            return
        try:
            message_id = publish_warning(self.sns, self.config, summary, events)
        except (ClientError, BotoCoreError) as error:
            logger.error("warning not published", extra=_aws_error_fields(error, request_id))
            return
        logger.info(
            "warning published",
            extra={"request_id": request_id, "message_id": message_id, "events": len(events)},
        )

    def _body(self, event: dict, headers: dict[str, str]) -> bytes:
        raw = event.get("body")
        if raw is None or raw == "":
            raise RequestError(
                "The request body is empty. Send CSV with a header row (Content-Type: text/csv) "
                "or a JSON list of records (Content-Type: application/json)."
            )
        if event.get("isBase64Encoded"):
            try:
                body = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError) as error:
                raise RequestError(
                    "The request body is marked base64 but is not valid base64."
                ) from error
        else:
            # "surrogatepass" keeps an unpaired surrogate as bytes that the reader then
            # rejects as invalid UTF-8, naming its offset.
            body = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
        limit = self.config.max_request_bytes
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            body = _gunzip(body, limit)
        elif encoding not in ("", "identity"):
            raise UnsupportedMediaTypeError(
                f"Content-Encoding {encoding!r} is not supported; send the body uncompressed "
                "or gzip-compressed."
            )
        elif body.startswith(GZIP_MAGIC):
            raise UnsupportedMediaTypeError(
                "The body is gzip-compressed but the request has no Content-Encoding: gzip "
                "header. Add that header, or send the body uncompressed."
            )
        if len(body) > limit:
            raise PayloadTooLargeError(
                f"The request body is {len(body)} bytes; the limit is {limit} bytes. Split the "
                "rows over several requests."
            )
        return body


def _encoded_size(text: str) -> int:
    """Return the size of text inside the proxy response, where it is a JSON string.

    Lambda's limit applies to that size, in which each quote and backslash takes two bytes.
    The text is ASCII, as ``to_json`` and pandas write it.
    """
    return len(text) + text.count('"') + text.count("\\")


# Row fields of an event, each with the field that gives its time (its row without timestamps).
EVENT_ROWS = {"start_row": "start", "end_row": "end", "onset_row": "onset", "peak_row": None}


def _mark_earlier_rows(events: list[dict]) -> None:
    """Set the row fields that lie in an earlier request of the stream to null.

    Those rows are numbered below 0. The time fields keep their times, and without
    timestamps, where they give rows, they become null too.
    """
    for event in events:
        for row_field, time_field in EVENT_ROWS.items():
            if event[row_field] >= 0:
                continue
            event[row_field] = None
            if time_field is not None and not isinstance(event[time_field], str):
                event[time_field] = None


def _check_not_future(last: pd.Timestamp | None) -> None:
    """Reject rows far ahead of the clock. The stored state remembers the latest time and
    takes only later rows, so one row from a clock set years ahead would stop a stream."""
    now = pd.Timestamp.now(tz="UTC")
    if last is not None and last > now + MAX_AHEAD:
        raise RequestError(
            f"The rows reach {last.isoformat()}, more than a day after the service's clock "
            f"({now.isoformat(timespec='seconds')}). The stream's state "
            "remembers the latest time and takes only later rows, so the rows were not "
            "scored. Check the sender's clock and the time zone of the timestamps."
        )


def _gunzip(body: bytes, limit: int) -> bytes:
    # A gzip body may hold several members one after another (RFC 1952), as concatenated
    # .gz files do. Each member is decompressed in turn, and all share the one size limit.
    parts: list[bytes] = []
    size = 0
    remaining = body
    while remaining:
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            data = decompressor.decompress(remaining, limit - size + 1)
        except zlib.error as error:
            raise RequestError("The body is marked gzip but is not valid gzip data.") from error
        size += len(data)
        if size > limit or decompressor.unconsumed_tail:
            raise PayloadTooLargeError(
                f"The gzip body expands to more than the {limit}-byte limit. Split the rows "
                "over several requests."
            )
        if not decompressor.eof:
            raise RequestError("The gzip body is truncated.")
        parts.append(data)
        remaining = decompressor.unused_data
    return b"".join(parts)


def _deadline(context: Any):
    if context is None or not hasattr(context, "get_remaining_time_in_millis"):
        return None
    return lambda: context.get_remaining_time_in_millis() / 1000 - DEADLINE_MARGIN_SECONDS


def _request_id(event: dict) -> str | None:
    return (event.get("requestContext") or {}).get("requestId")


def _aws_error_fields(error: Exception, request_id: str | None) -> dict:
    code = None
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code")
    return {"request_id": request_id, "error_type": type(error).__name__, "error_code": code}


def _log_error(error: DetectorError, request_id: str | None) -> None:
    fields = {"request_id": request_id, "error_code": error.code, "status": error.status}
    if error.status >= 500:
        # Our messages name the endpoint but never request values. The cause is logged by
        # type and AWS error code only, because a model's own message may quote inputs.
        cause = error.__cause__
        if cause is not None:
            fields.update(cause_type=type(cause).__name__)
            if isinstance(cause, ClientError):
                fields.update(cause_code=cause.response.get("Error", {}).get("Code"))
        logger.error("request failed", extra={**fields, "error": error.message})
    else:
        logger.warning("request rejected", extra=fields)


def _response(status: int, body: str, headers: dict[str, str] | None = None) -> dict:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": body,
        "isBase64Encoded": False,
    }


def error_response(error: DetectorError) -> dict:
    """Map a domain error to its status and the fixed body ``{"error": {"code", "message"}}``."""
    return _response(
        error.status, to_json({"error": {"code": error.code, "message": error.message}})
    )


_service: DetectionService | None = None


def get_service() -> DetectionService:
    """Build the service from the environment once per container."""
    global _service
    if _service is None:
        _service = DetectionService(ServiceConfig.from_env())
    return _service


def lambda_handler(event: dict, context: Any) -> dict:
    """Entry point for API Gateway REST proxy events."""
    try:
        service = get_service()
    except ConfigurationError as error:
        logger.error("configuration invalid", extra={"error": error.message})
        return error_response(error)
    return service.handle(event, context)
