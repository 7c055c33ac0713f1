"""Load the hostile-input corpus and turn a case into the request that the service receives.

``cases.json`` lists every case: its body file under ``bodies/``, its headers, how it may
be sent, and the expected response: the status, then the error code and message fragments,
or the number of rows, the number of scored rows and the target value of each output row. ``build.py``
writes both.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
# The service settings that the expectations assume, as Lambda environment variables.
# MAX_PAYLOAD_BYTES is the smallest allowed, so that requests of 59 rows or more reach the
# endpoint in several payloads.
SERVICE_ENVIRONMENT = {
    "TIMEZONE": "Europe/Berlin",
    "MAX_REQUEST_BYTES": "65536",
    "MAX_PAYLOAD_BYTES": "1000",
}
_TEXT_TYPES = ("text/", "application/json", "application/csv")


def machine_frame(
    rows: int, rng: np.random.Generator, start: str = "2024-05-01"
) -> pd.DataFrame:
    """Build rows over the corpus's value ranges, with the target near 0.1 x torque + ambient."""
    torque = rng.uniform(40, 160, rows)
    ambient = rng.uniform(18, 25, rows)
    times = pd.date_range(start, periods=rows, freq="1min", tz="UTC")
    return pd.DataFrame(
        {
            "timestamp": times.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "motor_speed": rng.uniform(1200, 1500, rows).round(1),
            "torque": torque.round(2),
            "ambient_temperature": ambient.round(2),
            "bearing_temperature": (0.1 * torque + ambient + rng.normal(0, 0.1, rows)).round(3),
        }
    )


@dataclass(frozen=True)
class Case:
    """One corpus request and its expected response."""

    name: str
    description: str
    body: bytes
    headers: dict[str, str]
    transport: str
    expect: dict[str, Any]

    @property
    def group(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def accepted(self) -> bool:
        return self.expect["status"] == 200

    def event(self) -> dict:
        """Build the API Gateway REST proxy event for this case.

        Text bodies travel as text and other bytes as base64, as the local API sends them.
        Event-only cases carry a body that no HTTP client could send (see ``build.Case``).
        """
        content_type = self.headers.get("Content-Type", "")
        text = None
        if self.transport == "event":
            text, encoded = self.body.decode("ascii"), True
        elif self.transport == "event_text":
            text, encoded = self.body.decode("utf-8", "surrogateescape"), False
        elif content_type.startswith(_TEXT_TYPES) and "Content-Encoding" not in self.headers:
            try:
                text, encoded = self.body.decode("utf-8"), False
            except UnicodeDecodeError:
                text = None
        if text is None:
            text, encoded = base64.b64encode(self.body).decode("ascii"), True
        return {
            "resource": "/detect",
            "path": "/detect",
            "httpMethod": "POST",
            "headers": dict(self.headers),
            "queryStringParameters": None,
            "requestContext": {"requestId": f"corpus-{self.name}", "stage": "test"},
            "body": text,
            "isBase64Encoded": encoded,
        }


def load_cases(directory: Path = HERE) -> list[Case]:
    """Read cases.json and the body of every case."""
    document = json.loads((directory / "cases.json").read_text())
    return [
        Case(
            name=entry["name"],
            description=entry["description"],
            body=(directory / entry["body"]).read_bytes(),
            headers=entry["headers"],
            transport=entry["transport"],
            expect=entry["expect"],
        )
        for entry in document["cases"]
    ]


def _reject_constant(name: str) -> float:
    raise AssertionError(f"the JSON body contains the non-standard constant {name}")


def check_answer(
    case: Case, status: int, body_text: str, predict: Callable[[list], float] | None = None
) -> dict:
    """Check one response against the case and return the parsed body.

    The checks: the status, a strict JSON body without a traceback, then the error's code
    and message, or one result row per input row in input order with the expected target
    values and scored rows. ``predict`` recomputes the prediction of a row from its inputs,
    to show that every prediction sits on the row it was made for. The asserts carry their
    own messages, because pytest rewrites asserts in test modules only.
    """
    expect = case.expect
    assert status == expect["status"], f"status {status}: {body_text[:500]}"
    assert "Traceback" not in body_text, body_text[:500]
    body = json.loads(body_text, parse_constant=_reject_constant)

    if not case.accepted:
        assert list(body) == ["error"], f"keys {list(body)}"
        error = body["error"]
        assert error["code"] == expect["code"], f"code {error['code']}: {error['message']}"
        for fragment in expect["message"]:
            assert fragment in error["message"], f"{fragment!r} not in {error['message']!r}"
        return body

    rows = body["rows"]
    count = expect["rows"]
    assert body["summary"]["rows"] == count, f"summary rows {body['summary']['rows']} != {count}"
    assert len(rows) == count, f"{len(rows)} result rows for {count} input rows"
    assert [row["row"] for row in rows] == list(range(count)), "rows out of input order"
    actual = [row["actual"] for row in rows]
    assert actual == expect["actual"], f"target values {actual[:10]} != {expect['actual'][:10]}"
    scored = body["summary"]["scored_rows"]
    assert scored == expect["scored_rows"], f"scored rows {scored} != {expect['scored_rows']}"
    statuses = [row["status"] for row in rows]
    assert statuses.count("scored") == scored, f"statuses {statuses[:10]}"
    for number, (row, inputs) in enumerate(zip(rows, expect["inputs"], strict=True)):
        if row["status"] != "scored":
            assert row["predicted"] is None, f"row {number}: {row}"
            assert row["score"] is None, f"row {number}: {row}"
            continue
        assert math.isfinite(row["score"]), f"row {number}: score {row['score']}"
        residual = row["actual"] - row["predicted"]
        assert math.isclose(row["residual"], residual, abs_tol=1e-6), f"row {number}: {row}"
        if predict is not None:
            expected = predict(inputs)
            assert math.isclose(row["predicted"], expected, rel_tol=1e-9, abs_tol=1e-9), (
                f"row {number}: predicted {row['predicted']}, its inputs give {expected}"
            )
    return body
