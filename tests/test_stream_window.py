"""What a stream carries between requests: the scorer, the stores, the handler.

A request's first windows reach back into the rows of the stream's request before it, and
its events continue the runs that were open there. So requests sent one after another score
and find events as one long request does. The service tests run the real
handler against moto's DynamoDB.
"""

from __future__ import annotations

import json

import boto3
import fixtures_handler
import numpy as np
import pandas as pd
import pytest
from fixtures_handler import (
    FormulaPredictor,
    RecordingSns,
    create_state_table,
    load_event,
    make_config,
    minute_rows_csv,
    post_ok,
    replace_cells,
)
from moto import mock_aws

from anomaly_detector.config import ScoringConfig, Span
from anomaly_detector.handler import DetectionService
from anomaly_detector.publishing import publish_warning
from anomaly_detector.scoring import (
    MAX_CARRIED_ROWS,
    BaselineState,
    CarriedEvents,
    Event,
    Scorer,
    WindowTail,
)
from anomaly_detector.state import DynamoStreamStore, MemoryStreamStore, StoredStream

aws_credentials = fixtures_handler.aws_credentials

TABLE = "anomaly-detector-state"
# No baseline: the table keeps the window tail alone.
ENV = {"STATE_TABLE": TABLE, "WINDOW": "5", "MIN_DURATION": "1", "THRESHOLD": "1.5"}
START = pd.Timestamp("2024-03-06T08:00:00Z")
# Rows 40 to 54 of rows_csv lie 3 K above the formula, over the 1.5 K threshold.
FAULT = range(40, 55)


# -- the scorer ---------------------------------------------------------------------------


def scoring_config(
    window: str, baseline: int | None = None, minimum: str = "1", gap: str = "0"
) -> ScoringConfig:
    return ScoringConfig(
        target="y",
        inputs=("x",),
        threshold=1.5,
        timestamp_column="t",
        window=Span.parse(window, "window"),
        min_duration=Span.parse(minimum, "min_duration"),
        merge_gap=Span.parse_gap(gap, "merge_gap"),
        baseline=baseline,
    )


def residual_series(count: int = 400) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    rng = np.random.default_rng(7)
    residuals = rng.normal(size=count)
    residuals[150:190] += 4.0
    residuals[300:304] += 3.0  # a short breach
    residuals[310:330] -= 3.0  # and a longer one below, 6 rows later
    scorable = rng.random(count) > 0.1  # some rows are not scored
    times = pd.Series(pd.date_range(START, periods=count, freq="min"))
    return residuals, scorable, times


def event_key(event: Event, first: int) -> tuple:
    """Identify an event over the whole series, whatever part reported it."""
    return (event.start_time, event.end_time, event.rows, round(event.peak_score, 9),
            first + event.onset_row, event.direction)  # fmt: skip


def score_in_parts(config: ScoringConfig, size: int, timed: bool = True):
    """Score the series in parts of ``size`` rows, each part with a new Scorer that carries
    the window tail, the open runs and the baseline of the part before it, as requests of a
    stream do. Return the scores, and the events in their last reported form."""
    residuals, scorable, times = residual_series()
    scores, final, tail, runs, last, baseline = [], [], None, None, None, None
    for start in range(0, len(residuals), size):
        scorer = Scorer(config)
        if tail is not None:
            scorer.carry_window(tail, runs, last)
            scorer.baseline = baseline
        part = slice(start, start + size)
        count = len(residuals[part])
        chunk = scorer.score(
            residuals[part],
            np.zeros(count),
            scorable[part],
            times.iloc[part].reset_index(drop=True) if timed else None,
        )
        scores.append(chunk.score)
        events = scorer.finish()
        final = [key for key in final if key[-1] != "ongoing"]
        final += [(*event_key(e, start), "ongoing" if e.ongoing else "") for e in events]
        tail, runs, baseline = scorer.window_tail(), scorer.carry_out(), scorer.baseline
        last = scorer.time_range[1]
    return np.concatenate(scores), sorted(key[:-1] for key in final)


