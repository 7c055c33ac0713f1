"""Compare detected anomalies with labels: point-wise and event-level figures."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Evaluation:
    """Point-wise confusion counts and rates, and event-level counts.

    F1 = TP / (TP + (FN + FP) / 2); FAR = FP / (FP + TN); MAR = FN / (FN + TP). Rates are
    fractions from 0 to 1, or None when their denominator is 0.
    """

    rows: int
    tp: int
    fp: int
    tn: int
    fn: int
    precision: float | None
    recall: float | None
    f1: float | None
    far: float | None
    mar: float | None
    labelled_events: int
    detected_labelled_events: int
    predicted_runs: int
    false_runs: int

    def to_dict(self) -> dict:
        return asdict(self)


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else round(numerator / denominator, 6)


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Return (start, end) index pairs, end exclusive, of runs of True values."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def evaluate(predicted: np.ndarray, labels: np.ndarray) -> Evaluation:
    """Score boolean predictions against boolean labels of the same rows."""
    predicted = np.asarray(predicted, dtype=bool)
    labels = np.asarray(labels, dtype=bool)
    tp = int(np.sum(predicted & labels))
    fp = int(np.sum(predicted & ~labels))
    tn = int(np.sum(~predicted & ~labels))
    fn = int(np.sum(~predicted & labels))

    label_runs = runs(labels)
    predicted_runs = runs(predicted)
    detected = sum(1 for s, e in label_runs if predicted[s:e].any())
    false_runs = sum(1 for s, e in predicted_runs if not labels[s:e].any())
    return Evaluation(
        rows=len(labels),
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        f1=_ratio(tp, tp + (fn + fp) / 2),
        far=_ratio(fp, fp + tn),
        mar=_ratio(fn, fn + tp),
        labelled_events=len(label_runs),
        detected_labelled_events=detected,
        predicted_runs=len(predicted_runs),
        false_runs=false_runs,
    )


def scoring_positions(times: np.ndarray | None, count: int) -> np.ndarray:
    """Return each row's place in the order the rows were scored, or -1 for rows without a time.

    With timestamps the order is by time, stable for repeated times, and rows without a time
    take no place. Without timestamps it is the input order.
    """
    if times is None:
        return np.arange(count)
    times = np.asarray(times, dtype="datetime64[ns]")
    timed = np.flatnonzero(~np.isnat(times))
    order = timed[np.argsort(times[timed], kind="stable")]
    positions = np.full(count, -1)
    positions[order] = np.arange(len(order))
    return positions


def locate_rows(rows: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """Return the index in ``rows`` of each row number in ``numbers``, or -1 where absent."""
    rows = np.asarray(rows)
    numbers = np.asarray(numbers, dtype=np.int64)
    if len(rows) == 0:
        return np.full(len(numbers), -1)
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    found = np.minimum(np.searchsorted(ordered, numbers), len(rows) - 1)
    return np.where(ordered[found] == numbers, order[found], -1)


@dataclass
class EventSpans:
    """Positions of reported events among the scored rows, in scoring order.

    ``onset``, ``start`` and ``end`` hold, per event, the index in the scored file of the row
    that the event names, or -1 when no such row exists.
    """

    positions: np.ndarray  # per row, its place in scoring order (see scoring_positions)
    onset: np.ndarray
    start: np.ndarray
    end: np.ndarray

    @classmethod
    def of(cls, events: list[dict], rows: np.ndarray, positions: np.ndarray) -> EventSpans:
        """Locate the rows that the events name. ``positions`` comes from scoring_positions."""
        starts = [e["start_row"] for e in events]
        onsets = [e.get("onset_row", start) for e, start in zip(events, starts, strict=True)]
        return cls(
            positions=positions,
            onset=locate_rows(rows, onsets),
            start=locate_rows(rows, starts),
            end=locate_rows(rows, [e["end_row"] for e in events]),
        )

    def place(self, index: np.ndarray) -> np.ndarray:
        """Return the scoring place of each indexed row, -1 for a missing row or time."""
        return np.where(index >= 0, self.positions[np.maximum(index, 0)], -1)

    def flags(self, scored: np.ndarray) -> np.ndarray:
        """Flag the scored rows that lie, in scoring order, from an event's onset to its end."""
        first, last = self.place(self.onset), self.place(self.end)
        if np.any(first < 0) or np.any(last < 0):
            raise ValueError("an event names a row that is not among the rows given")
        placed = int(self.positions.max()) + 1 if len(self.positions) else 0
        # +1 where an event opens and -1 after it closes: positions with a positive sum are inside.
        steps = np.zeros(placed + 1, dtype=np.int64)
        np.add.at(steps, first, 1)
        np.add.at(steps, last + 1, -1)
        inside = np.cumsum(steps)[:placed] > 0
        flags = np.zeros(len(self.positions), dtype=bool)
        has_place = self.positions >= 0
        flags[has_place] = inside[self.positions[has_place]]
        return flags & np.asarray(scored, dtype=bool)


