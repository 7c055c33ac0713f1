"""Stack configuration: every CDK context key, parsed and validated once.

Values come from `cdk.json` and from `-c key=value` on the command line. The CDK CLI
passes `-c` values as strings, so every parser accepts both the JSON type (number,
boolean, list) and its string form. An empty string or JSON null means "not set".
Errors name the key, the rejected value and the allowed values.
"""

from __future__ import annotations

import json
import math
import re
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# A versioned model package: arn:<partition>:sagemaker:<region>:<account>:model-package/<group>/<n>
MODEL_PACKAGE_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):sagemaker:(?P<region>[a-z]{2}(-[a-z]+)+-\d):\d{12}:"
    r"model-package/[A-Za-z0-9](-*[A-Za-z0-9]){0,62}/(?P<version>[1-9]\d*)$"
)
# SageMaker names of endpoints and production variants.
SAGEMAKER_NAME = re.compile(r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
S3_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")
STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
EMAIL_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
LAYER_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
# Characters that CloudWatch allows in namespaces. Names starting with "AWS/" are reserved.
METRICS_NAMESPACE = re.compile(r"^[A-Za-z0-9._/#-][A-Za-z0-9._/#: -]{0,254}$")
SERVICE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
# Rolling window or minimum duration: a row count ("5") or a pandas time span ("5min").
ROW_COUNT = re.compile(r"^[1-9]\d*$")
TIME_SPAN = re.compile(r"^[1-9]\d*(ms|s|min|h|D)$")
SPAN_SECONDS = {"ms": 0.001, "s": 1, "min": 60, "h": 3600, "D": 86400}
# Far longer than any useful window or event setting, and within what pandas can hold in the
# function (about 106,751 days).
MAX_SPAN_SECONDS = 365 * 86400
# Lower-case snake case is reserved for this project's keys, so a misspelt key is an error.
# CDK's own keys contain "@", ":" or "-" and are not checked.
PROJECT_KEY = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)+$")

LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)  # fmt: skip
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# API Gateway REST APIs end an integration after 29 s by default, so the function must
# return before that for the caller to get the function's own error response.
API_INTEGRATION_TIMEOUT_SECONDS = 29
# Rows of a residual baseline: the same limits as the function's (anomaly_detector.config).
MIN_BASELINE_ROWS = 30
MAX_BASELINE_ROWS = 20_000
# Lambda's limit for a synchronous invocation payload, request and response alike.
LAMBDA_PAYLOAD_LIMIT_BYTES = 6_291_456
# Lambda's limit for all environment variables of a function together.
LAMBDA_ENVIRONMENT_LIMIT_BYTES = 4096
# Room kept for TOPIC_ARN, which the stack adds and whose length is known only at deploy.
TOPIC_ARN_RESERVE_BYTES = 300
# The same for STATE_TABLE with stream state: a DynamoDB table name has at most 255 characters.
STATE_TABLE_RESERVE_BYTES = 11 + 255