@pytest.mark.parametrize("window", ["5", "7min"])
@pytest.mark.parametrize("baseline", [None, 60])
@pytest.mark.parametrize("size", [1, 6, 13, 400])
def test_parts_score_as_one_request(window, baseline, size):
    config = scoring_config(window, baseline)
    whole, whole_events = score_in_parts(config, 400)

    split, events = score_in_parts(config, size)

    np.testing.assert_array_equal(np.isnan(split), np.isnan(whole))
    np.testing.assert_allclose(split[~np.isnan(split)], whole[~np.isnan(whole)], atol=1e-12)
    assert events == whole_events


@pytest.mark.parametrize(
    ("minimum", "gap"), [("1", "0"), ("12", "0"), ("12", "8"), ("15min", "10min"), ("30", "0")]
)
@pytest.mark.parametrize("size", [1, 5, 9, 400])
def test_parts_find_the_events_of_one_request(minimum, gap, size):
    config = scoring_config("5", minimum=minimum, gap=gap)
    _, whole_events = score_in_parts(config, 400)

    _, events = score_in_parts(config, size)

    assert events == whole_events
    assert len(whole_events) >= 1


def test_parts_without_a_window_tail_score_otherwise():
    """The check above can fail: parts that start afresh differ from one request."""
    config = scoring_config("5")
    whole, _ = score_in_parts(config, 400)
    residuals, scorable, times = residual_series()
    fresh = np.concatenate(
        [
            Scorer(config)
            .score(residuals[s : s + 6], np.zeros(len(residuals[s : s + 6])), scorable[s : s + 6])
            .score
            for s in range(0, 400, 6)
        ]
    )

    assert np.nanmax(np.abs(fresh - whole)) > 0.5


def test_untimed_parts_carry_the_tail():
    config = ScoringConfig(target="y", inputs=("x",), threshold=1.5, window=Span.parse("5", "w"))
    whole, _ = score_in_parts(config, 400, timed=False)

    split, _ = score_in_parts(config, 7, timed=False)

    np.testing.assert_allclose(split, whole, atol=1e-12)


def tail_before(times: pd.DatetimeIndex) -> WindowTail:
    stamps = times.tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[ns]")
    return WindowTail(np.full(len(times), 10.0), stamps)


@pytest.mark.parametrize(
    ("first_minute", "rows", "carried"),
    [
        (5, 3, 5),  # later rows continue the tail
        (4, 3, 5),  # the first row at the tail's last time: times may repeat
        (4, 1, 0),  # one row at the tail's last time: a retry of the last row
        (2, 3, 0),  # a retry that overlaps the tail
        (-10, 3, 0),  # rows sent late
    ],
)
def test_tail_is_used_only_by_newer_rows(first_minute, rows, carried):
    scorer = Scorer(scoring_config("5"))
    scorer.carry_window(tail_before(pd.date_range(START, periods=5, freq="min")))
    times = pd.Series(START + pd.to_timedelta(np.arange(rows) + first_minute, unit="min"))

    chunk = scorer.score(np.zeros(rows), np.zeros(rows), np.ones(rows, dtype=bool), times)

    assert scorer.carried_rows == carried
    # The first window has the last 4 tail rows, all 10s, or the row alone.
    assert chunk.score[0] == (8.0 if carried else 0.0)


def test_timed_tail_is_dropped_for_untimed_rows():
    scorer = Scorer(scoring_config("5"))
    scorer.carry_window(tail_before(pd.date_range(START, periods=5, freq="min")))

    chunk = scorer.score(np.zeros(3), np.zeros(3), np.ones(3, dtype=bool))

    assert scorer.carried_rows == 0
    assert chunk.score[0] == 0.0


def test_tail_onset_is_numbered_negative():
    scorer = Scorer(scoring_config("5"))
    scorer.carry_window(tail_before(pd.date_range(START, periods=4, freq="min")))
    times = pd.Series(START + pd.to_timedelta(np.arange(4, 8), unit="min"))

    scorer.score(np.full(4, 10.0), np.zeros(4), np.ones(4, dtype=bool), times)
    (event,) = scorer.finish()

    assert event.start_row == 0
    assert event.onset_row == -4
    assert event.onset_time == START


