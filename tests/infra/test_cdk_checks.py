"""cdk-nag, cfn-lint and the app entry point, for every synthesized configuration."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import cfnlint.api
import pytest
from cdk_synth import CONFIGURATIONS, REPO_ROOT, cdk_json_context

pytestmark = pytest.mark.cdk

# CDK's Lambda construct adds DependsOn on the function's role next to the GetAtt of its
# ARN, which cfn-lint reports as a redundant dependency. It is harmless.
KNOWN_WARNINGS = {("W3005", "ScoringApiFunction")}


@pytest.mark.parametrize("name", sorted(CONFIGURATIONS))
def test_cdk_nag_reports_no_findings(synthesized, name):
    violations = synthesized(name).nag_violations

    findings = [
        (violation["ruleName"], construct["constructPath"])
        for violation in violations
        for construct in violation["violatingConstructs"]
    ]
    assert findings == []


@pytest.mark.parametrize("name", sorted(CONFIGURATIONS))
def test_every_acknowledgment_has_reason(synthesized, name):
    outdir = synthesized(name).outdir
    metadata = json.loads(next(outdir.glob("*.metadata.json")).read_text())

    reasons = [
        reason
        for entries in metadata.values()
        for entry in entries
        if entry["type"] == "aws:cdk:acknowledged-rules"
        for reason in entry["data"].values()
    ]
    assert reasons, "expected acknowledged cdk-nag rules"
    for reason in reasons:
        assert len(reason.split()) >= 8, reason


@pytest.mark.parametrize("name", sorted(CONFIGURATIONS))
def test_cfn_lint_finds_no_errors(synthesized, name):
    template = synthesized(name).template

    matches = cfnlint.api.lint(json.dumps(template), regions=["us-east-1"])

    errors = [f"{m.rule.id} {m.path_string}: {m.message}" for m in matches if m.rule.id[0] == "E"]
    assert errors == []
    unexpected_warnings = [
        f"{m.rule.id} {m.path_string}: {m.message}"
        for m in matches
        if m.rule.id[0] == "W"
        and not any(
            m.rule.id == rule and prefix in m.path_string for rule, prefix in KNOWN_WARNINGS
        )
    ]
    assert unexpected_warnings == []


def run_app(tmp_path, context: dict) -> subprocess.CompletedProcess:
    """Run app.py the way the CDK CLI does: context in CDK_CONTEXT_JSON, output in CDK_OUTDIR."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "CDK_"))
    }
    environment["CDK_OUTDIR"] = str(tmp_path)
    environment["CDK_CONTEXT_JSON"] = json.dumps(context)
    return subprocess.run(
        [sys.executable, "app.py"],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_app_synthesizes_with_cli_string_overrides(tmp_path):
    # The CDK CLI merges cdk.json's context with -c key=value pairs, which stay strings.
    context = {
        **cdk_json_context(),
        "alert_email": "ops@example.com",
        "initial_instance_count": "2",
        "autoscaling_max_instances": "3",
        "threshold": "3.5",
        "input_columns": '["motor_speed", "torque"]',
    }

    result = run_app(tmp_path, context)

    assert result.returncode == 0, result.stderr
    template = json.loads((tmp_path / "AnomalyDetector.template.json").read_text())
    resources = template["Resources"].values()
    variant = next(
        r["Properties"]["ProductionVariants"][0]
        for r in resources
        if r["Type"] == "AWS::SageMaker::EndpointConfig"
    )
    assert variant["InitialInstanceCount"] == 2
    assert any(
        r["Type"] == "AWS::SNS::Subscription" and r["Properties"]["Endpoint"] == "ops@example.com"
        for r in resources
    )
    function = next(r["Properties"] for r in resources if r["Type"] == "AWS::Lambda::Function")
    assert function["Environment"]["Variables"]["THRESHOLD"] == "3.5"


def test_app_reports_invalid_context_without_traceback(tmp_path):
    context = {**cdk_json_context(), "endpoint_mode": "batch"}

    result = run_app(tmp_path, context)

    assert result.returncode == 1
    assert "Invalid configuration" in result.stderr
    assert "'endpoint_mode'" in result.stderr
    assert "instance, serverless" in result.stderr
    assert "Traceback" not in result.stderr


CDK_CLI = REPO_ROOT / "node_modules" / ".bin" / "cdk"


@pytest.mark.skipif(not CDK_CLI.exists(), reason="run `npm ci` to install the pinned CDK CLI")
def test_cdk_cli_synth_offline(tmp_path):
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "CDK_"))
    }
    environment.update(
        CDK_DISABLE_VERSION_CHECK="1",
        CDK_DISABLE_CLI_TELEMETRY="true",
        # No credentials and no metadata service: synth must not need AWS.
        AWS_EC2_METADATA_DISABLED="true",
        PATH=os.pathsep.join([str(REPO_ROOT / ".venv" / "bin"), environment.get("PATH", "")]),
    )

    result = subprocess.run(
        [
            str(CDK_CLI),
            "synth",
            "--no-notices",
            "--quiet",
            "--output",
            str(tmp_path),
            "-c",
            "model_package_arn=arn:aws:sagemaker:eu-west-1:111122223333:model-package/press/4",
            "-c",
            "alert_email=ops@example.com",
        ],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    template = json.loads((tmp_path / "AnomalyDetector.template.json").read_text())
    model = next(
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::SageMaker::Model"
    )
    assert model["PrimaryContainer"]["ModelPackageName"].endswith("model-package/press/4")
    assert shutil.which("node", path=environment["PATH"]) is not None
