"""Command line: ``anomaly-detector train | detect | serve | evaluate``.

``train`` fits the local model. ``detect`` scores a file with it, or with a SageMaker
endpoint, and writes results and figures. ``serve`` runs the HTTP API on 127.0.0.1, and
``evaluate`` compares results with labels.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .config import ConfigurationError, ScoringConfig, Span, parse_baseline
from .errors import DetectorError, RequestError

if TYPE_CHECKING:
    from .evaluation import EventSpans

# The terminal table lists the first events only; events.json has all of them.
MAX_PRINTED_EVENTS = 20
EPILOG = "Rows are counted from 0 over the data rows of the file (the header is not a row)."


def _positive_int(text: str) -> int:
    """Parse a whole number of at least 1, for sizes and counts given on the command line."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    """Parse a finite number above 0, such as a factor given on the command line."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anomaly-detector",
        description="Find anomalies in machine data from the residuals of a regression model.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="fit the local model on normal-operation data",
        description="Fit a LightGBM regression model that predicts TARGET from the inputs on "
        "normal-operation rows, hold out the last part (in time order) to measure its error, "
        "and write the model and its model card to --model-dir.",
        epilog=EPILOG,
    )
    train.add_argument(
        "data", type=Path, help="CSV (, ; or tab separated), JSON or JSON Lines (.jsonl) file"
    )
    train.add_argument("--target", required=True, help="column the model predicts")
    train.add_argument(
        "--inputs",
        nargs="+",
        metavar="COL",
        help="input columns in this order (default: every numeric column except "
        "the target, the timestamp and --exclude)",
    )
    train.add_argument(
        "--exclude",
        nargs="+",
        default=[],
        metavar="COL",
        help="columns that are not inputs, e.g. labels or ids",
    )
    train.add_argument(
        "--timestamp",
        metavar="COL",
        help="timestamp column (default: detected, the first column of ISO 8601 times)",
    )
    train.add_argument(
        "--timezone",
        default="UTC",
        help="IANA time zone of timestamps without an offset (default UTC)",
    )
    train.add_argument(
        "--rows", metavar="START:END", help="train on these data rows only, e.g. :400 (default all)"
    )
    train.add_argument(
        "--validation-fraction",
        type=float,
        default=0.2,
        metavar="F",
        help="fraction of the rows, the last in time, held out to measure RMSE (default 0.2)",
    )
    train.add_argument(
        "--window",
        default="5",
        help="rolling window recorded as the default for detect: rows (5) or a "
        "time span (5min) (default 5 rows)",
    )
    train.add_argument(
        "--min-duration",
        default="1",
        help="minimum event duration recorded as the default for detect: rows "
        "or a time span (default 1 row)",
    )
    train.add_argument(
        "--merge-gap",
        default="0",
        help="anomalous runs this close are one event, recorded as the default for detect: "
        "rows or a time span between them (default 0, no merging)",
    )
    train.add_argument(
        "--baseline",
        default="0",
        metavar="ROWS",
        help="score residuals against the median residual of the last ROWS normal rows, "
        "so that slow drift raises no event; recorded as the default for detect. Use it "
        "for a target that drifts in normal operation (default 0, none)",
    )
    train.add_argument(
        "--threshold-method",
        choices=["rmse", "calibrated", "extreme"],
        default="rmse",
        help="rmse: threshold = 2 x validation RMSE (default). calibrated: blocked "
        "cross-validation gives every training row an out-of-time residual, these are "
        "smoothed with --window, and the threshold is their highest score; the model is then "
        "refitted on every row. extreme: as calibrated, raised to the score that one fold's "
        "length of normal rows exceeds with 1%% probability, from a Gumbel fit to the "
        "folds' highest scores",
    )
    train.add_argument(
        "--threshold-factor",
        type=_positive_float,
        default=1.0,
        metavar="F",
        help="multiply the threshold that --threshold-method gives by F (default 1), for "
        "example to keep a drifting measurement quiet over a long normal run",
    )
    train.add_argument(
        "--cv-folds",
        type=int,
        default=5,
        metavar="K",
        help="blocks of time for --threshold-method calibrated and extreme (default 5)",
    )
    train.add_argument("--model-dir", required=True, type=Path, help="directory to write")

    detect = commands.add_parser(
        "detect",
        help="score a file and write results, events and figures",
        description="Predict the target for every row, score the residuals and write "
        "scored.csv, events.json, summary.json and three PNG figures to --out.",
        epilog=EPILOG + " Settings default to the model card's; options override them.",
    )
    detect.add_argument(
        "data", type=Path, help="CSV, JSON or JSON Lines file with the inputs and the target"
    )
    source = detect.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model-dir",
        type=Path,
        action="append",
        help="local model directory from train; repeat it to run one detector per target "
        "(each model predicts another column) and merge their events",
    )
    source.add_argument(
        "--endpoint",
        metavar="NAME",
        help="SageMaker endpoint name (needs --target, --inputs and --threshold; "
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME points it at a local server)",
    )
    _add_scoring_options(detect)
    detect.add_argument("--rows", metavar="START:END", help="score these data rows only, e.g. 400:")
    detect.add_argument(
        "--chunk-rows",
        type=_positive_int,
        default=100_000,
        metavar="N",
        help="rows read and scored at a time; bounds memory (default 100000)",
    )
    detect.add_argument(
        "--max-payload-bytes",
        type=_positive_int,
        default=4_000_000,
        metavar="B",
        help="largest endpoint request body in bytes (default 4000000)",
    )
    detect.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    detect.add_argument("--out", required=True, type=Path, help="output directory")

    serve = commands.add_parser(
        "serve",
        help="run the API locally on 127.0.0.1",
        description="Serve POST /detect as the deployed API does, through the same Lambda "
        "handler. With --model-dir, a local endpoint that speaks the SageMaker Runtime "
        "protocol serves the model, and the handler reaches it through "
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME; with --endpoint, the handler calls that "
        "SageMaker endpoint with your AWS credentials. Each stream (?stream=NAME) keeps its "
        "window tail and baseline in memory while the server runs. Stop with Ctrl+C or "
        "SIGTERM.",
    )
    serve_source = serve.add_mutually_exclusive_group(required=True)
    serve_source.add_argument("--model-dir", type=Path, help="local model directory from train")
    serve_source.add_argument(
        "--endpoint",
        metavar="NAME",
        help="SageMaker endpoint name (needs --target, --inputs, --threshold)",
    )
    _add_scoring_options(serve)
    serve.add_argument(
        "--port", type=int, default=8080, help="API port (default 8080; 0 = any free)"
    )
    serve.add_argument(
        "--endpoint-port",
        type=int,
        default=0,
        help="port of the local model endpoint (default 0: any free port)",
    )
    serve.add_argument("--asset-id", help="asset name for metric dimensions and warnings")
    serve.add_argument(
        "--metrics",
        choices=["off", "emf", "cloudwatch"],
        default="off",
        help="off (default), emf (metric log lines on stdout) or cloudwatch (PutMetricData; "
        "AWS_ENDPOINT_URL_CLOUDWATCH points it at a local server)",
    )
    serve.add_argument(
        "--topic-arn",
        help="SNS topic for warnings (AWS_ENDPOINT_URL_SNS points it at a local server)",
    )
    serve.add_argument(
        "--max-request-bytes",
        type=_positive_int,
        default=5_500_000,
        metavar="B",
        help="largest accepted request body in bytes (default 5500000)",
    )

    evaluate = commands.add_parser(
        "evaluate",
        help="compare is_anomaly in a scored file with labels",
        description="Compare the is_anomaly column of a scored.csv with a label column and "
        "print precision, recall, F1, false-alarm rate FAR = FP/(FP+TN), missed-alarm rate "
        "MAR = FN/(FN+TP) and event counts; write evaluation.json beside the input.",
    )
    evaluate.add_argument(
        "scored",
        type=Path,
        help="scored.csv written by detect, or the --out folder of a detect run with several "
        "--model-dir: its rows count as warned of when any target's event covers them",
    )
    evaluate.add_argument(
        "--label-column",
        required=True,
        help="column that is 1 (or true) on anomalous rows, 0 elsewhere",
    )
    evaluate.add_argument(
        "--events",
        type=Path,
        metavar="PATH",
        help="events.json from the same detect run: count the rows inside reported events "
        "(runs that lasted the minimum duration) instead of every row with is_anomaly",
    )
    return parser


