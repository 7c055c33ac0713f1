"""The Lambda package imports only what its runtime provides."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from infra.scoring_api import LOCAL_ONLY_MODULES

LAMBDA_DIR = Path(__file__).resolve().parent.parent / "lambda"
# The Lambda runtime has the standard library and boto3; the managed layers add pandas,
# numpy (AWS SDK for pandas) and Powertools for AWS Lambda.
ALLOWED_TOP_LEVEL = {
    "anomaly_detector",
    "boto3",
    "botocore",
    "numpy",
    "pandas",
    "aws_lambda_powertools",
}


def imported_after_handler() -> set[str]:
    script = (
        "import sys, json; before = set(sys.modules);"
        "import anomaly_detector.handler;"
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    output = subprocess.run(
        [sys.executable, "-c", script],
        cwd=LAMBDA_DIR,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(json.loads(output))


def test_handler_imports_no_local_only_module():
    modules = imported_after_handler()
    local_only = {
        "anomaly_detector." + Path(p).stem for p in LOCAL_ONLY_MODULES if p.endswith(".py")
    }

    assert modules & local_only == set()


def test_handler_imports_no_heavy_third_party_package():
    modules = imported_after_handler()

    for banned in ("lightgbm", "matplotlib", "rich", "sklearn", "pyarrow.csv"):
        assert banned not in modules


def test_handler_first_party_imports_are_allowed():
    modules = imported_after_handler()
    stdlib = set(sys.stdlib_module_names)
    # Third-party packages pulled in directly by our modules, not by their dependencies.
    direct = set()
    for path in (LAMBDA_DIR / "anomaly_detector").glob("*.py"):
        if f"anomaly_detector/{path.name}" in LOCAL_ONLY_MODULES:
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] in ("import", "from") and not line.startswith(" "):
                top = words[1].split(".")[0]
                if top and top not in stdlib and top != "__future__":
                    direct.add(top)

    assert {m.split(".")[0] for m in modules} >= {"anomaly_detector"}
    assert direct <= ALLOWED_TOP_LEVEL
