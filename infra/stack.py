"""The anomaly-detection stack, composed of one construct per concern."""

from __future__ import annotations

import os

from aws_cdk import App, CfnOutput, Environment, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from infra.alerting import Alerting
from infra.config import StackConfig, load_config
from infra.model_endpoint import ModelEndpoint
from infra.monitoring import Monitoring
from infra.scoring_api import ScoringApi


class AnomalyDetectionStack(Stack):
    """SageMaker endpoint, scoring API, alert topic, alarms and dashboard."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: StackConfig, **kwargs
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config

        endpoint = ModelEndpoint(
            self, "ModelEndpoint", model=config.model, endpoint=config.endpoint
        )
        alerting = Alerting(self, "Alerting", settings=config.alerting)
        scoring = ScoringApi(
            self, "ScoringApi", config=config, endpoint=endpoint, alerting=alerting
        )
        monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            topic=alerting.topic,
            function=scoring.function,
            api=scoring.api,
            endpoint=endpoint,
        )

        CfnOutput(self, "ApiUrl", value=scoring.detect_url, description="POST CSV or JSON here")
        CfnOutput(
            self,
            "DetectInvokeArn",
            value=scoring.api.arn_for_execute_api(
                "POST", "/detect", scoring.api.deployment_stage.stage_name
            ),
            description="Resource for execute-api:Invoke in the callers' IAM policies",
        )
        CfnOutput(self, "EndpointName", value=endpoint.endpoint_name)
        CfnOutput(self, "TopicArn", value=alerting.topic.topic_arn)
        CfnOutput(self, "DashboardName", value=monitoring.dashboard.dashboard_name)
        if config.api.auth == "api_key":
            CfnOutput(
                self,
                "ApiKeyId",
                value=scoring.api_key.key_id,
                description="aws apigateway get-api-key --include-value --api-key <id>",
            )


def create_stack(app: App) -> AnomalyDetectionStack:
    """Read the app's context, add the stack to `app` and register the cdk-nag checks.

    The stack is deployed to the Region of the model package, because SageMaker creates
    models only from packages in its own Region. With an existing endpoint, the Region
    is the one the CDK CLI uses. Raises ConfigError for invalid context.
    """
    config = load_config(app.node.get_all_context())
    region = config.model.region or os.environ.get("CDK_DEFAULT_REGION")
    stack = AnomalyDetectionStack(
        app,
        config.stack_name,
        config=config,
        description="Anomaly detection for industrial machine data (SageMaker, Lambda, API)",
        env=Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=region),
    )
    # With findings of error level, cdk-nag makes synthesis fail and lists them.
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return stack
