"""Scoring API: the Lambda function that scores requests and the REST API in front of it."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from infra.alerting import Alerting
from infra.config import API_INTEGRATION_TIMEOUT_SECONDS, StackConfig
from infra.model_endpoint import ModelEndpoint
from infra.nag import acknowledge

# The directory that contains the package `anomaly_detector`. The package is pure Python
# and is zipped as it is, without bundling, so synth needs no Docker.
LAMBDA_CODE_DIR = Path(__file__).resolve().parents[1] / "lambda"
HANDLER = "anomaly_detector.handler.lambda_handler"
# Files under lambda/ that must not reach the deployment package. Packaging them would
# also change the asset hash between a clean clone and a developer's tree.
# Local-only modules (training, files, figures, CLI, local servers) stay out of the
# Lambda package; tests/test_lambda_imports.py checks that the handler never imports them.
LOCAL_ONLY_MODULES = [
    "anomaly_detector/batch.py",
    "anomaly_detector/cli.py",
    "anomaly_detector/evaluation.py",
    "anomaly_detector/local_model.py",
    "anomaly_detector/local_server.py",
    "anomaly_detector/plots.py",
    "anomaly_detector/openapi.json",
]
LAMBDA_CODE_EXCLUDE = [
    "**/__pycache__",
    "**/*.pyc",
    "*.egg-info",
    "**/.pytest_cache",
    *LOCAL_ONLY_MODULES,
]
STAGE_NAME = "v1"
DETECT_PATH = "detect"

_RUNTIMES = {"3.12": lambda_.Runtime.PYTHON_3_12, "3.13": lambda_.Runtime.PYTHON_3_13}
_ARCHITECTURES = {"x86_64": lambda_.Architecture.X86_64, "arm64": lambda_.Architecture.ARM_64}
_R = logs.RetentionDays
LOG_RETENTION = {
    1: _R.ONE_DAY, 3: _R.THREE_DAYS, 5: _R.FIVE_DAYS, 7: _R.ONE_WEEK, 14: _R.TWO_WEEKS,
    30: _R.ONE_MONTH, 60: _R.TWO_MONTHS, 90: _R.THREE_MONTHS, 120: _R.FOUR_MONTHS,
    150: _R.FIVE_MONTHS, 180: _R.SIX_MONTHS, 365: _R.ONE_YEAR, 400: _R.THIRTEEN_MONTHS,
    545: _R.EIGHTEEN_MONTHS, 731: _R.TWO_YEARS, 1096: _R.THREE_YEARS, 1827: _R.FIVE_YEARS,
    2192: _R.SIX_YEARS, 2557: _R.SEVEN_YEARS, 2922: _R.EIGHT_YEARS, 3288: _R.NINE_YEARS,
    3653: _R.TEN_YEARS,
}  # fmt: skip


class ScoringApi(Construct):
    """`POST /detect` on a regional REST API, served by the scoring Lambda function.

    Callers authenticate with SigV4 (IAM) by default, or with an API key and usage plan.
    API Gateway checks that the request has a Content-Type header and that a JSON body
    is an object or an array. The function checks everything else.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        endpoint: ModelEndpoint,
        alerting: Alerting,
    ) -> None:
        super().__init__(scope, construct_id)
        self.state_table = self._create_state_table() if config.scoring.stream_state else None
        self.function = self._create_function(config, endpoint, alerting)
        self.api, self.detect_method = self._create_api(config)
        self.detect_url = self.api.url_for_path(f"/{DETECT_PATH}")

    def _create_function(
        self, config: StackConfig, endpoint: ModelEndpoint, alerting: Alerting
    ) -> lambda_.Function:
        settings = config.function

        # Role: its own log group, this endpoint and this topic, nothing else.
        log_group = logs.LogGroup(
            self,
            "FunctionLogs",
            retention=LOG_RETENTION[settings.log_retention_days],
            removal_policy=RemovalPolicy.RETAIN,
        )
        role = iam.Role(
            self,
            "FunctionRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Scoring function: invoke one endpoint, publish to one topic",
        )
        log_group.grant_write(role)
        endpoint.grant_invoke(role)
        alerting.grant_publish(role)

        environment = config.scoring_environment()
        environment["TOPIC_ARN"] = alerting.topic.topic_arn
        if self.state_table is not None:
            self.state_table.grant(role, "dynamodb:GetItem", "dynamodb:PutItem")
            environment["STATE_TABLE"] = self.state_table.table_name

        function = lambda_.Function(
            self,
            "Function",
            description="Scores machine data against the SageMaker model and flags anomalies",
            runtime=_RUNTIMES[settings.python_version],
            architecture=_ARCHITECTURES[settings.architecture],
            handler=HANDLER,
            code=lambda_.Code.from_asset(str(LAMBDA_CODE_DIR), exclude=LAMBDA_CODE_EXCLUDE),
            layers=self._managed_layers(config),
            memory_size=settings.memory_mb,
            timeout=Duration.seconds(settings.timeout_seconds),
            reserved_concurrent_executions=settings.reserved_concurrency,
            environment=environment,
            role=role,
            log_group=log_group,
        )
        acknowledge(
            function,
            "AwsSolutions-L1",
            "The runtime is a context choice between Python 3.12 and 3.13, the versions "
            "the handler is tested with and for which the AWS SDK for pandas and "
            "Powertools layers are pinned.",
        )
        return function

    def _create_state_table(self) -> dynamodb.Table:
        """Create the table of each stream's state (window tail and baseline): one item per
        machine.

        A lost state is rebuilt from the next rows, so the table is deleted with the stack.
        The construct keeps the id it had when the table held the baseline alone, so that an
        update does not replace the table of a stack deployed then.
        """
        return dynamodb.Table(
            self,
            "BaselineState",
            partition_key=dynamodb.Attribute(name="stream", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=RemovalPolicy.DESTROY,
        )

    def _managed_layers(self, config: StackConfig) -> list[lambda_.ILayerVersion]:
        """Return the AWS SDK for pandas and Powertools layers for the function's runtime.

        AWS publishes each layer's ARN as a public SSM parameter per version, Python
        version and architecture. The template reads them as CloudFormation parameters,
        so CloudFormation resolves them at deploy time and synth needs no AWS access.
        """
        settings = config.function
        python = settings.python_version
        arch = settings.architecture
        parameter_names = {
            "SdkForPandasLayer": (
                f"/aws/service/aws-sdk-pandas/{settings.sdk_pandas_layer_version}"
                f"/py{python}/{arch}/layer-arn"
            ),
            "PowertoolsLayer": (
                f"/aws/service/powertools/python/{arch}/python{python}"
                f"/{settings.powertools_layer_version}"
            ),
        }
        return [
            lambda_.LayerVersion.from_layer_version_arn(
                self, layer_id, ssm.StringParameter.value_for_string_parameter(self, name)
            )
            for layer_id, name in parameter_names.items()
        ]

    def _create_api(self, config: StackConfig) -> tuple[apigateway.RestApi, apigateway.Method]:
        settings = config.api

        # Stage: throttling, JSON access logs, and execution logs without request data.
        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=LOG_RETENTION[config.function.log_retention_days],
            removal_policy=RemovalPolicy.RETAIN,
        )
        api = apigateway.RestApi(
            self,
            "Api",
            description="Anomaly detection on machine data: POST /detect",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            # No binary media types: the handler reads CSV and JSON bodies as text, and
            # base64 would inflate them by a third towards Lambda's 6 MB payload limit.
            cloud_watch_role=settings.create_cloudwatch_role,
            deploy_options=apigateway.StageOptions(
                stage_name=STAGE_NAME,
                throttling_rate_limit=settings.throttle_rate_limit,
                throttling_burst_limit=settings.throttle_burst_limit,
                logging_level=apigateway.MethodLoggingLevel.INFO,
                data_trace_enabled=False,
                metrics_enabled=True,
                access_log_destination=apigateway.LogGroupLogDestination(access_logs),
                access_log_format=apigateway.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
            ),
        )
        if settings.create_cloudwatch_role:
            acknowledge(
                api,
                "AwsSolutions-IAM4",
                "API Gateway's account-level logging role uses the AWS managed policy "
                "AmazonAPIGatewayPushToCloudWatchLogs, the documented policy for it.",
                [
                    "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AmazonAPIGatewayPushToCloudWatchLogs"
                ],
            )
        acknowledge(
            api,
            "AwsSolutions-APIG3",
            "The API serves machine clients that sign requests with IAM (or carry an API "
            "key) and is throttled per stage. Associate an AWS WAF web ACL with the stage "
            "if it must face untrusted networks.",
        )

        # Request validation: a Content-Type header, and a JSON body that is an object or
        # an array. CSV bodies have no model, so API Gateway passes them unchecked.
        validator = api.add_request_validator(
            "RequestValidator", validate_request_body=True, validate_request_parameters=True
        )
        json_body = api.add_model(
            "JsonBody",
            content_type="application/json",
            schema=apigateway.JsonSchema(
                schema=apigateway.JsonSchemaVersion.DRAFT4,
                type=[apigateway.JsonSchemaType.OBJECT, apigateway.JsonSchemaType.ARRAY],
            ),
        )

        # Method: the integration waits 29 s, longer than the function's timeout.
        integration = apigateway.LambdaIntegration(
            self.function,
            proxy=True,
            timeout=Duration.seconds(API_INTEGRATION_TIMEOUT_SECONDS),
        )
        use_api_key = settings.auth == "api_key"
        method = api.root.add_resource(DETECT_PATH).add_method(
            "POST",
            integration,
            authorization_type=(
                apigateway.AuthorizationType.NONE
                if use_api_key
                else apigateway.AuthorizationType.IAM
            ),
            api_key_required=use_api_key,
            request_validator=validator,
            request_parameters={"method.request.header.Content-Type": True},
            request_models={"application/json": json_body},
        )
        acknowledge(
            method,
            "AwsSolutions-COG4",
            "Callers are machines that authenticate with IAM SigV4 or an API key, not "
            "users of a Cognito user pool.",
        )

        if use_api_key:
            self._add_usage_plan(api, settings.throttle_rate_limit, settings.throttle_burst_limit)
            acknowledge(
                method,
                "AwsSolutions-APIG4",
                "API key mode was chosen in the context: API Gateway rejects requests "
                "without a valid key, and the usage plan throttles each key.",
            )
        return api, method

    def _add_usage_plan(self, api: apigateway.RestApi, rate_limit: float, burst_limit: int):
        self.api_key = api.add_api_key("ApiKey", description="Key for POST /detect")
        plan = api.add_usage_plan(
            "UsagePlan",
            description="Throttles each API key of the anomaly-detection API",
            throttle=apigateway.ThrottleSettings(rate_limit=rate_limit, burst_limit=burst_limit),
            api_stages=[apigateway.UsagePlanPerApiStage(api=api, stage=api.deployment_stage)],
        )
        plan.add_api_key(self.api_key)