def test_carry_after_a_chunk_is_refused():
    scorer = Scorer(scoring_config("5"))
    scorer.score(np.zeros(2), np.zeros(2), np.ones(2, dtype=bool))

    with pytest.raises(ValueError, match="before the first chunk"):
        scorer.carry_window(WindowTail())


def test_window_tail_keeps_at_most_the_limit():
    config = ScoringConfig(target="y", inputs=("x",), threshold=1.0, window=Span.parse("50", "w"))
    scorer = Scorer(config)
    scorer.score(np.arange(100.0), np.zeros(100), np.ones(100, dtype=bool))

    assert len(scorer.window_tail()) == 49
    np.testing.assert_array_equal(scorer.window_tail(limit=3).values, [97.0, 98.0, 99.0])


@pytest.mark.parametrize(
    ("values", "times", "problem"),
    [
        (np.array([1.0, -1.0]), None, "negative"),
        (np.array([1.0, 1e200]), None, "or more"),
        (np.ones((2, 2)), None, "not a list"),
        (np.ones(2), np.array([2, 1], dtype="datetime64[ns]"), "not in order"),
        (np.ones(2), np.array([1], dtype="datetime64[ns]"), "do not match"),
    ],
)
def test_checked_tail_refuses_what_a_scorer_cannot_give(values, times, problem):
    with pytest.raises(ValueError, match=problem):
        WindowTail.checked(values, times)


# -- the service ----------------------------------------------------------------------------


@pytest.fixture
def dynamodb(aws_credentials):
    with mock_aws():
        client = boto3.client("dynamodb")
        create_state_table(client, TABLE)
        yield client


def rows_csv(first: int, count: int, timed: bool = True) -> str:
    """Rows a minute apart from row ``first``: the formula plus noise, 3 K more on FAULT."""
    index = np.arange(first, first + count)
    # Each row draws from its own seed, so a row has the same values in any request.
    draws = [np.random.default_rng(i) for i in index]
    noise = np.array([rng.normal(0.0, 1.0) for rng in draws])
    torque = np.array([rng.uniform(40.0, 60.0) for rng in draws])
    ambient = 22.0 + np.sin(index / 10.0)
    body = minute_rows_csv(index, torque, ambient, noise + 3.0 * np.isin(index, FAULT), START)
    if not timed:  # the timestamp is the first column
        body = "\n".join(line.split(",", 1)[1] for line in body.splitlines()) + "\n"
    return body


def service(**env: str | None) -> DetectionService:
    return DetectionService(make_config(**{**ENV, **env}), predictor=FormulaPredictor())


post = post_ok


def test_requests_of_a_stream_score_as_one(dynamodb):
    whole = post(service(), rows_csv(0, 90), stream="whole")

    detector = service()
    parts = [post(detector, rows_csv(start, 5), stream="parts") for start in range(0, 90, 5)]

    scores = [row["score"] for part in parts for row in part["rows"]]
    assert scores == pytest.approx([row["score"] for row in whole["rows"]], abs=1e-9)
    assert [part["summary"]["stream"]["window_rows_carried"] for part in parts] == [0] + [4] * 17
    assert parts[-1]["summary"]["stream"] == {
        "name": "parts",
        "window_rows_carried": 4,
        "window_rows_kept": 4,
        "saved": True,
    }
    assert "baseline" not in parts[-1]["summary"]


def test_fresh_windows_raise_false_breaches(dynamodb):
    """What the carried tail prevents: without a table each request starts a new window."""
    stateless = service(STATE_TABLE=None)
    carried = service()

    fresh = [post(stateless, rows_csv(start, 2)) for start in range(0, 40, 2)]
    continued = [post(carried, rows_csv(start, 2), stream="s") for start in range(0, 40, 2)]

    assert sum(part["summary"]["anomalous_rows"] for part in continued) == 0
    assert sum(part["summary"]["anomalous_rows"] for part in fresh) > 0
    assert "stream" not in fresh[0]["summary"]


