"""Cold start: import the handler and build its clients in a fresh interpreter.

The baseline imports numpy, pandas and boto3 and creates one sagemaker-runtime client, the
least that any Lambda scoring through an endpoint does. Each measurement is a new Python
process, timed from inside (import and set-up only) and from outside (the whole process).
The handler runs with the environment that the CDK stack sets, SNS topic included.

Usage: python -m benchmarks.bench_cold_start [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import time

from benchmarks.common import (
    PYTHON,
    REPO_DIR,
    Goal,
    Report,
    fake_aws_environment,
    markdown_table,
    median,
    service_environment,
)

HANDLER = """
import json, time
started = time.perf_counter()
from anomaly_detector import handler
handler.get_service()
print(json.dumps({"seconds": time.perf_counter() - started}))
"""
BASELINE = """
import json, time
started = time.perf_counter()
import numpy, pandas, boto3
boto3.client("sagemaker-runtime")
print(json.dumps({"seconds": time.perf_counter() - started}))
"""
IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)")


def child_environment() -> dict[str, str]:
    env = {**os.environ, **fake_aws_environment(), **service_environment()}
    # Let the warm-up runs write bytecode caches, as a deployed package ships them.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_once(code: str, env: dict[str, str]) -> tuple[float, float]:
    """Return (seconds inside the child, seconds of the whole child process)."""
    started = time.perf_counter()
    output = subprocess.run(
        [PYTHON, "-c", code], env=env, cwd=REPO_DIR, capture_output=True, text=True, check=True
    )
    whole = time.perf_counter() - started
    inside = json.loads(output.stdout.strip().splitlines()[-1])["seconds"]
    return inside, whole


def import_profile(code: str, env: dict[str, str]) -> dict[str, float]:
    """Return the import time of ``code`` per top-level package: the sum of its modules' self ms."""
    output = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", code],
        env=env,
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    packages: dict[str, float] = {}
    for line in output.stderr.splitlines():
        match = IMPORT_LINE.match(line)
        if match:
            name = match.group(2).split(".")[0]
            packages[name] = packages.get(name, 0.0) + int(match.group(1)) / 1000
    return packages


def run(repeats: int) -> Report:
    env = child_environment()
    # Without TOPIC_ARN the handler builds no SNS client at start: the gain of creating it
    # on the first warning instead, as proposed.
    without_topic = {key: value for key, value in env.items() if key != "TOPIC_ARN"}
    cases = {
        "handler": (HANDLER, env),
        "baseline": (BASELINE, env),
        "handler, SNS client not built": (HANDLER, without_topic),
    }
    for code, case_env in cases.values():
        run_once(code, case_env)  # warm-up: bytecode caches and the page cache
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, (code, case_env) in cases.items():
            samples[name].append(run_once(code, case_env))

    inside = {name: median([s[0] for s in values]) for name, values in samples.items()}
    whole = {name: median([s[1] for s in values]) for name, values in samples.items()}

    def ratio(name: str) -> float:
        pairs = zip(samples[name], samples["baseline"], strict=True)
        return median([case[0] / base[0] for case, base in pairs])

    goals = [
        Goal("cold start <= 1.1 x baseline", ratio("handler"), 1.1),
        Goal(
            "cold start, SNS client built on first use <= 1.1 x baseline",
            ratio("handler, SNS client not built"),
            1.1,
            "not the product as it is: handler.py building the SNS client lazily, as proposed",
        ),
    ]

    handler_imports = import_profile("from anomaly_detector import handler", env)
    baseline_imports = import_profile("import numpy, pandas, boto3", env)
    extra = sorted(
        (
            (name, ms - baseline_imports.get(name, 0.0))
            for name, ms in handler_imports.items()
            if ms - baseline_imports.get(name, 0.0) >= 2.0
        ),
        key=lambda item: -item[1],
    )
    labels = {
        "handler": "handler: import, get_service()",
        "baseline": "baseline: numpy, pandas, boto3, one client",
        "handler, SNS client not built": "handler without TOPIC_ARN (no SNS client)",
    }
    table = markdown_table(
        ["process", "import and set-up, median ms", "whole process, median ms"],
        [
            [labels[name], f"{inside[name] * 1000:.0f}", f"{whole[name] * 1000:.0f}"]
            for name in cases
        ],
    )
    profile = markdown_table(
        ["package", "import ms more than in the baseline"],
        [[name, f"{ms:.0f}"] for name, ms in extra] or [["(none)", "0"]],
    )
    markdown = (
        f"{repeats} fresh processes of each, alternating, after one warm-up of each. The "
        "goal's ratio is the median of the per-round ratios of the inside times. The "
        "handler builds a sagemaker-runtime and an SNS client (the stack sets TOPIC_ARN).\n\n"
        + table
        + "\n\nWhere the extra time goes: `python -X importtime`, one run of each, self time "
        "of each package's modules summed, packages with 2 ms or more:\n\n" + profile
    )
    return Report(
        name="cold_start",
        title="Cold start",
        goals=goals,
        markdown=markdown,
        numbers={"inside_s": inside, "whole_s": whole, "extra_imports_ms": extra},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11, help="processes of each (default 11)")
    args = parser.parse_args()
    run(args.repeats).save()


if __name__ == "__main__":
    main()
