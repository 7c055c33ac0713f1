"""Template of the cdk.json configuration: model package, instances, IAM authorization."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Capture, Match, Template
from cdk_synth import cdk_json_context

from infra.config import API_INTEGRATION_TIMEOUT_SECONDS

pytestmark = pytest.mark.cdk

MODEL_PACKAGE_ARN = cdk_json_context()["model_package_arn"]


@pytest.fixture(scope="module")
def synthesis(synthesized):
    return synthesized("default")


@pytest.fixture(scope="module")
def template(synthesis) -> Template:
    return Template.from_json(synthesis.template)


def policy_statements(synthesis, role_prefix: str) -> list[dict]:
    """Return the statements of the inline policies attached to roles named `role_prefix`*."""
    statements = []
    for policy in synthesis.resources("AWS::IAM::Policy").values():
        roles = [role["Ref"] for role in policy["Properties"]["Roles"]]
        if any(role.startswith(role_prefix) for role in roles):
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def flat(value) -> str:
    """Render an intrinsic function as one string, for substring checks on ARNs."""
    return json.dumps(value, sort_keys=True)


# --- SageMaker ---------------------------------------------------------------------------


def test_model_uses_package_and_generated_name(template, synthesis):
    template.has_resource_properties(
        "AWS::SageMaker::Model",
        {"PrimaryContainer": {"ModelPackageName": MODEL_PACKAGE_ARN}},
    )
    assert "ModelName" not in synthesis.only("AWS::SageMaker::Model")


def test_endpoint_config_has_default_instances(template, synthesis):
    template.has_resource_properties(
        "AWS::SageMaker::EndpointConfig",
        {
            "ProductionVariants": [
                Match.object_like(
                    {
                        "VariantName": "AllTraffic",
                        "InstanceType": "ml.m5.large",
                        "InitialInstanceCount": 1,
                        "ModelName": {
                            "Fn::GetAtt": [Match.string_like_regexp("Model"), "ModelName"]
                        },
                    }
                )
            ]
        },
    )
    assert "EndpointConfigName" not in synthesis.only("AWS::SageMaker::EndpointConfig")


def test_endpoint_has_fixed_name_and_generated_config(template):
    template.has_resource_properties(
        "AWS::SageMaker::Endpoint",
        {
            "EndpointName": "anomaly-detector",
            "EndpointConfigName": {
                "Fn::GetAtt": [Match.string_like_regexp("EndpointConfig"), "EndpointConfigName"]
            },
        },
    )


def test_execution_role_has_no_managed_policies(synthesis):
    role = next(
        resource["Properties"]
        for logical_id, resource in synthesis.resources("AWS::IAM::Role").items()
        if logical_id.startswith("ModelEndpointExecutionRole")
    )

    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "sagemaker.amazonaws.com"
    }
    assert "ManagedPolicyArns" not in role


def test_execution_role_reads_only_canvas_prefix(synthesis):
    statements = {s["Sid"]: s for s in policy_statements(synthesis, "ModelEndpointExecutionRole")}

    assert set(statements) == {
        "ReadModelArtifacts",
        "ListModelArtifacts",
        "PullInferenceImage",
        "AuthenticateToEcr",
        "WriteEndpointLogs",
        "PutEndpointMetrics",
    }
    assert statements["ReadModelArtifacts"]["Action"] == "s3:GetObject"
    assert flat(statements["ReadModelArtifacts"]["Resource"]).endswith('"/Canvas/*"]]}')
    assert statements["ListModelArtifacts"]["Condition"] == {
        "StringLike": {"s3:prefix": ["Canvas/*"]}
    }
    assert statements["PutEndpointMetrics"]["Condition"] == {
        "StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}
    }
    for statement in statements.values():
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        for action in actions:
            assert not action.endswith(":*"), action
            assert not action.startswith("sagemaker:"), action


def test_model_waits_for_execution_policy(synthesis):
    model = next(iter(synthesis.resources("AWS::SageMaker::Model").values()))

    assert any(
        dependency.startswith("ModelEndpointExecutionRoleDefaultPolicy")
        for dependency in model["DependsOn"]
    )


def test_autoscaling_tracks_invocations_per_instance(template):
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {
            "ServiceNamespace": "sagemaker",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "MinCapacity": 1,
            "MaxCapacity": 2,
            "ResourceId": {
                "Fn::Join": [
                    "",
                    [
                        "endpoint/",
                        {"Fn::GetAtt": [Match.string_like_regexp("ModelEndpoint"), "EndpointName"]},
                        "/variant/AllTraffic",
                    ],
                ]
            },
            "RoleARN": {
                "Fn::Join": [
                    "",
                    Match.array_with(
                        [
                            Match.string_like_regexp(
                                "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint$"
                            )
                        ]
                    ),
                ]
            },
        },
    )
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": Match.object_like(
                {
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                    },
                    "TargetValue": 100,
                }
            ),
        },
    )


def test_autoscaling_creates_no_extra_role(synthesis):
    role_ids = synthesis.resources("AWS::IAM::Role")

    assert not [logical_id for logical_id in role_ids if "ScalableTarget" in logical_id]


# --- Lambda -----------------------------------------------------------------------------


def test_function_runtime_handler_and_code(template):
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Runtime": "python3.13",
            "Handler": "anomaly_detector.handler.lambda_handler",
            "Architectures": ["x86_64"],
            "MemorySize": 1024,
        },
    )


def test_function_timeout_below_api_timeout(synthesis):
    function = synthesis.only("AWS::Lambda::Function")
    method = synthesis.only("AWS::ApiGateway::Method")

    integration_seconds = method["Integration"]["TimeoutInMillis"] / 1000
    assert integration_seconds == API_INTEGRATION_TIMEOUT_SECONDS
    assert function["Timeout"] == 25
    assert function["Timeout"] < integration_seconds
    read_timeout = int(function["Environment"]["Variables"]["ENDPOINT_READ_TIMEOUT"])
    assert read_timeout < function["Timeout"]


def test_function_environment_from_context(template):
    topic = Capture()
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Environment": {
                "Variables": {
                    "ENDPOINT_NAME": "anomaly-detector",
                    "TARGET_COLUMN": "bearing_temperature",
                    "INPUT_COLUMNS": '["motor_speed", "torque", "ambient_temperature"]',
                    "TIMESTAMP_COLUMN": "timestamp",
                    "TIMEZONE": "UTC",
                    "THRESHOLD": "2.0",
                    "WINDOW": "5",
                    "MIN_DURATION": "1",
                    "MERGE_GAP": "0",
                    "METRICS_NAMESPACE": "AnomalyDetection",
                    "POWERTOOLS_METRICS_NAMESPACE": "AnomalyDetection",
                    "POWERTOOLS_SERVICE_NAME": "anomaly-detector",
                    "METRICS_MODE": "emf",
                    "MAX_REQUEST_BYTES": "5500000",
                    "ENDPOINT_READ_TIMEOUT": "20",
                    "POWERTOOLS_LOG_LEVEL": "INFO",
                    "TOPIC_ARN": topic,
                }
            }
        },
    )
    assert topic.as_object()["Ref"].startswith("AlertingTopic")


def test_default_keeps_stream_state_without_baseline(synthesis):
    table = synthesis.only("AWS::DynamoDB::Table")
    variables = synthesis.only("AWS::Lambda::Function")["Environment"]["Variables"]

    assert table["KeySchema"] == [{"AttributeName": "stream", "KeyType": "HASH"}]
    assert variables["STATE_TABLE"]["Ref"].startswith("ScoringApiBaselineState")
    assert "BASELINE" not in variables


def test_function_has_no_reserved_concurrency_by_default(synthesis):
    assert "ReservedConcurrentExecutions" not in synthesis.only("AWS::Lambda::Function")


def test_layers_resolve_from_public_ssm_parameters(synthesis):
    function = synthesis.only("AWS::Lambda::Function")
    parameters = synthesis.template["Parameters"]

    names = [parameters[layer["Ref"]] for layer in function["Layers"]]
    assert [name["Type"] for name in names] == ["AWS::SSM::Parameter::Value<String>"] * 2
    assert [name["Default"] for name in names] == [
        "/aws/service/aws-sdk-pandas/3.16.1/py3.13/x86_64/layer-arn",
        "/aws/service/powertools/python/x86_64/python3.13/3.37.0",
    ]


def test_function_role_invokes_only_this_endpoint(synthesis):
    statements = policy_statements(synthesis, "ScoringApiFunctionRole")
    by_action = {flat(statement["Action"]): statement for statement in statements}

    invoke = by_action['"sagemaker:InvokeEndpoint"']
    assert flat(invoke["Resource"]).endswith(':endpoint/anomaly-detector"]]}')
    publish = by_action['"sns:Publish"']
    assert publish["Resource"]["Ref"].startswith("AlertingTopic")
    kms = by_action['["kms:GenerateDataKey", "kms:Decrypt"]']
    assert kms["Resource"]["Fn::GetAtt"][0].startswith("AlertingTopicKey")
    logs = by_action['["logs:CreateLogStream", "logs:PutLogEvents"]']
    assert logs["Resource"]["Fn::GetAtt"][0].startswith("ScoringApiFunctionLogs")
    state = by_action['["dynamodb:GetItem", "dynamodb:PutItem"]']
    assert state["Resource"][0]["Fn::GetAtt"][0].startswith("ScoringApiBaselineState")
    assert len(statements) == 5
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert "*" not in flat(statement["Action"])


def test_function_role_has_no_managed_policies(synthesis):
    role = next(
        resource["Properties"]
        for logical_id, resource in synthesis.resources("AWS::IAM::Role").items()
        if logical_id.startswith("ScoringApiFunctionRole")
    )

    assert "ManagedPolicyArns" not in role


def test_function_logs_are_kept_and_expire(template):
    template.has_resource(
        "AWS::Logs::LogGroup",
        {"Properties": {"RetentionInDays": 30}, "DeletionPolicy": "Retain"},
    )


# --- API Gateway ------------------------------------------------------------------------


def test_detect_method_requires_iam_and_validation(template, synthesis):
    template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {
            "HttpMethod": "POST",
            "AuthorizationType": "AWS_IAM",
            "ApiKeyRequired": False,
            "RequestParameters": {"method.request.header.Content-Type": True},
            "RequestValidatorId": {"Ref": Match.string_like_regexp("RequestValidator")},
            "Integration": Match.object_like({"Type": "AWS_PROXY", "TimeoutInMillis": 29000}),
        },
    )
    template.has_resource_properties(
        "AWS::ApiGateway::RequestValidator",
        {"ValidateRequestBody": True, "ValidateRequestParameters": True},
    )
    template.has_resource_properties("AWS::ApiGateway::Resource", {"PathPart": "detect"})
    assert len(synthesis.resources("AWS::ApiGateway::Method")) == 1


def test_json_body_model_accepts_object_or_array(template):
    template.has_resource_properties(
        "AWS::ApiGateway::Model",
        {
            "ContentType": "application/json",
            "Schema": Match.object_like({"type": ["object", "array"]}),
        },
    )


def test_api_declares_no_text_binary_types(synthesis):
    api = synthesis.only("AWS::ApiGateway::RestApi")

    binary_types = api.get("BinaryMediaTypes", [])
    assert "text/csv" not in binary_types
    assert "application/json" not in binary_types
    assert "*/*" not in binary_types
    assert api["EndpointConfiguration"] == {"Types": ["REGIONAL"]}


def test_stage_throttles_and_logs(template):
    template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": "v1",
            "MethodSettings": [
                Match.object_like(
                    {
                        "HttpMethod": "*",
                        "ResourcePath": "/*",
                        "ThrottlingRateLimit": 10,
                        "ThrottlingBurstLimit": 20,
                        "LoggingLevel": "INFO",
                        "DataTraceEnabled": False,
                        "MetricsEnabled": True,
                    }
                )
            ],
            "AccessLogSetting": {
                "DestinationArn": {
                    "Fn::GetAtt": [Match.string_like_regexp("ScoringApiAccessLogs"), "Arn"]
                },
                "Format": Match.string_like_regexp('"requestId":"\\$context.requestId"'),
            },
        },
    )


def test_api_account_logging_role_is_created(synthesis):
    assert len(synthesis.resources("AWS::ApiGateway::Account")) == 1


def test_no_api_key_in_iam_mode(synthesis):
    assert synthesis.resources("AWS::ApiGateway::ApiKey") == {}
    assert synthesis.resources("AWS::ApiGateway::UsagePlan") == {}


# --- SNS --------------------------------------------------------------------------------


def test_topic_encrypted_with_rotated_key(template):
    template.has_resource_properties(
        "AWS::SNS::Topic",
        {"KmsMasterKeyId": {"Fn::GetAtt": [Match.string_like_regexp("AlertingTopicKey"), "Arn"]}},
    )
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_key_lets_cloudwatch_publish(template):
    template.has_resource_properties(
        "AWS::KMS::Key",
        {
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                            }
                        )
                    ]
                )
            }
        },
    )


def test_topic_policy_rejects_plain_http(template):
    template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Principal": "*",
                                "Action": "sns:Publish",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        ),
                        Match.object_like(
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                                "Action": "sns:Publish",
                            }
                        ),
                    ]
                )
            }
        },
    )


def test_no_subscription_without_email(synthesis):
    assert synthesis.resources("AWS::SNS::Subscription") == {}


# --- CloudWatch -------------------------------------------------------------------------


def alarms_by_prefix(synthesis) -> dict[str, dict]:
    return {
        logical_id.removeprefix("Monitoring").rstrip("0123456789ABCDEF"): resource["Properties"]
        for logical_id, resource in synthesis.resources("AWS::CloudWatch::Alarm").items()
    }


def test_anomaly_alarm_uses_threshold_m_of_n(synthesis):
    alarm = alarms_by_prefix(synthesis)["AnomalyAlarm"]

    assert alarm["Namespace"] == "AnomalyDetection"
    assert alarm["MetricName"] == "MaxScore"
    assert alarm["Statistic"] == "Maximum"
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "anomaly-detector"}]
    assert alarm["Threshold"] == 2.0
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["Period"] == 300
    assert alarm["EvaluationPeriods"] == 3
    assert alarm["DatapointsToAlarm"] == 2
    assert alarm["TreatMissingData"] == "notBreaching"


def test_every_alarm_notifies_topic_on_alarm_and_ok(synthesis):
    alarms = alarms_by_prefix(synthesis)

    assert set(alarms) == {
        "AnomalyAlarm",
        "FunctionErrorsAlarm",
        "EndpointErrorsAlarm",
        "ModelLatencyAlarm",
    }
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [{"Ref": alarm["AlarmActions"][0]["Ref"]}], name
        assert alarm["AlarmActions"][0]["Ref"].startswith("AlertingTopic"), name
        assert alarm["OKActions"] == alarm["AlarmActions"], name
        assert alarm["TreatMissingData"] == "notBreaching", name


def test_error_and_latency_alarms(synthesis):
    alarms = alarms_by_prefix(synthesis)
    endpoint_dimensions = [
        {"Name": "EndpointName", "Value": "anomaly-detector"},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]

    function_errors = alarms["FunctionErrorsAlarm"]
    assert function_errors["Namespace"] == "AWS/Lambda"
    assert function_errors["MetricName"] == "Errors"
    assert function_errors["Threshold"] == 1
    assert function_errors["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"

    endpoint_errors = alarms["EndpointErrorsAlarm"]
    assert endpoint_errors["Namespace"] == "AWS/SageMaker"
    assert endpoint_errors["MetricName"] == "Invocation5XXErrors"
    assert endpoint_errors["Dimensions"] == endpoint_dimensions

    latency = alarms["ModelLatencyAlarm"]
    assert latency["MetricName"] == "ModelLatency"
    assert latency["Statistic"] == "Average"
    assert latency["Threshold"] == 1_000_000  # 1000 ms in microseconds
    assert latency["Dimensions"] == endpoint_dimensions


def dashboard_widgets(synthesis) -> list[dict]:
    """Parse the dashboard body, with each CloudFormation reference replaced by "<ref>"."""
    body = synthesis.only("AWS::CloudWatch::Dashboard")["DashboardBody"]
    parts = body["Fn::Join"][1]
    text = "".join(part if isinstance(part, str) else "<ref>" for part in parts)
    return json.loads(text)["widgets"]


def test_dashboard_shows_score_against_threshold(synthesis):
    widgets = dashboard_widgets(synthesis)
    score = next(w for w in widgets if "MaxScore" in w["properties"].get("title", ""))

    assert synthesis.only("AWS::CloudWatch::Dashboard")["DashboardName"] == (
        "AnomalyDetector-anomaly-detection"
    )
    assert score["properties"]["metrics"][0][:2] == ["AnomalyDetection", "MaxScore"]
    assert score["properties"]["annotations"]["horizontal"] == [
        {"value": 2.0, "label": "threshold", "yAxis": "left"}
    ]


def test_dashboard_covers_rows_requests_errors_latency(synthesis):
    widgets = dashboard_widgets(synthesis)
    body = json.dumps(widgets)

    titles = [w["properties"].get("title") for w in widgets]
    assert titles == [
        "Anomaly score (MaxScore) against the threshold",
        "Rows (received, scored, anomalous) and anomaly events",
        "Requests",
        "Errors",
        "Alarms",
        "Endpoint latency (ms)",
        "Function and API latency (ms)",
    ]
    for metric in ("AnomalousRows", "Events", "Invocations", "Invocation5XXErrors", "5XXError"):
        assert f'"{metric}"' in body, metric
    assert "model / 1000" in body


# --- Outputs ----------------------------------------------------------------------------


def test_outputs_name_url_endpoint_topic_dashboard(template, synthesis):
    outputs = synthesis.template["Outputs"]

    for name in ("ApiUrl", "EndpointName", "TopicArn", "DashboardName", "DetectInvokeArn"):
        assert name in outputs, name
    assert outputs["EndpointName"]["Value"] == "anomaly-detector"
    assert flat(outputs["ApiUrl"]["Value"]).endswith('"/detect"]]}')
    assert outputs["TopicArn"]["Value"]["Ref"].startswith("AlertingTopic")
    assert outputs["DashboardName"]["Value"]["Ref"].startswith("MonitoringDashboard")
    template.has_output("ApiUrl", {"Description": Match.string_like_regexp("POST")})


def test_stack_region_follows_model_package(synthesis):
    method = synthesis.only("AWS::ApiGateway::Method")

    assert ":apigateway:us-east-1:" in flat(method["Integration"]["Uri"])
