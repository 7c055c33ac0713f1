"""CLI detect at scale with the local model: rows per second and peak memory by file size.

A model is trained once with ``anomaly-detector train`` on 300,000 normal rows. Each file
is then scored by ``anomaly-detector detect --no-figures`` in a child process, whose peak
resident set size comes from ``os.wait4``. The same files are scored by ADTK's
RegressionAD with the same booster (``benchmarks/adtk_detect.py``), which reads the whole
file into memory. Figures are left out because they cost the same at every size.

Usage: python -m benchmarks.bench_cli_scale [--sizes 100000 1000000 10000000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import (
    DATA_DIR,
    GENERATOR_VERSION,
    PYTHON,
    REPO_DIR,
    TARGET,
    Goal,
    Report,
    fake_aws_environment,
    markdown_table,
    motor_csv,
)

SIZES = (100_000, 1_000_000, 10_000_000)
TRAIN_ROWS = 300_000
TRAIN_SEED = 11
DATA_SEED = 1
# The scored files start 30 days after the training file.
DATA_FIRST_SECOND = 30 * 86_400
CHILD_TIME_LIMIT_S = 600
# The size at which the change proposed for local_model.py is measured too.
PROPOSAL_SIZE = 1_000_000
CLI = str(Path(PYTHON).parent / "anomaly-detector")


@dataclass
class ChildRun:
    seconds: float
    max_rss_mib: float
    stdout: str


# Linux keeps the peak RSS of the process image that exec replaces, and a child that
# subprocess starts with vfork shares the benchmark's own memory until its exec. So the
# command runs under this small launcher, which forks and waits for it and writes the
# command's rusage to the file named first.
LAUNCHER = """
import json, os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({"exit_code": os.waitstatus_to_exitcode(status), "max_rss_kib": usage.ru_maxrss}, out)
"""


def run_child(command: list[str], env: dict[str, str]) -> ChildRun:
    """Run a command to its end; return wall time and its peak RSS from its rusage."""
    usage_file = DATA_DIR / "child-usage.json"
    usage_file.unlink(missing_ok=True)
    launcher = [PYTHON, "-I", "-S", "-c", LAUNCHER, str(usage_file)]
    started = time.perf_counter()
    try:
        result = subprocess.run(
            [*launcher, *command],
            env=env,
            cwd=REPO_DIR,
            capture_output=True,
            timeout=CHILD_TIME_LIMIT_S,
        )
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"{' '.join(command)} ran longer than {CHILD_TIME_LIMIT_S} s") from error
    seconds = time.perf_counter() - started
    usage = json.loads(usage_file.read_text()) if usage_file.exists() else {"exit_code": None}
    if result.returncode != 0 or usage["exit_code"] != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited with {usage['exit_code']}: "
            f"{result.stderr.decode(errors='replace')[-2000:]}"
        )
    # Linux reports ru_maxrss in KiB.
    return ChildRun(seconds, usage["max_rss_kib"] / 1024, result.stdout.decode(errors="replace"))


def trained_model(env: dict[str, str]) -> tuple[Path, Path]:
    """Return the training file and the model directory, training once per generator."""
    train_file = motor_csv(TRAIN_ROWS, TRAIN_SEED, anomalies=False)
    model_dir = DATA_DIR / f"model-v{GENERATOR_VERSION}"
    if not (model_dir / "model_card.json").exists():
        command = [CLI, "train", str(train_file), "--target", TARGET]
        run_child([*command, "--model-dir", str(model_dir)], env)
    return train_file, model_dir


def run(sizes: list[int], skip_adtk: bool = False) -> Report:
    env = {**os.environ, **fake_aws_environment()}
    train_file, model_dir = trained_model(env)
    card = json.loads((model_dir / "model_card.json").read_text())
    out_dir = DATA_DIR / "cli-out"

    rows_table = []
    product: dict[int, ChildRun] = {}
    adtk: dict[int, tuple[ChildRun, dict]] = {}
    for size in sizes:
        data = motor_csv(size, DATA_SEED, first_second=DATA_FIRST_SECOND)
        shutil.rmtree(out_dir, ignore_errors=True)
        detect = [CLI, "detect", str(data), "--model-dir", str(model_dir), "--no-figures"]
        product[size] = run_child([*detect, "--out", str(out_dir / "product")], env)
        summary = json.loads((out_dir / "product" / "summary.json").read_text())
        line = [
            f"{size:,}",
            f"{data.stat().st_size / 1e6:,.0f}",
            "anomaly-detector detect",
            f"{product[size].seconds:.1f}",
            f"{size / product[size].seconds:,.0f}",
            f"{product[size].max_rss_mib:,.0f}",
            f"{summary['anomalous_rows']:,} rows, {summary['events']:,} events",
        ]
        rows_table.append(line)
        if size == PROPOSAL_SIZE:
            # The same file with LightGBM on every core, as proposed for local_model.py.
            proposed_detect = [PYTHON, "-m", "benchmarks.cli_proposed", "--every-core"]
            proposed_detect += detect[1:]
            proposed = run_child([*proposed_detect, "--out", str(out_dir / "proposed")], env)
            rows_table.append(
                [
                    f"{size:,}",
                    "",
                    "anomaly-detector detect, proposed: LightGBM on every core",
                    f"{proposed.seconds:.1f}",
                    f"{size / proposed.seconds:,.0f}",
                    f"{proposed.max_rss_mib:,.0f}",
                    "",
                ]
            )
        if skip_adtk:
            continue
        command = [PYTHON, "-m", "benchmarks.adtk_detect", "--train", str(train_file)]
        command += ["--data", str(data), "--model-dir", str(model_dir)]
        child = run_child([*command, "--out", str(out_dir / "adtk")], env)
        details = json.loads(child.stdout.strip().splitlines()[-1])
        adtk[size] = (child, details)
        compared = child.seconds - details["phases_s"]["fit"]
        rows_table.append(
            [
                f"{size:,}",
                "",
                details["implementation"] + " (without its fit)",
                f"{compared:.1f}",
                f"{size / compared:,.0f}",
                f"{child.max_rss_mib:,.0f}",
                f"{details['anomalous_rows']:,} rows",
            ]
        )
        shutil.rmtree(out_dir, ignore_errors=True)

    goals = []
    big, middle = max(sizes), sorted(sizes)[-2] if len(sizes) > 1 else None
    if middle:
        factor = big / middle
        goals.append(
            Goal(
                f"time grows linearly: t({big:,}) <= {1.1 * factor:g} x t({middle:,})",
                product[big].seconds / product[middle].seconds,
                1.1 * factor,
            )
        )
        goals.append(
            Goal(
                f"memory flat: RSS({big:,}) <= 1.3 x RSS({middle:,})",
                product[big].max_rss_mib / product[middle].max_rss_mib,
                1.3,
            )
        )
    if adtk:
        child, details = adtk[big]
        goals.append(
            Goal(
                f"CLI end to end at {big:,} rows no slower than {details['implementation']}",
                product[big].seconds / (child.seconds - details["phases_s"]["fit"]),
                1.0,
            )
        )

    phases = [
        [f"{size:,}"] + [f"{seconds:.1f}" for seconds in details["phases_s"].values()]
        for size, (_, details) in adtk.items()
    ]
    phase_names = list(next(iter(adtk.values()))[1]["phases_s"]) if adtk else []
    markdown = (
        f"Model: LightGBM, {card['parameters'].get('num_boost_round')} trees, trained by "
        f"`anomaly-detector train` on {TRAIN_ROWS:,} normal rows (validation RMSE "
        f"{card['validation_rmse']:.3f} K, threshold {card['threshold']:.3f} K). Files: "
        "timestamp, motor_speed, torque, ambient_temperature, bearing_temperature, one row "
        "per second, a cooling failure every 250,000 rows. Times are whole child processes, "
        "imports included; the ADTK rows leave out its fit (predicting the training file "
        "to set its bound), which the product does at training time.\n\n"
        + markdown_table(
            ["rows", "MB", "tool", "seconds", "rows/s", "peak RSS MiB", "found"], rows_table
        )
    )
    if phases:
        markdown += "\n\nADTK phases, seconds:\n\n" + markdown_table(["rows", *phase_names], phases)
    return Report(
        name="cli_scale",
        title="CLI detect at scale",
        goals=goals,
        markdown=markdown,
        numbers={
            "product": {size: vars(run) | {"stdout": ""} for size, run in product.items()},
            "adtk": {size: details for size, (_, details) in adtk.items()},
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=list(SIZES),
        help="rows per file (default 1e5 1e6 1e7)",
    )
    parser.add_argument("--skip-adtk", action="store_true", help="score with the CLI only")
    args = parser.parse_args()
    run(sorted(args.sizes), args.skip_adtk).save()


if __name__ == "__main__":
    main()
