"""Handler path on one request of about 5 MB of CSV, against the floor and the reference path.

- handler: the real ``DetectionService.handle`` with the deployed environment (emf metrics,
  an SNS topic), an endpoint stand-in that returns at once, stdout sent to /dev/null.
- floor: parse the CSV once and write the endpoint payload once with pandas; the faster of
  the C and pyarrow parsers.
- reference: the original design written out here: read_csv, drop the target, to_csv the
  rest as the request body, parse the predictions (JSON, one value per line), subtract.

Usage: python -m benchmarks.bench_handler [--repeats N] [--bytes B]
"""

from __future__ import annotations

import argparse
import io
import os
import time

import numpy as np
import pandas as pd

from benchmarks import proposals
from benchmarks.common import (
    TARGET,
    Goal,
    InstantRuntimeClient,
    InstantSnsClient,
    LambdaContext,
    Report,
    fake_aws_environment,
    generate_motor,
    iso_seconds,
    markdown_table,
    median,
    proxy_event,
    service_environment,
    stdout_discarded,
)

REQUEST_BYTES = 5_000_000
# The response is cut to the anomalous rows when the whole one would pass this size.
RESPONSE_LIMIT_BYTES = 5_900_000
INPUTS = ["motor_speed", "torque", "ambient_temperature"]


def build_request(max_bytes: int, seed: int = 7) -> tuple[bytes, np.ndarray]:
    """Return CSV bytes of whole rows up to ``max_bytes`` and the stand-in's predictions."""
    rows = max_bytes // 40
    data = generate_motor(rows, seed)
    frame = pd.DataFrame({"timestamp": iso_seconds(data.seconds).astype(str), **data.columns})
    body = frame.to_csv(index=False, lineterminator="\n").encode()
    body = body[: body.rfind(b"\n", 0, max_bytes) + 1]
    data_rows = body.count(b"\n") - 1
    return body, data.expected[:data_rows]


def reference_path(body: bytes, client: InstantRuntimeClient) -> pd.DataFrame:
    frame = pd.read_csv(io.BytesIO(body))
    features = frame.drop(columns=[TARGET])
    payload = features.to_csv(header=False, index=False).encode()
    response = client.invoke_endpoint(
        EndpointName="anomaly-detector",
        ContentType="text/csv",
        Accept="application/json",
        Body=payload,
    )
    predictions = pd.read_json(io.BytesIO(response["Body"].read()), lines=True, typ="series")
    frame["predicted"] = predictions.to_numpy()
    frame["residual"] = frame[TARGET] - frame["predicted"]
    return frame


def floor_path(body: bytes, engine: str) -> bytes:
    frame = pd.read_csv(io.BytesIO(body), engine=engine)
    return frame[INPUTS].to_csv(header=False, index=False).encode()


def component_gains(body: bytes, predictions: np.ndarray, repeats: int) -> list[list[str]]:
    """Time each proposed function against the current one on this request's data."""
    from anomaly_detector import endpoint_format, reader, timestamps
    from anomaly_detector.config import ServiceConfig
    from anomaly_detector.prepare import prepare

    scoring = ServiceConfig.from_env(service_environment()).scoring
    text = body.decode()
    frame = reader.read_csv_text(text, text_columns=["timestamp"])
    batch = prepare(frame.copy(), scoring)

    def payload(to_lines, split) -> None:
        lines = to_lines(batch.inputs)
        for _ in split(lines, 4_000_000):
            pass

    pairs = {
        "payload in one % operation": (
            lambda: payload(endpoint_format.to_csv_lines, endpoint_format.split_payloads),
            lambda: payload(proposals.to_csv_lines, proposals.split_payloads),
        ),
        "timestamps with Arrow strptime": (
            lambda: timestamps.parse_timestamps(frame["timestamp"], "timestamp"),
            lambda: proposals.parse_timestamps(frame["timestamp"], "timestamp"),
        ),
    }
    rows = []
    for name, (current, proposed) in pairs.items():
        current(), proposed()  # warm-up
        before, after = [], []
        for _ in range(repeats):
            for function, times in ((current, before), (proposed, after)):
                started = time.perf_counter()
                function()
                times.append(time.perf_counter() - started)
        saved = median([a - b for a, b in zip(before, after, strict=True)])
        module = proposals.PROPOSALS[name][0]
        rows.append(
            [
                name,
                module,
                f"{median(before) * 1000:.0f}",
                f"{median(after) * 1000:.0f}",
                f"{saved * 1000:.0f}",
            ]
        )
    return rows


