"""Residuals, rolling anomaly scores, thresholds and events: pure numpy and pandas.

The anomaly score of a row is the mean of |residual| over the rolling window that ends at
that row, taken over the scored rows in the window (rows that could not be scored count
for nothing). Rows are ordered by timestamp when there is one (stable, so repeated times keep
their input order), otherwise by position. An event is a maximal run of consecutive
anomalous rows in that order; rows that could not be scored neither break nor extend a run.
With a merge gap, runs that lie at most the gap apart are one event, gaps included. The gap
is at most that many scored rows between them, or at most that long from the last anomalous
row of one run to the first of the next. An event that joins runs above and below the
prediction has the direction ``both``, since its mean residual sums deviations of opposite
sign. An event is reported when it lasts at least the minimum duration: that many scored
rows from its first to its last row, or ``end - start`` at least that long for a time span.
Merging comes first, so breaches interrupted by short dips can together last the minimum
duration.

An event's onset is the first scored row of the window whose score first crossed the
threshold. The residuals that raised the alarm lie from the onset on, so the deviation began
there or later. Because the window trails, ``start`` lags the onset by up to one window.

``Scorer`` keeps the window tail and any open event between calls, so a long file scored
in chunks gives the same result as scoring it whole. A service can hand it what a stream's
earlier request left (``carry_window``): the window tail, so that a request's first windows
reach back into the rows before it, and the runs that were still open, so that an event
lasts its minimum duration across requests and is reported as one event.

With a baseline of N rows, the residual of a row is ``actual - predicted - baseline``. The
baseline is the median of ``actual - predicted`` over the last N scored rows that were not
anomalous, and 0 before any. It is updated every ``BASELINE_STEP`` rows, so it follows a
drift that is slow against N rows and stays put while the score is above the threshold:
a fault does not enter it while it is flagged. A drift that goes on under a long fault could
keep the score above the threshold after the fault ends, and the baseline would then never
move again. So once N rows in a row have been anomalous, anomalous rows enter it too. A
deviation that lasts longer than N rows becomes the new normal. Its event ends about N/2
rows later, plus up to one step and one window. When such a deviation ends, the return is a
deviation from the new normal, and raises an event of its own on the other side. Rows must be in time order, since the baseline follows time. ``BaselineState``
holds what carries over from one batch of rows to the next, so that a service can keep it
between requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from .config import ScoringConfig, Span
from .errors import RequestError

# Inputs listed per event, the most deviating first.
MAX_DRIVERS = 3
# Texts for operators name an input only when its mean moved at least this many standard
# deviations from normal, because normal rows often show smaller shifts.
NOTABLE_DEVIATION = 2.0
HUGE_RESIDUAL = 1e150
# Maximum rows of a window tail that a service keeps between requests: 16 bytes each with
# its time. With the maximum baseline (160 KB) and two open runs with the sums of 2,000
# inputs (about 100 KB), they fit in one DynamoDB item (at most 400 KB).
MAX_CARRIED_ROWS = 5_000
# Rows between updates of the residual baseline. Each update scores the rows since the last
# as one chunk, so a shorter step costs time in long files for no gain on slow drift.
BASELINE_STEP = 30


@dataclass
class BaselineState:
    """The residuals a baseline is taken from, oldest first, and the scored rows since its update.

    ``level`` is the baseline: the median of the kept residuals at the last update, 0 before
    any. ``anomalous_rows`` counts the scored rows since the last normal one.
    """

    residuals: np.ndarray = field(default_factory=lambda: np.empty(0))
    rows_since_update: int = 0
    anomalous_rows: int = 0
    level: float = 0.0

    def update(
        self, residuals: np.ndarray, scored: np.ndarray, anomalous: np.ndarray, length: int
    ) -> None:
        """Take in the raw residuals of rows in scoring order, at most up to the next update.

        Normal rows enter the baseline. An anomalous row enters when it is more than
        ``length`` anomalous rows in a row. The last ``length`` residuals are kept, and the
        level is taken again after every ``BASELINE_STEP`` scored rows. Each row is judged
        on its own, so where the rows are cut into calls does not matter.
        """
        flags = anomalous[scored]
        if len(flags) == 0:
            return
        index = np.arange(len(flags))
        last_normal = np.maximum.accumulate(np.where(flags, -1, index))
        # Anomalous rows in a row up to each row, the rows before this call included.
        run = np.where(last_normal >= 0, index - last_normal, index + 1 + self.anomalous_rows)
        run[~flags] = 0
        enter = ~flags | (run > length)
        self.residuals = np.concatenate([self.residuals, residuals[scored][enter]])[-length:]
        self.anomalous_rows = int(run[-1])
        self.rows_since_update = (self.rows_since_update + len(flags)) % BASELINE_STEP
        if self.rows_since_update == 0 and len(self.residuals):
            self.level = float(np.median(self.residuals))

    @property
    def storable(self) -> bool:
        """Whether the state can be carried on: no value so large that residuals taken
        against it would overflow once summed over an event."""
        return bool(np.all(np.abs(self.residuals) < HUGE_RESIDUAL)) and abs(self.level) < (
            HUGE_RESIDUAL
        )

    def to_dict(self) -> dict:
        return {
            "residuals": [float(value) for value in self.residuals],
            "rows_since_update": self.rows_since_update,
            "anomalous_rows": self.anomalous_rows,
            "level": self.level,
        }

    @classmethod
    def from_dict(cls, data: dict) -> BaselineState:
        """Rebuild a state that ``to_dict`` wrote; raise ValueError for anything else."""
        residuals = np.asarray(data["residuals"], dtype=float)
        rows = int(data["rows_since_update"])
        anomalous = int(data["anomalous_rows"])
        level = float(data["level"])
        if residuals.ndim != 1 or not np.all(np.isfinite([*residuals, level])):
            raise ValueError("the residuals and the level are not finite numbers")
        if not 0 <= rows < BASELINE_STEP:
            raise ValueError(f"rows_since_update {rows} is not from 0 to {BASELINE_STEP - 1}")
        if not 0 <= anomalous < 2**62:
            raise ValueError(f"anomalous_rows {anomalous} is not from 0 to 2**62")
        state = cls(residuals, rows, anomalous, level)
        if not state.storable:
            raise ValueError(f"a value is {HUGE_RESIDUAL:g} or more in size")
        return state


@dataclass(frozen=True)
class WindowTail:
    """The |residual| of the last rows that the next row's window reaches back to, in
    scoring order (NaN for rows not scored), with their times (None without timestamps)."""

    values: np.ndarray = field(default_factory=lambda: np.empty(0))
    times: np.ndarray | None = None  # datetime64[ns], UTC

    @classmethod
    def checked(cls, values: np.ndarray, times: np.ndarray | None) -> WindowTail:
        """Build a tail read from storage; raise ValueError for one ``Scorer`` cannot give."""
        if values.ndim != 1:
            raise ValueError("the window tail is not a list of values")
        known = values[~np.isnan(values)]
        if not np.all(known >= 0):
            raise ValueError("a window value is negative")
        if times is not None:
            if times.shape != values.shape or np.isnat(times).any():
                raise ValueError("the window tail's times do not match its values")
            if np.any(times[1:] < times[:-1]):
                raise ValueError("the window tail's times are not in order")
        tail = cls(values, times)
        if not tail.storable:
            raise ValueError(f"a window value is {HUGE_RESIDUAL:g} or more")
        return tail

    @property
    def storable(self) -> bool:
        """Return whether every value is small enough that a window's sum cannot overflow."""
        return not bool(np.any(self.values >= HUGE_RESIDUAL))

    def __len__(self) -> int:
        return len(self.values)

    def fits(self, times: np.ndarray | None, last: np.datetime64 | None = None) -> bool:
        """Return whether rows with these times (None: no timestamps) continue the earlier
        rows, whose latest time is ``last`` (by default the tail's last time).

        Timed rows continue them when none is earlier than ``last`` and some are later.
        Rows that do not are a retry or were sent late, and their windows start afresh.
        Rows that all lack a time take no part in the scoring order, and leave the earlier
        rows to the rows after them.
        """
        if times is None:
            return self.times is None
        if self.times is None and len(self):
            return False
        if last is None and self.times is not None and len(self):
            last = self.times[-1]
        if last is None:
            return True
        known = times[~np.isnat(times)]
        if len(known) == 0:
            return True
        return bool(known.min() >= last and known.max() > last)


