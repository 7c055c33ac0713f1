"""Calibrated thresholds and event-level evaluation, on small synthetic cases with known results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anomaly_detector.batch import RowRange, detect_file
from anomaly_detector.cli import main
from anomaly_detector.config import ScoringConfig, Span
from anomaly_detector.errors import ConfigurationError, RequestError
from anomaly_detector.evaluation import event_flags
from anomaly_detector.local_model import (
    BLOCK_EXCEEDANCE,
    LocalModel,
    calibrated_threshold,
    gumbel_level,
    out_of_time_residuals,
    train,
)


def _times(count: int, start: str = "2026-01-05 08:00:00") -> pd.Series:
    return pd.Series(pd.date_range(start, periods=count, freq="1s", tz="UTC"))


def _machine(rows: int, seed: int, shift_rows: slice | None = None, shift: float = 0.0):
    """Target = 2 x speed + 0.5 x load + noise (sd 0.1), optionally shifted on some rows."""
    rng = np.random.default_rng(seed)
    speed = rng.uniform(0, 10, rows)
    load = rng.uniform(0, 4, rows)
    target = 2 * speed + 0.5 * load + rng.normal(0, 0.1, rows)
    if shift_rows is not None:
        target[shift_rows] += shift
    return pd.DataFrame(
        {
            "time": _times(rows).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "speed": speed,
            "load": load,
            "temperature": target,
        }
    )


# -- out-of-time residuals -----------------------------------------------------------------


def test_out_of_time_residuals_expose_shifted_block():
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (500, 1))
    y = 4 * x[:, 0]
    y[300:400] += 5.0  # the fourth of five blocks sits 5 above what x explains

    residuals = out_of_time_residuals(x, y, folds=5)

    assert residuals[300:400].mean() == pytest.approx(5.0, abs=0.6)
    for start in (0, 100, 200, 400):
        assert abs(residuals[start : start + 100].mean()) < 1.5


def test_out_of_time_residuals_cover_every_row_once():
    x = np.arange(103, dtype=float).reshape(-1, 1)
    y = np.zeros(103)

    residuals = out_of_time_residuals(x, y, folds=4)

    assert residuals.shape == (103,)
    assert np.all(np.isfinite(residuals))


# -- calibrated threshold ------------------------------------------------------------------


def test_calibrated_threshold_is_the_highest_full_window_mean():
    residuals = np.zeros(60)
    residuals[4] = 6

    threshold, details = calibrated_threshold(residuals, Span(rows=3), None)

    assert threshold == pytest.approx(2.0)
    assert details["window"] == "3"
    assert details["scored_rows"] == 58  # rows 2..59 have a full 3-row window
    assert details["cv_rmse"] == pytest.approx(np.sqrt(36 / 60), abs=1e-6)


def test_calibrated_threshold_leaves_out_partial_windows():
    # Row 0's 9 only ever appears in partial windows (rows 0 and 1) or in row 2's full
    # window, where it is averaged with two zeros.
    residuals = np.zeros(60)
    residuals[0] = 9

    threshold, _ = calibrated_threshold(residuals, Span(rows=3), None)

    assert threshold == pytest.approx(3.0)


def test_calibrated_threshold_uses_time_windows_like_detect():
    residuals = np.zeros(60)
    residuals[0], residuals[4] = 6, 3
    times = _times(len(residuals))

    threshold, details = calibrated_threshold(residuals, Span.parse("3s", "w"), times)

    # (t - 3 s, t] contains three rows; row 0's 6 is only in windows before the first full one.
    assert threshold == pytest.approx(1.0)
    assert details["window"] == "3s"
    assert details["scored_rows"] == 57


def test_calibrated_threshold_rejects_short_data():
    with pytest.raises(RequestError, match="Only 0 training rows have a full window of 10"):
        calibrated_threshold(np.ones(5), Span(rows=10), None)


def test_calibrated_threshold_rejects_few_full_windows():
    # 62 rows and a 13-row window leave 50 full windows, 61 rows leave 49.
    assert calibrated_threshold(np.ones(62), Span(rows=13), None)[0] == pytest.approx(1.0)
    with pytest.raises(RequestError, match="Only 49 training rows .* at least 50 are needed"):
        calibrated_threshold(np.ones(61), Span(rows=13), None)


def test_calibrated_threshold_rejects_zero_residuals():
    with pytest.raises(RequestError, match="all zero"):
        calibrated_threshold(np.zeros(60), Span(rows=3), None)


# -- extreme-value threshold ---------------------------------------------------------------


def test_gumbel_level_by_the_method_of_moments():
    # Maxima 1..5: sd 1.5811, scale = sd x sqrt(6) / pi = 1.2328,
    # location = 3 - 0.5772 x 1.2328 = 2.2884, 1 % level = location + 4.6001 x scale = 7.960.
    level, location, scale = gumbel_level([1, 2, 3, 4, 5], 0.01)

    assert scale == pytest.approx(1.23281, abs=1e-4)
    assert location == pytest.approx(2.28843, abs=1e-4)
    assert level == pytest.approx(7.9595, abs=1e-3)
    # The Gumbel distribution function at the level leaves 1 % above it.
    assert np.exp(-np.exp(-(level - location) / scale)) == pytest.approx(0.99)


def test_extreme_threshold_never_below_the_highest_score():
    # Five identical blocks: the fit has no spread, so its level is the common maximum.
    block = np.zeros(20)
    block[10] = 3.0
    residuals = np.tile(block, 5)

    threshold, details = calibrated_threshold(residuals, Span(rows=1), None, blocks=5)

    assert threshold == pytest.approx(3.0)
    assert details["block_maxima"] == [3.0] * 5
    assert details["block_rows"] == 20
    assert details["gumbel_scale"] == 0


def test_extreme_threshold_extrapolates_spread_block_maxima():
    # Block maxima 1, 2, 3, 4, 5 (one spike per 20-row block, 1-row window): the threshold is
    # the 1 % Gumbel level, above every training score.
    residuals = np.full(100, 0.5)
    residuals[[5, 25, 45, 65, 85]] = [1, 2, 3, 4, 5]

    threshold, details = calibrated_threshold(residuals, Span(rows=1), None, blocks=5)
    highest, _ = calibrated_threshold(residuals, Span(rows=1), None)

    assert highest == pytest.approx(5.0)
    assert threshold == pytest.approx(7.9595, abs=1e-3)
    assert details["block_exceedance"] == BLOCK_EXCEEDANCE
    assert details["threshold_over_cv_rmse"] == pytest.approx(
        threshold / details["cv_rmse"], abs=1e-3
    )


def test_train_extreme_records_fit(tmp_path):
    frame = _machine(600, seed=1)
    options = {
        "target": "temperature",
        "inputs": ["speed", "load"],
        "timestamp_column": "time",
        "window": "10",
    }

    calibrated = train(
        frame.copy(), model_dir=tmp_path / "c", threshold_method="calibrated", **options
    )
    extreme = train(frame.copy(), model_dir=tmp_path / "e", threshold_method="extreme", **options)

    saved = json.loads((tmp_path / "e" / "model_card.json").read_text())
    assert saved["threshold_method"] == "extreme"
    fit = saved["calibration"]
    assert len(fit["block_maxima"]) == 5
    assert fit["block_rows"] == 591 // 5
    assert max(fit["block_maxima"]) == pytest.approx(calibrated.threshold, abs=1e-6)
    level, _, _ = gumbel_level(fit["block_maxima"], BLOCK_EXCEEDANCE)
    assert extreme.threshold == pytest.approx(max(level, calibrated.threshold), abs=1e-5)
    assert extreme.threshold > calibrated.threshold
    assert extreme.training_rows == 600


def test_cli_train_extreme_explains_the_threshold(tmp_path, capsys):
    data = tmp_path / "train.csv"
    _machine(300, seed=9).to_csv(data, index=False)
    args = ["train", str(data), "--target", "temperature", "--model-dir", str(tmp_path / "m")]

    assert main([*args, "--window", "10", "--threshold-method", "extreme"]) == 0

    printed = capsys.readouterr().out
    assert "1% level of a Gumbel fit to the highest out-of-time scores with window 10" in printed
    assert "in 5 blocks of 58 rows" in printed  # 291 full windows / 5
    assert "held out" not in printed


# -- train ---------------------------------------------------------------------------------


def test_train_calibrated_records_method(tmp_path):
    frame = _machine(600, seed=1)

    card = train(
        frame,
        target="temperature",
        inputs=["speed", "load"],
        model_dir=tmp_path,
        timestamp_column="time",
        window="10",
        threshold_method="calibrated",
    )

    saved = json.loads((tmp_path / "model_card.json").read_text())
    assert saved["threshold_method"] == "calibrated"
    assert saved["calibration"]["folds"] == 5
    assert saved["calibration"]["window"] == "10"
    assert saved["calibration"]["scored_rows"] == 591
    assert card.training_rows == 600
    assert card.threshold == saved["threshold"]
    # The smoothed out-of-time error of a 0.1-sd-noise model is well under 2 x RMSE.
    assert 0 < card.threshold < 2 * saved["calibration"]["cv_rmse"]


def test_train_calibrated_threshold_matches_recomputation(tmp_path):
    frame = _machine(300, seed=2)

    card = train(
        frame,
        target="temperature",
        inputs=["speed", "load"],
        model_dir=tmp_path,
        window="7",
        threshold_method="calibrated",
        cv_folds=3,
    )

    residuals = out_of_time_residuals(
        frame[["speed", "load"]].to_numpy(), frame["temperature"].to_numpy(), folds=3
    )
    smoothed = pd.Series(np.abs(residuals)).rolling(7).mean().dropna()
    assert card.threshold == pytest.approx(smoothed.max(), abs=1e-6)


def test_train_default_keeps_two_times_rmse(tmp_path):
    card = train(
        _machine(300, seed=4), target="temperature", inputs=["speed", "load"], model_dir=tmp_path
    )

    assert card.threshold_method == "rmse"
    assert card.calibration is None
    assert card.threshold == pytest.approx(2 * card.validation_rmse, abs=1e-5)
    assert card.training_rows == 240


@pytest.mark.parametrize("method", ["rmse", "calibrated", "extreme"])
def test_threshold_factor_scales_each_method(tmp_path, method):
    options = {"target": "temperature", "inputs": ["speed", "load"], "window": "10"}
    frame = _machine(600, seed=6)

    plain = train(frame.copy(), model_dir=tmp_path / "a", threshold_method=method, **options)
    scaled = train(
        frame.copy(),
        model_dir=tmp_path / "b",
        threshold_method=method,
        threshold_factor=4,
        **options,
    )

    assert scaled.threshold == pytest.approx(4 * plain.threshold, rel=1e-5)
    saved = json.loads((tmp_path / "b" / "model_card.json").read_text())
    assert saved["threshold_factor"] == 4
    assert saved["threshold"] == scaled.threshold
    if method != "rmse":
        ratio = saved["calibration"]["threshold_over_cv_rmse"]
        assert ratio == pytest.approx(scaled.threshold / saved["calibration"]["cv_rmse"], 1e-3)


def test_card_without_threshold_factor_loads_as_one(tmp_path):
    train(_machine(300, seed=4), target="temperature", inputs=["speed", "load"], model_dir=tmp_path)
    card_path = tmp_path / "model_card.json"
    saved = json.loads(card_path.read_text())
    del saved["threshold_factor"]  # a card written before the option existed
    card_path.write_text(json.dumps(saved))

    assert LocalModel(tmp_path).card.threshold_factor == 1.0


def test_cli_threshold_factor_prints_and_scores_with_it(tmp_path, capsys):
    data = tmp_path / "train.csv"
    _machine(300, seed=9).to_csv(data, index=False)
    args = ["train", str(data), "--target", "temperature", "--inputs", "speed", "load"]

    assert main([*args, "--threshold-factor", "2.5", "--model-dir", str(tmp_path / "m")]) == 0

    assert "(5 x RMSE)" in capsys.readouterr().out
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    assert card["threshold"] == pytest.approx(5 * card["validation_rmse"], rel=1e-4)
    out = tmp_path / "out"
    assert main(["detect", str(data), "--model-dir", str(tmp_path / "m"), "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["threshold"] == card["threshold"]


@pytest.mark.parametrize("factor", ["0", "-2", "inf", "nan", "two"])
def test_cli_threshold_factor_must_be_positive(tmp_path, capsys, factor):
    data = tmp_path / "train.csv"
    _machine(300, seed=9).to_csv(data, index=False)
    args = ["train", str(data), "--target", "temperature", "--model-dir", str(tmp_path / "m")]

    with pytest.raises(SystemExit):
        main([*args, "--threshold-factor", factor])

    assert "expected a positive number" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"threshold_method": "quantile"}, ConfigurationError, "Unknown threshold method"),
        ({"threshold_method": "calibrated", "cv_folds": 1}, ConfigurationError, "--cv-folds"),
        ({"window": "30s"}, ConfigurationError, "window 30s is a time span"),
        ({"min_duration": "5min"}, ConfigurationError, "minimum duration 5min is a time span"),
        ({"merge_gap": "1min"}, ConfigurationError, "merge gap 1min is a time span"),
        ({"merge_gap": "later"}, ConfigurationError, "Use 0 to merge nothing"),
        (
            {"threshold_factor": 0.0},
            ConfigurationError,
            "threshold factor must be a positive number",
        ),
        (
            {"threshold_method": "extreme", "cv_folds": 2},
            ConfigurationError,
            "needs at least 3 folds; got --cv-folds 2",
        ),
        ({"threshold_method": "calibrated", "window": "500"}, RequestError, "full window of 500"),
    ],
)
def test_train_rejects_unusable_calibration_settings(tmp_path, options, error, message):
    with pytest.raises(error, match=message):
        train(
            _machine(300, seed=5),
            target="temperature",
            inputs=["speed", "load"],
            model_dir=tmp_path,
            **options,
        )


# -- detection with a calibrated threshold ---------------------------------------------------


def test_calibrated_model_finds_injected_shift(tmp_path):
    """A 5-sd shift on rows 200-259 of unseen data is one event, and nothing else is."""
    model_dir = tmp_path / "model"
    train(
        _machine(600, seed=6),
        target="temperature",
        inputs=["speed", "load"],
        model_dir=model_dir,
        timestamp_column="time",
        window="10s",
        min_duration="10s",
        threshold_method="calibrated",
    )
    data = tmp_path / "live.csv"
    _machine(400, seed=7, shift_rows=slice(200, 260), shift=0.5).to_csv(data, index=False)
    model = LocalModel(model_dir)

    result = detect_file(data, model.card.scoring_config(), model, tmp_path / "out")

    assert len(result.events) == 1
    event = result.events[0]
    assert 200 <= event["start_row"] <= 205
    assert 259 <= event["end_row"] <= 269
    assert event["direction"] == "above"


# -- event rows and event-level evaluation ---------------------------------------------------


def test_event_rows_match_scored_csv_rows(tmp_path):
    data = tmp_path / "live.csv"
    frame = _machine(300, seed=8, shift_rows=slice(220, 260), shift=4.0).drop(columns="time")
    frame.to_csv(data, index=False)
    model_dir = tmp_path / "model"
    train(frame.iloc[:150], target="temperature", inputs=["speed", "load"], model_dir=model_dir)
    model = LocalModel(model_dir)
    config = ScoringConfig(
        target="temperature", inputs=("speed", "load"), threshold=2.0, min_duration=Span(rows=10)
    )

    result = detect_file(data, config, model, tmp_path / "out", rows=RowRange(150, None))

    scored = pd.read_csv(tmp_path / "out" / "scored.csv")
    [event] = result.events
    inside = scored[(scored["row"] >= event["start_row"]) & (scored["row"] <= event["end_row"])]
    assert inside["is_anomaly"].all()
    assert event["start"] == event["start_row"]
    assert 220 <= event["start_row"] <= 226  # file rows; scored-range rows would be 70-76
    # Every row is scored, so the onset opens the 5-row window of the first breach.
    assert (event["onset"], event["onset_row"]) == (event["start_row"] - 4,) * 2
    assert scored.loc[scored["row"] == event["peak_row"], "score"].item() == pytest.approx(
        event["peak_score"]
    )


def test_event_flags_keep_scored_event_rows():
    rows = np.arange(100, 110)
    scored = np.ones(10, dtype=bool)
    scored[3] = False
    events = [{"start_row": 102, "end_row": 104}, {"start_row": 108, "end_row": 108}]

    flags = event_flags(events, rows, scored)

    assert flags.tolist() == [False, False, True, False, True, False, False, False, True, False]


def test_event_flags_count_from_the_onset():
    rows = np.arange(100, 110)
    events = [{"onset_row": 101, "start_row": 103, "end_row": 104}]

    flags = event_flags(events, rows, np.ones(10, dtype=bool))

    assert np.flatnonzero(flags).tolist() == [1, 2, 3, 4]


def _scored_csv(path: Path) -> None:
    pd.DataFrame(
        {
            "row": range(10),
            "status": ["scored"] * 10,
            # Rows 2-4 are one 3-row breach; row 8 is a 1-row blip, too short to be an event.
            "is_anomaly": [0, 0, 1, 1, 1, 0, 0, 0, 1, 0],
            "label": [0, 0, 1, 1, 1, 1, 0, 0, 0, 0],
        }
    ).to_csv(path, index=False)


def test_evaluate_accepts_event_merged_across_gap(tmp_path, capsys):
    scored = tmp_path / "scored.csv"
    _scored_csv(scored)
    events = tmp_path / "events.json"
    # Rows 2-4 and 8 joined by a merge gap: 4 anomalous rows, rows 5-7 between them.
    events.write_text(json.dumps([{"start_row": 2, "end_row": 8, "rows": 4}]))

    code = main(["evaluate", str(scored), "--label-column", "label", "--events", str(events)])

    assert code == 0
    assert "TP 4, FP 3, TN 3, FN 0" in capsys.readouterr().out


def test_evaluate_events_counts_event_rows(tmp_path, capsys):
    scored = tmp_path / "scored.csv"
    _scored_csv(scored)
    events = tmp_path / "events.json"
    events.write_text(json.dumps([{"start_row": 2, "end_row": 4}]))

    assert main(["evaluate", str(scored), "--label-column", "label", "--events", str(events)]) == 0
    by_events = json.loads((tmp_path / "evaluation.json").read_text())
    assert main(["evaluate", str(scored), "--label-column", "label"]) == 0
    by_rows = json.loads((tmp_path / "evaluation.json").read_text())

    assert (by_events["tp"], by_events["fp"], by_events["fn"]) == (3, 0, 1)
    assert (by_rows["tp"], by_rows["fp"], by_rows["fn"]) == (3, 1, 1)


def test_evaluate_rejects_invalid_events_file(tmp_path, capsys):
    scored = tmp_path / "scored.csv"
    _scored_csv(scored)
    events = tmp_path / "events.json"
    events.write_text(json.dumps({"events": []}))

    code = main(["evaluate", str(scored), "--label-column", "label", "--events", str(events)])

    assert code == 2
    assert "is not an events.json from detect" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("method", "printed"),
    [
        ("calibrated", "highest out-of-time score with window 10"),
        ("extreme", "Gumbel fit to the highest out-of-time scores with window 10"),
    ],
)
def test_detect_warns_on_window_mismatch(tmp_path, capsys, method, printed):
    data = tmp_path / "train.csv"
    _machine(300, seed=9).to_csv(data, index=False)
    model_dir = tmp_path / "model"
    args = ["train", str(data), "--target", "temperature", "--model-dir", str(model_dir)]
    assert main([*args, "--window", "10", "--threshold-method", method]) == 0
    assert printed in capsys.readouterr().out

    code = main(
        [
            "detect",
            str(data),
            "--model-dir",
            str(model_dir),
            "--out",
            str(tmp_path / "out"),
            "--window",
            "20",
            "--no-figures",
        ]
    )

    assert code == 0
    assert "calibrated for window 10, not 20" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([{"start_row": -5, "end_row": 3}], "whole numbers of 0 or more"),
        ([{"start_row": True, "end_row": 3}], "whole numbers of 0 or more"),
        ([{"start_row": "2", "end_row": 3}], "whole numbers of 0 or more"),
        ([{"start_row": 6, "end_row": 2}], "starts after it ends"),
        ([{"onset_row": 7, "start_row": 6, "end_row": 8}], "invalid onset_row 7"),
        ([{"onset_row": -1, "start_row": 6, "end_row": 8}], "invalid onset_row -1"),
        ([{"start_row": 500, "end_row": 600}], "names start_row 500, which is not a scored row"),
        ([{"start_row": 0, "end_row": 1}], "row 0 is not anomalous"),
        ([{"start_row": 2, "end_row": 5}], "row 5 is not anomalous"),
        ([{"start_row": 3, "end_row": 8}], "with 6 anomalous rows, but 3 rows in that span"),
        ([{"start_row": 2, "end_row": 8, "rows": 3}], "with 3 anomalous rows, but 4 rows"),
        ([{"start_row": 3, "end_row": 4}], "row 2 just before it is anomalous too"),
        ([{"start_row": 2, "end_row": 3}], "row 4 just after it is anomalous too"),
        ([{"onset_row": 12, "start_row": 2, "end_row": 4}], "names onset_row 12"),
        ([{"start_row": 10**30, "end_row": 4}], "whole numbers of 0 or more"),
        (
            [{"start_row": 2, "end_row": 4}, {"start_row": 2, "end_row": 4}],
            "repeats the event that starts at row 2",
        ),
    ],
)
def test_evaluate_rejects_unusable_events(tmp_path, capsys, events, message):
    scored = tmp_path / "scored.csv"
    _scored_csv(scored)
    path = tmp_path / "events.json"
    path.write_text(json.dumps(events))

    code = main(["evaluate", str(scored), "--label-column", "label", "--events", str(path)])

    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_closed_pipe_ends_quietly(tmp_path):
    scored = tmp_path / "scored.csv"
    _scored_csv(scored)
    cli = Path(sys.executable).with_name("anomaly-detector")

    done = subprocess.run(
        f"'{cli}' evaluate '{scored}' --label-column label | head -c 1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("rows", "window", "folds", "message"),
    [
        # 291 full-window scores in 20 blocks of 14: fewer than 20 per block.
        (300, "10", 20, "make 20 blocks of 14; the extreme-value fit needs at least 20"),
        # 571 scores in 10 blocks of 57, under a 30-row window: fewer than two windows.
        (600, "30", 10, "make 10 blocks of 57; the extreme-value fit needs at least 60"),
        # A 30-s window over rows one second apart counts as 30 rows.
        (600, "30s", 10, "needs at least 60 per block"),
    ],
)
def test_extreme_rejects_short_blocks(tmp_path, rows, window, folds, message):
    with pytest.raises(RequestError, match=message):
        train(
            _machine(rows, seed=1),
            target="temperature",
            inputs=["speed", "load"],
            model_dir=tmp_path,
            timestamp_column="time",
            window=window,
            threshold_method="extreme",
            cv_folds=folds,
        )


def test_evaluate_rejects_event_on_unscored_row(tmp_path, capsys):
    scored = tmp_path / "scored.csv"
    _scored_csv(scored)
    frame = pd.read_csv(scored)
    frame.loc[2, "status"] = "missing_input"
    frame.to_csv(scored, index=False)
    path = tmp_path / "events.json"
    path.write_text(json.dumps([{"start_row": 2, "end_row": 4}]))

    code = main(["evaluate", str(scored), "--label-column", "label", "--events", str(path)])

    assert code == 2
    assert "names start_row 2, which is not a scored row" in capsys.readouterr().err


def test_threshold_keeps_precision_in_small_units(tmp_path):
    frame = _machine(300, seed=4)
    frame["temperature"] *= 1e-6  # a target measured in small units
    options = {"target": "temperature", "inputs": ["speed", "load"]}

    plain = train(frame.copy(), model_dir=tmp_path / "a", **options)
    doubled = train(frame.copy(), model_dir=tmp_path / "b", threshold_factor=2, **options)

    assert 0 < plain.validation_rmse < 1e-6
    assert plain.threshold == pytest.approx(2 * plain.validation_rmse, rel=1e-5)
    assert doubled.threshold == pytest.approx(2 * plain.threshold, rel=1e-5)


@pytest.mark.parametrize("factor", [1e308, 1e-305])
def test_train_rejects_factor_that_leaves_the_threshold_range(tmp_path, factor):
    with pytest.raises(ConfigurationError, match="Choose a factor nearer 1"):
        train(
            _machine(300, seed=4),
            target="temperature",
            inputs=["speed", "load"],
            model_dir=tmp_path,
            threshold_factor=factor,
        )


def test_detect_rejects_threshold_near_the_float_limit(tmp_path, capsys):
    data = tmp_path / "train.csv"
    _machine(300, seed=9).to_csv(data, index=False)
    model = tmp_path / "m"
    assert main(["train", str(data), "--target", "temperature", "--model-dir", str(model)]) == 0
    args = ["detect", str(data), "--model-dir", str(model), "--out", str(tmp_path / "o")]

    assert main([*args, "--threshold", "1e308"]) == 2

    assert "The threshold must be below 1e+300" in capsys.readouterr().err