def run(repeats: int, request_bytes: int) -> Report:
    os.environ.update(fake_aws_environment())
    from anomaly_detector.config import ServiceConfig
    from anomaly_detector.handler import DetectionService

    body, predictions = build_request(request_bytes)
    rows = len(predictions)
    runtime = InstantRuntimeClient(predictions)
    service = DetectionService(
        ServiceConfig.from_env(service_environment()),
        runtime_client=runtime,
        sns_client=InstantSnsClient(),
    )
    text = body.decode()

    def handle(query: dict | None) -> dict:
        runtime.rewind()
        with stdout_discarded():
            return service.handle(proxy_event(text, query), LambdaContext())

    # check: the whole response would pass the limit, so the anomalous rows are returned
    full = handle(None)
    query = None
    if full["statusCode"] == 413:
        query = {"rows": "anomalous"}
    calls_before = runtime.calls
    answer = handle(query)
    assert answer["statusCode"] == 200, answer["body"][:500]
    calls_per_request = runtime.calls - calls_before

    def reference() -> None:
        runtime.rewind()
        reference_path(body, runtime)

    cases = {
        "handler": lambda: handle(query),
        "floor (C parser)": lambda: floor_path(body, "c"),
        "floor (pyarrow parser)": lambda: floor_path(body, "pyarrow"),
        "reference path": reference,
    }

    def with_proposals(names: list[str] | None):
        def call() -> None:
            with proposals.patched(names):
                handle(query)

        return call

    chosen = [name for name in proposals.PROPOSALS if query or "returned rows" not in name]
    with proposals.patched(chosen):
        same_answer = handle(query)["body"] == answer["body"]
    cases["handler with proposed changes"] = with_proposals(chosen)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for function in cases.values():
        function()  # warm-up
    # Interleaved rounds, so that load from other processes falls on every case alike.
    for _ in range(repeats):
        for name, function in cases.items():
            started = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - started)

    medians = {name: median(values) for name, values in times.items()}
    floor_name = min(("floor (C parser)", "floor (pyarrow parser)"), key=medians.get)

    def ratio(name: str, base: str) -> float:
        # Median of the per-round ratios: both runs of a round share the machine's load.
        return median([a / b for a, b in zip(times[name], times[base], strict=True)])

    proposed = "not the product as it is: the changes proposed for other modules, patched in"
    goals = [
        Goal("handler <= 1.5 x floor", ratio("handler", floor_name), 1.5),
        Goal("handler <= reference path", ratio("handler", "reference path"), 1.0),
        Goal(
            "handler with proposed changes <= 1.5 x floor",
            ratio("handler with proposed changes", floor_name),
            1.5,
            proposed,
        ),
        Goal(
            "handler with proposed changes <= reference path",
            ratio("handler with proposed changes", "reference path"),
            1.0,
            proposed,
        ),
    ]
    floor = medians[floor_name]

    gains_table = markdown_table(
        ["proposed change", "module", "current ms", "proposed ms", "saved ms"],
        component_gains(body, predictions, repeats),
    )
    table = markdown_table(
        ["path", "median ms", "min ms", "max ms", "÷ floor"],
        [
            [
                name,
                f"{medians[name] * 1000:.0f}",
                f"{min(values) * 1000:.0f}",
                f"{max(values) * 1000:.0f}",
                f"{medians[name] / floor:.2f}",
            ]
            for name, values in times.items()
        ],
    )
    response_note = (
        f"The full response for {rows:,} rows would be over Lambda's 6 MB limit (the "
        f"handler answers 413), so the timed requests use `?rows=anomalous` "
        f"({len(answer['body']):,} bytes returned)."
        if query
        else f"The full response ({len(answer['body']):,} bytes) fits the limit."
    )
    markdown = (
        f"One request of {len(body):,} bytes ({rows:,} rows, 5 columns), {repeats} "
        "interleaved rounds after one warm-up; a goal's ratio is the median of the per-round "
        f"ratios, the floor is the {floor_name}. {response_note} The stand-in endpoint "
        f"answered {calls_per_request} call(s) per handler request "
        "(4 MB payload limit).\n\n"
        + table
        + "\n\nWith all the changes proposed for modules that other engineers own "
        "(`benchmarks/proposals.py`) patched in, the response body is "
        + ("byte-identical to the current one" if same_answer else "DIFFERENT from the current one")
        + ". Each change alone, timed on this request's data against the function it would "
        "replace (median of interleaved pairs; a handler run's noise is larger than most "
        "single gains):\n\n" + gains_table
    )
    return Report(
        name="handler",
        title="Handler path on one 5 MB request",
        goals=goals,
        markdown=markdown,
        numbers={
            "rows": rows,
            "bytes": len(body),
            "medians_s": medians,
            "proposals_same_answer": same_answer,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds (default 15)")
    parser.add_argument(
        "--bytes", type=int, default=REQUEST_BYTES, help="request size in bytes (default 5e6)"
    )
    args = parser.parse_args()
    run(args.repeats, args.bytes).save()


if __name__ == "__main__":
    main()