# Defaults of every key that has one. cdk.json repeats them as a complete example, and a
# test checks that both agree. The model, the columns and the threshold have no default.
DEFAULTS: dict[str, Any] = {
    "stack_name": "AnomalyDetector",
    # model
    "model_package_arn": "",
    "existing_endpoint_name": "",
    "endpoint_name": "anomaly-detector",
    "variant_name": "AllTraffic",
    "model_data_bucket": "",
    "model_data_prefix": "Canvas/",
    "model_data_kms_key_arn": "",
    # endpoint
    "endpoint_mode": "instance",
    "instance_type": "ml.m5.large",
    "initial_instance_count": 1,
    "autoscaling_enabled": True,
    "autoscaling_min_instances": 1,
    "autoscaling_max_instances": 2,
    "autoscaling_target_invocations": 100,
    "serverless_memory_mb": 2048,
    "serverless_max_concurrency": 5,
    # scoring
    "timestamp_column": "",
    "timezone": "UTC",
    "window": "5",
    "min_duration": "1",
    "merge_gap": "0",
    "baseline_rows": 0,
    "stream_state": True,
    "asset_id": "",
    "metrics_namespace": "AnomalyDetection",
    "service_name": "anomaly-detector",
    "max_request_bytes": 5_500_000,
    "endpoint_read_timeout_seconds": 20,
    "log_level": "INFO",
    # Lambda function
    "lambda_python_version": "3.13",
    "lambda_architecture": "x86_64",
    "lambda_memory_mb": 1024,
    "lambda_timeout_seconds": 25,
    "lambda_reserved_concurrency": None,
    "sdk_pandas_layer_version": "3.16.1",
    "powertools_layer_version": "3.37.0",
    "log_retention_days": 30,
    # API
    "api_auth": "iam",
    "api_throttle_rate_limit": 10,
    "api_throttle_burst_limit": 20,
    "api_cloudwatch_role": True,
    # alerting
    "alert_email": "",
    "alarm_period_minutes": 5,
    "alarm_evaluation_periods": 3,
    "alarm_datapoints_to_alarm": 2,
    "model_latency_alarm_ms": 1000,
    "no_data_alarm_minutes": 0,
}
REQUIRED_KEYS = ("target_column", "input_columns", "threshold")
CONTEXT_KEYS = frozenset(DEFAULTS) | frozenset(REQUIRED_KEYS)


class ConfigError(ValueError):
    """Invalid or missing CDK context value. The message names the key and the fix."""


@dataclass(frozen=True)
class ModelSettings:
    """Model source, and the endpoint that serves the model."""

    model_package_arn: str | None
    existing_endpoint_name: str | None
    created_endpoint_name: str
    variant_name: str
    model_data_bucket: str | None  # None: the SageMaker default bucket of the account
    model_data_prefix: str
    model_data_kms_key_arn: str | None

    @property
    def creates_endpoint(self) -> bool:
        return self.model_package_arn is not None

    @property
    def endpoint_name(self) -> str:
        """Name of the endpoint that the function invokes, in either mode."""
        if self.existing_endpoint_name is not None:
            return self.existing_endpoint_name
        return self.created_endpoint_name

    @property
    def region(self) -> str | None:
        """Region of the model package, where the stack must be deployed."""
        if self.model_package_arn is None:
            return None
        match = MODEL_PACKAGE_ARN.match(self.model_package_arn)
        assert match is not None  # checked when parsed
        return match.group("region")


@dataclass(frozen=True)
class EndpointSettings:
    """Capacity of an endpoint that the stack creates: instances or serverless."""

    mode: str  # "instance" or "serverless"
    instance_type: str
    initial_instance_count: int
    autoscaling_enabled: bool
    autoscaling_min_instances: int
    autoscaling_max_instances: int
    autoscaling_target_invocations: int  # invocations per instance per minute
    serverless_memory_mb: int
    serverless_max_concurrency: int

    @property
    def serverless(self) -> bool:
        return self.mode == "serverless"

    @property
    def uses_autoscaling(self) -> bool:
        return not self.serverless and self.autoscaling_enabled


@dataclass(frozen=True)
class ScoringSettings:
    """Detection settings that the Lambda handler reads from its environment."""

    target_column: str
    input_columns: tuple[str, ...]  # training order, target excluded
    timestamp_column: str | None
    timezone: str
    threshold: float  # in the target's unit
    window: str  # rows ("5") or a pandas time span ("5min")
    min_duration: str  # rows or a pandas time span
    merge_gap: str  # "0" (no merging), rows or a pandas time span
    baseline: int  # rows of the residual baseline; 0 for none
    # Keep each stream's window tail and baseline between requests, in a DynamoDB table.
    stream_state: bool
    asset_id: str | None
    metrics_namespace: str
    service_name: str
    max_request_bytes: int
    endpoint_read_timeout_seconds: int
    log_level: str


@dataclass(frozen=True)
class FunctionSettings:
    """Runtime, size and layers of the scoring Lambda function."""

    python_version: str  # "3.12" or "3.13"
    architecture: str  # "x86_64" or "arm64"
    memory_mb: int
    timeout_seconds: int
    reserved_concurrency: int | None
    sdk_pandas_layer_version: str
    powertools_layer_version: str  # a release such as "3.37.0", or "latest"
    log_retention_days: int