@dataclass
class CarriedEvents:
    """The runs of earlier rows that later rows may continue, with rows and places numbered
    back from the first later row (the last earlier row is -1)."""

    open: Event | None = None  # anomalous up to the last scored row
    ended: Event | None = None  # with a merge gap: the last run that ended, not yet judged

    def __iter__(self):
        return iter((self.open, self.ended))

    @property
    def storable(self) -> bool:
        """Return whether every run's peak and residual sum are small enough to carry on."""
        return all(
            abs(run.peak_score) < HUGE_RESIDUAL and abs(run.residual_sum) < HUGE_RESIDUAL
            for run in self
            if run is not None
        )


@dataclass
class Event:
    """A run of anomalous rows. Rows are counted from 0 over the whole input."""

    start_row: int
    end_row: int
    rows: int
    peak_score: float
    peak_row: int
    residual_sum: float
    start_time: pd.Timestamp | None = None
    end_time: pd.Timestamp | None = None
    peak_time: pd.Timestamp | None = None
    onset_row: int = 0
    onset_time: pd.Timestamp | None = None
    input_sums: np.ndarray | None = None  # per input, summed over the event's rows
    drivers: list[dict] = field(default_factory=list)
    # Mean residual over the RMS residual of the normal rows. None with fewer than 2 normal
    # rows, or when their residuals are all zero.
    target_deviation: float | None = None
    # Places of the first and the last row in the scoring order of all scored rows, so that
    # a merged event's length in rows counts the rows of its gaps.
    first_place: int = 0
    last_place: int = 0
    # With a merge gap: the sides ("above", "below") of the runs joined into the event.
    sides: set[str] = field(default_factory=set)
    # For a service that carries runs between requests: whether an earlier request already
    # reported the event, and whether the event may go on in the next request.
    reported: bool = False
    ongoing: bool = False

    @property
    def direction(self) -> str:
        """``above`` or ``below``: where the target lay against its prediction on average.

        ``both`` when a merge gap joined runs on either side.
        """
        if len(self.sides) > 1:
            return "both"
        return "above" if self.residual_sum >= 0 else "below"

    @property
    def mean_residual(self) -> float:
        return self.residual_sum / self.rows

    def shifted(self, rows: int, places: int) -> Event:
        """Return a copy with every row number moved by ``rows`` and every place by ``places``."""
        return replace(
            self,
            start_row=self.start_row + rows,
            end_row=self.end_row + rows,
            peak_row=self.peak_row + rows,
            onset_row=self.onset_row + rows,
            first_place=self.first_place + places,
            last_place=self.last_place + places,
            input_sums=None if self.input_sums is None else self.input_sums.copy(),
            drivers=[],
            sides=set(self.sides),
        )

    def extend(self, other: Event) -> None:
        if self.input_sums is not None and other.input_sums is not None:
            self.input_sums = self.input_sums + other.input_sums
        self.end_row = other.end_row
        self.end_time = other.end_time
        self.last_place = other.last_place
        self.rows += other.rows
        self.residual_sum += other.residual_sum
        if other.peak_score > self.peak_score:
            self.peak_score = other.peak_score
            self.peak_row = other.peak_row
            self.peak_time = other.peak_time

    def to_dict(self) -> dict:
        return {
            "start": _iso(self.start_time) if self.start_time is not None else self.start_row,
            "end": _iso(self.end_time) if self.end_time is not None else self.end_row,
            "start_row": self.start_row,
            "end_row": self.end_row,
            "onset": _iso(self.onset_time) if self.onset_time is not None else self.onset_row,
            "onset_row": self.onset_row,
            "rows": self.rows,
            "peak_score": round(float(self.peak_score), 6),
            "peak_row": self.peak_row,
            "peak_time": _iso(self.peak_time) if self.peak_time is not None else None,
            "direction": self.direction,
            "mean_residual": round(float(self.mean_residual), 6),
            # Six significant digits: sums over chunks differ from a whole-file sum in the
            # last bits, and a ratio can be as large as the residuals are.
            "target_deviation": None
            if self.target_deviation is None
            else float(f"{self.target_deviation:.6g}"),
            "drivers": self.drivers,
        }


