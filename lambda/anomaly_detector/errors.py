"""Domain errors, each mapped to one HTTP status and a stable error code.

Messages are shown to the caller, so they say what was wrong and how to fix it, and never
contain request values beyond column names and row numbers.
"""

from __future__ import annotations


class DetectorError(Exception):
    """Base class: an error with an HTTP status and a machine-readable code."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(DetectorError):
    """The service is configured wrongly (environment variable, option or model card)."""

    status = 500
    code = "configuration_error"


class RequestError(DetectorError):
    """The request cannot be read: bad encoding, bad CSV or JSON, missing column, bad value."""

    status = 400
    code = "invalid_request"


class MissingColumnError(RequestError):
    code = "missing_column"


class InvalidValueError(RequestError):
    code = "invalid_value"


class EmptyRequestError(RequestError):
    code = "empty_request"


class PayloadTooLargeError(DetectorError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(DetectorError):
    status = 415
    code = "unsupported_media_type"


class NotFoundError(DetectorError):
    status = 404
    code = "not_found"


class MethodNotAllowedError(DetectorError):
    status = 405
    code = "method_not_allowed"


class EndpointError(DetectorError):
    """The model endpoint failed or returned something that cannot be used."""

    status = 502
    code = "endpoint_error"


class EndpointUnavailableError(EndpointError):
    """The endpoint is throttling, starting or unreachable: the caller may retry later."""

    status = 503
    code = "endpoint_unavailable"


class EndpointTimeoutError(EndpointError):
    """The endpoint did not respond in the time the API allows."""

    status = 504
    code = "endpoint_timeout"


class StateUnavailableError(DetectorError):
    """The baseline state store could not be read; the request may be sent again."""

    status = 503
    code = "state_unavailable"