def test_event_from_earlier_request_has_null_rows(dynamodb):
    detector = service()
    first = post(detector, rows_csv(0, 45), stream="s")

    later = post(detector, rows_csv(45, 20), stream="s")

    (begun,) = first["events"]
    (event,) = later["events"]
    assert begun["ongoing"] is True
    assert begun["reported_before"] is False
    assert event["start_row"] is None
    assert event["start"] == begun["start"]
    assert event["onset_row"] is None
    assert event["onset"] == begun["onset"]
    assert event["end_row"] >= 0
    assert event["ongoing"] is False
    assert event["reported_before"] is True
    assert later["summary"]["new_events"] == 0


def test_untimed_earlier_rows_are_null(dynamodb):
    detector = service(TIMESTAMP_COLUMN=None)
    post(detector, rows_csv(0, 45, timed=False), stream="s")

    later = post(detector, rows_csv(45, 20, timed=False), stream="s")

    (event,) = later["events"]
    assert event["start"] is None
    assert event["onset"] is None
    assert event["onset_row"] is None
    _, message = publish_warning_text(later)
    assert "a row of an earlier request to " in message
    assert "first alarming window from a row of an earlier request" in message
    assert "None" not in message


def publish_warning_text(result: dict) -> tuple[str, str]:
    sns = RecordingSns()
    config = make_config(**ENV, TIMESTAMP_COLUMN=None, TOPIC_ARN="arn:aws:sns:eu-west-1:1:w")
    publish_warning(sns, config, result["summary"], result["events"])
    return sns.published[0]["Subject"], sns.published[0]["Message"]


def test_event_over_short_requests_warns_once(dynamodb):
    """An event longer than any request lasts its minimum duration over several of them."""
    env = {"MIN_DURATION": "8", "TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:w"}
    whole = post(service(**env), rows_csv(0, 90), stream="whole")
    sns = RecordingSns()
    detector = DetectionService(
        make_config(**{**ENV, **env}), predictor=FormulaPredictor(), sns_client=sns
    )

    parts = [post(detector, rows_csv(start, 5), stream="parts") for start in range(0, 90, 5)]

    (expected,) = whole["events"]
    reported = [event for part in parts for event in part["events"]]
    assert len(reported) >= 2  # while it went on, and when it ended
    assert [event["reported_before"] for event in reported] == [False] + [True] * (
        len(reported) - 1
    )
    assert [event["ongoing"] for event in reported] == [True] * (len(reported) - 1) + [False]
    assert sum(part["summary"]["new_events"] for part in parts) == 1
    assert len(sns.published) == 1
    final = reported[-1]
    for name in ("start", "end", "onset", "rows", "peak_score", "peak_time", "direction"):
        assert final[name] == expected[name], name


def test_stateless_requests_miss_event_longer_than_each(dynamodb):
    """The check above can fail: requests that start afresh never last 8 rows."""
    detector = service(STATE_TABLE=None, MIN_DURATION="8")

    parts = [post(detector, rows_csv(start, 5)) for start in range(0, 90, 5)]

    assert sum(part["summary"]["events"] for part in parts) == 0


def test_other_event_settings_drop_the_runs(dynamodb):
    post(service(), rows_csv(0, 45), stream="s")

    later = post(service(THRESHOLD="1.6"), rows_csv(45, 20), stream="s")

    (event,) = later["events"]
    assert event["start_row"] == 0
    assert event["reported_before"] is False
    assert later["summary"]["stream"]["window_rows_carried"] == 4
    assert "restarted_because" not in later["summary"]["stream"]


def test_retry_starts_fresh_window(dynamodb):
    detector = service()
    post(detector, rows_csv(0, 10), stream="s")
    first = post(detector, rows_csv(10, 10), stream="s")

    again = post(detector, rows_csv(10, 10), stream="s")

    assert again["summary"]["stream"]["window_rows_carried"] == 0
    assert again["summary"]["stream"]["not_saved_because"] == "rows_not_newer"
    assert first["summary"]["stream"]["window_rows_carried"] == 4
    item = dynamodb.get_item(TableName=TABLE, Key={"stream": {"S": "s"}})["Item"]
    assert item["version"] == {"N": "2"}