def _iso(time: pd.Timestamp) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ") if time.microsecond == 0 else time.isoformat()


@dataclass
class ChunkScores:
    """Per-row results of one chunk, in the chunk's input order."""

    residual: np.ndarray
    score: np.ndarray
    is_anomaly: np.ndarray
    # The baseline subtracted from each row's residual, or None without a baseline.
    baseline: np.ndarray | None = None


@dataclass
class Scorer:
    """Score residuals chunk by chunk, carrying the window tail and the open event."""

    config: ScoringConfig
    # Row number of the first row scored, so that events and errors name rows of the file.
    first_row: int = 0
    events: list[Event] = field(default_factory=list)
    _tail_values: np.ndarray = field(default_factory=lambda: np.empty(0))
    _tail_times: np.ndarray | None = None
    _tail_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    _open: Event | None = None
    # With a merge gap: the last event that ended, kept until the next run shows whether it
    # continues the event.
    _ended: Event | None = None
    _places_seen: int = 0
    _first_time: pd.Timestamp | None = None
    _last_time: pd.Timestamp | None = None
    _rows_seen: int = 0
    # Running count, mean and sum of squared deviations (Welford) of each input over the
    # scored rows that were not anomalous: the "normal" that explanations compare with.
    _normal_count: int = 0
    _normal_mean: np.ndarray | None = None
    _normal_m2: np.ndarray | None = None
    # Count and sum of squares of the residuals of those rows: the model's normal error. The
    # squares are summed over their largest magnitude, so that huge residuals do not overflow.
    _normal_residuals: int = 0
    _normal_scale: float = 1.0
    _normal_square_sum: float = 0.0
    # With a baseline: its residuals, carried between chunks. A service may set it from the
    # state of an earlier request before the first chunk.
    baseline: BaselineState = field(default_factory=BaselineState)
    # What carry_window handed over, used or dropped when the first chunk comes.
    _carried: tuple[WindowTail, CarriedEvents, np.datetime64 | None] | None = None
    carried_rows: int = 0
    _carry_out: CarriedEvents | None = None

    def carry_window(
        self,
        tail: WindowTail,
        events: CarriedEvents | None = None,
        last_time: pd.Timestamp | None = None,
    ) -> None:
        """Continue the window and the open runs of earlier rows, before the first chunk.

        Both are used only if the first chunk's rows continue the earlier rows, whose latest
        time is ``last_time`` (``WindowTail.fits``). Their rows are numbered back from
        ``first_row``: an event that began in them gets row numbers below ``first_row``.
        ``carried_rows`` gives how many tail rows the first row's window reached.
        """
        if self._rows_seen:
            raise ValueError("carry_window must come before the first chunk")
        last = None if last_time is None else last_time.tz_convert("UTC").tz_localize(None)
        self._carried = (
            tail,
            events or CarriedEvents(),
            None if last is None else last.to_datetime64(),
        )

    def carry_out(self) -> CarriedEvents:
        """Return the runs that were open when ``finish`` closed them: the run anomalous up
        to the last row, and the run awaiting the merge gap. They are numbered back from the
        end of the rows scored, for the next rows' ``carry_window``, and marked ``reported``
        when ``finish`` reported an event that contains them."""
        if self._carry_out is None:
            raise ValueError("carry_out comes after finish")
        return self._carry_out

    def window_tail(self, limit: int = MAX_CARRIED_ROWS) -> WindowTail:
        """Return the last rows of the window, at most ``limit``, for ``carry_window``."""
        values = self._tail_values[-limit:] if limit else self._tail_values[:0]
        times = None
        if self._tail_times is not None:
            times = self._tail_times[len(self._tail_times) - len(values) :]
        return WindowTail(values.copy(), None if times is None else times.copy())

    def _take_carried(self, timestamps: pd.Series | None) -> None:
        (tail, events, last), self._carried = self._carried, None
        times = None if timestamps is None else timestamps.to_numpy(dtype="datetime64[ns]")
        if not tail.fits(times, last):
            return
        if len(tail):
            self._tail_values = tail.values
            self._tail_times = tail.times
            self._tail_rows = self.first_row - len(tail) + np.arange(len(tail), dtype=np.int64)
            self.carried_rows = self._reached(tail, times)
        self._open, self._ended = events.open, events.ended

    def _reached(self, tail: WindowTail, times: np.ndarray | None) -> int:
        """Count the tail rows that the first row's window reaches back to."""
        window = self.config.window
        if not window.is_time or tail.times is None or times is None:
            return len(tail)
        known = times[~np.isnat(times)]
        if len(known) == 0:
            return len(tail)
        start = known.min() - window.time.to_timedelta64()
        return int(np.count_nonzero(tail.times > start))

    def score(
        self,
        actual: np.ndarray,
        predicted: np.ndarray,
        scorable: np.ndarray,
        timestamps: pd.Series | None = None,
        inputs: np.ndarray | None = None,
    ) -> ChunkScores:
        """Score one chunk. ``predicted`` is NaN where ``scorable`` is False.

        ``inputs`` (rows x inputs, in ``config.inputs`` order) lets each event name the inputs
        that deviated most from their normal values during it.
        """
        if self._carried is not None:
            self._take_carried(timestamps)
        length = self.config.baseline
        if length is None:
            return self._score(actual, predicted, scorable, timestamps, inputs)
        if timestamps is not None:
            self._check_sorted(timestamps)
        parts: list[ChunkScores] = []
        start, count = 0, len(actual)
        # The baseline is updated after every BASELINE_STEP scored rows, so each part ends
        # at the row that completes a step, or at the end of the chunk.
        scored_positions = np.flatnonzero(scorable)
        scored_before = 0  # scored rows of this chunk in earlier parts
        while start < count:
            need = BASELINE_STEP - self.baseline.rows_since_update
            if scored_before + need <= len(scored_positions):
                stop = int(scored_positions[scored_before + need - 1]) + 1
                scored_before += need
            else:
                stop, scored_before = count, len(scored_positions)
            level = self.baseline.level
            part = self._score(
                actual[start:stop],
                predicted[start:stop] + level,
                scorable[start:stop],
                None if timestamps is None else timestamps.iloc[start:stop],
                None if inputs is None else inputs[start:stop],
            )
            self.baseline.update(
                part.residual + level, ~np.isnan(part.score), part.is_anomaly, length
            )
            part.baseline = np.where(scorable[start:stop], level, np.nan)
            parts.append(part)
            start = stop
        if not parts:
            return ChunkScores(np.empty(0), np.empty(0), np.empty(0, dtype=bool), np.empty(0))
        return ChunkScores(
            *(
                np.concatenate([getattr(part, name) for part in parts])
                for name in ("residual", "score", "is_anomaly", "baseline")
            )
        )

    def _check_sorted(self, timestamps: pd.Series) -> None:
        times = timestamps.to_numpy(dtype="datetime64[ns]")
        timed = np.flatnonzero(~np.isnat(times))
        back = np.flatnonzero(times[timed][1:] < times[timed][:-1])
        if len(back):
            row = self.first_row + self._rows_seen + int(timed[back[0] + 1])
            raise RequestError(
                f"Timestamps go back in time at row {row}. With a residual baseline the rows "
                "must be in time order, because the baseline follows the residuals over time: "
                "sort the rows by time."
            )

    def _score(
        self,
        actual: np.ndarray,
        predicted: np.ndarray,
        scorable: np.ndarray,
        timestamps: pd.Series | None = None,
        inputs: np.ndarray | None = None,
    ) -> ChunkScores:
        count = len(actual)
        offset = self.first_row + self._rows_seen
        self._rows_seen += count
        residual = np.where(scorable, actual - predicted, np.nan)
        score = np.full(count, np.nan)
        is_anomaly = np.zeros(count, dtype=bool)

        # Order the rows that take part: scored rows, by time when there are timestamps. Rows
        # already in that order (the usual case) are used as they are, without copies.
        in_order = True
        if timestamps is not None:
            times = timestamps.to_numpy(dtype="datetime64[ns]")
            with_time = ~np.isnat(times)
            in_order = bool(with_time.all()) and bool(np.all(times[1:] >= times[:-1]))
            if in_order:
                order = np.arange(count)
                ordered_times = times
            else:
                order = np.flatnonzero(with_time)
                order = order[np.argsort(times[order], kind="stable")]
                ordered_times = times[order]
            self._check_order(ordered_times, offset, order)
        else:
            order = np.arange(count)
            ordered_times = None
        if len(order) == 0:
            return ChunkScores(residual, score, is_anomaly)

        ordered_abs = np.abs(residual if in_order else residual[order])
        window = self._rolling_mean(ordered_abs, ordered_times, order, offset)
        ordered_score = window.means
        ordered_score[np.isnan(ordered_abs)] = np.nan
        ordered_anomaly = ordered_score > self.config.threshold
        if in_order:
            score, is_anomaly = ordered_score, ordered_anomaly
        else:
            score[order] = ordered_score
            is_anomaly[order] = ordered_anomaly

        normal = ~np.isnan(ordered_score) & ~ordered_anomaly
        self._update_normal_error(ordered_abs[normal])
        if inputs is not None:
            self._update_normal(inputs[order[normal]])
        self._find_events(
            order, ordered_score, ordered_anomaly, residual, ordered_times, offset, window, inputs
        )
        return ChunkScores(residual, score, is_anomaly)

    @property
    def time_range(self) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
        """The earliest and the latest time scored so far; None without timestamps."""
        return self._first_time, self._last_time

    def finish(self) -> list[Event]:
        """Close the open event and return every event that lasted the minimum duration.

        The events that contain a run still open (``carry_out``) are marked ``ongoing``: more
        rows of the stream may extend them.
        """
        self._expire_ended()
        rows, places = self.first_row + self._rows_seen, self._places_seen
        runs = (self._open, self._ended)
        carry = CarriedEvents(
            *(None if run is None else run.shifted(-rows, -places) for run in runs)
        )
        still_open = [run for run in runs if run is not None]
        if self._open is not None:
            self._end(self._open)
            self._open = None
        if self._ended is not None:
            self._keep_if_long(self._ended)
            self._ended = None
        # Explain at the end, against every normal row, so chunking does not change the result.
        normal_error = None
        if self._normal_residuals >= 2:
            mean_square = self._normal_square_sum / self._normal_residuals
            normal_error = self._normal_scale * float(np.sqrt(mean_square))
        for event in self.events:
            event.ongoing = any(event.last_place >= run.first_place for run in still_open)
            event.drivers = self._explain(event)
            if normal_error:
                deviation = event.mean_residual / normal_error
                event.target_deviation = deviation if np.isfinite(deviation) else None
        for run in carry:
            if run is not None and not run.reported:
                run.reported = any(
                    event.first_place - places <= run.first_place
                    and run.last_place <= event.last_place - places
                    for event in self.events
                )
        self._carry_out = carry
        return self.events

    # -- rolling window --------------------------------------------------------------------

    def _rolling_mean(
        self, values: np.ndarray, times: np.ndarray | None, order: np.ndarray, offset: int
    ) -> _Windows:
        window = self.config.window
        tail = len(self._tail_values)
        joined = np.concatenate([self._tail_values, values])
        joined_times = None
        if times is not None:
            joined_times = np.concatenate([self._tail_times, times]) if tail else times
        if window.is_time:
            series = pd.Series(joined, index=pd.DatetimeIndex(joined_times))
            means = series.rolling(window.time, min_periods=1).mean().to_numpy(copy=True)
            span = window.time.to_timedelta64()
            keep = int(np.searchsorted(joined_times, joined_times[-1] - span, side="right"))
        else:
            means = pd.Series(joined).rolling(window.rows, min_periods=1).mean().to_numpy(copy=True)
            keep = max(len(joined) - (window.rows - 1), 0)
        windows = _Windows(
            means[tail:], joined, joined_times, tail, window, self._tail_rows, order, offset
        )
        self._tail_values = joined[keep:]
        self._tail_rows = windows.rows(np.arange(keep, len(joined)))
        if joined_times is not None:
            self._tail_times = joined_times[keep:]
        return windows

    def _check_order(self, sorted_times: np.ndarray, offset: int, order: np.ndarray) -> None:
        if len(sorted_times) == 0:
            return
        first = pd.Timestamp(sorted_times[0], tz="UTC")
        if self._last_time is not None and first < self._last_time:
            raise RequestError(
                f"Timestamps go back in time at row {offset + int(order[0])}: {first} is earlier "
                f"than rows already scored (up to {self._last_time}). Large files are scored in "
                "chunks in file order, so sort the file by time first."
            )
        if self._first_time is None:
            self._first_time = pd.Timestamp(sorted_times[0], tz="UTC")
        self._last_time = pd.Timestamp(sorted_times[-1], tz="UTC")

    # -- events ----------------------------------------------------------------------------

    def _find_events(
        self,
        order: np.ndarray,
        ordered_score: np.ndarray,
        ordered_anomaly: np.ndarray,
        residual: np.ndarray,
        ordered_times: np.ndarray | None,
        offset: int,
        window: _Windows,
        inputs: np.ndarray | None = None,
    ) -> None:
        # Rows that could not be scored neither break nor extend a run, so drop them here.
        scored = ~np.isnan(ordered_score)
        scored_order = np.flatnonzero(scored)
        positions = order[scored]
        flags = ordered_anomaly[scored]
        scores = ordered_score[scored]
        times = ordered_times[scored] if ordered_times is not None else None
        if len(flags) == 0:
            return

        edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1)  # exclusive

        places = self._places_seen
        self._places_seen += len(flags)
        if self._open is not None and not flags[0]:
            self._end(self._open)
            self._open = None

        for start, end in zip(starts, ends, strict=True):
            peak = start + int(np.argmax(scores[start:end]))
            continues = start == 0 and self._open is not None
            # A run that continues the open event keeps that event's onset.
            onset_row, onset_time = (0, None) if continues else window.onset(scored_order[start])
            run = Event(
                start_row=offset + int(positions[start]),
                end_row=offset + int(positions[end - 1]),
                rows=int(end - start),
                peak_score=float(scores[peak]),
                peak_row=offset + int(positions[peak]),
                residual_sum=float(np.sum(residual[positions[start:end]])),
                start_time=_timestamp(times, start),
                end_time=_timestamp(times, end - 1),
                peak_time=_timestamp(times, peak),
                onset_row=onset_row,
                onset_time=onset_time,
                input_sums=None if inputs is None else inputs[positions[start:end]].sum(axis=0),
                first_place=places + int(start),
                last_place=places + int(end - 1),
            )
            if continues:
                self._open.extend(run)
                run = self._open
                self._open = None
            if end == len(flags):
                self._open = run  # may continue in the next chunk
            else:
                self._end(run)
        self._expire_ended()

    def _expire_ended(self) -> None:
        """Judge the run awaiting the merge gap once the gap has passed: no later run can
        join it then, so it is no longer open."""
        ended, gap, following = self._ended, self.config.merge_gap, self._open
        if ended is None or gap is None:
            return
        # The next run to end is the open one, or one that starts with a later row.
        if gap.is_time:
            start = self._last_time if following is None else following.start_time
            passed = start is not None and start - ended.end_time > gap.time
        else:
            first = self._places_seen if following is None else following.first_place
            passed = first - ended.last_place - 1 > gap.rows
        if passed:
            self._keep_if_long(ended)
            self._ended = None

    def _update_normal_error(self, magnitudes: np.ndarray) -> None:
        if len(magnitudes) == 0:
            return
        # Squares of magnitudes above about 1e154 overflow, so then they are summed scaled.
        peak = float(magnitudes.max())
        scale = self._normal_scale
        if peak > HUGE_RESIDUAL or scale > 1.0:
            scale = max(scale, peak)
        if scale != self._normal_scale:
            self._normal_square_sum *= (self._normal_scale / scale) ** 2
            self._normal_scale = scale
        scaled = magnitudes if scale == 1.0 else magnitudes / scale
        self._normal_square_sum += float(np.dot(scaled, scaled))
        self._normal_residuals += len(magnitudes)

    def _update_normal(self, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        count = len(rows)
        mean = rows.mean(axis=0)
        m2 = ((rows - mean) ** 2).sum(axis=0)
        if self._normal_mean is None:
            self._normal_count, self._normal_mean, self._normal_m2 = count, mean, m2
            return
        # Chan et al.'s pairwise update of count, mean and M2.
        total = self._normal_count + count
        delta = mean - self._normal_mean
        self._normal_mean = self._normal_mean + delta * count / total
        self._normal_m2 = self._normal_m2 + m2 + delta**2 * self._normal_count * count / total
        self._normal_count = total

    def _explain(self, event: Event) -> list[dict]:
        """Rank inputs by how far their mean during the event lies from normal, in std units."""
        if event.input_sums is None or self._normal_count < 2:
            return []
        std = np.sqrt(self._normal_m2 / (self._normal_count - 1))
        event_mean = event.input_sums / event.rows
        drivers = []
        for name, value, normal, spread in zip(
            self.config.inputs, event_mean, self._normal_mean, std, strict=True
        ):
            if not spread > 0:
                continue
            deviation = (value - normal) / spread
            drivers.append(
                {
                    "input": name,
                    "deviation": round(float(deviation), 3),
                    "event_mean": round(float(value), 6),
                    "normal_mean": round(float(normal), 6),
                }
            )
        drivers.sort(key=lambda d: -abs(d["deviation"]))
        return drivers[:MAX_DRIVERS]

    def _end(self, run: Event) -> None:
        """Handle a run that has ended: join it to the event before it, or judge that event.

        Its side of the prediction is recorded here, when its residual sum is complete.
        """
        if self.config.merge_gap is None:
            self._keep_if_long(run)
            return
        run.sides = {run.direction}
        before = self._ended
        if before is not None and self._joins(before, run):
            before.sides |= run.sides
            before.extend(run)
            return
        if before is not None:
            self._keep_if_long(before)
        self._ended = run

    def _joins(self, before: Event, after: Event) -> bool:
        """Return whether two runs lie within the merge gap."""
        gap = self.config.merge_gap
        if gap.is_time:
            return after.start_time - before.end_time <= gap.time
        return after.first_place - before.last_place - 1 <= gap.rows

    def _keep_if_long(self, event: Event) -> None:
        minimum = self.config.min_duration
        if minimum.is_time:
            lasts = event.end_time - event.start_time >= minimum.time
        else:
            lasts = event.last_place - event.first_place + 1 >= minimum.rows
        if lasts:
            self.events.append(event)


@dataclass
class _Windows:
    """One chunk's rolling means, with the carried tail, to find the rows behind a score."""

    means: np.ndarray  # per ordered row of the chunk
    values: np.ndarray  # |residual| of the tail and the chunk's ordered rows, NaN if unscored
    times: np.ndarray | None
    tail: int  # how many of values come from earlier chunks
    span: Span
    tail_rows: np.ndarray  # row numbers of the tail, over the whole input
    order: np.ndarray  # the chunk's rows in scoring order
    offset: int  # row number of the chunk's first row
    _scored_positions: np.ndarray | None = None

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """Return the row numbers, over the whole input, of positions in ``values``."""
        positions = np.asarray(positions, dtype=np.int64)
        rows = np.empty(len(positions), dtype=np.int64)
        from_tail = positions < self.tail
        rows[from_tail] = self.tail_rows[positions[from_tail]]
        rows[~from_tail] = self.offset + self.order[positions[~from_tail] - self.tail]
        return rows

    def onset(self, index: int) -> tuple[int, pd.Timestamp | None]:
        """Return the row number and time of the first scored row in the window of ``index``."""
        if self._scored_positions is None:
            self._scored_positions = np.flatnonzero(~np.isnan(self.values))
        last = self.tail + int(index)
        if self.span.is_time:
            start = int(
                np.searchsorted(
                    self.times, self.times[last] - self.span.time.to_timedelta64(), side="right"
                )
            )
        else:
            start = max(last - self.span.rows + 1, 0)
        # The first scored position from start on: at most last, which is scored.
        scored = self._scored_positions
        first = int(scored[np.searchsorted(scored, start)])
        return int(self.rows(np.array([first]))[0]), _timestamp(self.times, first)


def describe_direction(event: dict) -> str:
    """Name the event's side of the prediction for a warning or a table.

    An event that joined runs on both sides reads "above and below".
    """
    return "above and below" if event["direction"] == "both" else event["direction"]


def describe_inputs(event: dict) -> str:
    """Name the inputs of an event's drivers that moved notably, for a warning or a table."""
    drivers = event.get("drivers") or []
    moved = [d for d in drivers if abs(d["deviation"]) >= NOTABLE_DEVIATION]
    if moved:
        return ", ".join(f"{d['input']} {d['deviation']:+.1f} sd" for d in moved)
    if drivers:
        return f"none beyond {NOTABLE_DEVIATION:g} sd"
    return ""


def _timestamp(times: np.ndarray | None, index: int) -> pd.Timestamp | None:
    if times is None:
        return None
    return pd.Timestamp(times[index], tz="UTC")


def score_all(
    config: ScoringConfig,
    actual: np.ndarray,
    predicted: np.ndarray,
    scorable: np.ndarray,
    timestamps: pd.Series | None = None,
    inputs: np.ndarray | None = None,
) -> tuple[ChunkScores, list[Event]]:
    """Score one complete batch and return its per-row scores and its events."""
    scorer = Scorer(config)
    scores = scorer.score(actual, predicted, scorable, timestamps, inputs)
    return scores, scorer.finish()
