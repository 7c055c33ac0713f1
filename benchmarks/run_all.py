"""Run every benchmark, each in its own process, and rewrite benchmarks/RESULTS.md.

Every goal is printed with its measured ratio and whether it is met. RESULTS.md gets the
machine, the goals, each benchmark's tables, and, kept from the previous file, the notes
below the line NOTES_MARKER.

Usage: python -m benchmarks.run_all [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time

from benchmarks.common import (
    BENCH_DIR,
    PYTHON,
    REPO_DIR,
    RESULTS_DIR,
    machine_description,
    markdown_table,
)

RESULTS_FILE = BENCH_DIR / "RESULTS.md"
NOTES_MARKER = "<!-- Notes below this line are kept when run_all.py rewrites the file. -->"
STEPS = {
    "handler": ["-m", "benchmarks.bench_handler"],
    "cold_start": ["-m", "benchmarks.bench_cold_start"],
    "cli_scale": ["-m", "benchmarks.bench_cli_scale"],
    "serve": ["-m", "benchmarks.bench_serve"],
    "profile": ["-m", "benchmarks.bench_profile"],
}
QUICK_ARGUMENTS = {
    "handler": ["--repeats", "3"],
    "cold_start": ["--repeats", "3"],
    "cli_scale": ["--sizes", "100000", "1000000"],
    "serve": ["--seconds", "3"],
    "profile": ["--rows", "300000"],
}


def kept_notes() -> str:
    if not RESULTS_FILE.exists():
        return ""
    text = RESULTS_FILE.read_text()
    return text.split(NOTES_MARKER, 1)[1] if NOTES_MARKER in text else ""


def write_results(
    documents: list[dict], failures: dict[str, str], wall_s: float, quick: bool, notes: str
) -> None:
    machine = machine_description()
    goals = [
        [
            document["title"],
            goal["name"],
            f"{goal['ratio']:.2f}" if goal.get("measure", "ratio") == "ratio" else goal["ratio"],
            f"{goal['limit']:g}",
            "met" if goal["met"] else "**not met**",
            goal["detail"],
        ]
        for document in documents
        for goal in document["goals"]
    ]
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (`python -m benchmarks.run_all{' --quick' if quick else ''}`)"
        f" on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC in {wall_s / 60:.1f} minutes. "
        "How each number is measured is in README.md beside this file. Times vary with the "
        "machine and with whatever else runs on it; the goals are ratios taken within this "
        "run.",
        "",
        markdown_table(["machine", ""], [[key, value] for key, value in machine.items()]),
        "",
        "## Goals",
        "",
        markdown_table(["benchmark", "goal", "measured", "limit", "verdict", "note"], goals),
        "",
    ]
    for name, error in failures.items():
        lines += [f"**{name} failed:**", "", "```", error.strip()[-3000:], "```", ""]
    for document in documents:
        lines += [f"## {document['title']}", "", document["markdown"], ""]
    lines += [NOTES_MARKER, notes.strip("\n"), ""]
    RESULTS_FILE.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes and fewer repeats, for a smoke run"
    )
    args = parser.parse_args()
    notes = kept_notes()
    started = time.perf_counter()
    for stale in RESULTS_DIR.glob("*.json"):
        stale.unlink()

    failures: dict[str, str] = {}
    for name, command in STEPS.items():
        extra = QUICK_ARGUMENTS[name] if args.quick else []
        print(f"== {name}", flush=True)
        step_started = time.perf_counter()
        result = subprocess.run(
            [PYTHON, *command, *extra], cwd=REPO_DIR, stderr=subprocess.PIPE, text=True
        )
        print(f"   {name} took {time.perf_counter() - step_started:.0f} s", flush=True)
        if result.returncode != 0:
            failures[name] = result.stderr
            print(result.stderr[-3000:], file=sys.stderr)

    documents = [
        json.loads((RESULTS_DIR / f"{name}.json").read_text())
        for name in STEPS
        if (RESULTS_DIR / f"{name}.json").exists()
    ]
    wall = time.perf_counter() - started
    write_results(documents, failures, wall, args.quick, notes)
    print(f"\nall benchmarks took {wall / 60:.1f} minutes; results in {RESULTS_FILE}")
    for document in documents:
        for goal in document["goals"]:
            verdict = "met" if goal["met"] else "NOT met"
            measure = goal.get("measure", "ratio")
            value = f"{goal['ratio']:.2f}" if measure == "ratio" else f"{goal['ratio']:g}"
            print(f"GOAL {goal['name']}: {measure} {value} (limit {goal['limit']:g}) {verdict}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
