"""Tests for the synthetic motor data set in sample_data/.

They check that the generator reproduces the committed CSV files, that the files have the
documented shape and plausible physics, and that the reference detection procedure, built
here from lightgbm and pandas alone, finds exactly the three injected anomalies.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import lightgbm
import numpy as np
import pandas as pd
import pytest

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"
GENERATOR = SAMPLE_DIR / "generate.py"
TRAIN_FILE = "motor_train.csv"
TEST_FILE = "motor_test.csv"

TRAIN_COLUMNS = ["timestamp", "motor_speed", "torque", "ambient_temperature", "bearing_temperature"]
TEST_COLUMNS = [*TRAIN_COLUMNS, "anomaly"]
TRAIN_ROWS = 14 * 24 * 60
TEST_ROWS = 84 * 60
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

INPUTS = ["motor_speed", "torque", "ambient_temperature"]
TARGET = "bearing_temperature"

# The reference detection settings: LGBMRegressor(objective="l2", n_estimators=300,
# learning_rate=0.05, num_leaves=31, min_child_samples=20, random_state=0, deterministic=True)
# written for the native API, which needs no scikit-learn. test_native_model_matches_sklearn
# checks that both give the same predictions. LightGBM's parameter docs ask for
# force_row_wise or force_col_wise together with deterministic=True.
LIGHTGBM_PARAMS = {
    "objective": "l2",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 20,
    "seed": 0,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}
NUM_BOOST_ROUND = 300
FIT_SHARE = 0.8
THRESHOLD_RMSE_FACTOR = 2.0
SCORE_WINDOW_ROWS = 5
MIN_EVENT_ROWS = 5

# The anomalies that sample_data/README.md documents, first and last labelled row.
EXPECTED_ANOMALIES = [
    ("2024-03-21T06:20:00Z", "2024-03-21T06:59:00Z"),
    ("2024-03-22T06:58:00Z", "2024-03-22T07:27:00Z"),
    ("2024-03-22T23:35:00Z", "2024-03-23T00:44:00Z"),
]

# Margins the data must keep, as multiples of the threshold. The measured values with
# numpy 2.4, pandas 3.1 and lightgbm 4.7 are in sample_data/README.md.
MIN_ANOMALY_PEAK_RATIO = 4.0
MAX_NORMAL_SCORE_RATIO = 1.0
MAX_SUSTAINED_NORMAL_SCORE_RATIO = 0.85


@dataclass(frozen=True)
class Detection:
    """Outputs of the reference detection procedure on motor_test.csv."""

    rmse: float
    threshold: float
    score: np.ndarray
    events: list[tuple[int, int]]


def find_runs(flags: np.ndarray, min_rows: int = 1) -> list[tuple[int, int]]:
    """Return (first, last) row positions of every run of true flags of min_rows or more."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return [(int(s), int(e) - 1) for s, e in zip(starts, ends, strict=True) if e - s >= min_rows]


def overlaps(first: tuple[int, int], second: tuple[int, int]) -> bool:
    return first[0] <= second[1] and second[0] <= first[1]


@pytest.fixture(scope="module")
def train_frame() -> pd.DataFrame:
    return pd.read_csv(SAMPLE_DIR / TRAIN_FILE)


@pytest.fixture(scope="module")
def labelled_frame() -> pd.DataFrame:
    return pd.read_csv(SAMPLE_DIR / TEST_FILE)


@pytest.fixture(scope="module")
def label_runs(labelled_frame: pd.DataFrame) -> list[tuple[int, int]]:
    return find_runs(labelled_frame["anomaly"].to_numpy() == 1)


@pytest.fixture(scope="module")
def detection(train_frame: pd.DataFrame, labelled_frame: pd.DataFrame) -> Detection:
    # Fit on the first 80 % of the training rows, and take the RMSE on the last 20 %.
    n_fit = int(len(train_frame) * FIT_SHARE)
    fit, holdout = train_frame.iloc[:n_fit], train_frame.iloc[n_fit:]
    dataset = lightgbm.Dataset(fit[INPUTS], label=fit[TARGET])
    booster = lightgbm.train(LIGHTGBM_PARAMS, dataset, num_boost_round=NUM_BOOST_ROUND)
    holdout_residual = holdout[TARGET] - booster.predict(holdout[INPUTS])
    rmse = float(np.sqrt(np.mean(holdout_residual**2)))
    threshold = THRESHOLD_RMSE_FACTOR * rmse

    # The score is the rolling mean of |residual|. An event is a run of at least
    # MIN_EVENT_ROWS rows whose score is above the threshold.
    residual = labelled_frame[TARGET] - booster.predict(labelled_frame[INPUTS])
    score = residual.abs().rolling(SCORE_WINDOW_ROWS, min_periods=1).mean().to_numpy()
    events = find_runs(score > threshold, MIN_EVENT_ROWS)
    return Detection(rmse=rmse, threshold=threshold, score=score, events=events)


