"""False breaches at request borders: a stream's requests with and without its window tail.

The sample data's test file (one row a minute, labelled anomalies) is sent to the real
``DetectionService`` in requests of N rows. With stream state, each request's first windows
reach back into the request before it; without, each request starts its window afresh. The
model is the demo's: trained on the sample training file with the product's defaults.

Reported per request size: the normal rows flagged anomalous, how many requests without a
labelled row report a ``MaxScore`` above the threshold (what the anomaly alarm watches), and
how many warnings the requests would send (their new events).

Usage: python -m benchmarks.request_borders [--sizes 5040,60,15,5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd

from anomaly_detector.config import ServiceConfig
from anomaly_detector.handler import DetectionService
from anomaly_detector.local_model import LocalModel, train
from anomaly_detector.state import MemoryStreamStore
from benchmarks.common import markdown_table, proxy_event, stdout_discarded

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"
LABEL = "anomaly"


def flagged(service: DetectionService, test: pd.DataFrame, size: int) -> tuple[int, ...]:
    """Send the rows in requests of ``size``; return normal rows flagged, normal requests,
    normal requests whose highest score passed the threshold, and warnings."""
    false_rows = normal_requests = loud_requests = warnings = 0
    for start in range(0, len(test), size):
        part = test.iloc[start : start + size]
        body = part.drop(columns=LABEL).to_csv(index=False)
        with stdout_discarded():
            response = service.handle(proxy_event(body, {"stream": "sample"}))
        result = json.loads(response["body"])
        warnings += result["summary"].get("new_events", result["summary"]["events"])
        anomalous = [row["is_anomaly"] for row in result["rows"]]
        labels = part[LABEL].to_numpy(dtype=bool)
        false_rows += sum(flag and not label for flag, label in zip(anomalous, labels, strict=True))
        if not labels.any():
            normal_requests += 1
            loud_requests += result["summary"]["max_score"] > result["summary"]["threshold"]
    return false_rows, normal_requests, loud_requests, warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5040,60,15,5", help="rows per request, by commas")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    with tempfile.TemporaryDirectory() as model_dir:
        training = pd.read_csv(SAMPLE / "motor_train.csv")
        inputs = ["motor_speed", "torque", "ambient_temperature"]
        with stdout_discarded():
            train(training, "bearing_temperature", inputs, model_dir, timestamp_column="timestamp")
        model = LocalModel(model_dir)
        scoring = model.card.scoring_config()
        config = ServiceConfig(scoring=scoring, endpoint_name="local", metrics_mode="off")
        test = pd.read_csv(SAMPLE / "motor_test.csv", dtype={"timestamp": str})
        rows = []
        for size in sizes:
            fresh = flagged(DetectionService(config, predictor=model), test, size)
            with_tail = flagged(
                DetectionService(config, predictor=model, stream_store=MemoryStreamStore()),
                test,
                size,
            )
            rows.append([size, fresh[1], fresh[0], with_tail[0], fresh[2], with_tail[2]])
            rows[-1] += [fresh[3], with_tail[3]]
    print(f"window {scoring.window} rows, threshold {scoring.threshold:g}")
    print(
        markdown_table(
            [
                "rows per request",
                "normal requests",
                "normal rows flagged, fresh windows",
                "with the window tail",
                "normal requests over the threshold, fresh windows",
                "with the window tail",
                "warnings, fresh",
                "with stream state",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