def _add_scoring_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", help="target column (endpoint mode)")
    parser.add_argument(
        "--inputs",
        nargs="+",
        metavar="COL",
        help="input columns in the model's training order (endpoint mode)",
    )
    parser.add_argument("--timestamp", metavar="COL", help="timestamp column")
    parser.add_argument("--timezone", help="IANA time zone of timestamps without an offset")
    parser.add_argument(
        "--threshold",
        type=float,
        metavar="X",
        help="score above which a row is anomalous, in the target's unit "
        "(default: the model card's threshold)",
    )
    parser.add_argument(
        "--window", metavar="W", help="rolling-mean window: rows (5) or a time span (5min, 30s)"
    )
    parser.add_argument(
        "--min-duration",
        metavar="D",
        help="shortest event reported: rows or a time span",
    )
    parser.add_argument(
        "--merge-gap",
        metavar="G",
        help="anomalous runs at most G apart are one event: rows or a time span (0: none)",
    )
    parser.add_argument(
        "--baseline",
        metavar="ROWS",
        help="score residuals against the median residual of the last ROWS normal rows (0: none)",
    )


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit code (2 for bad input)."""
    args = build_parser().parse_args(argv)
    commands = {
        "train": run_train,
        "detect": run_detect,
        "serve": run_serve,
        "evaluate": run_evaluate,
    }
    try:
        return commands[args.command](args)
    except DetectorError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as error:
        print(f"error: {error.strerror}: {error.filename}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of stdout (e.g. head) stopped early: end quietly, as Unix tools do.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python flushes it at exit
        return 1


def run_train(args: argparse.Namespace) -> int:
    from .batch import RowRange, read_table
    from .local_model import default_inputs, detect_timestamp_column, train

    Span.parse(args.window, "--window")
    Span.parse(args.min_duration, "--min-duration")
    Span.parse_gap(args.merge_gap, "--merge-gap")
    parse_baseline(args.baseline, "--baseline")
    rows = RowRange.parse(args.rows)
    frame = read_table(args.data, rows)
    timestamp = args.timestamp or detect_timestamp_column(frame)
    inputs = args.inputs or default_inputs(
        frame, args.target, args.exclude, timestamp, first_row=rows.start
    )
    card = train(
        frame,
        target=args.target,
        inputs=inputs,
        model_dir=args.model_dir,
        timestamp_column=timestamp,
        timezone=args.timezone,
        validation_fraction=args.validation_fraction,
        window=args.window,
        min_duration=args.min_duration,
        merge_gap=args.merge_gap,
        baseline=args.baseline,
        threshold_method=args.threshold_method,
        cv_folds=args.cv_folds,
        first_row=rows.start,
        threshold_factor=args.threshold_factor,
    )
    # A calibrated model is refitted on every row, so no rows stay held out.
    held_out = f"held out {card.validation_rows}, "
    if card.threshold_method != "rmse":
        held_out = ""
    print(
        f"trained {card.algorithm} on {card.training_rows} rows "
        f"({held_out}dropped {card.dropped_rows} incomplete)"
    )
    print(f"  target     {card.target}")
    print(f"  inputs     {', '.join(card.inputs)}")
    print(f"  timestamp  {card.timestamp_column or '(none)'}")
    print(f"  validation RMSE {card.validation_rmse:.4g}, MAE {card.validation_mae:.4g}")
    scaled = "" if card.threshold_factor == 1 else f"{card.threshold_factor:g} x the "
    if card.threshold_method != "rmse":
        cal = card.calibration
        source = f"highest out-of-time score with window {cal['window']}, {cal['folds']} folds"
        if card.threshold_method == "extreme":
            source = (
                f"1% level of a Gumbel fit to the highest out-of-time scores with window "
                f"{cal['window']} in {cal['folds']} blocks of {cal['block_rows']} rows"
            )
        print(
            f"  threshold  {card.threshold:.4g} ({scaled}{source}; "
            f"{cal['threshold_over_cv_rmse']:.3g} x cross-validated RMSE {cal['cv_rmse']:.4g})"
        )
    else:
        print(f"  threshold  {card.threshold:.4g} ({2 * card.threshold_factor:g} x RMSE)")
    print(f"  written to {args.model_dir}")
    return 0


def run_detect(args: argparse.Namespace) -> int:
    """Score the file with one model, or with one detector per target for several."""
    from .batch import RowRange, TargetResult, detect_file, detect_targets

    model_dirs = args.model_dir or [None]
    several = len(model_dirs) > 1
    if several:
        for option in ("target", "threshold", "inputs"):
            if getattr(args, option) is not None:
                raise ConfigurationError(
                    f"--{option} applies to one model; leave it out when --model-dir is "
                    "repeated, since each model's card gives its own."
                )
    models = [_detect_setup(args, model_dir=model_dir) for model_dir in model_dirs]
    total = _count_data_rows(args.data)
    rows = RowRange.parse(args.rows)
    with _ProgressBar(None if total is None else total * len(models)) as advance:
        if several:
            results, events = detect_targets(
                args.data, models, args.out, rows, args.chunk_rows, advance
            )
        else:
            config, predictor = models[0]
            result = detect_file(
                args.data, config, predictor, args.out, rows, args.chunk_rows, advance
            )
            # One model writes straight into --out: its folder is --out itself.
            results, events = [TargetResult(config.target, "", result)], result.events
    if not args.no_figures:
        from .plots import write_figures

        for item in results:
            write_figures(item.result.plot, item.result.events, item.target, args.out / item.folder)
    if several:
        _print_targets(results, events, args.out, _figures_text(args))
    else:
        _print_detection(results[0].result.summary, events, args.out, _figures_text(args))
    return 0


def _detect_setup(
    args: argparse.Namespace, build_client: bool = True, model_dir: Path | None = None
):
    model_dir = model_dir if model_dir is not None else getattr(args, "model_dir", None)
    if model_dir is not None:
        from .local_model import CARD_FILE, LocalModel

        model = LocalModel(model_dir)
        card = model.card
        if args.inputs and list(args.inputs) != list(card.inputs):
            raise ConfigurationError(
                f"--inputs {args.inputs} differ from the model's inputs {card.inputs}; leave "
                "--inputs out with --model-dir."
            )
        card_path = Path(model_dir) / CARD_FILE

        def setting(option: str | None, field: str, flag: str) -> tuple[str, str]:
            """Return the option's value, else the card's, with a name for error messages."""
            if option:
                return option, flag
            return getattr(card, field), f"{field} in {card_path}"

        config = ScoringConfig(
            target=args.target or card.target,
            inputs=tuple(card.inputs),
            threshold=args.threshold if args.threshold is not None else card.threshold,
            timestamp_column=args.timestamp or card.timestamp_column,
            timezone=args.timezone or "UTC",
            window=Span.parse(*setting(args.window, "window", "--window")),
            min_duration=Span.parse(*setting(args.min_duration, "min_duration", "--min-duration")),
            merge_gap=Span.parse_gap(*setting(args.merge_gap, "merge_gap", "--merge-gap")),
            baseline=parse_baseline(*setting(args.baseline, "baseline", "--baseline")),
        )
        if (
            card.threshold_method != "rmse"
            and args.threshold is None
            and str(config.window) != card.calibration["window"]
        ):
            print(
                f"warning: the threshold was calibrated for window {card.calibration['window']}, "
                f"not {config.window}; train again with --window {config.window} or give "
                "--threshold.",
                file=sys.stderr,
            )
        return config, model

    import boto3

    from .predictors import SageMakerPredictor, runtime_client_config

    missing = [name for name in ("target", "inputs", "threshold") if getattr(args, name) is None]
    if missing:
        raise ConfigurationError(
            "With --endpoint, also give " + ", ".join(f"--{m}" for m in missing) + "."
        )
    config = ScoringConfig(
        target=args.target,
        inputs=tuple(args.inputs),
        threshold=args.threshold,
        timestamp_column=args.timestamp,
        timezone=args.timezone or "UTC",
        window=Span.parse(args.window or "5", "--window"),
        min_duration=Span.parse(args.min_duration or "1", "--min-duration"),
        merge_gap=Span.parse_gap(args.merge_gap or "0", "--merge-gap"),
        baseline=parse_baseline(args.baseline or "0", "--baseline"),
    )
    if not build_client:
        return config, None
    from botocore.exceptions import NoRegionError

    # AWS_REGION is what Lambda sets; boto3 itself reads AWS_DEFAULT_REGION and ~/.aws/config.
    region = os.environ.get("AWS_REGION") or None
    try:
        client = boto3.client(
            "sagemaker-runtime", region_name=region, config=runtime_client_config(20.0)
        )
    except NoRegionError as error:
        raise ConfigurationError(
            "No AWS Region is set for --endpoint. Set AWS_DEFAULT_REGION or AWS_REGION to "
            "the endpoint's Region, for example AWS_DEFAULT_REGION=eu-west-1."
        ) from error
    return config, SageMakerPredictor(client, args.endpoint, args.max_payload_bytes)


def run_serve(args: argparse.Namespace) -> int:
    import os
    import signal
    import threading

    from .config import ServiceConfig
    from .handler import DetectionService
    from .local_server import ApiServer, ModelEndpointServer, logger, start_in_thread
    from .state import MemoryStreamStore

    scoring, model = _detect_setup(args, build_client=False)
    endpoint_name = args.endpoint or "local-model"
    endpoint = None
    if model is not None:
        endpoint = _listen(
            lambda: ModelEndpointServer(model, endpoint_name, port=args.endpoint_port),
            "--endpoint-port",
            args.endpoint_port,
        )
    # Kept to put the environment back if the API cannot listen (main may be called again).
    environment = dict(os.environ)
    if endpoint is not None:
        # The handler's boto3 client reaches the local endpoint through the standard
        # override; local credentials keep boto3 from searching anywhere else for them.
        os.environ["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = endpoint.url
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    config = ServiceConfig(
        scoring=scoring,
        endpoint_name=endpoint_name,
        asset_id=args.asset_id,
        metrics_mode=args.metrics,
        topic_arn=args.topic_arn,
        max_request_bytes=args.max_request_bytes,
    )
    try:
        api = _listen(
            # Each stream's window tail and baseline last as long as the process, as the
            # deployed service keeps them in its table.
            lambda: ApiServer(
                DetectionService(config, stream_store=MemoryStreamStore()), port=args.port
            ),
            "--port",
            args.port,
        )
    except ConfigurationError:
        if endpoint is not None:
            endpoint.server_close()
        os.environ.clear()
        os.environ.update(environment)
        raise
    servers = [s for s in (endpoint, api) if s is not None]
    for server in servers:
        start_in_thread(server)

    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    url = f"http://127.0.0.1:{api.server_address[1]}"
    print(f"API on {url}: POST {url}/detect, GET {url}/openapi.json", flush=True)
    if endpoint is not None:
        print(f"local model endpoint {endpoint_name!r} on {endpoint.url}", flush=True)
    print("stop with Ctrl+C", flush=True)
    logger.info("local API started", extra={"port": api.server_address[1]})
    stop.wait()
    for server in reversed(servers):
        server.shutdown()
        server.server_close()
    logger.info("local API stopped")
    return 0


def _count_data_rows(path: Path) -> int | None:
    if path.suffix.lower() == ".json" or path.stat().st_size < 20_000_000:
        return None
    lines = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 24):
            lines += block.count(b"\n")
    return max(lines - 1, 0)


class _ProgressBar:
    """A rich progress bar on long files when stderr is a terminal; a no-op otherwise."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.bar = None

    def __enter__(self):
        if self.total and sys.stderr.isatty():
            from rich.progress import Progress

            self.bar = Progress(transient=True)
            self.bar.start()
            task = self.bar.add_task("scoring rows", total=self.total)
            return lambda rows: self.bar.advance(task, rows)
        return lambda rows: None

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def _print_detection(summary: dict, events: list[dict], out: Path, figures: str) -> None:
    from rich.console import Console

    console = Console()
    console.width = max(console.width, 140)  # room for full timestamps when piped
    _print_summary(console, summary)
    console.print(_events_table(events))
    if len(events) > MAX_PRINTED_EVENTS:
        console.print(f"... and {len(events) - MAX_PRINTED_EVENTS} more in events.json")
    console.print(
        f"results in {out}/ (scored.csv, events.json, summary.json{figures})", markup=False
    )


