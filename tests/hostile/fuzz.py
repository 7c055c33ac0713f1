"""Coverage-guided fuzzing of the request path with atheris (libFuzzer for Python).

``make fuzz`` runs it for 8 minutes (``-max_total_time=480``), then runs the property tests
with more examples. Other libFuzzer options pass through the command line. Every input
becomes an API Gateway event for ``DetectionService.handle``, configured as the
hostile corpus expects and with a formula model instead of an endpoint. The first byte of
an input chooses the content type, the content encoding and whether the body travels as
base64, and the other bytes are the body. The corpus bodies under ``bodies/`` seed the
campaign in ``out/fuzz/corpus/``, where libFuzzer also keeps the inputs that reach new code,
so a later campaign starts from them.

A finding is a response with status 500 or above, a body that is not strict JSON, or an
accepted request whose result does not have one row per input row. libFuzzer then stops
and writes the input to ``out/fuzz/crash-<sha1>``. Decode it with
``python tests/hostile/fuzz.py --show out/fuzz/crash-<sha1>``, fix the cause, and add the
request to ``fuzz_cases`` in ``build.py`` as a regression case.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
import warnings
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
CORPUS_DIR = HERE.parents[1] / "out" / "fuzz" / "corpus"
sys.path.insert(0, str(HERE.parent))

with atheris.instrument_imports(include=["anomaly_detector"]):
    from anomaly_detector import handler
    from anomaly_detector.handler import DetectionService

from fixtures_handler import FormulaPredictor, make_config  # noqa: E402
from hostile.corpus import SERVICE_ENVIRONMENT, load_cases  # noqa: E402

CONTENT_TYPES = ("text/csv", "application/json", "text/plain; charset=utf-8", "application/xml")
ENCODINGS = (None, "gzip")
SERVICE = DetectionService(make_config(**SERVICE_ENVIRONMENT), predictor=FormulaPredictor())


def decode_input(data: bytes) -> tuple[dict[str, str], bytes, bool]:
    """Split a fuzzer input into headers, body and the base64 flag."""
    selector = data[0] if data else 0
    headers = {"Content-Type": CONTENT_TYPES[selector % len(CONTENT_TYPES)]}
    encoding = ENCODINGS[(selector // len(CONTENT_TYPES)) % len(ENCODINGS)]
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    encoded = bool(selector & 0x80) or encoding is not None
    return headers, data[1:], encoded


def encode_input(headers: dict[str, str], body: bytes, encoded: bool) -> bytes:
    """Build the fuzzer input of a request; the inverse of ``decode_input``."""
    content_type = CONTENT_TYPES.index(headers.get("Content-Type", "text/csv"))
    encoding = ENCODINGS.index(headers.get("Content-Encoding"))
    selector = content_type + len(CONTENT_TYPES) * encoding + (0x80 if encoded else 0)
    return bytes([selector]) + body


def to_event(headers: dict[str, str], body: bytes, encoded: bool) -> dict:
    if encoded:
        text = base64.b64encode(body).decode("ascii")
    else:
        text = body.decode("utf-8", "surrogateescape")
    return {
        "path": "/detect",
        "httpMethod": "POST",
        "headers": headers,
        "body": text,
        "isBase64Encoded": encoded,
    }


def _reject_constant(name: str) -> float:
    raise ValueError(f"the JSON body contains {name}")


def check_one_input(data: bytes) -> None:
    """Send one input to the handler and raise on a finding."""
    headers, body, encoded = decode_input(data)
    try:
        event = to_event(headers, body, encoded)
    except UnicodeEncodeError:
        return
    response = SERVICE.handle(event)
    status = response["statusCode"]
    if status >= 500:
        # Run the request path again outside the handler's catch-all to get the traceback.
        SERVICE._detect(event, None, None)
        raise AssertionError(f"status {status}: {response['body']}")
    document = json.loads(response["body"], parse_constant=_reject_constant)
    if status == 200:
        rows, summary = document["rows"], document["summary"]
        if len(rows) != summary["rows"] or [r["row"] for r in rows] != list(range(len(rows))):
            raise AssertionError("the result rows do not match the input rows")


def write_seeds(directory: Path) -> int:
    """Write every corpus request that can travel over HTTP as a seed input."""
    count = 0
    for case in load_cases():
        if case.transport != "any" or case.headers.get("Content-Type") not in CONTENT_TYPES:
            continue
        if case.headers.get("Content-Encoding") not in ENCODINGS:
            continue
        seed = encode_input(case.headers, case.body, encoded=True)
        (directory / case.name.replace("/", "-")).write_bytes(seed)
        count += 1
    return count


def show(path: Path) -> None:
    headers, body, encoded = decode_input(path.read_bytes())
    print(json.dumps({"headers": headers, "base64": encoded}))
    print(repr(body[:2000]))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--show":
        show(Path(sys.argv[2]))
        return
    # The service's log lines and numpy's overflow warnings would flood libFuzzer's output.
    handler.logger.setLevel(logging.CRITICAL)
    warnings.simplefilter("ignore")
    CORPUS_DIR.mkdir(parents=True, exist_ok=True)
    print(f"{write_seeds(CORPUS_DIR)} seed inputs in {CORPUS_DIR}", flush=True)
    atheris.Setup([*sys.argv, str(CORPUS_DIR)], check_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
