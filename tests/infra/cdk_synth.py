"""Synthesis of the CDK app for the tests, with cdk.json's context plus overrides.

The module has its own name, not conftest, so that test modules import it without
clashing with the conftest.py files of other test folders.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

# `infra` is not an installed package, and the tests import it from the project root.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# jsii starts `node` from PATH. The cdk extra installs Node.js into the virtual
# environment, which may differ from an older system node.
_VENV_BIN = str(Path(sys.executable).parent)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _VENV_BIN:
    os.environ["PATH"] = _VENV_BIN + os.pathsep + os.environ.get("PATH", "")

# The configurations that the tests synthesize, as overrides of cdk.json. Values are
# strings where the CDK CLI would pass them as strings (-c key=value).
CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "existing_endpoint": {
        "model_package_arn": "",
        "existing_endpoint_name": "Canvas-Motor-Endpoint",
        "alert_email": "ops@example.com",
        "alarm_evaluation_periods": "4",
        "alarm_datapoints_to_alarm": "3",
    },
    "serverless": {
        "endpoint_mode": "serverless",
        "serverless_memory_mb": "3072",
        "serverless_max_concurrency": "10",
        "asset_id": "press-07",
        "no_data_alarm_minutes": "60",
        "baseline_rows": "600",
    },
    "api_key": {
        "api_auth": "api_key",
        "lambda_reserved_concurrency": "5",
        "lambda_architecture": "arm64",
        "lambda_python_version": "3.12",
        "api_cloudwatch_role": "false",
        "stream_state": "false",
    },
}


@dataclass(frozen=True)
class Synthesis:
    """Result of synthesizing one configuration: the template and the cdk-nag report."""

    template: dict[str, Any]
    nag_violations: list[dict[str, Any]]
    outdir: Path

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.template["Resources"].items()
            if resource["Type"] == resource_type
        }

    def only(self, resource_type: str) -> dict[str, Any]:
        """Return the properties of the single resource of `resource_type`."""
        matches = self.resources(resource_type)
        assert len(matches) == 1, f"expected one {resource_type}, found {sorted(matches)}"
        return next(iter(matches.values())).get("Properties", {})


def cdk_json_context() -> dict[str, Any]:
    return json.loads((REPO_ROOT / "cdk.json").read_text())["context"]


def synthesize(overrides: dict[str, Any], outdir: Path) -> Synthesis:
    """Synthesize the app as `cdk synth` would, with cdk.json's context plus `overrides`.

    cdk-nag findings do not raise here. They are returned for the tests to assert on.
    """
    import aws_cdk as cdk

    from infra.stack import create_stack

    context = {**cdk_json_context(), **overrides, "@aws-cdk/core:validationReportJson": True}
    # Synthesize as on a machine without AWS configuration, where the CDK CLI sets no
    # default account or Region.
    for variable in ("CDK_DEFAULT_ACCOUNT", "CDK_DEFAULT_REGION"):
        os.environ.pop(variable, None)
    app = cdk.App(outdir=str(outdir), context=context)
    stack = create_stack(app)
    try:
        app.synth()
    except RuntimeError as error:
        # cdk-nag reports its findings through CDK's policy validation, which fails
        # synthesis after the templates and the report are written.
        if "ValidationFailed" not in str(error):
            raise

    template = json.loads((outdir / f"{stack.artifact_id}.template.json").read_text())
    report = json.loads((outdir / "validation-report.json").read_text())
    violations = [
        violation
        for plugin in report.get("pluginReports", [])
        for violation in plugin.get("violations", [])
    ]
    return Synthesis(template=template, nag_violations=violations, outdir=outdir)
