"""The residual baseline: drift that it follows, faults that it does not, and its state."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from anomaly_detector.cli import main
from anomaly_detector.config import ScoringConfig, Span, parse_baseline
from anomaly_detector.errors import ConfigurationError, RequestError
from anomaly_detector.scoring import BASELINE_STEP, BaselineState, Scorer, score_all

ROWS = 3000


def config(baseline: int | None, threshold: float = 1.0, timestamps: bool = False):
    return ScoringConfig(
        target="y",
        inputs=("x",),
        threshold=threshold,
        timestamp_column="t" if timestamps else None,
        window=Span(rows=10),
        min_duration=Span(rows=20),
        baseline=baseline,
    )


def drifting_residuals(seed: int = 0, rise: float = 5.0) -> np.ndarray:
    """Noise of sd 0.2 on a drift that rises evenly over ROWS rows: 5 x the threshold."""
    rng = np.random.default_rng(seed)
    return np.linspace(0.0, rise, ROWS) + rng.normal(0.0, 0.2, ROWS)


def score(residual: np.ndarray, baseline: int | None, timestamps=None):
    count = len(residual)
    return score_all(
        config(baseline, timestamps=timestamps is not None),
        residual,
        np.zeros(count),
        np.ones(count, dtype=bool),
        timestamps,
    )


def test_baseline_follows_slow_drift():
    residual = drifting_residuals()

    _, plain = score(residual, None)
    scores, followed = score(residual, 600)

    assert len(plain) == 1
    assert plain[0].rows > ROWS / 2
    assert followed == []
    assert not scores.is_anomaly.any()
    # The baseline lags the drift by about half its length: 300 rows of 1/600 per row.
    assert scores.baseline[-1] == pytest.approx(5.0 - 300 * 5.0 / ROWS, abs=0.15)


@pytest.mark.parametrize("size", [2.0, -2.0, 10.0])
def test_baseline_finds_step_on_drift(size):
    # The drift lifts the residual by 0.27 during the step: less than the threshold.
    residual = drifting_residuals(rise=2.0)
    fault = slice(2000, 2400)  # 400 rows: two thirds of the baseline's length
    residual[fault] += size

    scores, events = score(residual, 600)

    assert len(events) == 1
    event = events[0]
    # The trailing window of 10 rows crosses within a window of the step's edges.
    assert event.onset_row >= 1990
    assert 2000 <= event.start_row <= 2010
    assert 2399 <= event.end_row <= 2409
    assert event.direction == ("above" if size > 0 else "below")
    # Frozen while flagged: the baseline at the step's end is the one from its start.
    assert scores.baseline[2399] == pytest.approx(scores.baseline[2000], abs=0.05)


def test_baseline_releases_long_deviation():
    # A step that never ends, on a drift fast enough to keep a frozen baseline behind it.
    residual = drifting_residuals()
    residual[1500:] += 3.0

    scores, events = score(residual, 600)

    assert len(events) == 1
    # Anomalous rows enter the baseline after 600 in a row; its median passes the step
    # once they are half of its 600 residuals.
    assert 1500 + 600 + 250 <= events[0].end_row <= 1500 + 600 + 400
    assert not scores.is_anomaly[events[0].end_row + 1 :].any()


def test_baseline_median_updates_every_step():
    residual = np.r_[np.full(BASELINE_STEP, 0.4), np.full(BASELINE_STEP, 0.6), [0.5] * 10]

    scores, _ = score(residual, 30)

    np.testing.assert_allclose(scores.baseline[:BASELINE_STEP], 0.0)
    np.testing.assert_allclose(scores.baseline[BASELINE_STEP : 2 * BASELINE_STEP], 0.4)
    # The last 30 normal residuals are all 0.6 by then.
    np.testing.assert_allclose(scores.baseline[2 * BASELINE_STEP :], 0.6)
    np.testing.assert_allclose(scores.residual, residual - scores.baseline)


def test_baseline_state_carries_to_next_scorer():
    residual = drifting_residuals(seed=1)
    whole, _ = score(residual, 600)

    first = Scorer(config(600))
    first.score(residual[:1234], np.zeros(1234), np.ones(1234, dtype=bool))
    saved = json.loads(json.dumps(first.baseline.to_dict()))
    second = Scorer(config(600), first_row=1234, baseline=BaselineState.from_dict(saved))
    rest = second.score(residual[1234:], np.zeros(ROWS - 1234), np.ones(ROWS - 1234, dtype=bool))

    np.testing.assert_allclose(rest.baseline, whole.baseline[1234:])
    assert len(saved["residuals"]) == 600


STATE = {"residuals": [1.0], "rows_since_update": 0, "anomalous_rows": 0, "level": 1.0}


def test_baseline_state_round_trips():
    assert BaselineState.from_dict(STATE).to_dict() == STATE


@pytest.mark.parametrize(
    "data",
    [
        {**STATE, "residuals": [1.0, "x"]},
        {**STATE, "residuals": [1.0, float("nan")]},
        {**STATE, "residuals": [[1.0]]},
        {**STATE, "level": float("inf")},
        {**STATE, "level": None},
        {**STATE, "rows_since_update": BASELINE_STEP},
        {**STATE, "anomalous_rows": -1},
        {**STATE, "level": 1e200},
        {**STATE, "residuals": [1.0, -1e200]},
        {"residuals": [1.0], "rows_since_update": 0, "anomalous_rows": 0},
    ],
)
def test_baseline_state_rejects_invalid_dict(data):
    with pytest.raises((ValueError, KeyError, TypeError)):
        BaselineState.from_dict(data)


def test_baseline_rejects_unsorted_rows():
    base = pd.Timestamp("2024-01-01T00:00:00Z")
    minutes = [0, 1, 2, 5, 3, 6]
    times = pd.Series([base + pd.Timedelta(minutes=m) for m in minutes])

    with pytest.raises(RequestError, match=r"back in time at row 4\. With a residual baseline"):
        score(np.zeros(6), 30, times)
    # Without a baseline the same rows are scored in time order.
    scores, _ = score(np.zeros(6), None, times)
    assert np.isfinite(scores.score).all()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", None), ("600", 600), (" 30 ", 30), ("1", "from 30"), ("10min", "time span"),
     ("-5", "whole number"), ("20001", "from 30")],
)  # fmt: skip
def test_parse_baseline(text, expected):
    if expected is None or isinstance(expected, int):
        assert parse_baseline(text, "--baseline") == expected
    else:
        with pytest.raises(ConfigurationError, match=expected):
            parse_baseline(text, "--baseline")


def test_config_rejects_non_integer_baseline():
    with pytest.raises(ConfigurationError, match="baseline must be a whole number"):
        config(2.5)


def drifting_csv(path, rows: int, fault: slice | None = None, seed: int = 0) -> None:
    """Rows each minute: y follows x, plus a slow drift in y, plus an optional step."""
    rng = np.random.default_rng(seed)
    x = rng.normal(50.0, 5.0, rows)
    y = 0.5 * x + np.linspace(0.0, 6.0, rows) + rng.normal(0.0, 0.3, rows)
    if fault is not None:
        y[fault] += 4.0
    times = pd.date_range("2024-01-01", periods=rows, freq="min", tz="UTC")
    frame = pd.DataFrame({"time": times.strftime("%Y-%m-%dT%H:%M:%SZ"), "x": x, "y": y})
    frame.to_csv(path, index=False)


def test_cli_records_and_uses_baseline(tmp_path, capsys):
    # Train on the first 400 rows, where the drift has barely begun.
    drifting_csv(tmp_path / "data.csv", 3000, fault=slice(2000, 2200))
    model = tmp_path / "model"
    assert main(["train", str(tmp_path / "data.csv"), "--target", "y", "--rows", ":400",
                 "--window", "10", "--min-duration", "20", "--baseline", "300",
                 "--model-dir", str(model)]) == 0  # fmt: skip
    assert json.loads((model / "model_card.json").read_text())["baseline"] == "300"

    runs = {}
    for name, extra in (("followed", []), ("plain", ["--baseline", "0"])):
        out = tmp_path / name
        args = ["detect", str(tmp_path / "data.csv"), "--rows", "400:", "--model-dir", str(model)]
        assert main([*args, "--out", str(out), *extra]) == 0
        runs[name] = (
            pd.read_csv(out / "scored.csv"),
            json.loads((out / "events.json").read_text()),
        )
    capsys.readouterr()

    scored, events = runs["followed"]
    assert [(e["onset_row"] >= 1990, e["end_row"] <= 2210) for e in events] == [(True, True)]
    np.testing.assert_allclose(
        scored["residual"], scored["actual"] - scored["predicted"] - scored["baseline"]
    )
    assert json.loads((tmp_path / "followed" / "summary.json").read_text())["baseline_rows"] == 300
    assert "baseline_rows" not in json.loads((tmp_path / "plain" / "summary.json").read_text())
    plain_scored, plain_events = runs["plain"]
    assert "baseline" not in plain_scored
    # Without the baseline, the drift alone keeps the score above the threshold for long.
    assert plain_scored["is_anomaly"].sum() > 1000
    assert len(plain_events) >= 1


def test_cli_rejects_bad_baseline(tmp_path, capsys):
    drifting_csv(tmp_path / "data.csv", 200)
    args = ["train", str(tmp_path / "data.csv"), "--target", "y", "--baseline", "5min"]

    assert main([*args, "--model-dir", str(tmp_path / "m")]) == 2
    assert "--baseline must be a whole number of rows" in capsys.readouterr().err


@pytest.mark.parametrize("chunk", [1, 7, 29, 30, 31, 450])
def test_baseline_chunks_match_whole_batch(chunk):
    # A step that never ends, so the baseline is released, and rows that cannot be scored.
    residual = drifting_residuals(seed=2)
    residual[1500:] += 3.0
    scorable = np.random.default_rng(3).random(ROWS) > 0.1
    actual = np.where(scorable, residual, np.nan)
    predicted = np.where(scorable, 0.0, np.nan)
    whole, events = score_all(config(600), actual, predicted, scorable)

    scorer = Scorer(config(600))
    parts = [
        scorer.score(actual[start : start + chunk], predicted[start : start + chunk],
                     scorable[start : start + chunk])
        for start in range(0, ROWS, chunk)
    ]  # fmt: skip

    np.testing.assert_allclose(np.concatenate([p.baseline for p in parts]), whole.baseline)
    assert np.array_equal(np.concatenate([p.is_anomaly for p in parts]), whole.is_anomaly)
    assert [e.to_dict() for e in scorer.finish()] == [e.to_dict() for e in events]
    assert np.isnan(whole.baseline[~scorable]).all()


def test_baseline_stays_zero_under_first_row_fault():
    # Every row is anomalous, so no residual enters before the release at 600 rows.
    scores, events = score(np.full(900, 5.0), 600)

    assert np.all(scores.baseline[:600] == 0.0)
    assert scores.is_anomaly[:600].all()
    assert np.isfinite(scores.score).all()
    assert len(events) == 1
