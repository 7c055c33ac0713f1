"""Generate the synthetic electric-motor data set: motor_train.csv and motor_test.csv.

The simulation has one row per minute. It covers 14 days of normal operation (the training
file) and, straight after them, 3.5 days with three injected bearing-temperature anomalies
(the test file, which adds the 0/1 column ``anomaly``). Every random draw comes from one
``numpy.random.Generator`` with a fixed seed, so the same numpy build on the same kind of
machine writes the same bytes. README.md next to this file describes the columns, the
physics and the anomalies.

Usage::

    python sample_data/generate.py [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20240307
# A Thursday, so the last 20 % of the training rows (Monday 04:48 to Wednesday 23:59), which
# the model holds out to measure its error, cover working days only, like the test period.
START = pd.Timestamp("2024-03-07T00:00:00Z")
TRAIN_ROWS = 14 * 24 * 60
TEST_ROWS = 84 * 60
MINUTES_PER_DAY = 24 * 60
TRAIN_FILE = "motor_train.csv"
TEST_FILE = "motor_test.csv"

# Drive: four-pole induction motor on a frequency converter, rated 1480 rpm and 130 N·m.
RATED_SPEED_RPM = 1480.0
RATED_TORQUE_NM = 130.0
# Friction and windage torque whenever the shaft turns without load.
NO_LOAD_TORQUE_NM = 6.0
# Duty cycle: a batch may start until LAST_BATCH_START_MINUTES before the shift ends. Ranges are
# [low, high) in minutes, as numpy's Generator.integers draws them.
LAST_BATCH_START_MINUTES = 30
BATCH_HOLD_MINUTES = (20, 121)
SHORT_STOP_MINUTES = (10, 41)
LONG_PAUSE_MINUTES = (90, 181)
LONG_PAUSE_PROBABILITY = 0.08
# Slow process variation of the load (relative standard deviation and AR(1) coefficient).
TORQUE_VARIATION = 0.015
TORQUE_VARIATION_AR = 0.9
SPEED_SENSOR_NOISE_RPM = 1.5
TORQUE_SENSOR_NOISE_NM = 0.3

# Steady-state bearing temperature rise above ambient, in kelvin:
# speed / rated speed * (SPEED_HEATING_K + LOAD_HEATING_K * torque / rated torque).
SPEED_HEATING_K = 4.0
LOAD_HEATING_K = 8.0
THERMAL_TIME_CONSTANT_MINUTES = 2.0
# Ramps are paced so the steady-state rise changes by at most this much per minute. With the
# 2-minute time constant, the lag error stays below about 0.3 K during a ramp.
MAX_HEATING_RATE_K_PER_MIN = 0.2
MIN_RAMP_LEG_ROWS = 4
BEARING_SENSOR_NOISE_K = 0.35

AMBIENT_MEAN_C = 21.0
AMBIENT_DAILY_AMPLITUDE_K = 0.9
AMBIENT_WARMEST_HOUR = 15.0
# Weather: a slow swing with its trough early in training and its peak near the end of the
# rows the model is fitted on. Its falling zero crossing lies in the middle of the test
# period, so the test period's ambient stays inside the range the model was fitted on.
WEATHER_AMPLITUDE_K = 1.0
WEATHER_PERIOD_DAYS = 20.0
WEATHER_TROUGH_DAY = 0.6
AMBIENT_DAY_OFFSET_K = 0.2
AMBIENT_DRIFT_K = 0.1
AMBIENT_DRIFT_AR = 0.99
AMBIENT_SENSOR_NOISE_K = 0.05

# Anomaly 1: lubricant settled during a long stop, so the first minutes after start-up run hot.
LUBRICANT_MIN_IDLE_ROWS = 5 * 60
LUBRICANT_ROWS = 40
LUBRICANT_PEAK_K = 9.0
LUBRICANT_RISE_MINUTES = 3.0
LUBRICANT_HOLD_ROWS = 15
# Anomaly 2: the sensor loses thermal contact, and its reading falls towards ambient.
CONTACT_LOSS_ROWS = 30
CONTACT_LOSS_FRACTION = 0.75
CONTACT_LOSS_FALL_MINUTES = 1.5
CONTACT_LOSS_RECOVERY_ROWS = 6
# Anomaly 3: the cooling fails, so the rise above ambient grows by up to COOLING_LOSS_GAIN.
COOLING_LOSS_ROWS = 70
COOLING_LOSS_GAIN = 0.9
COOLING_LOSS_GROWTH_ROWS = 30
COOLING_LOSS_RECOVERY_ROWS = 10
# Anomalies 2 and 3 start this many rows into a steady stretch of a hot recipe, after the
# lag of the preceding ramp has died out.
STEADY_SETTLE_ROWS = 10
MIN_ANOMALY_HEATING_K = 7.0


@dataclass(frozen=True)
class OperatingPoint:
    """Commanded shaft speed (rpm) and load torque (N·m)."""

    speed_rpm: float
    torque_nm: float


IDLE = OperatingPoint(0.0, 0.0)
# Each batch runs one product at a fixed speed and load.
RECIPES = (
    OperatingPoint(700.0, 60.0),
    OperatingPoint(950.0, 115.0),
    OperatingPoint(1200.0, 80.0),
    OperatingPoint(1480.0, 105.0),
)


@dataclass(frozen=True)
class Simulation:
    """Per-minute arrays of the whole simulated period, training rows first."""

    timestamps: pd.DatetimeIndex
    speed_rpm: np.ndarray
    torque_nm: np.ndarray
    ambient_c: np.ndarray
    bearing_c: np.ndarray
    anomaly: np.ndarray


def steady_state_heating(speed_rpm, torque_nm):
    """Return the bearing's steady-state temperature rise above ambient, in kelvin."""
    speed_share = np.asarray(speed_rpm) / RATED_SPEED_RPM
    load_share = np.asarray(torque_nm) / RATED_TORQUE_NM
    return speed_share * (SPEED_HEATING_K + LOAD_HEATING_K * load_share)


