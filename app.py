#!/usr/bin/env python3
"""CDK entry point: build the anomaly-detection stack from the CDK context.

Run it through the CDK CLI (`npx cdk synth`), which passes the context from cdk.json
and from `-c key=value`. See infra/DEPLOYING.md for the context keys.
"""

import sys

import aws_cdk as cdk

from infra.config import ConfigError
from infra.stack import create_stack


def main() -> int:
    app = cdk.App()
    try:
        create_stack(app)
    except ConfigError as error:
        print(f"Invalid configuration: {error}", file=sys.stderr)
        return 1
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
