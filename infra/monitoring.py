"""Monitoring: alarms that notify the alert topic, and the operations dashboard."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.config import StackConfig
from infra.model_endpoint import ModelEndpoint

MICROSECONDS_PER_MILLISECOND = 1000


class Monitoring(Construct):
    """CloudWatch alarms on anomalies, errors and latency, and one dashboard.

    The anomaly alarm watches `MaxScore`, the largest rolling-mean absolute residual that
    the scoring function reports per request, in the target's unit. It goes to ALARM
    when MaxScore exceeds the scoring threshold in M of N periods. The function already
    sends an SNS warning for each anomalous event within a request. This alarm adds the
    view across requests: it fires when scores stay high over several periods, which a
    single request's rolling window cannot see.

    Missing data counts as not breaching for every alarm except the optional no-data
    alarm: no requests means no evidence of an anomaly, no errors and no latency.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        topic: sns.ITopic,
        function: lambda_.IFunction,
        api: apigateway.RestApi,
        endpoint: ModelEndpoint,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._endpoint = endpoint
        self._function = function
        self._api = api
        self._period = Duration.minutes(config.alerting.alarm_period_minutes)
        self._notify = actions.SnsAction(topic)
        self.alarms: list[cloudwatch.Alarm] = []

        self._add_alarms()
        self.dashboard = self._create_dashboard()

    def scoring_metric(self, metric_name: str, statistic: str) -> cloudwatch.Metric:
        """Return a metric that the scoring function publishes through Powertools EMF."""
        scoring = self._config.scoring
        dimensions = {"service": scoring.service_name}
        if scoring.asset_id is not None:
            dimensions["asset"] = scoring.asset_id
        return cloudwatch.Metric(
            namespace=scoring.metrics_namespace,
            metric_name=metric_name,
            dimensions_map=dimensions,
            statistic=statistic,
            period=self._period,
        )

    def _add_alarm(self, construct_id: str, **props) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(self, construct_id, **props)
        alarm.add_alarm_action(self._notify)
        alarm.add_ok_action(self._notify)
        self.alarms.append(alarm)
        return alarm

    def _add_alarms(self) -> None:
        alerting = self._config.alerting
        m_of_n = {
            "evaluation_periods": alerting.alarm_evaluation_periods,
            "datapoints_to_alarm": alerting.alarm_datapoints_to_alarm,
        }

        # Anomaly: MaxScore above the threshold in M of N periods.
        self.anomaly_alarm = self._add_alarm(
            "AnomalyAlarm",
            alarm_description=(
                f"MaxScore above the threshold {self._config.scoring.threshold:g} in "
                f"{alerting.alarm_datapoints_to_alarm} of {alerting.alarm_evaluation_periods} "
                f"periods of {alerting.alarm_period_minutes} min. Missing data (no requests) "
                "counts as not breaching."
            ),
            metric=self.scoring_metric("MaxScore", "Maximum"),
            threshold=self._config.scoring.threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            **m_of_n,
        )

        # Function errors: unhandled exceptions and timeouts. The handler rejects invalid
        # requests with 4xx responses, which Lambda does not count as errors.
        self._add_alarm(
            "FunctionErrorsAlarm",
            alarm_description="The scoring function failed (exception or timeout).",
            metric=self._function.metric_errors(statistic="Sum", period=self._period),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

        # Endpoint: 5xx errors from the model container, and slow models.
        self._add_alarm(
            "EndpointErrorsAlarm",
            alarm_description="The SageMaker endpoint returned 5xx errors.",
            metric=self._endpoint.metric(
                "Invocation5XXErrors", statistic="Sum", period=self._period
            ),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self._add_alarm(
            "ModelLatencyAlarm",
            alarm_description=(
                f"Average ModelLatency above {alerting.model_latency_alarm_ms} ms in "
                f"{alerting.alarm_datapoints_to_alarm} of {alerting.alarm_evaluation_periods} "
                "periods."
            ),
            # SageMaker reports ModelLatency in microseconds.
            metric=self._endpoint.metric("ModelLatency", statistic="Average", period=self._period),
            threshold=alerting.model_latency_alarm_ms * MICROSECONDS_PER_MILLISECOND,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            **m_of_n,
        )

        # No data: optional, for deployments where rows must arrive continuously.
        if alerting.no_data_alarm_minutes > 0:
            minutes = alerting.no_data_alarm_minutes
            self._add_alarm(
                "NoDataAlarm",
                alarm_description=f"No rows were scored in the last {minutes} min.",
                metric=self.scoring_metric("Rows", "Sum").with_(period=Duration.minutes(minutes)),
                threshold=1,
                comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
            )

    def _create_dashboard(self) -> cloudwatch.Dashboard:
        threshold = self._config.scoring.threshold
        dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{Stack.of(self).stack_name}-anomaly-detection",
            default_interval=Duration.hours(24),
        )

        # Row 1: anomaly scores and rows.
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Anomaly score (MaxScore) against the threshold",
                left=[self.scoring_metric("MaxScore", "Maximum")],
                left_annotations=[
                    cloudwatch.HorizontalAnnotation(value=threshold, label="threshold")
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Rows (received, scored, anomalous) and anomaly events",
                left=[
                    self.scoring_metric("Rows", "Sum"),
                    self.scoring_metric("ScoredRows", "Sum"),
                    self.scoring_metric("AnomalousRows", "Sum"),
                ],
                right=[self.scoring_metric("Events", "Sum")],
                width=12,
            ),
        )

        # Row 2: requests and errors along the path.
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Requests",
                left=[
                    self._api.metric_count(period=self._period),
                    self._function.metric_invocations(period=self._period),
                    self._endpoint.metric("Invocations", statistic="Sum", period=self._period),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Errors",
                left=[
                    self._api.metric_client_error(period=self._period),
                    self._api.metric_server_error(period=self._period),
                    self._function.metric_errors(period=self._period),
                    self._function.metric_throttles(period=self._period),
                    self._endpoint.metric(
                        "Invocation4XXErrors", statistic="Sum", period=self._period
                    ),
                    self._endpoint.metric(
                        "Invocation5XXErrors", statistic="Sum", period=self._period
                    ),
                ],
                width=8,
            ),
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=8),
        )

        # Row 3: latency, converted from microseconds to milliseconds for the endpoint.
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Endpoint latency (ms)",
                left=[
                    _microseconds_to_ms(
                        self._endpoint.metric("ModelLatency", statistic="p90", period=self._period),
                        "ModelLatency p90",
                        "model",
                    ),
                    _microseconds_to_ms(
                        self._endpoint.metric(
                            "OverheadLatency", statistic="p90", period=self._period
                        ),
                        "OverheadLatency p90",
                        "overhead",
                    ),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Function and API latency (ms)",
                left=[
                    self._function.metric_duration(statistic="p90", period=self._period),
                    self._api.metric_latency(statistic="p90", period=self._period),
                ],
                width=12,
            ),
        )
        return dashboard


def _microseconds_to_ms(
    metric: cloudwatch.Metric, label: str, metric_id: str
) -> cloudwatch.MathExpression:
    # Each metric in one graph needs its own id in the expression.
    return cloudwatch.MathExpression(
        expression=f"{metric_id} / {MICROSECONDS_PER_MILLISECOND}",
        using_metrics={metric_id: metric},
        label=label,
        period=metric.period,
    )
