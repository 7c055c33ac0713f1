"""Security properties of every synthesized configuration, checked on the template.

Callers must authenticate, each role may do only what its service does, and the topic is
encrypted and takes no publish request without TLS. The role checks are allow-lists: a
new action or a wider resource fails them until it is added here with its reason.
"""

from __future__ import annotations

import json

import pytest
from cdk_synth import CONFIGURATIONS, Synthesis

pytestmark = pytest.mark.cdk

NAMES = sorted(CONFIGURATIONS)


@pytest.fixture(scope="module", params=NAMES)
def synthesis(request, synthesized) -> Synthesis:
    return synthesized(request.param)


def flat(value) -> str:
    """Render an intrinsic function as one string, for substring checks on ARNs."""
    return json.dumps(value, sort_keys=True)


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def role_id_of_function(synthesis: Synthesis) -> str:
    function = synthesis.only("AWS::Lambda::Function")
    return function["Role"]["Fn::GetAtt"][0]


def role_statements(synthesis: Synthesis, role_id: str) -> list[dict]:
    """Every statement that applies to the role: its inline policies and attached ones."""
    role = synthesis.template["Resources"][role_id]["Properties"]
    assert "ManagedPolicyArns" not in role, "a managed policy grants more than the role uses"
    statements = [
        statement
        for policy in role.get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    for policy in synthesis.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"].get("Roles", []):
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    assert statements, f"no policy found for {role_id}"
    for statement in statements:
        assert statement["Effect"] == "Allow", statement
        assert "NotAction" not in statement, statement
        assert "NotResource" not in statement, statement
    return statements


def grants(statements: list[dict]) -> set[tuple[str, str]]:
    """Return (action, resource) pairs, the resource rendered as one string."""
    return {
        (action, flat(resource))
        for statement in statements
        for action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    }


# -- the API ---------------------------------------------------------------------------------


def test_every_method_requires_authentication(synthesis):
    methods = synthesis.resources("AWS::ApiGateway::Method")

    assert methods
    for logical_id, method in methods.items():
        properties = method["Properties"]
        iam = properties.get("AuthorizationType") == "AWS_IAM"
        api_key = properties.get("ApiKeyRequired") is True
        assert iam or api_key, f"{logical_id} accepts unauthenticated calls"


def test_api_key_mode_uses_key_on_every_method(synthesized):
    synthesis = synthesized("api_key")

    for method in synthesis.resources("AWS::ApiGateway::Method").values():
        assert method["Properties"]["ApiKeyRequired"] is True
    assert len(synthesis.resources("AWS::ApiGateway::UsagePlanKey")) == 1


def test_api_invokes_function_only_from_its_routes(synthesis):
    permissions = synthesis.resources("AWS::Lambda::Permission")

    assert permissions
    for permission in permissions.values():
        properties = permission["Properties"]
        assert properties["Principal"] == "apigateway.amazonaws.com"
        assert properties["Action"] == "lambda:InvokeFunction"
        source = flat(properties["SourceArn"])
        # The ARN names this API by reference and the POST /detect route, not any API.
        assert '"Ref": "ScoringApi' in source, source
        assert "/POST/detect" in source, source


def test_function_is_not_public(synthesis):
    assert not synthesis.resources("AWS::Lambda::Url")
    for permission in synthesis.resources("AWS::Lambda::Permission").values():
        assert permission["Properties"]["Principal"] != "*"


# -- the function's role ------------------------------------------------------------------------


def test_function_role_trusts_lambda_only(synthesis):
    role = synthesis.template["Resources"][role_id_of_function(synthesis)]["Properties"]
    [statement] = role["AssumeRolePolicyDocument"]["Statement"]

    assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"


def test_function_role_grants_only_what_it_uses(synthesis):
    role_id = role_id_of_function(synthesis)
    granted = grants(role_statements(synthesis, role_id))
    log_group = next(i for i in synthesis.resources("AWS::Logs::LogGroup") if "Function" in i)
    topic = next(iter(synthesis.resources("AWS::SNS::Topic")))
    key = next(iter(synthesis.resources("AWS::KMS::Key")))
    environment = synthesis.only("AWS::Lambda::Function")["Environment"]["Variables"]
    endpoint = flat(environment["ENDPOINT_NAME"]).strip('"')

    # Writes its own log stream, calls its endpoint, publishes warnings to its topic and
    # encrypts them with the topic's key. Metrics go out as log lines (EMF).
    allowed = {
        ("logs:CreateLogStream", flat({"Fn::GetAtt": [log_group, "Arn"]})),
        ("logs:PutLogEvents", flat({"Fn::GetAtt": [log_group, "Arn"]})),
        ("sns:Publish", flat({"Ref": topic})),
        ("kms:GenerateDataKey", flat({"Fn::GetAtt": [key, "Arn"]})),
        ("kms:Decrypt", flat({"Fn::GetAtt": [key, "Arn"]})),
    }
    # With a baseline: reads and writes the items of its state table.
    for table in synthesis.resources("AWS::DynamoDB::Table"):
        allowed |= {
            (action, flat({"Fn::GetAtt": [table, "Arn"]}))
            for action in ("dynamodb:GetItem", "dynamodb:PutItem")
        }
    invoke = {pair for pair in granted if pair[0] == "sagemaker:InvokeEndpoint"}
    assert granted - invoke == allowed
    [(_, resource)] = invoke
    assert resource.endswith(f':endpoint/{endpoint.lower()}"]]}}'), resource


def test_function_role_has_no_wildcard(synthesis):
    for action, resource in grants(role_statements(synthesis, role_id_of_function(synthesis))):
        assert "*" not in action, action
        assert resource != '"*"', action
        assert "endpoint/*" not in resource, resource


# -- the SageMaker execution role ---------------------------------------------------------------

# Actions that SageMaker needs to run the Canvas model, and why a resource may be open.
SAGEMAKER_ACTIONS = {
    "s3:GetObject": "reads the artifacts under the model's prefix",
    "s3:ListBucket": "lists that prefix only (condition on s3:prefix)",
    "ecr:BatchCheckLayerAvailability": "pulls the inference image",
    "ecr:BatchGetImage": "pulls the inference image",
    "ecr:GetDownloadUrlForLayer": "pulls the inference image",
    "ecr:GetAuthorizationToken": "has no resource-level permissions, so its resource is *",
    "logs:CreateLogGroup": "writes the endpoint's own log group",
    "logs:CreateLogStream": "writes the endpoint's own log group",
    "logs:DescribeLogStreams": "writes the endpoint's own log group",
    "logs:PutLogEvents": "writes the endpoint's own log group",
    "cloudwatch:PutMetricData": "has no resource-level permissions; a condition limits it",
}


def sagemaker_role_id(synthesis: Synthesis) -> str | None:
    for logical_id, role in synthesis.resources("AWS::IAM::Role").items():
        principal = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
        if principal == {"Service": "sagemaker.amazonaws.com"}:
            return logical_id
    return None


def test_sagemaker_role_grants_only_what_it_uses(synthesis):
    role_id = sagemaker_role_id(synthesis)
    if synthesis.resources("AWS::SageMaker::Model"):
        assert role_id is not None
    else:
        # With an existing endpoint the stack creates no model and no role for one.
        assert role_id is None
        return
    statements = role_statements(synthesis, role_id)
    actions = {action for statement in statements for action in as_list(statement["Action"])}

    assert actions == set(SAGEMAKER_ACTIONS)
    for statement in statements:
        for action in as_list(statement["Action"]):
            resource = flat(statement["Resource"])
            if action.startswith("s3:"):
                assert "/Canvas/*" in resource or "Condition" in statement, statement
            if action.startswith("logs:"):
                assert "/aws/sagemaker/Endpoints/" in resource, statement
            if resource == '"*"':
                assert action in ("ecr:GetAuthorizationToken", "cloudwatch:PutMetricData")
            if action == "cloudwatch:PutMetricData":
                assert "cloudwatch:namespace" in flat(statement["Condition"]), statement


def test_no_role_has_admin_rights(synthesis):
    for role_id in synthesis.resources("AWS::IAM::Role"):
        role = synthesis.template["Resources"][role_id]["Properties"]
        managed = flat(role.get("ManagedPolicyArns", []))
        assert "AdministratorAccess" not in managed
        assert "FullAccess" not in managed
    for policy in synthesis.resources("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert as_list(statement["Action"]) != ["*"], statement
            assert not any(action.endswith(":*") for action in as_list(statement["Action"]))


# -- the topic ---------------------------------------------------------------------------------


def test_topic_encrypted_with_own_rotated_key(synthesis):
    [(_, topic)] = synthesis.resources("AWS::SNS::Topic").items()
    [(key_id, key)] = synthesis.resources("AWS::KMS::Key").items()

    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert key["Properties"]["EnableKeyRotation"] is True


def test_topic_rejects_publish_without_tls(synthesis):
    [topic_id] = synthesis.resources("AWS::SNS::Topic")
    [policy] = synthesis.resources("AWS::SNS::TopicPolicy").values()

    assert {"Ref": topic_id} in policy["Properties"]["Topics"]
    denials = [
        statement
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Deny"
        and statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert denials, "no statement denies requests without TLS"
    for statement in denials:
        assert statement["Principal"] in ("*", {"AWS": "*"})
        assert "sns:Publish" in as_list(statement["Action"]) or as_list(statement["Action"]) == [
            "*"
        ]


def test_topic_allows_only_own_alarms(synthesis):
    [policy] = synthesis.resources("AWS::SNS::TopicPolicy").values()
    allows = [
        s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"
    ]

    for statement in allows:
        assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
        assert "aws:SourceAccount" in flat(statement["Condition"])
        assert ":alarm:*" in flat(statement["Condition"])