def _draw_shift(rng: np.random.Generator, weekday: int) -> tuple[int, int] | None:
    """Draw a day's shift as (first minute, last minute to start a batch), None on Sunday.

    Monday to Friday run from about 06:00 to midnight (some days to 22:00), Saturday from
    06:00 to 14:00.
    """
    if weekday == 6:
        return None

    shift_start = 6 * 60 + int(rng.integers(-20, 21))
    if weekday == 5:
        shift_end = 14 * 60 + int(rng.integers(-30, 31))
    elif rng.random() < 0.15:
        shift_end = 22 * 60 + int(rng.integers(-30, 31))
    else:
        shift_end = MINUTES_PER_DAY - int(rng.integers(0, 31))
    return shift_start, shift_end - LAST_BATCH_START_MINUTES


def _ramp_corners(start: OperatingPoint, end: OperatingPoint) -> list[OperatingPoint]:
    start_heating = steady_state_heating(start.speed_rpm, start.torque_nm)
    end_heating = steady_state_heating(end.speed_rpm, end.torque_nm)
    if end_heating >= start_heating:
        return [start, end]
    # A move to a cooler point first sheds load and then changes speed, so it never retraces
    # a warming ramp, whose lag has the opposite sign. A model on speed and torque can then
    # tell the two apart.
    unloaded_torque = max(end.torque_nm, NO_LOAD_TORQUE_NM)
    return [
        start,
        OperatingPoint(start.speed_rpm, unloaded_torque),
        OperatingPoint(end.speed_rpm, unloaded_torque),
    ]


def plan_ramp(start: OperatingPoint, end: OperatingPoint) -> np.ndarray:
    """Return the commanded (speed, torque) rows that move the drive from start to end.

    Each straight leg is split so the steady-state heating changes by the same amount every
    minute, at most MAX_HEATING_RATE_K_PER_MIN. The last row equals ``end``.
    """
    rows = []
    corners = _ramp_corners(start, end)
    for leg_start, leg_end in zip(corners[:-1], corners[1:], strict=True):
        if leg_start == leg_end:
            continue
        fraction = np.linspace(0.0, 1.0, 1001)
        speed = leg_start.speed_rpm + fraction * (leg_end.speed_rpm - leg_start.speed_rpm)
        torque = leg_start.torque_nm + fraction * (leg_end.torque_nm - leg_start.torque_nm)
        heating_change = np.abs(np.diff(steady_state_heating(speed, torque)))
        heating_travel = np.r_[0.0, np.cumsum(heating_change)]

        n_steps = math.ceil(heating_travel[-1] / MAX_HEATING_RATE_K_PER_MIN)
        n_steps = max(MIN_RAMP_LEG_ROWS, n_steps)
        if heating_travel[-1] > 0.0:
            targets = heating_travel[-1] * np.arange(1, n_steps + 1) / n_steps
            step_fraction = np.interp(targets, heating_travel, fraction)
        else:
            step_fraction = np.arange(1, n_steps + 1) / n_steps
        step_fraction[-1] = 1.0

        rows.append(
            np.c_[
                leg_start.speed_rpm + step_fraction * (leg_end.speed_rpm - leg_start.speed_rpm),
                leg_start.torque_nm + step_fraction * (leg_end.torque_nm - leg_start.torque_nm),
            ]
        )
    path = np.vstack(rows)

    # A turning shaft needs at least the no-load torque, and a stopped one needs none.
    turning = path[:, 0] > 0.0
    path[turning, 1] = np.maximum(path[turning, 1], NO_LOAD_TORQUE_NM)
    path[~turning, 1] = 0.0
    return path


