"""Alerting: the encrypted SNS topic that alarms and the scoring function publish to."""

from __future__ import annotations

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.config import AlertingSettings

# The KMS actions that SNS performs with the caller's permissions when a message is
# published to an encrypted topic.
PUBLISH_KMS_ACTIONS = ["kms:GenerateDataKey", "kms:Decrypt"]


class Alerting(Construct):
    """SNS topic encrypted with its own KMS key, TLS-only, with an optional e-mail subscription.

    CloudWatch alarms in this account may publish to the topic. Other publishers need
    `grant_publish`, which covers both the topic and the key.
    """

    def __init__(self, scope: Construct, construct_id: str, *, settings: AlertingSettings) -> None:
        super().__init__(scope, construct_id)

        # Key: rotated yearly. Deleting the stack schedules the key for deletion, which KMS
        # carries out after a 30-day waiting period.
        self.key = kms.Key(
            self,
            "TopicKey",
            description="Encrypts the anomaly-detection alert topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )

        # CloudWatch alarm actions publish as the cloudwatch.amazonaws.com service, which
        # needs the key policy to allow it and the topic policy below to let it publish.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToUseKey",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=PUBLISH_KMS_ACTIONS,
                resources=["*"],  # in a key policy, "*" is this key
            )
        )

        # Topic: enforce_ssl adds a statement that denies every request without TLS.
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name="Anomaly detection alerts",
            master_key=self.key,
            enforce_ssl=True,
        )
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:"
                        f"{Aws.ACCOUNT_ID}:alarm:*"
                    },
                },
            )
        )

        # Subscription: SNS e-mails a confirmation link, and nothing is delivered until
        # the recipient follows it.
        if settings.alert_email is not None:
            self.topic.add_subscription(subscriptions.EmailSubscription(settings.alert_email))

    def grant_publish(self, grantee: iam.IGrantable) -> None:
        """Allow `grantee` to publish to this topic only, including the KMS permissions."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["sns:Publish"], resources=[self.topic.topic_arn])
        )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=PUBLISH_KMS_ACTIONS, resources=[self.key.key_arn])
        )
