"""The changepoint score (NAB with SKAB's profiles) on small cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly_detector.evaluation import (
    ChangepointCounts,
    changepoint_windows,
    count_changepoints,
    flag_changes,
    nab_reward,
    nab_scores,
)

BASE = np.datetime64("2020-03-09T10:00:00", "ns")


def at(*seconds: float) -> np.ndarray:
    return BASE + (np.asarray(seconds) * 1e9).astype("timedelta64[ns]")


def test_windows_centred_on_changepoints():
    [(start, end)] = changepoint_windows(at(100))

    assert (start, end) == (at(85)[0], at(115)[0])


def test_overlapping_window_starts_where_previous_ends():
    windows = changepoint_windows(at(110, 100))

    assert windows == [(at(85)[0], at(115)[0]), (at(115)[0], at(125)[0])]


def test_first_detection_in_window_counts():
    # Window 85-115 s: detections at 91 s (position 0.2) and 100 s; the second is not extra.
    counts = count_changepoints(at(100), at(91, 100))

    assert counts.positions == [pytest.approx(0.2)]
    assert counts.missed == 0
    assert counts.false_detections == 0


def test_detection_outside_windows_is_false():
    counts = count_changepoints(at(100, 300), at(85, 200, 116))

    assert counts.windows == 2
    assert counts.positions == [0.0]  # 85 s opens the first window, bounds included
    assert counts.missed == 1
    assert counts.false_detections == 2


def test_no_changepoints_makes_every_detection_false():
    counts = count_changepoints(at(), at(5, 50))

    assert (counts.windows, counts.missed, counts.false_detections) == (0, 0, 2)


@pytest.mark.parametrize(
    ("position", "reward"),
    [
        (0.0, 1.0),  # window start: A_tp
        (1.0, -0.11),  # window end: A_fp
        # Step 500 of 1,000: x = -pi/2 + 500 pi / 999, reward 0.555 (1 - tanh x / tanh(pi/2)) - 0.11.
        (0.5, 0.555 * (1 - np.tanh(-np.pi / 2 + np.pi * 500 / 999) / np.tanh(np.pi / 2)) - 0.11),
    ],
)
def test_reward_falls_across_window(position, reward):
    assert nab_reward(position, 1.0, -0.11) == pytest.approx(reward)


def test_reward_is_about_half_way_at_centre():
    assert nab_reward(0.5, 1.0, -0.11) == pytest.approx(0.444, abs=1e-3)


def test_scores_normalise_between_null_and_perfect():
    # Two windows: one met at its start, one missed, and one false detection.
    # standard: raw 1 - 1 - 0.11, null -2, perfect 2 -> 100 x 1.89 / 4 = 47.25
    # low FP:   raw 1 - 1 - 0.22                     -> 100 x 1.78 / 4 = 44.5
    # low FN:   raw 1 - 2 - 0.11, null -4            -> 100 x 2.89 / 6 = 48.17
    counts = ChangepointCounts(windows=2, positions=[0.0], missed=1, false_detections=1)

    scores = nab_scores([counts])

    assert scores == {"standard": 47.25, "low_fp": 44.5, "low_fn": 48.17}


def test_scores_pool_files():
    perfect = ChangepointCounts(windows=1, positions=[0.0], missed=0, false_detections=0)
    missed = ChangepointCounts(windows=1, positions=[], missed=1, false_detections=0)

    assert nab_scores([perfect])["standard"] == 100.0
    assert nab_scores([missed])["standard"] == 0.0
    assert nab_scores([perfect, missed])["standard"] == 50.0


def test_scores_without_windows_are_none():
    counts = ChangepointCounts(windows=0, positions=[], missed=0, false_detections=3)

    assert nab_scores([counts]) == {"standard": None, "low_fp": None, "low_fn": None}


def test_flag_changes_are_switches_on_and_off():
    changes = flag_changes(at(0, 1, 2, 3, 4), [0, 1, 1, 0, 1])

    assert changes.tolist() == at(1, 3, 4).tolist()


def test_flag_on_at_first_row_is_no_change():
    assert flag_changes(at(0, 1, 2), [1, 1, 0]).tolist() == at(2).tolist()


def test_detection_on_shared_border_counts_once():
    # Changepoints 30 s apart: windows 85-115 s and 115-145 s share 115 s.
    counts = count_changepoints(at(100, 130), at(115))

    assert counts.positions == [1.0]
    assert counts.missed == 1
    assert counts.false_detections == 0
