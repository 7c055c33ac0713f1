"""Scoring on small case tables with answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from anomaly_detector.config import ScoringConfig, Span
from anomaly_detector.errors import ConfigurationError, RequestError
from anomaly_detector.scoring import Scorer, describe_inputs, score_all

NAN = np.nan


def config(
    window="1", min_duration="1", threshold=1.0, timestamps=False, merge_gap="0"
) -> ScoringConfig:
    return ScoringConfig(
        target="y",
        inputs=("x",),
        threshold=threshold,
        timestamp_column="t" if timestamps else None,
        window=Span.parse(window, "window"),
        min_duration=Span.parse(min_duration, "min_duration"),
        merge_gap=Span.parse_gap(merge_gap, "merge_gap"),
    )


def times(*minutes: float) -> pd.Series:
    base = pd.Timestamp("2024-01-01T00:00:00Z")
    return pd.Series([base + pd.Timedelta(minutes=m) for m in minutes], dtype="datetime64[ns, UTC]")


def run(actual, predicted, cfg, timestamps=None):
    actual = np.asarray(actual, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    scorable = ~np.isnan(actual) & ~np.isnan(predicted)
    return score_all(cfg, actual, np.where(scorable, predicted, NAN), scorable, timestamps)


@pytest.mark.parametrize(
    ("window", "actual", "expected"),
    [
        ("1", [1, 3, 0], [1, 3, 0]),
        ("2", [1, 3, 0], [1, 2, 1.5]),
        ("3", [2, -4, 0], [2, 3, 2]),
        # A window longer than the data averages what there is.
        ("10", [1, 3, 2], [1, 2, 2]),
        # An unscored row counts for nothing and has no score itself.
        ("2", [1, NAN, 3], [1, NAN, 3]),
        ("3", [1, NAN, 3], [1, NAN, 2]),
    ],
)
def test_rolling_score_rows(window, actual, expected):
    scores, _ = run(actual, np.zeros(len(actual)), config(window=window))

    np.testing.assert_allclose(scores.score, expected, equal_nan=True)


def test_residual_is_actual_minus_predicted():
    scores, _ = run([5.0, 1.0], [2.0, 4.0], config())

    np.testing.assert_allclose(scores.residual, [3.0, -3.0])


def test_one_row():
    scores, events = run([3.0], [0.0], config(window="5"))

    assert scores.score.tolist() == [3.0]
    assert scores.is_anomaly.tolist() == [True]
    assert len(events) == 1
    assert events[0].rows == 1


def test_all_rows_unscored_gives_no_score_and_no_event():
    scores, events = run([NAN, NAN], [1.0, 1.0], config())

    assert np.isnan(scores.score).all()
    assert not scores.is_anomaly.any()
    assert events == []


def test_threshold_is_strict():
    scores, _ = run([1.0, 1.5], [0.0, 0.0], config(threshold=1.0))

    assert scores.is_anomaly.tolist() == [False, True]


@pytest.mark.parametrize(
    ("min_duration", "expected_runs"),
    [("1", [(1, 2), (5, 7)]), ("2", [(1, 2), (5, 7)]), ("3", [(5, 7)]), ("4", [])],
)
def test_events_respect_min_duration_rows(min_duration, expected_runs):
    actual = [0, 2, 2, 0, 0, 2, 2, 2, 0]

    _, events = run(actual, np.zeros(9), config(min_duration=min_duration))

    assert [(e.start_row, e.end_row) for e in events] == expected_runs


def test_event_fields():
    actual = [0, -2, -5, -3, 0]

    _, events = run(actual, np.zeros(5), config())

    event = events[0]
    assert (event.start_row, event.end_row, event.rows) == (1, 3, 3)
    assert event.peak_score == 5.0
    assert event.peak_row == 2
    assert event.direction == "below"
    assert event.mean_residual == pytest.approx(-10 / 3)


def test_event_direction_above():
    _, events = run([0, 4, 3], [0, 0, 0], config())

    assert events[0].direction == "above"


def test_unscored_row_inside_run_neither_breaks_nor_extends_it():
    _, events = run([2, NAN, 2, 0], np.zeros(4), config())

    assert len(events) == 1
    assert (events[0].start_row, events[0].end_row, events[0].rows) == (0, 2, 2)


def test_time_window_follows_timestamps_across_gaps():
    # Rows at minutes 0, 1, 2 and then 10: with a 2-minute window, the row at minute 10
    # stands alone because the gap leaves nothing else in its window.
    cfg = config(window="2min", timestamps=True)

    scores, _ = run([2, 4, 6, 10], np.zeros(4), cfg, times(0, 1, 2, 10))

    np.testing.assert_allclose(scores.score, [2, 3, 5, 10])


def test_unsorted_timestamps_are_scored_in_time_order_and_returned_in_input_order():
    cfg = config(window="2", timestamps=True)
    # Input order: minutes 2, 0, 1. In time order the residuals are 1, 3, 5.
    scores, _ = run([5, 1, 3], np.zeros(3), cfg, times(2, 0, 1))

    np.testing.assert_allclose(scores.score, [4, 1, 2])


def test_repeated_timestamps_keep_input_order():
    cfg = config(window="2", timestamps=True)

    scores, _ = run([1, 3, 5], np.zeros(3), cfg, times(0, 0, 0))

    np.testing.assert_allclose(scores.score, [1, 2, 4])


def test_rows_without_timestamp_are_not_scored():
    cfg = config(window="2", timestamps=True)
    stamps = times(0, 1, 2)
    stamps[1] = pd.NaT

    scores, _ = run([1, 3, 5], np.zeros(3), cfg, stamps)

    np.testing.assert_allclose(scores.score, [1, NAN, 3], equal_nan=True)


def test_events_carry_times_and_min_duration_in_time():
    cfg = config(min_duration="2min", timestamps=True)
    # Anomalous runs: minutes 1-2 (lasts 1 min) and minutes 5-7 (lasts 2 min).
    actual = [0, 2, 2, 0, 0, 2, 2, 2, 0]

    _, events = run(actual, np.zeros(9), cfg, times(*range(9)))

    assert len(events) == 1
    assert events[0].to_dict()["start"] == "2024-01-01T00:05:00Z"
    assert events[0].to_dict()["end"] == "2024-01-01T00:07:00Z"


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 50])
@pytest.mark.parametrize("window", ["1", "4", "3min"])
@pytest.mark.parametrize("merge_gap", ["0", "3", "4min"])
def test_chunked_scoring_equals_whole(chunk, window, merge_gap):
    rng = np.random.default_rng(7)
    count = 50
    actual = rng.normal(0, 1, count)
    actual[[5, 17]] = NAN
    actual[20:30] += 4  # an event that spans chunk borders
    actual[33:36] += 4  # a short breach a few rows later, merged with a gap
    predicted = np.zeros(count)
    scorable = ~np.isnan(actual)
    stamps = times(*np.cumsum(rng.choice([1, 1, 1, 2], count)))
    cfg = config(
        window=window, min_duration="3", threshold=1.5, timestamps=True, merge_gap=merge_gap
    )

    whole, whole_events = score_all(cfg, actual, predicted, scorable, stamps)
    scorer = Scorer(cfg)
    parts = []
    for start in range(0, count, chunk):
        part = slice(start, start + chunk)
        parts.append(
            scorer.score(
                actual[part], predicted[part], scorable[part], stamps[part].reset_index(drop=True)
            )
        )
    chunked_events = scorer.finish()

    np.testing.assert_allclose(
        np.concatenate([p.score for p in parts]), whole.score, equal_nan=True
    )
    assert [e.to_dict() for e in chunked_events] == [e.to_dict() for e in whole_events]


def test_chunks_going_back_in_time_are_rejected():
    cfg = config(timestamps=True)
    scorer = Scorer(cfg)
    scorer.score(np.ones(2), np.zeros(2), np.ones(2, bool), times(5, 6))

    with pytest.raises(RequestError, match="sort the file by time"):
        scorer.score(np.ones(2), np.zeros(2), np.ones(2, bool), times(1, 2))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 0.0}, "greater than 0"),
        ({"threshold": float("nan")}, "finite"),
        ({"inputs": ("x", "y")}, "also listed as an input"),
        ({"inputs": ()}, "At least one input"),
        ({"window": Span(time=pd.Timedelta("5min"))}, "timestamp column is required"),
        ({"timezone": "Mars/Olympus"}, "Unknown time zone"),
    ],
)
def test_scoring_config_rejects(kwargs, message):
    base = {"target": "y", "inputs": ("x",), "threshold": 1.0}

    with pytest.raises(ConfigurationError, match=message):
        ScoringConfig(**{**base, **kwargs})


@pytest.mark.parametrize(
    ("text", "rows", "minutes"),
    [("5", 5, None), ("5min", None, 5), ("90s", None, 1.5), ("1h", None, 60)],
)
def test_span_parse(text, rows, minutes):
    span = Span.parse(text, "WINDOW")

    assert span.rows == rows
    if minutes is not None:
        assert span.time == pd.Timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("500ms", "500ms"),
        ("1.5s", "1500ms"),
        ("2500001us", "2500001us"),
        ("90s", "90s"),
        ("1D", "24h"),
    ],
)
def test_span_text_parses_back(text, shown):
    span = Span.parse(text, "WINDOW")

    assert str(span) == shown
    assert Span.parse(shown, "WINDOW") == span


@pytest.mark.parametrize(
    ("text", "message"),
    [("+5", "with a unit"), ("1.5", "with a unit"), ("1000000D", "longer than the longest")],
)
def test_span_parse_rejects_unitless_or_huge(text, message):
    with pytest.raises(ConfigurationError, match=message):
        Span.parse(text, "WINDOW")


@pytest.mark.parametrize("text", ["0", "-3", "soon", "0min", ""])
def test_span_parse_rejects(text):
    with pytest.raises(ConfigurationError, match="WINDOW"):
        Span.parse(text, "WINDOW")


def test_event_drivers_rank_inputs_by_deviation_from_normal():
    # Given two inputs; during the anomalous rows 6-8 only the first moves far from normal
    count = 12
    inputs = np.column_stack(
        [
            np.r_[np.tile([9.0, 11.0], 3), 30, 30, 30, np.tile(10.0, 3)],
            np.r_[np.tile([4.0, 6.0], 3), 5, 5, 5, np.tile(5.0, 3)],
        ]
    )
    actual = np.zeros(count)
    actual[6:9] = 5.0
    cfg = ScoringConfig(
        target="y",
        inputs=("load", "speed"),
        threshold=1.0,
        window=Span(rows=1),
        min_duration=Span(rows=1),
    )

    _, events = score_all(cfg, actual, np.zeros(count), np.ones(count, bool), None, inputs)

    drivers = events[0].to_dict()["drivers"]
    assert [d["input"] for d in drivers] == ["load", "speed"]
    assert drivers[0]["event_mean"] == 30.0
    assert drivers[0]["normal_mean"] == pytest.approx(10.0)
    assert drivers[0]["deviation"] > 10
    assert drivers[1]["deviation"] == 0.0


def test_event_drivers_empty_without_inputs():
    _, events = run([0, 5, 0], np.zeros(3), config())

    assert events[0].to_dict()["drivers"] == []


# -- onset: the first scored row of the window whose score first crossed the threshold --


def test_onset_opens_first_breaching_window():
    # Window 3, threshold 1.5. Scores: 0, 0, 0, 1, 2, 3, 2, 1 -> the run starts at row 4,
    # whose window contains rows 2, 3 and 4.
    _, events = run([0, 0, 0, 3, 3, 3, 0, 0], np.zeros(8), config(window="3", threshold=1.5))

    assert len(events) == 1
    assert (events[0].onset_row, events[0].start_row, events[0].end_row) == (2, 4, 6)
    assert events[0].to_dict()["onset"] == 2


def test_onset_skips_unscored_rows_at_the_window_start():
    # Row 2 cannot be scored, so the first scored row of row 4's window (rows 2-4) is row 3.
    _, events = run([0, 0, NAN, 3, 3, 3, 0, 0], np.zeros(8), config(window="3", threshold=1.5))

    assert (events[0].onset_row, events[0].start_row) == (3, 4)


def test_onset_stops_at_first_row():
    _, events = run([4, 4, 0, 0], np.zeros(4), config(window="5", threshold=1.5))

    assert (events[0].onset_row, events[0].start_row) == (0, 0)


def test_onset_follows_a_time_window():
    # 2-minute window over rows at minutes 0, 1, 2, 3, 5, 6. At minute 3 the score is
    # (0 + 2) / 2 = 1. The run starts at minute 5 (row 4): its window, after minute 3 up to
    # minute 5, contains only row 4, so row 4 is also the onset.
    cfg = config(window="2min", threshold=2.5, timestamps=True)

    _, events = run([0, 0, 0, 2, 3, 3], np.zeros(6), cfg, times(0, 1, 2, 3, 5, 6))

    assert (events[0].onset_row, events[0].start_row) == (4, 4)
    assert events[0].to_dict()["onset"] == "2024-01-01T00:05:00Z"


def test_onset_in_time_window_reaches_back():
    # 3-minute window: the row at minute 4 averages minutes 2, 3 and 4 -> (1 + 4 + 4) / 3 = 3.
    cfg = config(window="3min", threshold=2.5, timestamps=True)

    _, events = run([0, 0, 1, 4, 4, 0], np.zeros(6), cfg, times(0, 1, 2, 3, 4, 5))

    assert (events[0].onset_row, events[0].start_row) == (2, 4)
    assert events[0].onset_time == pd.Timestamp("2024-01-01T00:02:00Z")


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_onset_found_in_an_earlier_chunk(chunk):
    actual = np.array([0, 0, 0, 3, 3, 3, 0, 0], dtype=float)
    scorer = Scorer(config(window="3", threshold=1.5))
    for start in range(0, len(actual), chunk):
        part = slice(start, start + chunk)
        scorer.score(actual[part], np.zeros(len(actual[part])), np.ones(len(actual[part]), bool))

    events = scorer.finish()

    assert (events[0].onset_row, events[0].start_row, events[0].end_row) == (2, 4, 6)


def test_onset_of_row_window_has_time():
    cfg = config(window="3", threshold=1.5, timestamps=True)

    _, events = run([0, 0, 0, 3, 3, 3, 0, 0], np.zeros(8), cfg, times(*range(8)))

    assert events[0].to_dict()["onset"] == "2024-01-01T00:02:00Z"
    assert events[0].to_dict()["start"] == "2024-01-01T00:04:00Z"


# -- target deviation and the inputs named to operators -------------------------------------


def test_target_deviation_in_units_of_normal_error():
    # Normal rows have residuals of +-1 (RMS 1); the event's rows 4-5 average 5.
    actual = [1, -1, 1, -1, 5, 5, 1, -1]

    _, events = run(actual, np.zeros(8), config(threshold=2.0))

    assert events[0].to_dict()["target_deviation"] == 5.0


def test_target_deviation_below_prediction_is_negative():
    actual = [2, -2, 2, -2, -8, -8, 2, -2]

    _, events = run(actual, np.zeros(8), config(threshold=3.0))

    assert events[0].to_dict()["target_deviation"] == -4.0


def test_target_deviation_none_without_normal_rows():
    _, events = run([5, 5, 1], np.zeros(3), config(threshold=2.0))

    assert events[0].to_dict()["target_deviation"] is None


@pytest.mark.parametrize(
    ("deviations", "text"),
    [
        ([3.04, -2.5, 0.4], "a +3.0 sd, b -2.5 sd"),
        ([1.9, -0.3], "none beyond 2 sd"),
        ([], ""),
    ],
)
def test_describe_inputs_names_notable_shifts(deviations, text):
    drivers = [{"input": name, "deviation": d} for name, d in zip("abc", deviations, strict=False)]

    assert describe_inputs({"drivers": drivers}) == text


def test_target_deviation_of_huge_residuals():
    # Squares of 1e200 overflow 64-bit floats; the normal error is still 1e200.
    actual = np.array([1, -1, 1, -1, 100, 100, 1, -1]) * 1e200

    _, events = run(actual, np.zeros(8), config(threshold=5e200))

    assert events[0].to_dict()["target_deviation"] == pytest.approx(100.0)


def test_target_deviation_none_when_normal_residuals_are_zero():
    _, events = run([0, 0, 0, 5, 5, 0], np.zeros(6), config(threshold=2.0))

    assert events[0].to_dict()["target_deviation"] is None


# -- merging runs across short gaps ------------------------------------------------------------

# Anomalous runs (threshold 1, window 1): rows 0-1, 4-5 and 9. Two rows lie between the first
# two runs, three between the second and the third.
GAPPED = [2, 3, 0, 0, 5, 2, 0, 0, 0, 2]


@pytest.mark.parametrize(
    ("merge_gap", "min_duration", "expected"),
    [
        ("0", "1", [(0, 1), (4, 5), (9, 9)]),
        ("1", "1", [(0, 1), (4, 5), (9, 9)]),
        ("2", "1", [(0, 5), (9, 9)]),
        ("3", "1", [(0, 9)]),
        # The minimum duration is judged on the merged event, gaps included: rows 0-5 are six.
        ("0", "6", []),
        ("2", "6", [(0, 5)]),
        ("2", "7", []),
    ],
)
def test_merge_gap_in_rows(merge_gap, min_duration, expected):
    _, events = run(GAPPED, np.zeros(10), config(min_duration=min_duration, merge_gap=merge_gap))

    assert [(e.start_row, e.end_row) for e in events] == expected


def test_merged_event_counts_only_anomalous_rows():
    _, events = run(GAPPED, np.zeros(10), config(window="2", merge_gap="2"))

    # Window 2 scores: 2, 2.5, 1.5, 0, 2.5, 3.5, 1, 0, 0, 1 -> runs 0-2 and 4-5.
    event = events[0].to_dict()
    assert (event["start_row"], event["end_row"], event["rows"]) == (0, 5, 5)
    assert (event["onset_row"], event["peak_row"], event["peak_score"]) == (0, 5, 3.5)
    assert event["mean_residual"] == pytest.approx((2 + 3 + 0 + 5 + 2) / 5)


def test_merge_gap_in_time():
    # Runs at minutes 1-2, 4-5 and 9; two minutes from 2 to 4, four from 5 to 9.
    actual = [0, 2, 2, 0, 2, 2, 0, 0, 0, 2]
    cfg = config(min_duration="4min", merge_gap="2min", timestamps=True)

    _, events = run(actual, np.zeros(10), cfg, times(*range(10)))

    assert [(e.to_dict()["start"], e.to_dict()["end"]) for e in events] == [
        ("2024-01-01T00:01:00Z", "2024-01-01T00:05:00Z")
    ]


@pytest.mark.parametrize(
    ("actual", "direction"),
    [
        ([2, 2, 0, -2, 0, 2, 2], "both"),
        ([-2, -2, 0, -2, 0, -2, -2], "below"),
        # One run whose residuals change sign keeps the sign of their sum.
        ([2, -3, 0, 0, 0, 0, 0], "below"),
    ],
)
def test_direction_of_runs_joined_across_sides(actual, direction):
    _, events = run(actual, np.zeros(7), config(merge_gap="1"))

    assert [e.direction for e in events] == [direction]


def test_unscored_rows_do_not_count_as_gap_rows():
    actual = [2, NAN, NAN, NAN, 0, 2]

    _, events = run(actual, np.zeros(6), config(merge_gap="1"))

    assert [(e.start_row, e.end_row) for e in events] == [(0, 5)]


@pytest.mark.parametrize(
    ("text", "message"),
    [("0s", "Use 0 to merge nothing"), ("-1", "Use 0 to merge nothing"), ("soon", "time span")],
)
def test_merge_gap_parse_rejects(text, message):
    with pytest.raises(ConfigurationError, match=message):
        Span.parse_gap(text, "merge_gap")


def test_merge_gap_in_time_needs_timestamps():
    with pytest.raises(ConfigurationError, match="merge_gap 1min is a time span"):
        config(merge_gap="1min")
