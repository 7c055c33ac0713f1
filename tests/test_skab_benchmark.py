"""benchmarks/skab.py on real SKAB files read from ../shared/datasets/skab (GPL-3, not vendored)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks import skab

# The project's sibling folder ../shared, or SKAB_DIR when the clone lives elsewhere.
SKAB = Path(
    os.environ.get("SKAB_DIR")
    or Path(__file__).resolve().parents[2] / "shared" / "datasets" / "skab"
)

needs_skab = pytest.mark.skipif(
    not (SKAB / "valve1").is_dir(), reason=f"SKAB data not found at {SKAB}"
)


@pytest.fixture(scope="module")
def two_files(tmp_path_factory) -> Path:
    """Two valve1 experiments and the unlabelled anomaly-free run, copied for this test only."""
    root = tmp_path_factory.mktemp("skab")
    (root / "valve1").mkdir()
    for name in ("1.csv", "3.csv"):
        shutil.copy(SKAB / "valve1" / name, root / "valve1" / name)
    (root / "anomaly-free").mkdir()
    shutil.copy(SKAB / "anomaly-free" / "anomaly-free.csv", root / "anomaly-free")
    return root


@pytest.mark.skab
@needs_skab
def test_skab_shared_valve1_pools_counts(two_files, tmp_path, capsys):
    out = tmp_path / "skab.json"

    code = skab.main([str(two_files), "--json", str(out), "--markdown", str(tmp_path / "r.md")])

    result = json.loads(out.read_text())
    assert code == 0
    # anomaly-free.csv has no label column, so it is skipped.
    assert [Path(r["file"]).name for r in result["per_file"]] == ["1.csv", "3.csv"]
    for key in ("tp", "fp", "tn", "fn"):
        assert result[key] == sum(r[key] for r in result["per_file"])
    tp, fp, fn = result["tp"], result["fp"], result["fn"]
    assert result["f1"] == pytest.approx(tp / (tp + (fn + fp) / 2), abs=1e-6)
    for key in ("f1", "far", "mar"):
        assert 0 <= result[key] <= 1
    # Both files contain one clear valve closure that the benchmark settings find.
    assert result["f1"] > 0.8
    assert all(r["detected_labelled_events"] == 1 for r in result["per_file"])
    printed = capsys.readouterr().out
    assert "pooled over 2 files" in printed
    assert "'threshold_method': 'extreme'" in printed


@pytest.mark.skab
@needs_skab
def test_skab_records_command_and_settings(two_files, tmp_path):
    page = tmp_path / "r.md"

    skab.main([str(two_files), "--markdown", str(page), "--product-defaults"])

    text = page.read_text()
    assert f"Command: `python benchmarks/skab.py {two_files}" in text
    assert "threshold_method `rmse`" in text
    assert "| valve1/1.csv |" in text


def test_skab_rejects_unlabelled_folder(tmp_path, capsys):
    assert skab.main([str(tmp_path)]) == 2
    assert "no labelled SKAB files" in capsys.readouterr().err


def _normal_run(path: Path, rows: int, shifted: slice, labelled: bool = False) -> None:
    """A SKAB-like run: flow follows the current, plus noise; ``shifted`` rows jump by 3."""
    rng = np.random.default_rng(3)
    current = 1.0 + 0.2 * np.sin(np.arange(rows) / 40) + rng.normal(0, 0.02, rows)
    flow = 30 + 5 * current + rng.normal(0, 0.1, rows)
    flow[shifted] += 3.0
    times = pd.date_range("2020-03-09 10:00:00", periods=rows, freq="1s")
    frame = pd.DataFrame(
        {
            "datetime": times.strftime("%Y-%m-%d %H:%M:%S"),
            "Current": current,
            skab.FLOW: flow,
        }
    )
    if labelled:
        frame["anomaly"] = 0
        frame.loc[frame.index[shifted], "anomaly"] = 1
        frame["changepoint"] = 0
        frame.loc[[shifted.start, shifted.stop], "changepoint"] = 1
    frame.to_csv(path, sep=";", index=False)


def test_skab_normal_runs_pieces(tmp_path, capsys):
    root = tmp_path / "data"
    (root / "valve1").mkdir(parents=True)
    (root / "anomaly-free").mkdir()
    # Two whole pieces (rows 0-1149 and 1150-2299); the last 100 rows are left over. The
    # second piece's scored rows jump by 30 noise standard deviations from row 1700 on.
    _normal_run(root / "anomaly-free" / "run.csv", 2400, slice(1700, 2300))
    _normal_run(root / "valve1" / "1.csv", 1000, slice(700, 800), labelled=True)
    out = tmp_path / "r.json"

    code = skab.main(
        [str(root), "--normal-runs", "--json", str(out), "--markdown", str(tmp_path / "r.md")]
        + ["--target", skab.FLOW]
    )

    assert code == 0
    normal = json.loads(out.read_text())["normal_runs"]
    pieces = normal["per_piece"]
    assert [p["file"] for p in pieces] == [
        "anomaly-free/run.csv rows 0-1149",
        "anomaly-free/run.csv rows 1150-2299",
    ]
    assert [p["rows"] for p in pieces] == [750, 750]
    assert all(p["tp"] == 0 and p["fn"] == 0 for p in pieces)
    assert pieces[0]["far"] < 0.05
    # The jump breaches at once, at row 1700, so the event runs from the onset 29 rows
    # earlier (the 30-s window) to the piece's end: 600 + 29 rows.
    assert pieces[1]["fp"] == 629
    total_fp = sum(p["fp"] for p in pieces)
    assert normal["far"] == pytest.approx(total_fp / 1500, abs=1e-6)
    # Changepoints at rows 700 and 800 (windows of 15 s either side). The event's onset is 29
    # rows before the step and it ends 23 rows after the step back, so both detected
    # changepoints miss their windows: NAB standard 100 x (-2 - 2 x 0.11 + 2) / 4 = -5.5.
    result = json.loads(out.read_text())
    assert result["per_file"][0]["changepoints"]["windows"] == 2
    assert result["per_file"][0]["changepoints"]["missed"] == 2
    assert result["per_file"][0]["changepoints"]["false_detections"] == 2
    assert result["nab"]["standard"] == -5.5
    assert "## Normal runs" in (tmp_path / "r.md").read_text()
    assert "normal runs: FAR" in capsys.readouterr().out


def test_skab_reports_unusable_file(tmp_path, capsys):
    (tmp_path / "valve1").mkdir()
    times = pd.date_range("2020-01-01", periods=500, freq="1s").strftime("%Y-%m-%d %H:%M:%S")
    pd.DataFrame({"datetime": times, "x": range(500), "anomaly": 0}).to_csv(
        tmp_path / "valve1" / "1.csv", sep=";", index=False
    )

    assert skab.main([str(tmp_path), "--markdown", str(tmp_path / "r.md")]) == 2

    err = capsys.readouterr().err
    assert "no target could be trained: Volume Flow RateRMS: Missing training column" in err
    assert "Thermocouple: Missing training column 'Thermocouple'" in err


def test_skab_rejects_missing_output_folder(tmp_path, capsys):
    _normal_run(tmp_path / "1.csv", 1000, slice(700, 800), labelled=True)

    args = [str(tmp_path), "--json", str(tmp_path / "no" / "r.json"), "--target", skab.FLOW]
    assert skab.main(args) == 2

    assert f"--json: the folder {tmp_path / 'no'} does not exist" in capsys.readouterr().err


def _pump_run(path: Path, fault: slice, rows: int = 1150, drift: float = 0.0) -> None:
    """A SKAB-like experiment with SKAB's eight channels.

    The fault shows in the pressure only (rows ``fault``). ``drift`` adds a slow rise to
    Accelerometer1RMS over the run, in multiples of its noise.
    """
    rng = np.random.default_rng(5)
    current = 1.0 + 0.2 * np.sin(np.arange(rows) / 40) + rng.normal(0, 0.02, rows)
    pressure = 1.0 + rng.normal(0, 0.01, rows)
    pressure[fault] += 0.2
    times = pd.date_range("2020-03-09 10:00:00", periods=rows, freq="1s")
    frame = pd.DataFrame(
        {
            "datetime": times.strftime("%Y-%m-%d %H:%M:%S"),
            "Accelerometer1RMS": 0.2
            + 0.001 * (rng.normal(0, 1, rows) + drift * np.arange(rows) / rows),
            "Accelerometer2RMS": 0.27 + rng.normal(0, 0.001, rows),
            "Current": current,
            "Pressure": pressure,
            "Temperature": 70 + rng.normal(0, 0.3, rows),
            "Thermocouple": 27 + rng.normal(0, 0.05, rows),
            "Voltage": 230 + rng.normal(0, 0.5, rows),
            skab.FLOW: 30 + 5 * current + rng.normal(0, 0.1, rows),
            "anomaly": 0,
            "changepoint": 0,
        }
    )
    frame.loc[frame.index[fault], "anomaly"] = 1
    frame.loc[[fault.start, fault.stop], "changepoint"] = 1
    frame.to_csv(path, sep=";", index=False)


def test_skab_default_targets_find_pressure_fault(tmp_path):
    (tmp_path / "other").mkdir()
    _pump_run(tmp_path / "other" / "1.csv", slice(700, 900))
    page = tmp_path / "r.md"

    def run(*options: str) -> dict:
        out = tmp_path / "r.json"
        assert (
            skab.main([str(tmp_path), "--json", str(out), "--markdown", str(page), *options]) == 0
        )
        return json.loads(out.read_text())

    flow_only = run("--target", skab.FLOW)
    default = run()

    assert flow_only["per_file"][0]["detected_labelled_events"] == 0
    assert flow_only["mar"] == 1.0
    assert default["per_file"][0]["events_by_target"] == {
        skab.FLOW: 0,
        "Pressure": 1,
        "Current": 0,
        "Voltage": 0,
        "Accelerometer1RMS": 0,
        "Accelerometer2RMS": 0,
        "Thermocouple": 0,
    }
    assert default["per_file"][0]["detected_labelled_events"] == 1
    # The event runs from its onset, up to 29 rows before the step, to about a window past
    # the step back: every labelled row and at most 60 others.
    assert default["fn"] == 0
    assert default["fp"] <= 60
    assert (
        "targets `Volume Flow RateRMS, Pressure, Current, Voltage, Accelerometer1RMS x4, "
        "Accelerometer2RMS x8, Thermocouple x4`" in page.read_text()
    )
    assert (
        "baselines `{'Accelerometer1RMS': 600, 'Accelerometer2RMS': 600, 'Thermocouple': 600}`"
        in page.read_text()
    )


def _with_normal_piece(root: Path) -> None:
    """Write one labelled experiment, and one normal piece: the same run without fault or labels."""
    (root / "other").mkdir()
    (root / "anomaly-free").mkdir()
    _pump_run(root / "other" / "1.csv", slice(700, 900))
    _pump_run(root / "anomaly-free" / "run.csv", slice(0, 0))
    normal = pd.read_csv(root / "anomaly-free" / "run.csv", sep=";")
    normal.drop(columns=["anomaly", "changepoint"]).to_csv(
        root / "anomaly-free" / "run.csv", sep=";", index=False
    )


def test_skab_injected_faults_per_channel(tmp_path, capsys):
    _with_normal_piece(tmp_path)
    out = tmp_path / "r.json"
    page = tmp_path / "r.md"

    code = skab.main(
        [str(tmp_path), "--injected-faults", "5", "--json", str(out), "--markdown", str(page)]
    )

    assert code == 0
    injected = json.loads(out.read_text())["injected_faults"]
    assert injected["size_sd"] == 5
    channels = injected["per_channel"]
    assert set(channels) == set(skab.BENCHMARK_TARGETS) | {"Temperature"}
    for counts in channels.values():
        # 300 shifted rows out of 750 scored rows in the one piece.
        assert counts["tp"] + counts["fn"] == 300
        assert counts["fp"] + counts["tn"] == 450
    # A step of 5 noise sd in a target with factor 1 meets its own detector in full. Factors
    # of 8 and 16 raise the thresholds of the vibration and thermocouple detectors above it,
    # and Temperature is no target.
    for channel in ("Current", "Pressure", "Voltage", skab.FLOW):
        assert channels[channel]["mar"] == 0
    for channel in ("Accelerometer2RMS", "Thermocouple", "Temperature"):
        assert channels[channel]["mar"] == 1
    assert "## Injected faults" in page.read_text()
    assert "step of 5 sd in Pressure" in capsys.readouterr().out


def test_skab_fault_shapes():
    np.testing.assert_array_equal(skab.fault_values("step", 3.0, 4), [3.0, 3.0, 3.0, 3.0])
    np.testing.assert_allclose(skab.fault_values("ramp", 3.0, 4), [0.75, 1.5, 2.25, 3.0])
    noise = skab.fault_values("noise", 3.0, 20_000)
    assert abs(noise.mean()) < 0.05
    assert noise.std() == pytest.approx(3.0, rel=0.02)
    # Seeded, so every channel and every run gets the same noise.
    np.testing.assert_array_equal(noise, skab.fault_values("noise", 3.0, 20_000))
    with pytest.raises(ValueError, match="unknown fault shape 'spike'"):
        skab.fault_values("spike", 3.0, 4)


def test_skab_injected_ramp(tmp_path, capsys):
    _with_normal_piece(tmp_path)
    out = tmp_path / "r.json"
    page = tmp_path / "r.md"
    options = ["--json", str(out), "--markdown", str(page), "--target", "Pressure"]

    code = skab.main([str(tmp_path), "--injected-faults", "10", "--fault-shape", "ramp", *options])

    assert code == 0
    injected = json.loads(out.read_text())["injected_faults"]
    assert injected["shape"] == "ramp"
    pressure = injected["per_channel"]["Pressure"]
    # The ramp starts below the threshold, so its first rows are missed. A step of the same
    # size is found in full (test_skab_injected_faults_per_channel).
    assert 0 < pressure["fn"] < 30
    assert pressure["tp"] + pressure["fn"] == 300
    assert "ramp rising evenly to 10 training standard deviations" in page.read_text()
    assert "ramp of 10 sd in Pressure" in capsys.readouterr().out


def test_skab_fault_shape_needs_injected_faults(tmp_path, capsys):
    with pytest.raises(SystemExit):
        skab.main([str(tmp_path), "--fault-shape", "ramp"])

    assert "--fault-shape needs --injected-faults SD" in capsys.readouterr().err


@pytest.mark.parametrize("size", ["0", "-1", "nan", "x"])
def test_skab_injected_faults_need_a_positive_size(tmp_path, capsys, size):
    with pytest.raises(SystemExit):
        skab.main([str(tmp_path), "--injected-faults", size])

    assert "expected a positive number" in capsys.readouterr().err


def test_skab_threshold_factor_applies_to_its_target(tmp_path):
    (tmp_path / "other").mkdir()
    _pump_run(tmp_path / "other" / "1.csv", slice(700, 900))
    out = tmp_path / "r.json"
    args = [str(tmp_path), "--json", str(out), "--markdown", str(tmp_path / "r.md")]

    code = skab.main([*args, "--target", "Pressure", "--threshold-factor", "Pressure=1000"])

    assert code == 0
    result = json.loads(out.read_text())
    # A threshold 1,000 times the calibrated one: the step of 20 noise sd goes unseen.
    assert result["per_file"][0]["events_by_target"] == {"Pressure": 0}
    assert result["mar"] == 1.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--threshold-factor", "Pressure=2"], "needs --target"),
        (["--target", "Current", "--threshold-factor", "Pressure=2"], "Pressure, which is no"),
        (["--target", "Pressure", "--threshold-factor", "Pressure=0"], "positive number"),
        (["--target", "Pressure", "--threshold-factor", "2"], "expected COLUMN=FACTOR"),
    ],
)
def test_skab_threshold_factor_errors(tmp_path, capsys, options, message):
    with pytest.raises(SystemExit):
        skab.main([str(tmp_path), *options])

    assert message in capsys.readouterr().err


def test_skab_choose_factors_raises_drifting_channels(tmp_path, capsys):
    (tmp_path / "anomaly-free").mkdir()
    run = tmp_path / "anomaly-free" / "run.csv"
    # Accelerometer1RMS rises by 40 noise sd over the run; no other channel drifts.
    _pump_run(run, slice(0, 0), rows=2300, drift=40)
    frame = pd.read_csv(run, sep=";").drop(columns=["anomaly", "changepoint"])
    frame.to_csv(run, sep=";", index=False)

    assert skab.main([str(tmp_path), "--choose-factors"]) == 0

    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    printed = {fields[0]: fields[1:] for fields in lines if len(fields) == 5}
    # Columns: quiet from, quiet from with a baseline, the baseline chosen, the factor.
    assert printed["Pressure"] == ["1", "1", "0", "1"]
    assert printed["Current"] == ["1", "1", "0", "1"]
    quiet, followed, baseline, chosen = (float(v) for v in printed["Accelerometer1RMS"])
    assert quiet > 1
    # The baseline follows the drift, so a lower factor stays quiet.
    assert followed < quiet
    assert baseline == skab.BASELINE_ROWS
    assert chosen == skab.with_margin(followed)


def test_skab_choose_factors_needs_unlabelled_files(tmp_path, capsys):
    (tmp_path / "valve1").mkdir()
    _pump_run(tmp_path / "valve1" / "1.csv", slice(700, 900))

    assert skab.main([str(tmp_path), "--choose-factors"]) == 2

    assert "no unlabelled files" in capsys.readouterr().err


def test_skab_unreadable_normal_run(tmp_path, capsys):
    (tmp_path / "other").mkdir()
    _pump_run(tmp_path / "other" / "1.csv", slice(700, 900))
    (tmp_path / "anomaly-free").mkdir()
    (tmp_path / "anomaly-free" / "run.csv").write_text('a;b\n1;2\n"x;3\n')

    assert skab.main([str(tmp_path), "--normal-runs", "--markdown", str(tmp_path / "r.md")]) == 2

    assert "anomaly-free/run.csv cannot be read as a normal run" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--normal-runs"], ["--injected-faults", "3"]])
def test_skab_normal_options_need_a_long_unlabelled_file(tmp_path, capsys, option):
    (tmp_path / "other").mkdir()
    _pump_run(tmp_path / "other" / "1.csv", slice(700, 900))
    (tmp_path / "anomaly-free").mkdir()
    short = tmp_path / "anomaly-free" / "short.csv"
    _pump_run(short, slice(0, 0), rows=1000)
    pd.read_csv(short, sep=";").drop(columns=["anomaly"]).to_csv(short, sep=";", index=False)

    code = skab.main([str(tmp_path), "--markdown", str(tmp_path / "r.md"), *option])

    assert code == 2
    assert "needs an unlabelled file of at least 1,150 rows" in capsys.readouterr().err


def test_skab_choose_factors_rejects_a_short_normal_run(tmp_path, capsys):
    (tmp_path / "anomaly-free").mkdir()
    run = tmp_path / "anomaly-free" / "run.csv"
    _pump_run(run, slice(0, 0), rows=1000)
    pd.read_csv(run, sep=";").drop(columns=["anomaly"]).to_csv(run, sep=";", index=False)

    assert skab.main([str(tmp_path), "--choose-factors"]) == 2

    assert "fewer than 1,150 rows" in capsys.readouterr().err


def test_skab_sorts_files_by_header(tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    _pump_run(other / "1.csv", slice(700, 900))
    _pump_run(other / "3.CSV", slice(700, 900))  # the suffix in capitals
    (other / "4.csv").write_bytes(b"datetime;Pressure\n\xe9;1\n")  # Latin-1, not UTF-8
    (other / "5.csv").write_bytes(b"")
    misnamed = pd.read_csv(other / "1.csv", sep=";").rename(columns={"anomaly": "Anomaly "})
    misnamed.to_csv(other / "6.csv", sep=";", index=False)
    (other / "7.csv").mkdir()  # a folder, not a file
    out = tmp_path / "r.json"

    code = skab.main(
        [str(tmp_path), "--json", str(out), "--markdown", str(tmp_path / "r.md")]
        + ["--target", "Pressure"]
    )

    assert code == 1
    result = json.loads(out.read_text())
    assert [Path(r["file"]).name for r in result["per_file"]] == ["1.csv", "3.CSV"]
    failed = {Path(f["file"]).name: f["error"] for f in result["failed"]}
    assert list(failed) == ["4.csv", "5.csv", "6.csv"]
    assert "is not valid UTF-8" in failed["4.csv"]
    assert "is empty" in failed["5.csv"]
    assert "its label column is named 'Anomaly '" in failed["6.csv"]
    assert "rename the column" in failed["6.csv"]
    assert "3 of 5 files failed and are not pooled" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("column", "cell", "shown"),
    [("anomaly", "", "nan"), ("anomaly", "yes", "yes"), ("changepoint", "2", "2")],
)
def test_skab_rejects_bad_label(tmp_path, capsys, column, cell, shown):
    (tmp_path / "other").mkdir()
    run = tmp_path / "other" / "1.csv"
    _pump_run(run, slice(700, 900))
    frame = pd.read_csv(run, sep=";", dtype={column: str})
    frame.loc[750, column] = cell
    frame.to_csv(run, sep=";", index=False)

    code = skab.main([str(tmp_path), "--markdown", str(tmp_path / "r.md"), "--target", "Pressure"])

    assert code == 2
    assert (
        f"the '{column}' column has the value(s) {shown} at row(s) 750 (rows counted from 0, "
        "header excluded). SKAB marks every row 0 or 1" in capsys.readouterr().err
    )


def test_skab_file_without_changepoints(tmp_path, capsys):
    (tmp_path / "other").mkdir()
    _pump_run(tmp_path / "other" / "1.csv", slice(700, 900))
    _pump_run(tmp_path / "other" / "2.csv", slice(700, 900))
    frame = pd.read_csv(tmp_path / "other" / "2.csv", sep=";")
    frame.drop(columns="changepoint").to_csv(tmp_path / "other" / "2.csv", sep=";", index=False)
    out = tmp_path / "r.json"
    args = ["--json", str(out), "--markdown", str(tmp_path / "r.md"), "--target", "Pressure"]

    assert skab.main([str(tmp_path), *args]) == 0

    result = json.loads(out.read_text())
    assert result["per_file"][1]["changepoints"] is None
    assert result["per_file"][0]["changepoints"]["windows"] == 2
    # The pooled score is the first file's alone.
    assert result["nab"] == skab.pooled(result["per_file"][:1])["nab"]
    assert "other/2.csv has no 'changepoint' column" in capsys.readouterr().err


def test_skab_constant_training_channel(tmp_path, capsys):
    (tmp_path / "other").mkdir()
    run = tmp_path / "other" / "1.csv"
    _pump_run(run, slice(700, 900))
    frame = pd.read_csv(run, sep=";")
    frame.loc[: skab.TRAIN_ROWS - 1, "Voltage"] = 230.0
    frame.to_csv(run, sep=";", index=False)
    out, page = tmp_path / "r.json", tmp_path / "r.md"

    code = skab.main([str(tmp_path), "--json", str(out), "--markdown", str(page)])

    assert code == 0
    result = json.loads(out.read_text())["per_file"][0]
    assert list(result["left_out"]) == ["Voltage"]
    assert "Voltage" not in result["events_by_target"]
    assert "Voltage" not in result["thresholds"]
    # The other six detectors still run, and the pressure detector finds the fault.
    assert result["events_by_target"]["Pressure"] == 1
    assert result["fn"] == 0
    assert "other/1.csv, Voltage: The validation error is zero" in page.read_text()
    assert "note: other/1.csv: no Voltage detector" in capsys.readouterr().err


def test_skab_one_failed_file(tmp_path, capsys):
    (tmp_path / "other").mkdir()
    _pump_run(tmp_path / "other" / "1.csv", slice(700, 900))
    _pump_run(tmp_path / "other" / "2.csv", slice(0, 0), rows=skab.TRAIN_ROWS)
    out, page = tmp_path / "r.json", tmp_path / "r.md"

    code = skab.main([str(tmp_path), "--json", str(out), "--markdown", str(page)])

    assert code == 1
    result = json.loads(out.read_text())
    assert [Path(r["file"]).name for r in result["per_file"]] == ["1.csv"]
    assert result["files"] == 1
    assert result["tp"] == result["per_file"][0]["tp"] > 0
    assert [Path(f["file"]).name for f in result["failed"]] == ["2.csv"]
    assert "only 400 data rows" in result["failed"][0]["error"]
    assert "## Files that failed (1, not pooled)" in page.read_text()
    err = capsys.readouterr().err
    assert "1 of 2 files failed and are not pooled: other/2.csv" in err


def test_skab_fails_when_no_file_runs(tmp_path, capsys):
    (tmp_path / "other").mkdir()
    _pump_run(tmp_path / "other" / "1.csv", slice(0, 0), rows=300)

    assert skab.main([str(tmp_path), "--markdown", str(tmp_path / "r.md")]) == 2

    assert "none of the 1 files could be run" in capsys.readouterr().err
    assert not (tmp_path / "r.md").exists()


def _copy_of_script(tmp_path: Path) -> Path:
    """Copy benchmarks/skab.py into a checkout-like folder without .venv; return the copy."""
    script = tmp_path / "checkout" / "benchmarks" / "skab.py"
    script.parent.mkdir(parents=True)
    shutil.copy(Path(skab.__file__), script)
    return script


def test_skab_script_restarts_in_venv(tmp_path):
    script = _copy_of_script(tmp_path)
    # A stand-in for the venv's Python that shows what it was started with.
    python = tmp_path / "checkout" / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text('#!/bin/sh\necho "venv python got: $*"\n')
    python.chmod(0o755)

    # -S leaves out site-packages, so the packages the script needs are not found.
    done = subprocess.run(
        [sys.executable, "-S", str(script), "data", "--json", "r.json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout == f"venv python got: {script} data --json r.json\n"


def test_skab_script_without_venv(tmp_path):
    script = _copy_of_script(tmp_path)

    done = subprocess.run(
        [sys.executable, "-S", str(script), "data"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )

    assert done.returncode == 1
    assert "lacks pandas, lightgbm, anomaly_detector" in done.stderr
    assert "Run `make demo` once to set up .venv" in done.stderr
    assert "Traceback" not in done.stderr
