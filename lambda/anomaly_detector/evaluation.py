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


def event_flags(events: list[dict], rows: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """Flag the rows inside reported events: what operators are warned about.

    ``rows`` contains each row's number as in scored.csv's ``row`` column and ``scored`` whether
    the row was scored. A row is flagged when it was scored and its number lies between an
    event's ``onset_row`` (``start_row`` when the event has no onset) and its ``end_row``: the
    rows whose residuals raised the warning and every row until the score fell back. Anomalous
    rows in runs shorter than the minimum duration are not flagged, unlike ``is_anomaly``.
    """
    rows = np.asarray(rows)
    flags = np.zeros(len(rows), dtype=bool)
    for event in events:
        first = event.get("onset_row", event["start_row"])
        flags |= (rows >= first) & (rows <= event["end_row"])
    return flags & np.asarray(scored, dtype=bool)