@dataclass(frozen=True)
class ApiSettings:
    """Authorization and throttling of the REST API."""

    auth: str  # "iam" or "api_key"
    throttle_rate_limit: float  # requests per second, steady state
    throttle_burst_limit: int  # requests
    create_cloudwatch_role: bool


@dataclass(frozen=True)
class AlertingSettings:
    """Alarm timing and the optional e-mail subscription."""

    alert_email: str | None
    alarm_period_minutes: int
    alarm_evaluation_periods: int
    alarm_datapoints_to_alarm: int
    model_latency_alarm_ms: int
    no_data_alarm_minutes: int  # 0: no alarm when rows stop arriving


@dataclass(frozen=True)
class StackConfig:
    """The whole validated configuration of one deployment."""

    stack_name: str
    model: ModelSettings
    endpoint: EndpointSettings
    scoring: ScoringSettings
    function: FunctionSettings
    api: ApiSettings
    alerting: AlertingSettings

    def scoring_environment(self) -> dict[str, str]:
        """Build the Lambda environment except TOPIC_ARN, which the stack adds."""
        scoring = self.scoring
        environment = {
            "ENDPOINT_NAME": self.model.endpoint_name,
            "TARGET_COLUMN": scoring.target_column,
            "INPUT_COLUMNS": json.dumps(list(scoring.input_columns)),
            "TIMEZONE": scoring.timezone,
            "THRESHOLD": repr(scoring.threshold),
            "WINDOW": scoring.window,
            "MIN_DURATION": scoring.min_duration,
            "MERGE_GAP": scoring.merge_gap,
            "METRICS_NAMESPACE": scoring.metrics_namespace,
            # Powertools reads its own variable when the handler passes no namespace.
            "POWERTOOLS_METRICS_NAMESPACE": scoring.metrics_namespace,
            "POWERTOOLS_SERVICE_NAME": scoring.service_name,
            "METRICS_MODE": "emf",
            "MAX_REQUEST_BYTES": str(scoring.max_request_bytes),
            "ENDPOINT_READ_TIMEOUT": str(scoring.endpoint_read_timeout_seconds),
            "POWERTOOLS_LOG_LEVEL": scoring.log_level,
        }
        if scoring.timestamp_column is not None:
            environment["TIMESTAMP_COLUMN"] = scoring.timestamp_column
        if scoring.asset_id is not None:
            environment["ASSET_ID"] = scoring.asset_id
        if scoring.baseline:
            environment["BASELINE"] = str(scoring.baseline)
        return environment


def load_config(context: Mapping[str, Any]) -> StackConfig:
    """Parse and validate the CDK context into a StackConfig.

    `context` is the whole context of the app, as `app.node.get_all_context()` returns
    it. Keys missing from it take their value from DEFAULTS. Raises ConfigError for the
    first invalid, missing or unknown key.
    """
    reader = _ContextReader(context)
    reader.reject_unknown_keys()

    config = StackConfig(
        stack_name=reader.text("stack_name", pattern=STACK_NAME, hint="letters, digits, '-'"),
        model=_read_model(reader),
        endpoint=_read_endpoint(reader),
        scoring=_read_scoring(reader),
        function=_read_function(reader),
        api=_read_api(reader),
        alerting=_read_alerting(reader),
    )
    _check_timeouts(config)
    _check_baseline_state(config)
    _check_environment_size(config)
    return config