def event_flags(
    events: list[dict], rows: np.ndarray, scored: np.ndarray, times: np.ndarray | None = None
) -> np.ndarray:
    """Flag the rows inside reported events: what operators are warned about.

    ``rows`` contains each row's number as in scored.csv's ``row`` column, ``scored`` whether
    the row was scored, and ``times`` its timestamp when the rows were scored in time order.
    A scored row is flagged when, in scoring order, it lies from an event's ``onset_row``
    (``start_row`` when the event has no onset) to its ``end_row``: the rows whose residuals
    raised the warning and every row until the score fell back. Anomalous rows in runs
    shorter than the minimum duration are not flagged, unlike ``is_anomaly``. Every row an
    event names must be in ``rows`` with a place in scoring order.
    """
    rows = np.asarray(rows)
    return EventSpans.of(events, rows, scoring_positions(times, len(rows))).flags(scored)


# -- changepoint score (NAB, as SKAB applies it) -----------------------------------------------

# Numenta Anomaly Benchmark profiles as SKAB uses them: (A_tp, A_fp, A_fn). A detection early in
# a changepoint's window earns up to A_tp, and a late one down to A_fp. A missed window costs
# A_fn, and every detection outside all windows costs A_fp.
NAB_PROFILES = {
    "standard": (1.0, -0.11, -1.0),
    "low_fp": (1.0, -0.22, -1.0),
    "low_fn": (1.0, -0.11, -2.0),
}
NAB_WINDOW = np.timedelta64(30, "s")
# SKAB's reference evaluation reads the reward from a 1,000-step grid across the window.
NAB_GRID = 1000


@dataclass
class ChangepointCounts:
    """Changepoint windows of one file: how each was met, and the detections outside them."""

    windows: int
    positions: list[float]  # per detected window: first detection's place in it, 0 to 1
    missed: int
    false_detections: int


def changepoint_windows(
    changepoints: np.ndarray, width: np.timedelta64 = NAB_WINDOW
) -> list[tuple[np.datetime64, np.datetime64]]:
    """Return a window of ``width`` centred on each true changepoint time, in time order.

    Where two windows overlap, the later one starts where the earlier one ends.
    """
    windows = []
    for time in np.sort(np.asarray(changepoints, dtype="datetime64[ns]")):
        start, end = time - width / 2, time + width / 2
        if windows and start < windows[-1][1]:
            start = windows[-1][1]
        windows.append((start, end))
    return windows


def count_changepoints(
    changepoints: np.ndarray, detections: np.ndarray, width: np.timedelta64 = NAB_WINDOW
) -> ChangepointCounts:
    """Match detected changepoint times with windows around the true ones.

    A window is met by its first detection; later detections in the same window count for
    nothing. Windows include both ends, and a detection on the border of two windows counts
    in the earlier one only. A detection inside no window is a false detection.
    """
    windows = changepoint_windows(changepoints, width)
    times = np.sort(np.asarray(detections, dtype="datetime64[ns]"))
    inside = np.zeros(len(times), dtype=bool)
    positions = []
    for start, end in windows:
        hits = (times >= start) & (times <= end) & ~inside
        inside |= hits
        if hits.any():
            first = times[np.argmax(hits)]
            positions.append(float((first - start) / (end - start)))
    return ChangepointCounts(
        windows=len(windows),
        positions=positions,
        missed=len(windows) - len(positions),
        false_detections=int((~inside).sum()),
    )


def nab_reward(position: float, a_tp: float, a_fp: float) -> float:
    """Return the reward for a detection at ``position`` (0 = window start, 1 = its end)."""
    step = min(int(position * NAB_GRID), NAB_GRID - 1)
    x = -np.pi / 2 + np.pi * step / (NAB_GRID - 1)
    return float((a_tp - a_fp) / 2 * (1 - np.tanh(x) / np.tanh(np.pi / 2)) + a_fp)


def nab_scores(counts: list[ChangepointCounts]) -> dict[str, float | None]:
    """Return the NAB score of each profile over all files, from 0 (detects nothing) to 100.

    Score = 100 x (raw - null) / (perfect - null), where raw sums the rewards and penalties,
    null is every window missed and perfect every window met at its start. It is negative
    when false detections cost more than the detections earn, and None without windows.
    """
    windows = sum(c.windows for c in counts)
    if windows == 0:
        return dict.fromkeys(NAB_PROFILES)
    scores = {}
    for name, (a_tp, a_fp, a_fn) in NAB_PROFILES.items():
        raw = sum(
            sum(nab_reward(p, a_tp, a_fp) for p in c.positions)
            + a_fn * c.missed
            + a_fp * c.false_detections
            for c in counts
        )
        null, perfect = a_fn * windows, a_tp * windows
        scores[name] = round(100 * (raw - null) / (perfect - null), 2)
    return scores


def flag_changes(times: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Return the times where ``flags`` switches on or off: detected changepoints.

    The first row is no change, as in SKAB's evaluation, which takes changepoints from the
    difference of consecutive point labels.
    """
    flags = np.asarray(flags, dtype=np.int8)
    changes = np.flatnonzero(np.diff(flags) != 0) + 1
    return np.asarray(times, dtype="datetime64[ns]")[changes]
