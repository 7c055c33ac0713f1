"""Acknowledging cdk-nag findings, each with the reason where the resource is made."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule: str, reason: str, findings: Sequence[str] = ()) -> None:
    """Acknowledge cdk-nag `rule` on `scope` and its children, giving `reason`.

    Rules that report one finding per wildcard, such as AwsSolutions-IAM5, need each
    finding named, for example "Resource::*". Without `findings` the whole rule is
    acknowledged.
    """
    if not findings:
        Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))
        return
    for finding in findings:
        Validations.of(scope).acknowledge(Acknowledgment(id=f"{rule}[{finding}]", reason=reason))