def test_new_window_keeps_baseline_only(dynamodb):
    first = post(service(BASELINE="60"), rows_csv(0, 60), stream="s")

    later = post(service(BASELINE="60", WINDOW="3"), rows_csv(60, 5), stream="s")

    assert later["summary"]["stream"]["window_rows_carried"] == 0
    assert "restarted_because" not in later["summary"]["stream"]
    residuals = first["summary"]["baseline"]["residuals_kept"]
    assert later["summary"]["baseline"]["residuals_kept"] == residuals + 5


def test_item_holds_the_tail_with_its_times(dynamodb):
    post(service(), rows_csv(0, 10), stream="s")

    item = dynamodb.get_item(TableName=TABLE, Key={"stream": {"S": "s"}})["Item"]

    assert item["window"] == {"S": "5"}
    assert item["length"] == {"N": "0"}
    assert len(item["tail_values"]["B"]) == 4 * 8
    times = np.frombuffer(item["tail_times"]["B"], dtype="<i8").astype("datetime64[ns]")
    assert pd.Timestamp(times[-1], tz="UTC") == START + pd.Timedelta(minutes=9)
    assert json.loads(item["events"]["S"])["open"] is None


@pytest.mark.parametrize(
    "attributes",
    [
        {"tail_values": {"B": np.array([1.0, -2.0, 1.0, 1.0]).tobytes()}},
        {"tail_values": {"B": b"\x00\x01"}},  # not a whole number of floats
        {"tail_times": {"B": np.array([3, 2, 1, 0], dtype="<i8").tobytes()}},
        {"tail_times": {"B": np.array([0], dtype="<i8").tobytes()}},
        # The tail ends a day after the stream's last time.
        {
            "tail_times": {
                "B": (
                    np.arange(4, dtype="<i8") + pd.Timestamp("2024-03-07T08:00:00Z").value
                ).tobytes()
            }
        },
        {"tail_values": {"B": np.zeros(MAX_CARRIED_ROWS + 1).tobytes()}},
        {"events": {"S": "not json"}},
        {"events": {"S": "[]"}},
        {"events": {"N": "1"}},
        {"events": {"S": json.dumps({"settings": 5, "open": None, "ended": None})}},
    ],
)
def test_unreadable_tail_restarts_the_stream(dynamodb, attributes):
    post(service(), rows_csv(0, 10), stream="s")
    item = dynamodb.get_item(TableName=TABLE, Key={"stream": {"S": "s"}})["Item"]
    dynamodb.put_item(TableName=TABLE, Item={**item, **attributes})

    later = post(service(), rows_csv(10, 5), stream="s")

    assert later["summary"]["stream"]["restarted_because"] == "unreadable"
    assert later["summary"]["stream"]["window_rows_carried"] == 0
    assert later["summary"]["stream"]["saved"] is True


def test_item_without_tail_starts_empty(dynamodb):
    """Items written before the tail was kept contain none."""
    post(service(), rows_csv(0, 10), stream="s")
    item = dynamodb.get_item(TableName=TABLE, Key={"stream": {"S": "s"}})["Item"]
    for name in ("tail_values", "tail_times", "window"):
        del item[name]
    dynamodb.put_item(TableName=TABLE, Item=item)

    later = post(service(), rows_csv(10, 5), stream="s")

    assert later["summary"]["stream"]["window_rows_carried"] == 0
    assert "restarted_because" not in later["summary"]["stream"]


def test_memory_store_carries_the_tail():
    detector = DetectionService(
        make_config(WINDOW="5"), predictor=FormulaPredictor(), stream_store=MemoryStreamStore()
    )
    post(detector, rows_csv(0, 10), stream="s")

    later = post(detector, rows_csv(10, 5), stream="s")

    assert later["summary"]["stream"]["window_rows_carried"] == 4