def _print_targets(results: list, events: list[dict], out: Path, figures: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    console.width = max(console.width, 140)
    for item in results:
        console.print(f"[bold]{escape(item.target)}[/bold] ({item.folder}/):", end=" ")
        _print_summary(console, item.result.summary)
    console.print(_events_table(events))
    if len(events) > MAX_PRINTED_EVENTS:
        console.print(f"... and {len(events) - MAX_PRINTED_EVENTS} more in events.json")
    console.print(
        f"results in {out}/: events.json and summary.json for all targets, and one folder "
        f"per target with its scored.csv, events.json, summary.json{figures}",
        markup=False,
    )


def _figures_text(args: argparse.Namespace) -> str:
    return "" if args.no_figures else " and figures"


def _print_summary(console, summary: dict) -> None:
    max_score = summary["max_score"]
    console.print(
        f"scored {summary['scored_rows']} of {summary['rows']} rows; "
        f"{summary['anomalous_rows']} anomalous; threshold {summary['threshold']:.4g}; "
        f"max score {'n/a' if max_score is None else f'{max_score:.4g}'}",
        markup=False,
    )
    if summary["not_scored"]:
        reasons = ", ".join(f"{k} {v}" for k, v in summary["not_scored"].items())
        console.print(f"not scored: {reasons}", markup=False)


def _events_table(events: list[dict]):
    from rich.markup import escape
    from rich.table import Table

    from .scoring import describe_inputs

    table = Table(title=f"{len(events)} event(s)")
    columns = ("#", "onset", "start", "end", "rows", "peak score", "target", "inputs moved")
    for column in columns:
        table.add_column(column)
    for number, event in enumerate(events[:MAX_PRINTED_EVENTS], start=1):
        table.add_row(
            str(number),
            str(event["onset"]),
            str(event["start"]),
            str(event["end"]),
            str(event["rows"]),
            f"{event['peak_score']:.4g}",
            escape(_target_text(event)),
            escape(describe_inputs(event)),
        )
    return table


def _target_text(event: dict) -> str:
    """Say where the target lay against its prediction, in units of the normal error."""
    from .scoring import describe_direction

    ratio = event.get("target_deviation")
    text = describe_direction(event)
    # A signed mean of both sides understates the deviation, so "both" shows no ratio.
    if ratio is not None and event["direction"] != "both":
        text = f"{text}, {abs(ratio):.1f}x error"
    if "target" not in event:
        return text
    others = ", ".join(other["target"] for other in event.get("other_targets") or [])
    return f"{event['target']} {text}" + (f"; also {others}" if others else "")


ROW_KEYS = ("start_row", "end_row")


def _read_events(path: Path) -> list[dict]:
    try:
        events = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise RequestError(f"Cannot read events from {path}: {error}.") from error
    if not isinstance(events, list):
        raise RequestError(
            f"{path} is not an events.json from detect: expected a list of events, found "
            f"{type(events).__name__}."
        )
    for number, event in enumerate(events):
        rows = [event.get(key) if isinstance(event, dict) else None for key in ROW_KEYS]
        if not all(_is_row(r) for r in rows):
            raise RequestError(
                f"Event {number} in {path} has no valid start_row and end_row: both must be "
                "whole numbers of 0 or more. Use the events.json written by detect."
            )
        onset = event.get("onset_row", rows[0])
        if not _is_row(onset):
            raise RequestError(
                f"Event {number} in {path} has an invalid onset_row {onset!r}: it must be a "
                "whole number of 0 or more. Use the events.json written by detect."
            )
    return events


def _is_row(value: object) -> bool:
    # Row numbers fit in 64 bits; larger ones cannot name a row of any file.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62


@dataclass
class _Labelled:
    """One scored.csv read for evaluate: labels and predictions per row."""

    name: str
    rows: np.ndarray
    known: np.ndarray
    truth: np.ndarray
    scored: np.ndarray
    positions: np.ndarray
    predicted: np.ndarray


def _listen(make_server, option: str, port: int):
    """Start listening on 127.0.0.1, or raise an error that names the port and a fix."""
    try:
        return make_server()
    except OSError as error:
        hint = (
            "Stop the program that holds it, or give another port"
            if error.errno == errno.EADDRINUSE
            else "Give another port"
        )
        raise ConfigurationError(
            f"Port {port} on 127.0.0.1 cannot be used ({option}): {error.strerror}. {hint}, "
            f"or {option} 0 for any free port."
        ) from error


def _labelled_rows(path: Path, label_column: str, events_path: Path | None) -> _Labelled:
    """Read a scored.csv and flag its rows, by is_anomaly or by the events in events_path."""
    from .evaluation import EventSpans, scoring_positions

    if path.suffix.lower() == ".json":
        raise RequestError(
            f"{path} is JSON. Give the scored.csv that detect wrote, or its --out folder. "
            "events.json goes to --events."
        )
    try:
        frame = pd.read_csv(path, low_memory=False)
    except pd.errors.EmptyDataError as error:
        raise RequestError(f"{path} is empty. Give the scored.csv that detect wrote.") from error
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise RequestError(
            f"{path} cannot be read as CSV ({error}). Give the scored.csv that detect wrote."
        ) from error
    for column in ("is_anomaly", label_column):
        if column not in frame.columns:
            raise RequestError(
                f"{path} has no column {column!r}; columns found: {list(frame.columns)}. "
                + (
                    "Give the scored.csv that detect wrote."
                    if column == "is_anomaly"
                    else "Name the label column with --label-column."
                )
            )
    labels = pd.to_numeric(frame[label_column], errors="coerce")
    known = labels.notna().to_numpy()
    if not known.any():
        raise RequestError(f"Column {label_column!r} contains no numeric labels.")
    anomalous = frame["is_anomaly"].astype(str).str.lower().isin(["true", "1", "1.0"]).to_numpy()
    times = None
    if "timestamp" in frame.columns:
        # NOTE: scored.csv keeps times to the microsecond, so rows whose times differ only
        # below that may be ordered here differently from the order detect scored them in.
        times = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce", format="ISO8601")
        times = times.dt.tz_localize(None).to_numpy()
    scored = np.ones(len(frame), dtype=bool)
    if "status" in frame.columns:
        scored = (frame["status"] == "scored").to_numpy()
    positions = scoring_positions(times, len(frame))
    row_numbers = frame["row"].to_numpy() if "row" in frame.columns else np.arange(len(frame))
    predicted = anomalous
    if events_path is not None:
        events = _read_events(events_path)
        spans = EventSpans.of(events, row_numbers, positions)
        _check_events(events, events_path, path, row_numbers, anomalous, scored, spans)
        predicted = spans.flags(scored)
    truth = labels.to_numpy() > 0.5
    return _Labelled(path.parent.name, row_numbers, known, truth, scored, positions, predicted)


def _labelled_targets(out: Path, label_column: str) -> list[_Labelled]:
    """Read every target's scored.csv and events.json of a detect run over several targets."""
    from .batch import target_folders

    folders = target_folders(out, strict=True)
    if not folders and (out / "scored.csv").is_file():
        raise RequestError(
            f"{out} has the results of a detect run with one target. Give its scored.csv, "
            f"and add --events {out / 'events.json'} to count the rows of its events."
        )
    if not folders:
        raise RequestError(
            f"{out} is a folder without the summary.json of a detect run over several "
            "targets. Give that run's --out folder or one scored.csv."
        )
    labelled = []
    for folder in folders:
        item = _labelled_rows(
            out / folder / "scored.csv", label_column, out / folder / "events.json"
        )
        if labelled and not np.array_equal(item.rows, labelled[0].rows):
            raise RequestError(
                f"{out / folder / 'scored.csv'} contains other rows than "
                f"{out / folders[0] / 'scored.csv'}; the folders come from different runs. "
                "Run detect again with every --model-dir."
            )
        labelled.append(item)
    return labelled


def _check_events(
    events: list[dict],
    path: Path,
    scored_path: Path,
    rows: np.ndarray,
    anomalous: np.ndarray,
    scored: np.ndarray,
    spans: EventSpans,
) -> None:
    """Reject events that do not fit the scored file: rows missing, out of order, not anomalous.

    An event is one or more whole runs of anomalous rows in scoring order: its start_row and
    end_row are anomalous, it holds as many anomalous rows as its ``rows`` says (all of its
    rows unless a merge gap joined runs), and the scored rows next to it are not anomalous.
    """
    other_run = f"Use the events.json written by the detect run that wrote {scored_path}."
    named = {"start_row": spans.start, "end_row": spans.end, "onset_row": spans.onset}
    places = {key: spans.place(index) for key, index in named.items()}

    def row(event: int, key: str) -> int:
        return events[event].get(key, events[event]["start_row"])

    def fail(condition: np.ndarray, message: Callable[[int], str]) -> None:
        if np.any(condition):
            number = int(np.flatnonzero(condition)[0])
            raise RequestError(f"Event {number} in {path} {message(number)} {other_run}")

    for key, place in places.items():
        fail(
            (place < 0) | ~scored[np.maximum(named[key], 0)],
            lambda n, key=key: (
                f"names {key} {row(n, key)}, which is not a scored row of "
                f"{scored_path} (its rows are {rows.min()} to {rows.max()})."
            ),
        )
    first_of_start = np.zeros(len(events), dtype=bool)
    first_of_start[np.unique(spans.start, return_index=True)[1]] = True
    fail(~first_of_start, lambda n: f"repeats the event that starts at row {row(n, 'start_row')}.")
    start, end, onset = places["start_row"], places["end_row"], places["onset_row"]
    fail(
        start > end,
        lambda n: (
            f"starts after it ends (start_row {row(n, 'start_row')}, end_row "
            f"{row(n, 'end_row')}, in the order the rows were scored)."
        ),
    )
    fail(
        onset > start,
        lambda n: (
            f"has an invalid onset_row {row(n, 'onset_row')}: it comes after start_row "
            f"{row(n, 'start_row')} in the order the rows were scored."
        ),
    )

    # Rows in scoring order: which are scored, and which of those are anomalous.
    by_place = np.full(int(spans.positions.max()) + 1, -1)
    has_place = spans.positions >= 0
    by_place[spans.positions[has_place]] = np.flatnonzero(has_place)
    counted = scored[by_place]
    flagged = counted & anomalous[by_place]
    fail(
        ~flagged[start] | ~flagged[end],
        lambda n: (
            f"runs from row {row(n, 'start_row')} to {row(n, 'end_row')}, but row "
            f"{row(n, 'start_row' if not flagged[start[n]] else 'end_row')} is not anomalous in "
            f"{scored_path}, so the events come from another run."
        ),
    )
    # A merge gap lets normal rows lie inside an event, so count its anomalous rows instead:
    # every anomalous row from start to end belongs to the event.
    flagged_before = np.concatenate([[0], np.cumsum(flagged)])
    counted_before = np.concatenate([[0], np.cumsum(counted)])
    flagged_inside = flagged_before[end + 1] - flagged_before[start]
    claimed = np.array(
        [
            event["rows"]
            if isinstance(event.get("rows"), int)
            else counted_before[last + 1] - counted_before[first]
            for event, first, last in zip(events, start, end, strict=True)
        ]
    )
    fail(
        flagged_inside != claimed,
        lambda n: (
            f"runs from row {row(n, 'start_row')} to {row(n, 'end_row')} with "
            f"{claimed[n]} anomalous rows, but {flagged_inside[n]} rows in that span are anomalous "
            f"in {scored_path}, so the events come from another run."
        ),
    )
    counted_places = np.flatnonzero(counted)
    before = np.searchsorted(counted_places, start) - 1
    after = np.searchsorted(counted_places, end, side="right")
    for side, neighbour_index, valid in (
        ("before", before, before >= 0),
        ("after", after, after < len(counted_places)),
    ):
        neighbour = np.full(len(events), -1)
        neighbour[valid] = by_place[counted_places[neighbour_index[valid]]]
        fail(
            valid & anomalous[np.maximum(neighbour, 0)],
            lambda n, side=side, neighbour=neighbour: (
                f"runs from row {row(n, 'start_row')} to "
                f"{row(n, 'end_row')}, but row {rows[neighbour[n]]} just {side} it is anomalous "
                f"too in {scored_path}, so the events come from another run."
            ),
        )


def run_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate

    if args.scored.is_dir():
        if args.events is not None:
            raise ConfigurationError(
                f"{args.scored} is a folder: its targets' events are read from their folders, "
                "so leave --events out."
            )
        labelled = _labelled_targets(args.scored, args.label_column)
        folders = ", ".join(item.name for item in labelled)
        print(f"rows warned of by any of {len(labelled)} targets, in the folders {folders}")
        out = args.scored / "evaluation.json"
    else:
        labelled = [_labelled_rows(args.scored, args.label_column, args.events)]
        out = args.scored.parent / "evaluation.json"
    first = labelled[0]
    # A row is in a warning when any target's event covers it, and scored when any target
    # scored it.
    predicted = np.logical_or.reduce([item.predicted for item in labelled])
    scored = np.logical_or.reduce([item.scored for item in labelled])
    known, truth, positions = first.known, first.truth, first.positions
    result = evaluate(predicted[known], truth[known])
    # Runs, labelled and predicted, are counted in scoring order over the scored rows, so that
    # unsorted files and rows that could not be scored do not cut them.
    in_runs = np.flatnonzero(known & scored & (positions >= 0))
    in_runs = in_runs[np.argsort(positions[in_runs], kind="stable")]
    runs_only = evaluate(predicted[in_runs], truth[in_runs])
    for name in ("labelled_events", "detected_labelled_events", "predicted_runs", "false_runs"):
        setattr(result, name, getattr(runs_only, name))

    def show(value):
        return "n/a" if value is None else f"{value:.4f}"

    print(
        f"rows {result.rows} (labelled), TP {result.tp}, FP {result.fp}, TN {result.tn}, "
        f"FN {result.fn}"
    )
    print(f"precision {show(result.precision)}  recall {show(result.recall)}  F1 {show(result.f1)}")
    print(
        f"FAR {show(result.far)} (false alarms among normal rows)  "
        f"MAR {show(result.mar)} (missed among anomalous rows)"
    )
    print(
        f"labelled events {result.labelled_events}, detected {result.detected_labelled_events}; "
        f"predicted runs {result.predicted_runs}, of which false {result.false_runs}"
    )
    out.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    print(f"written to {out}")
    return 0
