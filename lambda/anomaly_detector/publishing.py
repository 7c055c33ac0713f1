"""Publish per-request metrics (CloudWatch) and anomaly warnings (SNS).

Metrics go out as Embedded Metric Format through Powertools in Lambda, or through
``PutMetricData`` where no log-based extraction exists (the local API). Only finite numbers
are published; ``MaxScore`` is left out of a request that scored no row.
"""

from __future__ import annotations

import json
import math
from typing import Any

from aws_lambda_powertools.metrics import Metrics, MetricUnit

from .config import ServiceConfig
from .scoring import describe_direction, describe_inputs

SUBJECT_LIMIT = 99  # SNS subjects are at most 100 ASCII characters
# SNS rejects messages over 256 KiB. The body lists at most this many events, each line
# about 200 bytes, and counts the rest.
MAX_LISTED_EVENTS = 50


def request_metrics(summary: dict) -> dict[str, tuple[float, str]]:
    """Return metric name -> (value, unit) for one request, leaving out non-finite values."""
    metrics = {
        "Rows": (summary["rows"], "Count"),
        "ScoredRows": (summary["scored_rows"], "Count"),
        "AnomalousRows": (summary["anomalous_rows"], "Count"),
        # With stream state, an event that goes on over several requests counts once.
        "Events": (summary.get("new_events", summary["events"]), "Count"),
    }
    max_score = summary.get("max_score")
    if max_score is not None and math.isfinite(max_score):
        metrics["MaxScore"] = (max_score, "None")
    return {name: (float(v), unit) for name, (v, unit) in metrics.items() if math.isfinite(v)}


def metric_dimensions(config: ServiceConfig) -> dict[str, str]:
    dimensions = {"service": config.service_name}
    if config.asset_id:
        dimensions["asset"] = config.asset_id
    return dimensions


class MetricsPublisher:
    """Publish request metrics in the configured mode: ``emf``, ``cloudwatch`` or ``off``."""

    def __init__(self, config: ServiceConfig, cloudwatch_client: Any = None) -> None:
        self.config = config
        self.cloudwatch = cloudwatch_client
        self.emf = None
        if config.metrics_mode == "emf":
            self.emf = Metrics(namespace=config.metrics_namespace, service=config.service_name)

    def publish(self, summary: dict) -> None:
        values = request_metrics(summary)
        if self.config.metrics_mode == "off" or not values:
            return
        if self.emf is not None:
            # Powertools keeps metrics on the class; start clean in case a publish failed.
            self.emf.clear_metrics()
            if self.config.asset_id:
                self.emf.add_dimension(name="asset", value=self.config.asset_id)
            for name, (value, unit) in values.items():
                self.emf.add_metric(name=name, unit=MetricUnit(unit), value=value)
            self.emf.flush_metrics()
            return
        dimensions = [{"Name": k, "Value": v} for k, v in metric_dimensions(self.config).items()]
        self.cloudwatch.put_metric_data(
            Namespace=self.config.metrics_namespace,
            MetricData=[
                {"MetricName": name, "Value": value, "Unit": unit, "Dimensions": dimensions}
                for name, (value, unit) in values.items()
            ],
        )


def warning_message(config: ServiceConfig, summary: dict, events: list[dict]) -> tuple[str, str]:
    """Compose the SNS subject (at most 99 ASCII characters) and body for a request's events."""
    asset = config.asset_id or config.service_name
    stream = summary.get("stream", {}).get("name")
    machine = asset if stream is None else f"{asset} ({stream})"
    peak = max(events, key=lambda e: e["peak_score"])
    subject = f"Anomaly on {machine}: {len(events)} event(s), peak score {peak['peak_score']:.3g}"
    subject = subject.encode("ascii", "replace").decode("ascii")[:SUBJECT_LIMIT]

    unit_note = "(scores are rolling means of |actual - predicted| in the target's unit)"
    lines = [
        f"Asset: {asset}",
        *([] if stream is None else [f"Stream: {stream}"]),
        f"Target: {config.scoring.target}",
        f"Events: {len(events)}; threshold {summary['threshold']:g} {unit_note}",
        f"Rows scored: {summary['scored_rows']} of {summary['rows']}",
        "",
    ]
    for number, event in enumerate(events[:MAX_LISTED_EVENTS], start=1):
        lines.append(
            f"Event {number}: {_when(event, 'start')} to {_when(event, 'end')}"
            f"{' (still going on)' if event.get('ongoing') else ''} (first alarming window "
            f"from {_when(event, 'onset')}), {event['rows']} rows, "
            f"peak score {event['peak_score']:.4g}, target {describe_direction(event)} prediction"
            f"{_mean_residual(event)}"
        )
        inputs = describe_inputs(event)
        if inputs:
            lines.append(f"  inputs against their normal values: {inputs}")
    if len(events) > MAX_LISTED_EVENTS:
        lines.append(
            f"... and {len(events) - MAX_LISTED_EVENTS} more events, listed in the API response."
        )
    return subject, "\n".join(lines)


def _when(event: dict, name: str) -> str:
    """Give an event's start, end or onset: its time, its row, or, without timestamps, that
    it lies in an earlier request of the stream."""
    value = event[name]
    return "a row of an earlier request" if value is None else str(value)


def _mean_residual(event: dict) -> str:
    """Give the mean residual and its ratio to the normal error, unless both sides mix in it."""
    if event["direction"] == "both":
        return ""
    ratio = event.get("target_deviation")
    ratio_text = "" if ratio is None else f", {abs(ratio):.1f} x the normal error"
    return f" (mean residual {event['mean_residual']:+.4g}{ratio_text})"


def publish_warning(
    sns_client: Any, config: ServiceConfig, summary: dict, events: list[dict]
) -> str:
    """Publish one warning for the request's events; return the SNS message id."""
    subject, body = warning_message(config, summary, events)
    attributes = {
        "asset": {"DataType": "String", "StringValue": config.asset_id or config.service_name},
        "events": {"DataType": "Number", "StringValue": str(len(events))},
    }
    if "stream" in summary:
        # A subscription filter policy can then route one machine's warnings.
        attributes["stream"] = {"DataType": "String", "StringValue": summary["stream"]["name"]}
    response = sns_client.publish(
        TopicArn=config.topic_arn, Subject=subject, Message=body, MessageAttributes=attributes
    )
    return response["MessageId"]


def to_json(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"), allow_nan=False)