@pytest.fixture(scope="module")
def normal_rows(labelled_frame: pd.DataFrame, label_runs: list[tuple[int, int]]) -> np.ndarray:
    """Mask of rows whose score no anomalous residual reaches.

    The rolling window carries a labelled row's residual into the next
    SCORE_WINDOW_ROWS - 1 scores, so those rows are not normal either.
    """
    mask = np.ones(len(labelled_frame), dtype=bool)
    for first, last in label_runs:
        mask[first : last + SCORE_WINDOW_ROWS] = False
    return mask


# -- determinism -------------------------------------------------------------------------


def test_generator_reproduces_committed_files(tmp_path: Path):
    completed = subprocess.run(
        [sys.executable, str(GENERATOR), "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr

    for name in (TRAIN_FILE, TEST_FILE):
        regenerated = (tmp_path / name).read_bytes()
        committed = (SAMPLE_DIR / name).read_bytes()
        assert regenerated == committed, f"{name} differs; rerun generate.py and commit it"


# -- shape -------------------------------------------------------------------------------


def test_files_have_documented_columns(train_frame: pd.DataFrame, labelled_frame: pd.DataFrame):
    assert list(train_frame.columns) == TRAIN_COLUMNS
    assert list(labelled_frame.columns) == TEST_COLUMNS


def test_files_have_expected_row_counts(train_frame: pd.DataFrame, labelled_frame: pd.DataFrame):
    assert len(train_frame) == TRAIN_ROWS
    assert len(labelled_frame) == TEST_ROWS


def test_files_have_no_missing_values(train_frame: pd.DataFrame, labelled_frame: pd.DataFrame):
    assert not train_frame.isna().any().any()
    assert not labelled_frame.isna().any().any()


def test_timestamps_are_utc_one_minute_apart(
    train_frame: pd.DataFrame, labelled_frame: pd.DataFrame
):
    combined = pd.concat([train_frame["timestamp"], labelled_frame["timestamp"]], ignore_index=True)
    assert combined.str.endswith("Z").all()

    # format= rejects any other layout. The test file starts one minute after training ends.
    times = pd.to_datetime(combined, format=TIMESTAMP_FORMAT, utc=True)
    steps = times.diff().iloc[1:]
    assert (steps == pd.Timedelta(minutes=1)).all()


def test_anomaly_label_is_zero_or_one(labelled_frame: pd.DataFrame):
    assert set(labelled_frame["anomaly"].unique()) == {0, 1}


def test_label_runs_match_readme(labelled_frame: pd.DataFrame, label_runs: list[tuple[int, int]]):
    times = labelled_frame["timestamp"]
    found = [(times[first], times[last]) for first, last in label_runs]
    assert found == EXPECTED_ANOMALIES


def test_label_runs_last_tens_of_minutes(label_runs: list[tuple[int, int]]):
    for first, last in label_runs:
        assert 20 <= last - first + 1 <= 90, f"label run at row {first} lasts {last - first + 1}"


def test_label_runs_are_hours_apart(label_runs: list[tuple[int, int]]):
    for (_, previous_last), (next_first, _) in zip(label_runs[:-1], label_runs[1:], strict=True):
        assert next_first - previous_last >= 6 * 60


# -- physics -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [TRAIN_FILE, TEST_FILE])
def test_idle_rows_have_zero_speed_and_torque(name: str):
    frame = pd.read_csv(SAMPLE_DIR / name)
    stopped = frame["motor_speed"] == 0.0
    assert (frame.loc[stopped, "torque"] == 0.0).all()
    assert (frame.loc[~stopped, "torque"] > 0.0).all()


def test_training_has_short_and_long_idle_periods(train_frame: pd.DataFrame):
    stopped = train_frame["motor_speed"].to_numpy() == 0.0
    lengths = [last - first + 1 for first, last in find_runs(stopped)]
    # stops between batches, pauses of hours, nights, and the two weekends
    assert sum(length < 60 for length in lengths) >= 20
    assert any(60 <= length < 5 * 60 for length in lengths)
    assert sum(5 * 60 <= length < 24 * 60 for length in lengths) >= 5
    assert sum(length >= 24 * 60 for length in lengths) == 2


@pytest.mark.parametrize("name", [TRAIN_FILE, TEST_FILE])
def test_speed_and_torque_within_drive_rating(name: str):
    frame = pd.read_csv(SAMPLE_DIR / name)
    assert frame["motor_speed"].between(0.0, 1500.0).all()
    assert frame["torque"].between(0.0, 140.0).all()


@pytest.mark.parametrize("name", [TRAIN_FILE, TEST_FILE])
def test_bearing_warmer_than_ambient_under_load(name: str):
    frame = pd.read_csv(SAMPLE_DIR / name)
    # Near standstill the heating is smaller than the sensor noise, so only rows under load
    # (20 N·m or more) after 15 minutes of running count.
    running = (frame["motor_speed"] > 0.0).astype(int)
    warmed_up = (running.rolling(15).sum() == 15) & (frame["torque"] >= 20.0)
    rise = frame["bearing_temperature"] - frame["ambient_temperature"]
    assert warmed_up.sum() > 1000
    assert (rise[warmed_up] > 0.0).all()


def test_bearing_near_ambient_after_long_idle(train_frame: pd.DataFrame):
    stopped = (train_frame["motor_speed"] == 0.0).astype(int)
    idle_30_minutes = stopped.rolling(30).sum() == 30
    rise = train_frame["bearing_temperature"] - train_frame["ambient_temperature"]
    # 1.5 K is more than four standard deviations of the bearing sensor's noise
    assert rise[idle_30_minutes].abs().max() < 1.5


def test_ambient_has_daily_cycle(train_frame: pd.DataFrame):
    hour = pd.to_datetime(train_frame["timestamp"], format=TIMESTAMP_FORMAT, utc=True).dt.hour
    mean_by_hour = train_frame.groupby(hour)["ambient_temperature"].mean()
    assert mean_by_hour[15] - mean_by_hour[3] > 1.0


def test_labelled_ambient_inside_fit_range(train_frame: pd.DataFrame, labelled_frame: pd.DataFrame):
    # A tree model predicts a constant beyond the inputs it was fitted on.
    fit_ambient = train_frame["ambient_temperature"].iloc[: int(len(train_frame) * FIT_SHARE)]
    assert labelled_frame["ambient_temperature"].min() > fit_ambient.min()
    assert labelled_frame["ambient_temperature"].max() < fit_ambient.max()


# -- reference detection -----------------------------------------------------------------


def test_detection_finds_three_events(detection: Detection):
    assert len(detection.events) == 3, f"events at rows {detection.events}"


def test_detection_events_match_label_runs(detection: Detection, label_runs: list[tuple[int, int]]):
    for event in detection.events:
        matches = [run for run in label_runs if overlaps(event, run)]
        assert len(matches) == 1, f"event {event} overlaps label runs {matches}"
    for run in label_runs:
        matches = [event for event in detection.events if overlaps(event, run)]
        assert len(matches) == 1, f"label run {run} overlaps events {matches}"


def test_detection_anomaly_peaks_far_above_threshold(
    detection: Detection, label_runs: list[tuple[int, int]]
):
    for first, last in label_runs:
        peak = detection.score[first : last + SCORE_WINDOW_ROWS].max()
        ratio = peak / detection.threshold
        assert ratio >= MIN_ANOMALY_PEAK_RATIO, f"label run at row {first}: peak {ratio:.2f}x"


def test_detection_normal_scores_below_threshold(detection: Detection, normal_rows: np.ndarray):
    # No normal row crosses the threshold, so the result holds for any minimum event length.
    ratio = detection.score[normal_rows].max() / detection.threshold
    assert ratio < MAX_NORMAL_SCORE_RATIO, f"max normal score {ratio:.3f}x threshold"


def test_detection_normal_scores_never_stay_high(detection: Detection, normal_rows: np.ndarray):
    # An event needs MIN_EVENT_ROWS rows in a row, so the margin that counts against false
    # events is the highest score that normal rows keep for that many rows.
    normal_score = pd.Series(np.where(normal_rows, detection.score, np.nan))
    sustained = normal_score.rolling(MIN_EVENT_ROWS).min().max()
    ratio = sustained / detection.threshold
    assert ratio <= MAX_SUSTAINED_NORMAL_SCORE_RATIO, f"sustained normal score {ratio:.3f}x"


def test_native_model_matches_sklearn(train_frame: pd.DataFrame, labelled_frame: pd.DataFrame):
    pytest.importorskip("sklearn")
    n_fit = int(len(train_frame) * FIT_SHARE)
    fit = train_frame.iloc[:n_fit]
    wrapper = lightgbm.LGBMRegressor(
        objective="l2",
        n_estimators=NUM_BOOST_ROUND,
        learning_rate=0.05,
        num_leaves=31,
        min_child_samples=20,
        random_state=0,
        deterministic=True,
        force_row_wise=True,
        verbose=-1,
    )
    wrapper.fit(fit[INPUTS], fit[TARGET])
    native = lightgbm.train(
        LIGHTGBM_PARAMS,
        lightgbm.Dataset(fit[INPUTS], label=fit[TARGET]),
        num_boost_round=NUM_BOOST_ROUND,
    )
    difference = np.abs(
        wrapper.predict(labelled_frame[INPUTS]) - native.predict(labelled_frame[INPUTS])
    )
    assert difference.max() < 1e-9
