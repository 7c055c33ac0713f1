"""Profiles of the handler and the CLI, and the batch.py change before and after.

pyinstrument samples the handler path on the 5 MB request, as it is and with the proposed
changes, and ``batch.detect_file`` on the 1,000,000-row file. Each function of the project
is listed with its share of the time. pyinstrument sees the main thread only, so the
reading and writing threads of ``detect_file`` show as time spent waiting for them.

The previous ``detect_file`` (one thread, ``DataFrame.to_csv``), kept below as it was, then
runs against the current one on the same file, in one process, interleaved.

Usage: python -m benchmarks.bench_profile [--rows N] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections import defaultdict
from pathlib import Path

from pyinstrument import Profiler

from benchmarks import proposals
from benchmarks.bench_cli_scale import DATA_FIRST_SECOND, DATA_SEED, trained_model
from benchmarks.bench_handler import REQUEST_BYTES, build_request
from benchmarks.common import (
    DATA_DIR,
    Goal,
    InstantRuntimeClient,
    InstantSnsClient,
    LambdaContext,
    Report,
    fake_aws_environment,
    markdown_table,
    motor_csv,
    proxy_event,
    service_environment,
    stdout_discarded,
)

APPLICATION_PATHS = ("anomaly_detector", "benchmarks/proposals")
SAMPLE_INTERVAL_S = 0.001


def project_functions(profiler: Profiler, top: int = 14) -> list[list[str]]:
    """Total time per project function (children included), as rows of a table."""
    root = profiler.last_session.root_frame()
    totals: dict[str, float] = defaultdict(float)

    def walk(frame, active: frozenset) -> None:
        name = None
        if frame.file_path and any(part in frame.file_path for part in APPLICATION_PATHS):
            owner = f"{frame.class_name}." if frame.class_name else ""
            name = f"{owner}{frame.function} ({Path(frame.file_path).name})"
            if name not in active:  # count a recursive call once
                totals[name] += frame.time
        inner = active | {name} if name else active
        for child in frame.children:
            walk(child, inner)

    walk(root, frozenset())
    # Entry points that hold the whole run tell nothing, so they are left out.
    inner = {name: seconds for name, seconds in totals.items() if seconds < 0.99 * root.time}
    ranked = sorted(inner.items(), key=lambda item: -item[1])[:top]
    return [[name, f"{seconds / root.time * 100:.0f} %"] for name, seconds in ranked]


def profile_handler(patched: bool, calls: int = 5) -> list[list[str]]:
    from anomaly_detector.config import ServiceConfig
    from anomaly_detector.handler import DetectionService

    body, predictions = build_request(REQUEST_BYTES)
    runtime = InstantRuntimeClient(predictions)
    service = DetectionService(
        ServiceConfig.from_env(service_environment()),
        runtime_client=runtime,
        sns_client=InstantSnsClient(),
    )
    event = proxy_event(body.decode(), {"rows": "anomalous"})

    def handle() -> None:
        runtime.rewind()
        with stdout_discarded():
            service.handle(event, LambdaContext())

    profiler = Profiler(interval=SAMPLE_INTERVAL_S)
    with proposals.patched() if patched else proposals.patched([]):
        handle()
        profiler.start()
        for _ in range(calls):
            handle()
        profiler.stop()
    return project_functions(profiler)


def previous_detect_file(path, config, predictor, out_dir, chunk_rows):
    """``detect_file`` before the change: one thread, ``to_csv`` per chunk (kept for timing)."""
    import json

    from anomaly_detector.batch import (
        PlotData,
        _text_columns,
        iter_file_chunks,
        neutralize_formulas,
    )
    from anomaly_detector.pipeline import Summary, detect_chunk, events_to_dicts
    from anomaly_detector.scoring import Scorer

    out_dir.mkdir(parents=True, exist_ok=True)
    scorer = Scorer(config)
    summary = Summary(threshold=config.threshold)
    plot = PlotData(config.threshold)
    text_columns = [config.timestamp_column] if config.timestamp_column else []
    first_row = 0
    wrote_header = False
    with (out_dir / "scored.csv").open("w", encoding="utf-8", newline="") as out:
        for chunk in iter_file_chunks(path, chunk_rows, text_columns):
            start = first_row
            first_row += len(chunk)
            result = detect_chunk(chunk, config, predictor, scorer, summary, start)
            plot.add(result)
            result = neutralize_formulas(result, _text_columns(result))
            result.to_csv(out, header=not wrote_header, index=False, lineterminator="\n")
            wrote_header = True
    events = events_to_dicts(scorer.finish())
    summary.events = len(events)
    (out_dir / "events.json").write_text(json.dumps(events, indent=2) + "\n")
    return summary


def run(rows: int, rounds: int) -> Report:
    os.environ.update(fake_aws_environment())
    from anomaly_detector.batch import DEFAULT_CHUNK_ROWS, detect_file
    from anomaly_detector.cli import _detect_setup, build_parser

    handler_now = profile_handler(patched=False)
    handler_proposed = profile_handler(patched=True)

    _, model_dir = trained_model(dict(os.environ))
    data = motor_csv(rows, DATA_SEED, first_second=DATA_FIRST_SECOND)
    args = build_parser().parse_args(
        ["detect", str(data), "--model-dir", str(model_dir), "--out", "unused"]
    )
    config, predictor = _detect_setup(args)
    out_dir = DATA_DIR / "profile-out"

    profiler = Profiler(interval=SAMPLE_INTERVAL_S * 5)
    profiler.start()
    detect_file(data, config, predictor, out_dir / "now")
    profiler.stop()
    cli_now = project_functions(profiler)

    times: dict[str, list[float]] = {"previous detect_file": [], "current detect_file": []}
    for _ in range(rounds):
        started = time.perf_counter()
        previous_detect_file(data, config, predictor, out_dir / "before", DEFAULT_CHUNK_ROWS)
        times["previous detect_file"].append(time.perf_counter() - started)
        started = time.perf_counter()
        detect_file(data, config, predictor, out_dir / "after")
        times["current detect_file"].append(time.perf_counter() - started)
    identical = (out_dir / "before" / "scored.csv").read_bytes() == (
        out_dir / "after" / "scored.csv"
    ).read_bytes()
    shutil.rmtree(out_dir, ignore_errors=True)

    before, after = min(times["previous detect_file"]), min(times["current detect_file"])
    goals = [
        Goal(
            "batch.py change: current detect_file time / previous",
            after / before,
            1.0,
            "the same scored.csv bytes" if identical else "OUTPUTS DIFFER",
        )
    ]
    markdown = (
        "Handler, 5 requests of 5 MB with `?rows=anomalous`, time per project function "
        "(children included) as a share of the whole:\n\n"
        + markdown_table(["function, handler as it is", "share"], handler_now)
        + "\n\n"
        + markdown_table(["function, handler with the proposed changes", "share"], handler_proposed)
        + f"\n\nCLI `detect_file` on {rows:,} rows, main thread:\n\n"
        + markdown_table(["function", "share"], cli_now)
        + f"\n\nbatch.py before and after, {rows:,} rows, best of {rounds}, in one process: "
        f"previous {before:.1f} s, current {after:.1f} s "
        f"({rows / before:,.0f} and {rows / after:,.0f} rows/s); scored.csv "
        + ("byte-identical." if identical else "DIFFERS.")
    )
    return Report(
        name="profile",
        title="Profiles, and the batch.py change before and after",
        goals=goals,
        markdown=markdown,
        numbers={"batch_seconds": times, "identical_output": identical},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the CLI file")
    parser.add_argument("--rounds", type=int, default=1, help="before/after rounds (default 1)")
    args = parser.parse_args()
    run(args.rows, args.rounds).save()


if __name__ == "__main__":
    main()