def throttle_reads(detector: DetectionService) -> None:
    client = detector.stream_store.client
    code = "ThrottlingException"

    def fail(**_):
        raise client.exceptions.ClientError({"Error": {"Code": code, "Message": "slow"}}, "GetItem")

    client.meta.events.register("before-call.dynamodb.GetItem", fail)


def test_throttled_read_scores_with_fresh_windows(dynamodb):
    """Without a baseline, a failed read costs the first windows only, so rows are scored."""
    post(service(), rows_csv(0, 10), stream="s")
    detector = service()
    throttle_reads(detector)

    later = post(detector, rows_csv(10, 5), stream="s")

    assert later["summary"]["stream"]["window_rows_carried"] == 0
    assert later["summary"]["stream"]["not_saved_because"] == "store_error"
    item = dynamodb.get_item(TableName=TABLE, Key={"stream": {"S": "s"}})["Item"]
    assert item["version"] == {"N": "1"}


def test_throttled_read_with_baseline_is_503(dynamodb):
    detector = service(BASELINE="60")
    throttle_reads(detector)
    event = {**load_event("post_csv"), "body": rows_csv(0, 5)}

    response = detector.handle(event)

    assert response["statusCode"] == 503


def test_untimed_request_keeps_the_tail(dynamodb):
    """Rows without a time are not scored, so they leave the window to the rows after them."""
    untimed = replace_cells(rows_csv(10, 1), 0, timestamp="")
    whole_rows = rows_csv(0, 10) + untimed.split("\n", 1)[1] + rows_csv(11, 5).split("\n", 1)[1]
    whole = post(service(), whole_rows, stream="whole")
    detector = service()
    post(detector, rows_csv(0, 10), stream="parts")

    middle = post(detector, untimed, stream="parts")
    later = post(detector, rows_csv(11, 5), stream="parts")

    assert middle["summary"]["stream"]["window_rows_kept"] == 4
    assert later["summary"]["stream"]["window_rows_carried"] == 4
    scores = [row["score"] for row in later["rows"]]
    assert scores == pytest.approx([row["score"] for row in whole["rows"][11:]], abs=1e-9)


def test_time_window_counts_the_rows_it_reaches(dynamodb):
    detector = service(WINDOW="5min")
    post(detector, rows_csv(0, 10), stream="s")

    soon = post(detector, rows_csv(10, 3), stream="s")
    later = post(detector, rows_csv(200, 3), stream="s")  # three hours later

    assert soon["summary"]["stream"]["window_rows_carried"] == 4
    assert later["summary"]["stream"]["window_rows_carried"] == 0


def test_version_dynamodb_cannot_increase_restarts(dynamodb):
    post(service(), rows_csv(0, 10), stream="s")
    item = dynamodb.get_item(TableName=TABLE, Key={"stream": {"S": "s"}})["Item"]
    dynamodb.put_item(TableName=TABLE, Item={**item, "version": {"N": "1" + "0" * 40}})

    later = post(service(), rows_csv(10, 5), stream="s")

    assert later["summary"]["stream"]["restarted_because"] == "unreadable"
    assert later["summary"]["stream"]["saved"] is True