def _read_model(reader: _ContextReader) -> ModelSettings:
    package_arn = reader.optional_text(
        "model_package_arn",
        pattern=MODEL_PACKAGE_ARN,
        hint="a versioned model package ARN such as "
        "arn:aws:sagemaker:us-east-1:123456789012:model-package/my-group/3",
    )
    existing_name = reader.optional_text(
        "existing_endpoint_name", pattern=SAGEMAKER_NAME, hint=_SAGEMAKER_NAME_HINT
    )

    # check: exactly one model source
    if (package_arn is None) == (existing_name is None):
        state = "both set" if package_arn else "both empty"
        raise ConfigError(
            "Context keys 'model_package_arn' and 'existing_endpoint_name' are "
            f"{state}. Set exactly one of them. To use an existing endpoint, clear the "
            "cdk.json example with -c model_package_arn= -c existing_endpoint_name=NAME."
        )

    return ModelSettings(
        model_package_arn=package_arn,
        existing_endpoint_name=existing_name,
        created_endpoint_name=reader.text(
            "endpoint_name", pattern=SAGEMAKER_NAME, hint=_SAGEMAKER_NAME_HINT
        ),
        variant_name=reader.text("variant_name", pattern=SAGEMAKER_NAME, hint=_SAGEMAKER_NAME_HINT),
        model_data_bucket=reader.optional_text(
            "model_data_bucket", pattern=S3_BUCKET_NAME, hint="an S3 bucket name"
        ),
        model_data_prefix=reader.text("model_data_prefix", allow_empty=True),
        model_data_kms_key_arn=reader.optional_text(
            "model_data_kms_key_arn", pattern=KMS_KEY_ARN, hint="a KMS key ARN"
        ),
    )


def _read_endpoint(reader: _ContextReader) -> EndpointSettings:
    settings = EndpointSettings(
        mode=reader.choice("endpoint_mode", ("instance", "serverless")),
        instance_type=reader.text(
            "instance_type", pattern=re.compile(r"^ml\.[a-z0-9-]+\.[a-z0-9]+$"), hint="ml.m5.large"
        ),
        initial_instance_count=reader.integer("initial_instance_count", 1, 100),
        autoscaling_enabled=reader.boolean("autoscaling_enabled"),
        autoscaling_min_instances=reader.integer("autoscaling_min_instances", 1, 100),
        autoscaling_max_instances=reader.integer("autoscaling_max_instances", 1, 100),
        autoscaling_target_invocations=reader.integer("autoscaling_target_invocations", 1, 100_000),
        # SageMaker serverless inference: 1024 to 6144 MB in 1 GB steps, 1 to 200 concurrent.
        serverless_memory_mb=reader.choice(
            "serverless_memory_mb", (1024, 2048, 3072, 4096, 5120, 6144)
        ),
        serverless_max_concurrency=reader.integer("serverless_max_concurrency", 1, 200),
    )

    # check: the autoscaling range contains the initial count
    if settings.uses_autoscaling:
        low, high = settings.autoscaling_min_instances, settings.autoscaling_max_instances
        if low > high:
            raise ConfigError(
                f"Context key 'autoscaling_min_instances' ({low}) is greater than "
                f"'autoscaling_max_instances' ({high}). Set the minimum at most the maximum."
            )
        if not low <= settings.initial_instance_count <= high:
            raise ConfigError(
                f"Context key 'initial_instance_count' ({settings.initial_instance_count}) "
                f"is outside the autoscaling range {low} to {high}. Set it within the range."
            )
    return settings