def simulate_commanded_drive(
    rng: np.random.Generator, n_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the duty cycle and return the commanded speed and torque per minute.

    Each batch starts up from standstill, runs one recipe steadily for BATCH_HOLD_MINUTES and
    shuts down again, so every product change passes through a stop. The last batch of a
    shift may finish after the shift ends.
    """
    commanded = np.zeros((n_rows, 2))
    cursor = 0
    for day in range(-(-n_rows // MINUTES_PER_DAY)):
        shift = _draw_shift(rng, (START + pd.Timedelta(days=day)).weekday())
        if shift is None:
            continue
        first_start, last_start = (day * MINUTES_PER_DAY + minute for minute in shift)
        cursor = max(cursor, first_start)
        while cursor <= last_start and cursor < n_rows:
            recipe = RECIPES[int(rng.integers(len(RECIPES)))]
            hold_rows = int(rng.integers(*BATCH_HOLD_MINUTES))
            hold = np.tile((recipe.speed_rpm, recipe.torque_nm), (hold_rows, 1))
            batch = np.vstack([plan_ramp(IDLE, recipe), hold, plan_ramp(recipe, IDLE)])
            commanded[cursor : cursor + len(batch)] = batch[: n_rows - cursor]
            cursor += len(batch)

            # Every batch ends with a stop: usually 10-40 minutes, sometimes a pause of hours.
            if rng.random() < LONG_PAUSE_PROBABILITY:
                cursor += int(rng.integers(*LONG_PAUSE_MINUTES))
            else:
                cursor += int(rng.integers(*SHORT_STOP_MINUTES))
    return commanded[:, 0], commanded[:, 1]


def _ar1(rng: np.random.Generator, n_rows: int, coefficient: float) -> np.ndarray:
    """Draw a stationary AR(1) series with unit variance."""
    innovations = rng.normal(size=n_rows) * math.sqrt(1.0 - coefficient**2)
    series = np.empty(n_rows)
    series[0] = rng.normal()
    for i in range(1, n_rows):
        series[i] = coefficient * series[i - 1] + innovations[i]
    return series


def simulate_ambient(rng: np.random.Generator, n_rows: int) -> np.ndarray:
    """Return the hall's true air temperature per minute, in °C.

    The sum of a daily cycle that peaks at AMBIENT_WARMEST_HOUR, the weather swing, a
    random offset per day (blended smoothly into the next day's) and a slow random drift.
    """
    days = np.arange(n_rows) / MINUTES_PER_DAY
    daily_cycle = AMBIENT_DAILY_AMPLITUDE_K * np.cos(
        2.0 * np.pi * (days - AMBIENT_WARMEST_HOUR / 24.0)
    )
    weather = -WEATHER_AMPLITUDE_K * np.cos(
        2.0 * np.pi * (days - WEATHER_TROUGH_DAY) / WEATHER_PERIOD_DAYS
    )

    day_offsets = rng.uniform(-AMBIENT_DAY_OFFSET_K, AMBIENT_DAY_OFFSET_K, int(days[-1]) + 2)
    day_index = np.floor(days).astype(int)
    blend = (1.0 - np.cos(np.pi * (days - day_index))) / 2.0
    day_offset = day_offsets[day_index] * (1.0 - blend) + day_offsets[day_index + 1] * blend

    drift = AMBIENT_DRIFT_K * _ar1(rng, n_rows, AMBIENT_DRIFT_AR)
    return AMBIENT_MEAN_C + daily_cycle + weather + day_offset + drift


def simulate_heating(speed_rpm: np.ndarray, torque_nm: np.ndarray) -> np.ndarray:
    """Return the bearing's rise above ambient per minute, in kelvin.

    The rise follows the steady-state heating through a first-order lag with time constant
    THERMAL_TIME_CONSTANT_MINUTES, solved exactly for inputs held constant over each minute.
    """
    target = steady_state_heating(speed_rpm, torque_nm)
    weight = 1.0 - math.exp(-1.0 / THERMAL_TIME_CONSTANT_MINUTES)
    heating = np.empty_like(target)
    heating[0] = target[0]
    for i in range(1, len(target)):
        heating[i] = heating[i - 1] + weight * (target[i] - heating[i - 1])
    return heating


def _steady_onset(
    commanded_speed: np.ndarray, commanded_torque: np.ndarray, first_row: int, length: int
) -> int:
    """Return the onset row of an anomaly of ``length`` rows inside a steady stretch.

    The stretch is the first one at or after first_row that runs a recipe with at least
    MIN_ANOMALY_HEATING_K of heating for STEADY_SETTLE_ROWS rows before and after the anomaly.
    """
    heating = steady_state_heating(commanded_speed, commanded_torque)
    at_recipe = np.zeros(len(commanded_speed), dtype=bool)
    for recipe in RECIPES:
        same_speed = commanded_speed == recipe.speed_rpm
        at_recipe |= same_speed & (commanded_torque == recipe.torque_nm)
    eligible = at_recipe & (heating >= MIN_ANOMALY_HEATING_K)

    needed = STEADY_SETTLE_ROWS + length + STEADY_SETTLE_ROWS
    run = 0
    for row in range(first_row, len(eligible)):
        run = run + 1 if eligible[row] else 0
        if run == needed:
            return row - needed + 1 + STEADY_SETTLE_ROWS
    raise RuntimeError(
        f"No steady stretch of {needed} rows at a recipe with >= {MIN_ANOMALY_HEATING_K} K "
        f"heating found after row {first_row}. Change SEED or the anomaly start times."
    )


def _start_after_long_idle(commanded_speed: np.ndarray, first_row: int) -> int:
    """Return the first start-up at or after first_row after LUBRICANT_MIN_IDLE_ROWS idle rows."""
    idle_rows = 0
    for row in range(len(commanded_speed)):
        if commanded_speed[row] == 0.0:
            idle_rows += 1
            continue
        if row >= first_row and idle_rows >= LUBRICANT_MIN_IDLE_ROWS:
            return row
        idle_rows = 0
    raise RuntimeError(
        f"No start-up after {LUBRICANT_MIN_IDLE_ROWS} idle rows found at or after row "
        f"{first_row}. Change SEED or the anomaly start times."
    )


def lubricant_excess(n_rows: int) -> np.ndarray:
    """Return anomaly 1's extra bearing temperature per row (K): a fast rise, then a fade."""
    rows = np.arange(n_rows)
    rise = 1.0 - np.exp(-(rows + 1) / LUBRICANT_RISE_MINUTES)
    fade_phase = np.pi * (rows - LUBRICANT_HOLD_ROWS + 1) / (n_rows - LUBRICANT_HOLD_ROWS + 1)
    fade = np.where(rows < LUBRICANT_HOLD_ROWS, 1.0, 0.5 * (1.0 + np.cos(fade_phase)))
    return LUBRICANT_PEAK_K * rise * fade


def contact_loss_share(n_rows: int) -> np.ndarray:
    """Return anomaly 2's lost share of the rise above ambient per row (0 to 1)."""
    rows = np.arange(n_rows)
    fall = 1.0 - np.exp(-(rows + 1) / CONTACT_LOSS_FALL_MINUTES)
    recovery = (n_rows - rows) / CONTACT_LOSS_RECOVERY_ROWS
    return CONTACT_LOSS_FRACTION * np.minimum(fall, np.minimum(recovery, 1.0))


def cooling_loss_gain(n_rows: int) -> np.ndarray:
    """Return anomaly 3's extra share of the rise above ambient per row (0 to the gain)."""
    rows = np.arange(n_rows)
    growth = np.minimum((rows + 1) / COOLING_LOSS_GROWTH_ROWS, 1.0)
    recovery_start = n_rows - COOLING_LOSS_RECOVERY_ROWS
    recovery_phase = np.pi * (rows - recovery_start + 1) / (COOLING_LOSS_RECOVERY_ROWS + 1)
    recovery = np.where(rows < recovery_start, 1.0, 0.5 * (1.0 + np.cos(recovery_phase)))
    return COOLING_LOSS_GAIN * growth * recovery


def _place(alteration: np.ndarray, onset: int, values: np.ndarray) -> None:
    window = alteration[onset : onset + len(values)]
    if len(window) < len(values) or np.any(window != 0.0):
        raise RuntimeError(
            f"The anomaly at row {onset} overlaps another one or the end of the data. "
            "Change SEED or the anomaly start times."
        )
    window[:] = values


def inject_anomalies(
    commanded_speed: np.ndarray, commanded_torque: np.ndarray, heating: np.ndarray
) -> np.ndarray:
    """Return the change of the bearing reading per row (K), nonzero only on anomaly rows.

    Anomaly 1 starts with the first start-up of the test period that follows a stop of
    5 hours or more. Anomaly 2 starts after 06:00 and anomaly 3 after 12:00 of the test
    period's second day (Friday), each in the first steady stretch that is long enough and
    runs a recipe with at least MIN_ANOMALY_HEATING_K of heating.
    """
    alteration = np.zeros(len(heating))

    onset = _start_after_long_idle(commanded_speed, TRAIN_ROWS)
    _place(alteration, onset, lubricant_excess(LUBRICANT_ROWS))

    first_row = TRAIN_ROWS + MINUTES_PER_DAY + 6 * 60
    onset = _steady_onset(commanded_speed, commanded_torque, first_row, CONTACT_LOSS_ROWS)
    window = heating[onset : onset + CONTACT_LOSS_ROWS]
    _place(alteration, onset, -contact_loss_share(CONTACT_LOSS_ROWS) * window)

    first_row = TRAIN_ROWS + MINUTES_PER_DAY + 12 * 60
    onset = _steady_onset(commanded_speed, commanded_torque, first_row, COOLING_LOSS_ROWS)
    window = heating[onset : onset + COOLING_LOSS_ROWS]
    _place(alteration, onset, cooling_loss_gain(COOLING_LOSS_ROWS) * window)
    return alteration


def simulate(seed: int = SEED) -> Simulation:
    """Simulate the training and test periods back to back, anomalies included."""
    rng = np.random.default_rng(seed)
    n_rows = TRAIN_ROWS + TEST_ROWS
    timestamps = pd.date_range(START, periods=n_rows, freq="min")

    # drive: commanded ramps, true load with process variation, and sensor readings
    commanded_speed, commanded_torque = simulate_commanded_drive(rng, n_rows)
    running = commanded_speed > 0.0
    torque_variation = 1.0 + TORQUE_VARIATION * _ar1(rng, n_rows, TORQUE_VARIATION_AR)
    true_torque = commanded_torque * torque_variation
    speed_reading = commanded_speed + rng.normal(0.0, SPEED_SENSOR_NOISE_RPM, n_rows)
    torque_reading = true_torque + rng.normal(0.0, TORQUE_SENSOR_NOISE_NM, n_rows)
    speed_reading = np.where(running, np.maximum(speed_reading, 0.0), 0.0)
    torque_reading = np.where(running, np.maximum(torque_reading, 0.0), 0.0)

    # temperatures: the bearing follows ambient plus the lagged heating of the true load
    ambient = simulate_ambient(rng, n_rows)
    ambient_reading = ambient + rng.normal(0.0, AMBIENT_SENSOR_NOISE_K, n_rows)
    heating = simulate_heating(commanded_speed, true_torque)
    bearing = ambient + heating

    alteration = inject_anomalies(commanded_speed, commanded_torque, heating)
    bearing_reading = bearing + alteration + rng.normal(0.0, BEARING_SENSOR_NOISE_K, n_rows)
    return Simulation(
        timestamps=timestamps,
        speed_rpm=speed_reading,
        torque_nm=torque_reading,
        ambient_c=ambient_reading,
        bearing_c=bearing_reading,
        anomaly=(alteration != 0.0).astype(int),
    )


def build_frames(simulation: Simulation) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the simulation into the training frame and the labelled test frame."""
    frame = pd.DataFrame(
        {
            "timestamp": simulation.timestamps.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "motor_speed": simulation.speed_rpm,
            "torque": simulation.torque_nm,
            "ambient_temperature": simulation.ambient_c,
            "bearing_temperature": simulation.bearing_c,
        }
    )
    train = frame.iloc[:TRAIN_ROWS].reset_index(drop=True)
    test = frame.iloc[TRAIN_ROWS:].reset_index(drop=True)
    test["anomaly"] = simulation.anomaly[TRAIN_ROWS:]
    return train, test


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write a frame with two decimals and Unix line endings, so the bytes are reproducible."""
    frame.to_csv(path, index=False, float_format="%.2f", lineterminator="\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write motor_train.csv and motor_test.csv.")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="directory for the two CSV files (default: the directory of this script)",
    )
    args = parser.parse_args(argv)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    train, test = build_frames(simulate())
    write_csv(train, args.out_dir / TRAIN_FILE)
    write_csv(test, args.out_dir / TEST_FILE)
    print(f"wrote {len(train)} rows to {args.out_dir / TRAIN_FILE}")
    print(f"wrote {len(test)} rows to {args.out_dir / TEST_FILE}")


if __name__ == "__main__":
    main()
