"""Context parsing: defaults, CLI string forms, and the errors for invalid values."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cdk_synth import REPO_ROOT, cdk_json_context

from infra.config import (
    CONTEXT_KEYS,
    DEFAULTS,
    REQUIRED_KEYS,
    ConfigError,
    StackConfig,
    load_config,
)

pytestmark = pytest.mark.cdk


def config_with(**overrides: Any) -> StackConfig:
    return load_config({**cdk_json_context(), **overrides})


def test_cdk_json_lists_every_key():
    context = cdk_json_context()
    project_keys = {key for key in context if key in CONTEXT_KEYS}

    assert project_keys == set(CONTEXT_KEYS)


# cdk.json sets these to the example model's values instead of the defaults.
EXAMPLE_KEYS = {"model_package_arn", "timestamp_column"}


@pytest.mark.parametrize("key", sorted(set(DEFAULTS) - EXAMPLE_KEYS))
def test_cdk_json_value_matches_default(key):
    assert cdk_json_context()[key] == DEFAULTS[key]


def test_cdk_json_config_parses():
    config = config_with()

    assert config.model.creates_endpoint
    assert config.model.region == "us-east-1"
    assert config.model.endpoint_name == "anomaly-detector"
    assert config.endpoint.instance_type == "ml.m5.large"
    assert config.endpoint.uses_autoscaling
    assert config.scoring.input_columns == ("motor_speed", "torque", "ambient_temperature")
    assert config.scoring.threshold == 2.0
    assert config.api.auth == "iam"
    assert config.alerting.alert_email is None


def test_config_is_frozen():
    config = config_with()

    with pytest.raises(AttributeError):
        config.stack_name = "Other"  # type: ignore[misc]


def test_cli_strings_parse_like_json_values():
    # `cdk synth -c key=value` passes every value as a string.
    config = config_with(
        initial_instance_count="2",
        autoscaling_max_instances="4",
        autoscaling_enabled="false",
        threshold="1.5",
        input_columns='["a", "b"]',
        api_throttle_rate_limit="2.5",
        lambda_reserved_concurrency="3",
        serverless_memory_mb="4096",
        log_retention_days="90",
    )

    assert config.endpoint.initial_instance_count == 2
    assert config.endpoint.autoscaling_max_instances == 4
    assert config.endpoint.autoscaling_enabled is False
    assert config.scoring.threshold == 1.5
    assert config.scoring.input_columns == ("a", "b")
    assert config.api.throttle_rate_limit == 2.5
    assert config.function.reserved_concurrency == 3
    assert config.endpoint.serverless_memory_mb == 4096
    assert config.function.log_retention_days == 90


def test_input_columns_accept_comma_separated():
    config = config_with(input_columns=" speed , torque ")

    assert config.scoring.input_columns == ("speed", "torque")


def test_empty_string_means_not_set():
    config = config_with(model_package_arn="", existing_endpoint_name="my-endpoint")

    assert config.model.model_package_arn is None
    assert not config.model.creates_endpoint
    assert config.model.endpoint_name == "my-endpoint"
    assert config.model.region is None


def test_missing_keys_take_defaults():
    context = {
        "model_package_arn": "arn:aws:sagemaker:eu-west-1:111122223333:model-package/g/7",
        "target_column": "t",
        "input_columns": ["a"],
        "threshold": 1,
    }

    config = load_config(context)

    assert config.model.region == "eu-west-1"
    assert config.endpoint.instance_type == DEFAULTS["instance_type"]
    assert config.function.timeout_seconds == DEFAULTS["lambda_timeout_seconds"]


def test_cdk_internal_keys_are_ignored():
    config = config_with(**{"@aws-cdk/core:newStyleStackSynthesis": True, "cli-telemetry": False})

    assert config.stack_name == "AnomalyDetector"


def test_scoring_environment_matches_handler_contract():
    config = config_with(asset_id="press-07")

    environment = config.scoring_environment()

    assert environment["ENDPOINT_NAME"] == "anomaly-detector"
    assert environment["TARGET_COLUMN"] == "bearing_temperature"
    assert json.loads(environment["INPUT_COLUMNS"]) == [
        "motor_speed",
        "torque",
        "ambient_temperature",
    ]
    assert environment["TIMESTAMP_COLUMN"] == "timestamp"
    assert float(environment["THRESHOLD"]) == 2.0
    assert environment["WINDOW"] == "5"
    assert environment["MIN_DURATION"] == "1"
    assert environment["MERGE_GAP"] == "0"
    assert environment["ASSET_ID"] == "press-07"
    assert environment["METRICS_MODE"] == "emf"
    assert environment["MAX_REQUEST_BYTES"] == "5500000"
    assert environment["ENDPOINT_READ_TIMEOUT"] == "20"
    assert "TOPIC_ARN" not in environment  # the stack adds it


def test_optional_scoring_variables_are_omitted_when_unset():
    environment = config_with(timestamp_column="", asset_id="").scoring_environment()

    assert "TIMESTAMP_COLUMN" not in environment
    assert "ASSET_ID" not in environment
    assert "BASELINE" not in environment


def test_baseline_rows_reach_function_env():
    from anomaly_detector import config as function_config
    from infra import config as stack_config

    assert config_with(baseline_rows="600").scoring_environment()["BASELINE"] == "600"
    assert stack_config.MIN_BASELINE_ROWS == function_config.MIN_BASELINE_ROWS
    assert stack_config.MAX_BASELINE_ROWS == function_config.MAX_BASELINE_ROWS


# Each case: overrides of cdk.json, then fragments the error message must contain.
INVALID_CASES = [
    (
        {"existing_endpoint_name": "my-endpoint"},
        ["model_package_arn", "existing_endpoint_name", "exactly one"],
    ),
    ({"model_package_arn": ""}, ["both empty", "exactly one"]),
    (
        {"model_package_arn": "arn:aws:sagemaker:us-east-1:123456789012:model-package-group/g"},
        ["model_package_arn", "versioned model package ARN"],
    ),
    (
        {"model_package_arn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/g"},
        ["model_package_arn", "versioned"],
    ),
    ({"endpoint_name": "bad_name"}, ["endpoint_name", "1 to 63 letters"]),
    ({"endpoint_mode": "async"}, ["endpoint_mode", "instance, serverless"]),
    ({"instance_type": "m5.large"}, ["instance_type", "ml.m5.large"]),
    ({"initial_instance_count": "0"}, ["initial_instance_count", "integer from 1 to 100"]),
    ({"initial_instance_count": "one"}, ["initial_instance_count", "integer from 1 to 100"]),
    ({"initial_instance_count": True}, ["initial_instance_count", "integer"]),
    ({"initial_instance_count": 3}, ["initial_instance_count", "outside the autoscaling range"]),
    (
        {"autoscaling_min_instances": 3, "autoscaling_max_instances": 2},
        ["autoscaling_min_instances", "autoscaling_max_instances"],
    ),
    ({"autoscaling_enabled": "yes"}, ["autoscaling_enabled", "true or false"]),
    (
        {"serverless_memory_mb": 1500},
        ["serverless_memory_mb", "1024, 2048, 3072, 4096, 5120, 6144"],
    ),
    ({"serverless_max_concurrency": 201}, ["serverless_max_concurrency", "1 to 200"]),
    ({"target_column": ""}, ["Missing context key 'target_column'"]),
    ({"input_columns": []}, ["input_columns", "non-empty list"]),
    ({"input_columns": "[1, 2]"}, ["input_columns", "column names"]),
    ({"input_columns": ["a", "a"]}, ["input_columns", "repeats", "'a'"]),
    ({"input_columns": ["bearing_temperature", "torque"]}, ["input_columns", "target_column"]),
    ({"input_columns": ["timestamp", "torque"]}, ["input_columns", "timestamp_column"]),
    ({"threshold": 0}, ["threshold", "greater than 0"]),
    ({"threshold": "nan"}, ["threshold", "greater than 0"]),
    ({"threshold": ""}, ["Missing context key 'threshold'"]),
    ({"window": "5 minutes"}, ["window", "'5min'"]),
    ({"window": "0"}, ["window", "row count"]),
    ({"window": "5min", "timestamp_column": ""}, ["window", "timestamp_column"]),
    ({"min_duration": "2h", "timestamp_column": ""}, ["min_duration", "timestamp_column"]),
    ({"merge_gap": "-1"}, ["merge_gap", "'0' (no merging)"]),
    ({"merge_gap": "1min", "timestamp_column": ""}, ["merge_gap", "timestamp_column"]),
    ({"merge_gap": "1000000D"}, ["merge_gap", "longer than 365 days"]),
    ({"window": "366D"}, ["window", "longer than 365 days"]),
    ({"baseline_rows": 10}, ["baseline_rows", "is 10", "from 30 to 20000"]),
    ({"baseline_rows": "20001"}, ["baseline_rows", "0 to 20000"]),
    ({"baseline_rows": "10min"}, ["baseline_rows", "integer"]),
    ({"baseline_rows": "600", "stream_state": "false"}, ["'stream_state' is false", "set"]),
    ({"stream_state": "maybe"}, ["stream_state"]),
    ({"stream_state": ""}, ["'stream_state' is empty", "true or false", "default"]),
    ({"timezone": "Mars/Olympus"}, ["timezone", "IANA time zone"]),
    ({"metrics_namespace": "AWS/Lambda"}, ["metrics_namespace", "reserved"]),
    ({"log_level": "VERBOSE"}, ["log_level", "DEBUG, INFO, WARNING, ERROR, CRITICAL"]),
    ({"max_request_bytes": 7_000_000}, ["max_request_bytes", "1 to 6291456"]),
    ({"lambda_python_version": "3.11"}, ["lambda_python_version", "3.12, 3.13"]),
    ({"lambda_architecture": "arm"}, ["lambda_architecture", "x86_64, arm64"]),
    ({"lambda_memory_mb": 256}, ["lambda_memory_mb", "512 to 10240"]),
    ({"lambda_timeout_seconds": 29}, ["lambda_timeout_seconds", "1 to 28"]),
    (
        {"lambda_timeout_seconds": 20, "endpoint_read_timeout_seconds": 20},
        ["endpoint_read_timeout_seconds", "less than", "lambda_timeout_seconds"],
    ),
    ({"lambda_reserved_concurrency": "0"}, ["lambda_reserved_concurrency", "1 to 10000"]),
    ({"sdk_pandas_layer_version": "latest"}, ["sdk_pandas_layer_version", "3.16.1"]),
    ({"powertools_layer_version": "v3"}, ["powertools_layer_version", "'latest'"]),
    ({"log_retention_days": 10}, ["log_retention_days", "one of 1, 3, 5"]),
    ({"api_auth": "cognito"}, ["api_auth", "iam, api_key"]),
    ({"api_throttle_rate_limit": -1}, ["api_throttle_rate_limit", "greater than 0"]),
    ({"alert_email": "ops-at-example"}, ["alert_email", "e-mail address"]),
    (
        {"alarm_datapoints_to_alarm": 4, "alarm_evaluation_periods": 3},
        ["alarm_datapoints_to_alarm", "alarm_evaluation_periods"],
    ),
    (
        {"alarm_period_minutes": 30, "alarm_evaluation_periods": 60},
        ["alarm_period_minutes", "alarm_evaluation_periods", "1440 minutes"],
    ),
    ({"no_data_alarm_minutes": -5}, ["no_data_alarm_minutes", "0 to 1440"]),
    ({"stack_name": "1stack"}, ["stack_name"]),
    ({"alert_emial": "ops@example.com"}, ["Unknown context key 'alert_emial'", "alert_email"]),
    ({"input_columns": [f"column_{i:04d}_with_a_long_name" for i in range(200)]}, ["4096"]),
]


@pytest.mark.parametrize(("overrides", "fragments"), INVALID_CASES)
def test_invalid_context_raises_named_error(overrides, fragments):
    with pytest.raises(ConfigError) as raised:
        config_with(**overrides)

    message = str(raised.value)
    for fragment in fragments:
        assert fragment in message


def test_required_keys_have_no_default():
    for key in REQUIRED_KEYS:
        assert key not in DEFAULTS


def test_readme_lists_every_context_key():
    document = (REPO_ROOT / "README.md").read_text()

    for key in sorted(CONTEXT_KEYS):
        assert f"| `{key}` |" in document, key