def _read_scoring(reader: _ContextReader) -> ScoringSettings:
    target = reader.required_text("target_column")
    inputs = reader.column_list("input_columns")
    timestamp = reader.optional_text("timestamp_column")
    window = reader.text("window", pattern=_WINDOW_PATTERN, hint=_WINDOW_HINT)
    min_duration = reader.text("min_duration", pattern=_WINDOW_PATTERN, hint=_WINDOW_HINT)
    merge_gap = reader.text("merge_gap", pattern=_GAP_PATTERN, hint=_GAP_HINT)

    # check: the model inputs exclude the target and the timestamp
    for key, column in (("target_column", target), ("timestamp_column", timestamp)):
        if column is not None and column in inputs:
            raise ConfigError(
                f"Context key 'input_columns' contains {column!r}, the {key}. The inputs "
                "are the model's training columns without the target and the timestamp."
            )

    # check: time spans need timestamps, and fit the function's time arithmetic
    for key, value in (
        ("window", window),
        ("min_duration", min_duration),
        ("merge_gap", merge_gap),
    ):
        span = TIME_SPAN.match(value)
        if span and timestamp is None:
            raise ConfigError(
                f"Context key {key!r} is the time span {value!r}, which needs timestamps. "
                "Set 'timestamp_column' or give the value as a row count such as '5'."
            )
        if span and int(value[: span.start(1)]) * SPAN_SECONDS[span.group(1)] > MAX_SPAN_SECONDS:
            raise ConfigError(
                f"Context key {key!r} is the time span {value!r}, longer than "
                f"{MAX_SPAN_SECONDS // 86400} days. Give a shorter span."
            )

    return ScoringSettings(
        target_column=target,
        input_columns=inputs,
        timestamp_column=timestamp,
        timezone=reader.timezone("timezone"),
        threshold=reader.positive_number("threshold"),
        window=window,
        min_duration=min_duration,
        merge_gap=merge_gap,
        baseline=_read_baseline(reader),
        stream_state=reader.boolean("stream_state"),
        asset_id=reader.optional_text(
            "asset_id", pattern=re.compile(r"^[\x20-\x7e]{1,255}$"), hint="printable ASCII"
        ),
        metrics_namespace=_read_namespace(reader),
        service_name=reader.text("service_name", pattern=SERVICE_NAME, hint="letters, digits, ._-"),
        max_request_bytes=reader.integer("max_request_bytes", 1, LAMBDA_PAYLOAD_LIMIT_BYTES),
        endpoint_read_timeout_seconds=reader.integer("endpoint_read_timeout_seconds", 1, 60),
        log_level=reader.choice("log_level", LOG_LEVELS),
    )


def _read_baseline(reader: _ContextReader) -> int:
    rows = reader.integer("baseline_rows", 0, MAX_BASELINE_ROWS)
    if 0 < rows < MIN_BASELINE_ROWS:
        raise ConfigError(
            f"Context key 'baseline_rows' is {rows}. Give 0 for no baseline, or from "
            f"{MIN_BASELINE_ROWS} to {MAX_BASELINE_ROWS} rows: a median over fewer would "
            "follow a fault."
        )
    return rows


def _read_namespace(reader: _ContextReader) -> str:
    namespace = reader.text(
        "metrics_namespace", pattern=METRICS_NAMESPACE, hint="letters, digits, ._/#:- and spaces"
    )
    if namespace.startswith("AWS/"):
        raise ConfigError(
            f"Context key 'metrics_namespace' is {namespace!r}, but namespaces starting "
            "with 'AWS/' are reserved for AWS services. Choose another namespace."
        )
    return namespace


def _read_function(reader: _ContextReader) -> FunctionSettings:
    powertools_version = reader.text("powertools_layer_version")
    if powertools_version != "latest" and not LAYER_VERSION.match(powertools_version):
        raise ConfigError(
            f"Invalid value {powertools_version!r} for context key "
            "'powertools_layer_version'. Expected a release such as '3.37.0' or 'latest'."
        )
    return FunctionSettings(
        python_version=reader.choice("lambda_python_version", ("3.12", "3.13")),
        architecture=reader.choice("lambda_architecture", ("x86_64", "arm64")),
        # The AWS SDK for pandas documentation warns that less than 512 MB may not suffice.
        memory_mb=reader.integer("lambda_memory_mb", 512, 10240),
        timeout_seconds=reader.integer(
            "lambda_timeout_seconds", 1, API_INTEGRATION_TIMEOUT_SECONDS - 1
        ),
        reserved_concurrency=reader.optional_integer("lambda_reserved_concurrency", 1, 10_000),
        sdk_pandas_layer_version=reader.text(
            "sdk_pandas_layer_version", pattern=LAYER_VERSION, hint="a release such as '3.16.1'"
        ),
        powertools_layer_version=powertools_version,
        log_retention_days=reader.choice("log_retention_days", LOG_RETENTION_DAYS),
    )


def _read_api(reader: _ContextReader) -> ApiSettings:
    return ApiSettings(
        auth=reader.choice("api_auth", ("iam", "api_key")),
        throttle_rate_limit=reader.positive_number("api_throttle_rate_limit", maximum=10_000),
        throttle_burst_limit=reader.integer("api_throttle_burst_limit", 1, 5000),
        create_cloudwatch_role=reader.boolean("api_cloudwatch_role"),
    )