def test_largest_state_fits_one_item(dynamodb):
    """The maximum baseline and tail, and two open runs over 2,000 inputs: moto enforces
    the 400 KB item limit as DynamoDB does."""
    inputs = tuple(f"input_{number:04d}_{'x' * 40}" for number in range(2_000))
    scoring = ScoringConfig(
        target="y", inputs=inputs, threshold=1.5, timestamp_column="t", baseline=20_000
    )
    times = np.datetime64("2024-03-06T08:00:00", "ns") + np.arange(
        MAX_CARRIED_ROWS
    ) * np.timedelta64(1, "s")
    last = pd.Timestamp(times[-1], tz="UTC")
    run = Event(
        start_row=-9, end_row=-1, rows=9, peak_score=-1.2345678901234567e-100 ** 2 + 1e99,
        peak_row=-5, residual_sum=-1.2345678901234567e99, start_time=last, end_time=last,
        peak_time=last, onset_row=-12, onset_time=last, first_place=-9, last_place=-1,
        input_sums=np.full(len(inputs), -1.2345678901234567e-99),
    )  # fmt: skip
    stored = StoredStream(
        BaselineState(np.full(20_000, -1.2345678901234567e-99), 3, 0, 0.5),
        WindowTail(np.full(MAX_CARRIED_ROWS, 1.2345678901234567e-99), times),
        CarriedEvents(run, run),
        last_time=last,
    )
    store = DynamoStreamStore(dynamodb, TABLE)

    assert store.save("s" * 128, scoring, stored, 0)
    again = store.load("s" * 128, scoring)
    assert again.restarted is None
    assert len(again.tail) == MAX_CARRIED_ROWS
    assert again.events.open.input_sums.shape == (2_000,)


@pytest.mark.parametrize(
    "change",
    [
        {"rows": 0},
        {"peak_score": 10**400},
        {"residual_sum": True},
        {"input_sums": [1e300, 1.0, 1.0]},
        {"start_time": None},
        {"start_time": "9999-01-01T00:00:00+00:00"},
        {"end_time": "2024-03-06T07:00:00+00:00"},  # before its start
        {"sides": {"above": 1}},
        {"reported": 1},
    ],
)
def test_corrupt_open_run_restarts_the_stream(dynamodb, change):
    post(service(), rows_csv(0, 45), stream="s")  # ends inside the fault: a run is open
    item = dynamodb.get_item(TableName=TABLE, Key={"stream": {"S": "s"}})["Item"]
    events = json.loads(item["events"]["S"])
    events["open"] |= change
    item["events"] = {"S": json.dumps(events)}
    dynamodb.put_item(TableName=TABLE, Item=item)

    later = post(service(), rows_csv(45, 5), stream="s")

    assert later["summary"]["stream"]["restarted_because"] == "unreadable"
    assert later["summary"]["stream"]["saved"] is True


def test_other_inputs_drop_the_runs_only(dynamodb):
    post(service(BASELINE="60"), rows_csv(0, 45), stream="s")

    later = post(service(BASELINE="60", INPUT_COLUMNS="torque,ambient_temperature"),
                 rows_csv(45, 5), stream="s")  # fmt: skip

    assert "restarted_because" not in later["summary"]["stream"]
    assert later["summary"]["baseline"]["residuals_kept"] > 5
    assert later["events"][0]["reported_before"] is False


def test_ended_run_is_not_carried_past_the_gap(dynamodb):
    detector = service(MERGE_GAP="2", MIN_DURATION="3")
    first = post(detector, rows_csv(0, 60), stream="s")  # the fault ends near row 58

    later = post(detector, rows_csv(60, 20), stream="s")

    assert [event["ongoing"] for event in first["events"]] == [False]
    assert later["events"] == []


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_open_run_with_huge_inputs_is_saved(dynamodb):
    """Input sums near the float limit are not carried, so the event names no drivers."""
    body = rows_csv(0, 45)
    for row in (43, 44):
        body = replace_cells(body, row, motor_speed="1.7e308")

    first = post(service(), body, stream="s")
    later = post(service(), rows_csv(45, 20), stream="s")

    assert first["summary"]["stream"]["saved"] is True
    (event,) = later["events"]
    assert event["reported_before"] is True
    assert event["drivers"] == []


def test_warning_names_the_stream(dynamodb):
    sns = RecordingSns()
    config = make_config(**ENV, TOPIC_ARN="arn:aws:sns:eu-west-1:123456789012:w")
    detector = DetectionService(config, predictor=FormulaPredictor(), sns_client=sns)

    post(detector, rows_csv(0, 60), stream="press-7")

    (warning,) = sns.published
    assert "(press-7)" in warning["Subject"]
    assert "Stream: press-7" in warning["Message"]
    assert warning["MessageAttributes"]["stream"] == {
        "DataType": "String",
        "StringValue": "press-7",
    }
