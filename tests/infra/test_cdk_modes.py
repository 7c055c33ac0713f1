"""Templates of the other configurations: existing endpoint, serverless, API key."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match, Template

pytestmark = pytest.mark.cdk

SAGEMAKER_TYPES = (
    "AWS::SageMaker::Model",
    "AWS::SageMaker::EndpointConfig",
    "AWS::SageMaker::Endpoint",
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
)


def flat(value) -> str:
    return json.dumps(value, sort_keys=True)


def alarm(synthesis, prefix: str) -> dict:
    return next(
        resource["Properties"]
        for logical_id, resource in synthesis.resources("AWS::CloudWatch::Alarm").items()
        if logical_id.startswith(f"Monitoring{prefix}")
    )


# --- existing endpoint ------------------------------------------------------------------


@pytest.fixture(scope="module")
def existing(synthesized):
    return synthesized("existing_endpoint")


def test_existing_endpoint_creates_no_sagemaker_resources(existing):
    for resource_type in SAGEMAKER_TYPES:
        assert existing.resources(resource_type) == {}, resource_type
    role_ids = existing.resources("AWS::IAM::Role")
    assert not [logical_id for logical_id in role_ids if "ExecutionRole" in logical_id]


def test_existing_endpoint_grant_uses_lowercase_arn(existing):
    statements = [
        statement
        for policy in existing.resources("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Action"] == "sagemaker:InvokeEndpoint"
    ]

    assert len(statements) == 1
    resource = flat(statements[0]["Resource"])
    assert resource.endswith(':endpoint/canvas-motor-endpoint"]]}')
    assert "Canvas-Motor-Endpoint" not in resource


def test_existing_endpoint_name_in_environment_and_alarms(existing):
    function = existing.only("AWS::Lambda::Function")

    assert function["Environment"]["Variables"]["ENDPOINT_NAME"] == "Canvas-Motor-Endpoint"
    assert {"Name": "EndpointName", "Value": "Canvas-Motor-Endpoint"} in alarm(
        existing, "EndpointErrorsAlarm"
    )["Dimensions"]
    assert existing.template["Outputs"]["EndpointName"]["Value"] == "Canvas-Motor-Endpoint"


def test_existing_endpoint_stack_is_region_agnostic(existing):
    method = existing.only("AWS::ApiGateway::Method")

    assert '{"Ref": "AWS::Region"}' in flat(method["Integration"]["Uri"])


def test_email_subscription_when_address_given(existing):
    Template.from_json(existing.template).has_resource_properties(
        "AWS::SNS::Subscription",
        {
            "Protocol": "email",
            "Endpoint": "ops@example.com",
            "TopicArn": {"Ref": Match.string_like_regexp("AlertingTopic")},
        },
    )


def test_alarm_m_of_n_from_cli_strings(existing):
    anomaly = alarm(existing, "AnomalyAlarm")

    assert anomaly["EvaluationPeriods"] == 4
    assert anomaly["DatapointsToAlarm"] == 3


# --- serverless -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def serverless(synthesized):
    return synthesized("serverless")


def test_serverless_variant_has_no_instances(serverless):
    variant = serverless.only("AWS::SageMaker::EndpointConfig")["ProductionVariants"][0]

    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 3072, "MaxConcurrency": 10}
    assert "InstanceType" not in variant
    assert "InitialInstanceCount" not in variant


def test_serverless_has_no_autoscaling(serverless):
    assert serverless.resources("AWS::ApplicationAutoScaling::ScalableTarget") == {}
    assert serverless.resources("AWS::ApplicationAutoScaling::ScalingPolicy") == {}
    assert len(serverless.resources("AWS::SageMaker::Endpoint")) == 1


def test_baseline_keeps_its_state_in_a_table(serverless):
    table = serverless.only("AWS::DynamoDB::Table")
    function = serverless.only("AWS::Lambda::Function")
    variables = function["Environment"]["Variables"]

    assert table["KeySchema"] == [{"AttributeName": "stream", "KeyType": "HASH"}]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}
    assert variables["BASELINE"] == "600"
    assert variables["STATE_TABLE"]["Ref"].startswith("ScoringApiBaselineState")


def test_baseline_table_grants_function_only(serverless):
    statements = [
        statement
        for logical_id, policy in serverless.resources("AWS::IAM::Policy").items()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "dynamodb" in flat(statement["Action"])
    ]

    assert len(statements) == 1
    assert statements[0]["Action"] == ["dynamodb:GetItem", "dynamodb:PutItem"]
    assert statements[0]["Resource"][0]["Fn::GetAtt"][0].startswith("ScoringApiBaselineState")
    roles = [
        logical_id
        for logical_id, policy in serverless.resources("AWS::IAM::Policy").items()
        if "dynamodb" in flat(policy["Properties"]["PolicyDocument"])
    ]
    assert all(role.startswith("ScoringApiFunctionRole") for role in roles)


def test_asset_id_adds_metric_dimension(serverless):
    anomaly = alarm(serverless, "AnomalyAlarm")
    function = serverless.only("AWS::Lambda::Function")

    assert anomaly["Dimensions"] == [
        {"Name": "asset", "Value": "press-07"},
        {"Name": "service", "Value": "anomaly-detector"},
    ]
    assert function["Environment"]["Variables"]["ASSET_ID"] == "press-07"


def test_no_data_alarm_treats_missing_as_breaching(serverless):
    no_data = alarm(serverless, "NoDataAlarm")

    assert no_data["MetricName"] == "Rows"
    assert no_data["Statistic"] == "Sum"
    assert no_data["Period"] == 3600
    assert no_data["Threshold"] == 1
    assert no_data["ComparisonOperator"] == "LessThanThreshold"
    assert no_data["TreatMissingData"] == "breaching"
    assert no_data["OKActions"] == no_data["AlarmActions"]


# --- API key ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_key(synthesized):
    return synthesized("api_key")


def test_api_key_mode_requires_key_and_usage_plan(api_key):
    template = Template.from_json(api_key.template)

    template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {"HttpMethod": "POST", "AuthorizationType": "NONE", "ApiKeyRequired": True},
    )
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {
            "Throttle": {"RateLimit": 10, "BurstLimit": 20},
            "ApiStages": [Match.object_like({"Stage": {"Ref": Match.any_value()}})],
        },
    )
    template.resource_count_is("AWS::ApiGateway::ApiKey", 1)
    template.resource_count_is("AWS::ApiGateway::UsagePlanKey", 1)
    assert "ApiKeyId" in api_key.template["Outputs"]


def test_stream_state_false_keeps_no_table(api_key):
    variables = api_key.only("AWS::Lambda::Function")["Environment"]["Variables"]

    assert api_key.resources("AWS::DynamoDB::Table") == {}
    assert "STATE_TABLE" not in variables


def test_function_options_from_context(api_key):
    function = api_key.only("AWS::Lambda::Function")
    parameters = api_key.template["Parameters"]

    assert function["ReservedConcurrentExecutions"] == 5
    assert function["Architectures"] == ["arm64"]
    assert function["Runtime"] == "python3.12"
    layer_names = [parameters[layer["Ref"]]["Default"] for layer in function["Layers"]]
    assert layer_names == [
        "/aws/service/aws-sdk-pandas/3.16.1/py3.12/arm64/layer-arn",
        "/aws/service/powertools/python/arm64/python3.12/3.37.0",
    ]


def test_account_logging_role_can_be_skipped(api_key):
    assert api_key.resources("AWS::ApiGateway::Account") == {}