def _read_alerting(reader: _ContextReader) -> AlertingSettings:
    settings = AlertingSettings(
        alert_email=reader.optional_text(
            "alert_email", pattern=EMAIL_ADDRESS, hint="an e-mail address such as ops@example.com"
        ),
        alarm_period_minutes=reader.integer("alarm_period_minutes", 1, 1440),
        alarm_evaluation_periods=reader.integer("alarm_evaluation_periods", 1, 1440),
        alarm_datapoints_to_alarm=reader.integer("alarm_datapoints_to_alarm", 1, 1440),
        model_latency_alarm_ms=reader.integer("model_latency_alarm_ms", 1, 600_000),
        no_data_alarm_minutes=reader.integer("no_data_alarm_minutes", 0, 1440),
    )

    # check: M of N with M <= N
    m, n = settings.alarm_datapoints_to_alarm, settings.alarm_evaluation_periods
    if m > n:
        raise ConfigError(
            f"Context key 'alarm_datapoints_to_alarm' ({m}) is greater than "
            f"'alarm_evaluation_periods' ({n}). An alarm needs M of N periods with M <= N."
        )

    # check: CloudWatch limits the evaluation range to one day for periods under an hour,
    # and to seven days otherwise
    period_seconds = settings.alarm_period_minutes * 60
    limit_seconds = 86_400 if period_seconds < 3600 else 604_800
    if period_seconds * n > limit_seconds:
        raise ConfigError(
            f"Context keys 'alarm_period_minutes' ({settings.alarm_period_minutes}) times "
            f"'alarm_evaluation_periods' ({n}) exceed CloudWatch's limit of "
            f"{limit_seconds // 60} minutes. Use fewer or shorter periods."
        )
    return settings


def _check_timeouts(config: StackConfig) -> None:
    read_timeout = config.scoring.endpoint_read_timeout_seconds
    function_timeout = config.function.timeout_seconds
    if read_timeout >= function_timeout:
        raise ConfigError(
            f"Context key 'endpoint_read_timeout_seconds' ({read_timeout}) must be less than "
            f"'lambda_timeout_seconds' ({function_timeout}), so that the function can "
            "return an error response before Lambda stops it."
        )


def _check_baseline_state(config: StackConfig) -> None:
    if config.scoring.baseline and not config.scoring.stream_state:
        raise ConfigError(
            f"Context key 'baseline_rows' is {config.scoring.baseline}, but 'stream_state' is "
            "false. A baseline goes on from one request to the next, so it needs the stream "
            "state table: set 'stream_state' to true, or 'baseline_rows' to 0."
        )


def _check_environment_size(config: StackConfig) -> None:
    environment = config.scoring_environment()
    size = sum(len(key.encode()) + len(value.encode()) for key, value in environment.items())
    size += TOPIC_ARN_RESERVE_BYTES
    if config.scoring.stream_state:
        size += STATE_TABLE_RESERVE_BYTES
    if size > LAMBDA_ENVIRONMENT_LIMIT_BYTES:
        raise ConfigError(
            f"The Lambda environment would need about {size} bytes, "
            f"more than Lambda's limit of {LAMBDA_ENVIRONMENT_LIMIT_BYTES}. Shorten the "
            "column names in 'input_columns' or the other scoring values."
        )


_SAGEMAKER_NAME_HINT = "1 to 63 letters, digits and '-', starting with a letter or digit"
_WINDOW_PATTERN = re.compile(f"{ROW_COUNT.pattern}|{TIME_SPAN.pattern}")
_WINDOW_HINT = "a row count such as '5' or a time span such as '5min' (units ms, s, min, h, D)"
_GAP_PATTERN = re.compile(f"^0$|{_WINDOW_PATTERN.pattern}")
_GAP_HINT = f"'0' (no merging), {_WINDOW_HINT}"


