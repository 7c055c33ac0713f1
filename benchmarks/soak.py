"""Load and soak test of ``anomaly-detector serve``: concurrent clients, valid and invalid requests.

The script trains a small model, starts ``serve`` as a child process on 127.0.0.1 with the
settings of the hostile-input corpus (``tests/hostile/``), and runs client threads for a
fixed time. Each client keeps one HTTP/1.1 connection and sends, in a seeded random mix,
valid CSV and JSON requests of 1 to 1,000 rows (fewer where the request limit requires)
and the corpus requests, each with the status it must get. Once a second the script
samples the server's resident memory (RSS), threads and open file descriptors from /proc. It stops by itself after ``--seconds`` or after
``--max-requests`` per client, whichever comes first, then stops the server with SIGTERM.

An unexpected status is any status other than the expected one, a connection error, or an
accepted request whose result has a different number of rows. The first fifth of the run
is warm-up, and the RSS after warm-up is the median of the second fifth. Memory is flat
when the median RSS of the last fifth is within ``--rss-tolerance-mb`` of it.

Usage: python benchmarks/soak.py [--seconds 300] [--clients 8] [--json out/soak.json]
Exit status: 0 when there were no unexpected statuses and memory stayed flat, 1 otherwise.
Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from hostile.corpus import SERVICE_ENVIRONMENT, Case, load_cases, machine_frame  # noqa: E402

from anomaly_detector.local_model import train  # noqa: E402

LOOPBACK = "127.0.0.1"
INPUTS = ["motor_speed", "torque", "ambient_temperature"]
READY = re.compile(r"API on http://127\.0\.0\.1:(\d+)")
START_SECONDS = 60
STOP_SECONDS = 15
HTTP_TIMEOUT_SECONDS = 30
# Left out of the mix: the result of 2,000 columns takes seconds to build (pandas inserts
# echoed columns one at a time), so a few of them would measure that instead of the server.
SKIPPED_CASES = ("csv/thousands_of_columns",)
VALID_SHARE = 0.5
MAX_VALID_ROWS = 1_000


@dataclass(frozen=True)
class Request:
    """One request of the mix and the status it must get."""

    name: str
    body: bytes
    headers: dict[str, str]
    status: int
    rows: int | None


@dataclass
class ClientResult:
    statuses: Counter = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    requests: int = 0


def valid_requests(count: int, seed: int) -> list[Request]:
    """Valid CSV and JSON requests of 1 to MAX_VALID_ROWS rows, each expecting 200."""
    rng = np.random.default_rng(seed)
    requests = []
    limit = int(SERVICE_ENVIRONMENT["MAX_REQUEST_BYTES"])
    for number in range(count):
        rows = int(rng.integers(1, MAX_VALID_ROWS + 1))
        kind = "json" if number % 2 else "csv"
        body = _body(machine_frame(rows, rng), kind)
        while len(body) > limit:
            rows //= 2
            body = _body(machine_frame(rows, rng), kind)
        headers = {"Content-Type": "application/json" if kind == "json" else "text/csv"}
        requests.append(Request(f"valid/{kind}_{rows}_rows", body, headers, 200, rows))
    return requests


def _body(frame: pd.DataFrame, kind: str) -> bytes:
    if kind == "json":
        return frame.to_json(orient="records").encode()
    return frame.to_csv(index=False).encode()


def corpus_requests() -> list[Request]:
    requests = []
    for case in load_cases():
        if case.transport != "any" or case.name in SKIPPED_CASES:
            continue
        requests.append(_from_case(case))
    return requests


def _from_case(case: Case) -> Request:
    rows = case.expect["rows"] if case.accepted else None
    return Request(case.name, case.body, case.headers, case.expect["status"], rows)


def start_server(model_dir: Path) -> tuple[subprocess.Popen, int, list[str]]:
    executable = Path(sys.executable).with_name("anomaly-detector")
    command = [
        str(executable), "serve", "--model-dir", str(model_dir), "--port", "0",
        "--timezone", SERVICE_ENVIRONMENT["TIMEZONE"], "--threshold", "2.0", "--window", "3",
        "--min-duration", "2", "--max-request-bytes", SERVICE_ENVIRONMENT["MAX_REQUEST_BYTES"],
    ]  # fmt: skip
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": LOOPBACK,
        # Per-request log lines would fill the pipe; errors still come through.
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "PYTHONWARNINGS": "ignore",
    }
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env)  # fmt: skip
    output: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in process.stdout:
            if len(output) < 10_000:
                output.append(line)
            if READY.search(line):
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(START_SECONDS):
        process.kill()
        raise RuntimeError("serve did not start:\n" + "".join(output))
    port = int(READY.search("".join(output)).group(1))
    return process, port, output


def proc_sample(pid: int) -> dict[str, float]:
    """Read the RSS (MB), thread count and open file descriptors of a process."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def run_client(
    port: int, mix: list[Request], seed: int, deadline: float, max_requests: int
) -> ClientResult:
    rng = random.Random(seed)
    valid = [request for request in mix if request.name.startswith("valid/")]
    invalid = [request for request in mix if not request.name.startswith("valid/")]
    result = ClientResult()
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=HTTP_TIMEOUT_SECONDS)
    try:
        while time.monotonic() < deadline and result.requests < max_requests:
            request = rng.choice(valid if rng.random() < VALID_SHARE else invalid)
            result.requests += 1
            started = time.perf_counter()
            try:
                connection.request("POST", "/detect", body=request.body, headers=request.headers)
                response = connection.getresponse()
                text = response.read()
            except (OSError, http.client.HTTPException) as error:
                result.statuses["connection error"] += 1
                result.unexpected.append(f"{request.name}: {type(error).__name__}")
                connection.close()
                connection = http.client.HTTPConnection(
                    LOOPBACK, port, timeout=HTTP_TIMEOUT_SECONDS
                )
                continue
            result.latencies.append(time.perf_counter() - started)
            result.statuses[response.status] += 1
            if response.status != request.status:
                result.unexpected.append(f"{request.name}: {response.status}, not {request.status}")
            elif request.rows is not None and len(json.loads(text)["rows"]) != request.rows:
                result.unexpected.append(f"{request.name}: wrong number of result rows")
    finally:
        connection.close()
    return result


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(share * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


def memory_verdict(samples: list[dict], tolerance_mb: float) -> dict:
    """Compare the RSS after warm-up (second fifth) with the RSS of the last fifth."""
    fifth = max(len(samples) // 5, 1)
    settled = statistics.median(s["rss_mb"] for s in samples[fifth : 2 * fifth] or samples)
    final = statistics.median(s["rss_mb"] for s in samples[-fifth:])
    return {
        "rss_after_warmup_mb": round(settled, 1),
        "rss_last_fifth_mb": round(final, 1),
        "rss_growth_mb": round(final - settled, 1),
        "rss_max_mb": round(max(s["rss_mb"] for s in samples), 1),
        "threads_min_max": [min(s["threads"] for s in samples), max(s["threads"] for s in samples)],
        "fds_min_max": [min(s["fds"] for s in samples), max(s["fds"] for s in samples)],
        "flat": final - settled <= tolerance_mb,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300, help="run time (default 300)")
    parser.add_argument("--clients", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--max-requests", type=int, default=100_000,
                        help="maximum requests per client (default 100000)")  # fmt: skip
    parser.add_argument("--rss-tolerance-mb", type=float, default=20.0,
                        help="largest RSS growth counted as flat, in MB (default 20)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=7, help="seed of the request mix")
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 64 or not 0 < args.seconds <= 3_600:
        parser.error("--clients must be 1 to 64 and --seconds 0 to 3600")

    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    rng = np.random.default_rng(args.seed)
    train(machine_frame(600, rng), target="bearing_temperature", inputs=INPUTS,
          model_dir=workdir / "model", timestamp_column="timestamp")  # fmt: skip
    mix = valid_requests(40, args.seed) + corpus_requests()
    process, port, output = start_server(workdir / "model")
    samples: list[dict] = []
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.wait(1.0):
            samples.append({"t": time.monotonic() - started, **proc_sample(process.pid)})

    started = time.monotonic()
    samples.append({"t": 0.0, **proc_sample(process.pid)})
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    deadline = started + args.seconds
    results: list[ClientResult] = [ClientResult() for _ in range(args.clients)]

    def client(number: int) -> None:
        results[number] = run_client(port, mix, args.seed + number, deadline, args.max_requests)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(args.seconds + 2 * HTTP_TIMEOUT_SECONDS)
    finally:
        elapsed = time.monotonic() - started
        stop_sampling.set()
        sampler.join(5)
        process.send_signal(signal.SIGTERM)
        try:
            exit_code = process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            exit_code = process.wait(timeout=STOP_SECONDS)

    statuses: Counter = Counter()
    latencies: list[float] = []
    unexpected: list[str] = []
    for result in results:
        statuses.update(result.statuses)
        latencies.extend(result.latencies)
        unexpected.extend(result.unexpected)
    requests = sum(result.requests for result in results)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "seconds": round(elapsed, 1),
        "clients": args.clients,
        "requests": requests,
        "requests_per_second": round(requests / elapsed, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))},
        "unexpected": len(unexpected),
        "unexpected_examples": sorted(set(unexpected))[:10],
        "latency_ms_p50": round(1000 * percentile(latencies, 0.5), 1),
        "latency_ms_p95": round(1000 * percentile(latencies, 0.95), 1),
        "latency_ms_max": round(1000 * max(latencies, default=float("nan")), 1),
        "mix": {"valid": 40, "corpus": len(mix) - 40, "valid_share": VALID_SHARE},
        "memory": memory_verdict(samples, args.rss_tolerance_mb),
        "rss_samples_mb": [round(s["rss_mb"], 1) for s in samples[:: max(len(samples) // 20, 1)]],
        "server_exit_code": exit_code,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    passed = not unexpected and report["memory"]["flat"] and exit_code == 0
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
