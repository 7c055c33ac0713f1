"""Local API under load: ``anomaly-detector serve`` with 1, 8 and 32 concurrent clients.

The server runs as a child process on 127.0.0.1 with the benchmark's model; its port is
read from its first output line. Each client is a thread with one kept-alive HTTP/1.1
connection that posts the same 1,000-row CSV request again and again for a fixed time (and
at most a fixed count), then stops. Latency is measured from sending a request to reading
its whole response. The reference for the goal is the same request through the same
``DetectionService`` in this process, with a boto3 client calling a local model endpoint
here, one request at a time.

Usage: python -m benchmarks.bench_serve [--seconds S] [--clients 1 8 32]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import subprocess
import threading
import time

import numpy as np
import pandas as pd

from benchmarks.bench_cli_scale import CLI, trained_model
from benchmarks.common import (
    PYTHON,
    REPO_DIR,
    Goal,
    Report,
    fake_aws_environment,
    generate_motor,
    iso_seconds,
    markdown_table,
    median,
    proxy_event,
    stdout_discarded,
)

LOOPBACK = "127.0.0.1"
REQUEST_ROWS = 1_000
CLIENT_COUNTS = (1, 8, 32)
MAX_REQUESTS_PER_CLIENT = 5_000
READY_PATTERN = re.compile(r"API on http://127\.0\.0\.1:(\d+)")


def request_body(rows: int = REQUEST_ROWS, seed: int = 5) -> bytes:
    data = generate_motor(rows, seed, first_second=40 * 86_400)
    frame = pd.DataFrame({"timestamp": iso_seconds(data.seconds).astype(str), **data.columns})
    return frame.to_csv(index=False, lineterminator="\n").encode()


def start_server(
    model_dir, env: dict[str, str], proposed: bool = False
) -> tuple[subprocess.Popen, int]:
    command = [CLI, "serve", "--model-dir", str(model_dir), "--port", "0"]
    if proposed:
        command = [PYTHON, "-m", "benchmarks.cli_proposed", "--backlog", *command[1:]]
    server = subprocess.Popen(
        command,
        env=env,
        cwd=REPO_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    first_line = server.stdout.readline()
    match = READY_PATTERN.match(first_line)
    if match is None:
        server.kill()
        raise RuntimeError(f"serve printed {first_line!r}, not 'API on http://127.0.0.1:PORT'")
    # Drain the rest of its output, so that the server never blocks on a full pipe.
    threading.Thread(target=server.stdout.read, daemon=True).start()
    return server, int(match.group(1))


def client_loop(
    port: int, body: bytes, deadline: float, latencies: list[float], errors: list[str]
) -> None:
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=60)
    headers = {"Content-Type": "text/csv"}
    try:
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            if time.perf_counter() >= deadline:
                break
            started = time.perf_counter()
            try:
                connection.request("POST", "/detect", body=body, headers=headers)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as error:
                errors.append(type(error).__name__)
                connection.close()
                connection = http.client.HTTPConnection(LOOPBACK, port, timeout=60)
                continue
            if response.status != 200:
                errors.append(f"HTTP {response.status}")
                continue
            latencies.append(time.perf_counter() - started)
    finally:
        connection.close()


def load(port: int, body: bytes, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    deadline = started + seconds
    threads = [
        threading.Thread(target=client_loop, args=(port, body, deadline, latencies, errors))
        for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    values = np.array(latencies) if latencies else np.array([np.nan])
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "rps": len(latencies) / elapsed,
        "p50_s": float(np.percentile(values, 50)),
        "p99_s": float(np.percentile(values, 99)),
    }


def in_process_time(model_dir, body: bytes, repeats: int = 30) -> float:
    """Median time of the same request through DetectionService in this process."""
    from anomaly_detector.config import ServiceConfig
    from anomaly_detector.handler import DetectionService
    from anomaly_detector.local_model import LocalModel
    from anomaly_detector.local_server import ModelEndpointServer, start_in_thread

    model = LocalModel(model_dir)
    card = model.card
    endpoint = ModelEndpointServer(model, "local-model", port=0)
    start_in_thread(endpoint)
    os.environ["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = endpoint.url
    try:
        config = ServiceConfig(
            scoring=card.scoring_config(), endpoint_name="local-model", metrics_mode="off"
        )
        service = DetectionService(config)
        event = proxy_event(body.decode())
        times = []
        for index in range(repeats + 3):
            started = time.perf_counter()
            with stdout_discarded():
                result = service.handle(event)
            if index >= 3:  # the first calls open connections and warm caches
                times.append(time.perf_counter() - started)
            assert result["statusCode"] == 200, result["body"][:300]
    finally:
        os.environ.pop("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", None)
        endpoint.shutdown()
        endpoint.server_close()
    return median(times)


def run(seconds: float, client_counts: list[int]) -> Report:
    os.environ.update(fake_aws_environment())
    env = {**os.environ}
    _, model_dir = trained_model(env)
    body = request_body()
    handler_seconds = in_process_time(model_dir, body)

    def measure(counts: list[int], proposed: bool) -> list[dict]:
        server, port = start_server(model_dir, env, proposed)
        try:
            load(port, body, 1, min(seconds, 2.0))  # warm-up
            return [load(port, body, clients, seconds) for clients in counts]
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()

    results = measure(client_counts, proposed=False)
    proposed_results = measure([max(client_counts)], proposed=True)

    by_clients = {result["clients"]: result for result in results}
    goals = []
    if 8 in by_clients:
        goals.append(
            Goal(
                "p99 at 8 clients <= 2 x in-process handler time",
                by_clients[8]["p99_s"] / handler_seconds,
                2.0,
            )
        )
    errors = sum(r["errors"] for r in results)
    goals.append(Goal("no errors under load", errors, 0, measure="errors"))
    proposed_errors = sum(r["errors"] for r in proposed_results)
    goals.append(
        Goal(
            "no errors under load, proposed backlog 128",
            proposed_errors,
            0,
            "not the product as it is: local_server.py with the proposed listen backlog",
            measure="errors",
        )
    )
    cores = os.cpu_count() or 1
    rows = [_table_row(r, handler_seconds, "as it is") for r in results]
    rows += [_table_row(r, handler_seconds, "proposed backlog 128") for r in proposed_results]
    table = markdown_table(
        [
            "server",
            "clients",
            "requests",
            "errors",
            "requests/s",
            "p50 ms",
            "p99 ms",
            "p99 ÷ in-process",
        ],
        rows,
    )
    markdown = (
        f"Request: {REQUEST_ROWS:,} rows, {len(body):,} bytes of CSV, `rows=all` response. "
        f"{seconds:g} s per client count; clients are threads in the benchmark process, "
        f"which shares the {cores} cores with the server. The same request through "
        f"`DetectionService` in process took {handler_seconds * 1000:.1f} ms (median of 30), "
        "the reference for the p99 goal. A closed loop of N clients waits N / throughput on "
        f"average; with {cores} cores and requests that keep a core busy, that is at least "
        f"N / {cores} times the single-request time, {8 / cores:g}x for 8 clients.\n\n" + table
    )
    return Report(
        name="serve",
        title="Local API under load",
        goals=goals,
        markdown=markdown,
        numbers={
            "in_process_s": handler_seconds,
            "loads": results,
            "proposed_backlog_loads": proposed_results,
        },
    )


def _table_row(result: dict, handler_seconds: float, server: str) -> list:
    errors = result["errors"]
    if result["error_kinds"]:
        errors = f"{errors} ({', '.join(result['error_kinds'])})"
    return [
        server,
        result["clients"],
        result["requests"],
        errors,
        f"{result['rps']:.1f}",
        f"{result['p50_s'] * 1000:.0f}",
        f"{result['p99_s'] * 1000:.0f}",
        f"{result['p99_s'] / handler_seconds:.1f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per client count (default 10)")
    parser.add_argument(
        "--clients", type=int, nargs="+", default=list(CLIENT_COUNTS), help="default 1 8 32"
    )
    args = parser.parse_args()
    run(args.seconds, args.clients).save()


if __name__ == "__main__":
    main()