class _ContextReader:
    """Typed access to context values, with DEFAULTS for missing keys."""

    def __init__(self, context: Mapping[str, Any]) -> None:
        self._context = context

    def reject_unknown_keys(self) -> None:
        for key in self._context:
            if PROJECT_KEY.match(key) and key not in CONTEXT_KEYS:
                known = ", ".join(sorted(CONTEXT_KEYS))
                raise ConfigError(f"Unknown context key {key!r}. Known keys: {known}.")

    def _raw(self, key: str) -> Any:
        value = self._context.get(key, DEFAULTS.get(key))
        if isinstance(value, str):
            value = value.strip()
        if value == "" or value is None:
            return None
        return value

    def _invalid(self, key: str, value: Any, expected: str) -> ConfigError:
        if value is None:
            return ConfigError(
                f"Context key {key!r} is empty: expected {expected}. Give a value, or leave "
                "the key out of cdk.json and -c to use its default."
            )
        return ConfigError(f"Invalid value {value!r} for context key {key!r}: expected {expected}.")

    def optional_text(
        self, key: str, *, pattern: re.Pattern[str] | None = None, hint: str = ""
    ) -> str | None:
        value = self._raw(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._invalid(key, value, "a string")
        if pattern is not None and not pattern.match(value):
            raise self._invalid(key, value, hint)
        return value

    def text(
        self,
        key: str,
        *,
        pattern: re.Pattern[str] | None = None,
        hint: str = "",
        allow_empty: bool = False,
    ) -> str:
        value = self.optional_text(key, pattern=pattern, hint=hint)
        if value is None:
            if allow_empty:
                return ""
            raise ConfigError(f"Context key {key!r} is empty. Set it in cdk.json or with -c.")
        return value

    def required_text(self, key: str) -> str:
        value = self.optional_text(key)
        if value is None:
            raise ConfigError(f"Missing context key {key!r}. Set it in cdk.json or with -c.")
        return value

    def optional_integer(self, key: str, minimum: int, maximum: int) -> int | None:
        value = self._raw(key)
        if value is None:
            return None
        expected = f"an integer from {minimum} to {maximum}"
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            number = int(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            raise self._invalid(key, value, expected)
        if not minimum <= number <= maximum:
            raise self._invalid(key, value, expected)
        return number

    def integer(self, key: str, minimum: int, maximum: int) -> int:
        number = self.optional_integer(key, minimum, maximum)
        if number is None:
            raise ConfigError(f"Context key {key!r} is empty. Set it in cdk.json or with -c.")
        return number

    def positive_number(self, key: str, maximum: float = math.inf) -> float:
        value = self._raw(key)
        if value is None:
            raise ConfigError(f"Missing context key {key!r}. Set it in cdk.json or with -c.")
        expected = "a number greater than 0"
        if maximum != math.inf:
            expected += f" and at most {maximum:g}"
        if isinstance(value, bool):
            raise self._invalid(key, value, expected)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise self._invalid(key, value, expected) from None
        if not (math.isfinite(number) and 0 < number <= maximum):
            raise self._invalid(key, value, expected)
        return number

    def boolean(self, key: str) -> bool:
        value = self._raw(key)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise self._invalid(key, value, "true or false")

    def choice(self, key: str, allowed: Sequence[Any]) -> Any:
        value = self._raw(key)
        for option in allowed:
            if value == option or (isinstance(value, str) and value == str(option)):
                return option
        options = ", ".join(str(option) for option in allowed)
        raise self._invalid(key, value, f"one of {options}")

    def timezone(self, key: str) -> str:
        name = self.text(key)
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise self._invalid(key, name, "an IANA time zone such as 'UTC'") from None
        return name

    def column_list(self, key: str) -> tuple[str, ...]:
        """Read a list of column names: a JSON list, or a comma-separated string."""
        value = self._raw(key)
        expected = 'a non-empty list of column names, such as ["a","b"] or a,b'
        if value is None:
            raise ConfigError(f"Missing context key {key!r}: expected {expected}.")
        if isinstance(value, str):
            if value.startswith("["):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    raise self._invalid(key, value, expected) from None
            else:
                value = value.split(",")
        if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
            raise self._invalid(key, value, expected)

        names = tuple(name.strip() for name in value)
        if not names or any(not name for name in names):
            raise self._invalid(key, value, expected)
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConfigError(f"Context key {key!r} repeats the columns {duplicates}.")
        return names
