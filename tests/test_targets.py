"""One detector per target: `detect` with several --model-dir, on synthetic data with known faults.

The machine has two characteristic measurements. `temperature` follows speed and load, and
`pressure` follows speed. The test file contains one pressure fault (rows 300-449) and one
temperature fault (rows 700-799); each shows only in its own measurement. Each model
predicts its target from speed and load alone, so a fault in one target does not move the
other's prediction.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anomaly_detector.batch import _add_other_targets, target_folder
from anomaly_detector.cli import main

PRESSURE_FAULT = range(300, 450)
TEMPERATURE_FAULT = range(700, 800)


def _machine(rows: int, seed: int, faults: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    speed = 1000 + 200 * np.sin(np.arange(rows) / 50) + rng.normal(0, 5, rows)
    load = 50 + 10 * np.cos(np.arange(rows) / 70) + rng.normal(0, 1, rows)
    temperature = 20 + 0.01 * speed + 0.2 * load + rng.normal(0, 0.1, rows)
    pressure = 2 + 0.002 * speed + rng.normal(0, 0.02, rows)
    if faults:
        pressure[PRESSURE_FAULT.start : PRESSURE_FAULT.stop] += 0.3
        temperature[TEMPERATURE_FAULT.start : TEMPERATURE_FAULT.stop] += 1.5
    times = pd.date_range("2026-01-05 08:00:00", periods=rows, freq="1s", tz="UTC")
    frame = pd.DataFrame(
        {
            "time": times.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "speed": speed.round(2),
            "load": load.round(3),
            "temperature": temperature.round(4),
            "pressure": pressure.round(5),
        }
    )
    if faults:
        frame["anomaly"] = 0
        for fault in (PRESSURE_FAULT, TEMPERATURE_FAULT):
            frame.loc[fault.start : fault.stop - 1, "anomaly"] = 1
    return frame


@pytest.fixture(scope="module")
def machine(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("machine")
    _machine(2000, seed=1, faults=False).to_csv(root / "train.csv", index=False)
    _machine(1000, seed=2, faults=True).to_csv(root / "test.csv", index=False)
    paths = {"train": root / "train.csv", "test": root / "test.csv"}
    for target in ("temperature", "pressure"):
        paths[target] = root / f"model-{target}"
        code = main(
            [
                "train",
                str(paths["train"]),
                "--target",
                target,
                "--inputs",
                "speed",
                "load",
                "--window",
                "10",
                "--min-duration",
                "5",
                "--model-dir",
                str(paths[target]),
            ]
        )
        assert code == 0
    return paths


def _detect(data: Path, out: Path, *model_dirs: Path, figures: bool = False) -> int:
    args = ["detect", str(data), "--out", str(out)] + ([] if figures else ["--no-figures"])
    for model_dir in model_dirs:
        args += ["--model-dir", str(model_dir)]
    return main(args)


def _models_for(tmp_path: Path, copies: dict[str, str]) -> tuple[Path, list[Path]]:
    """Write machine rows with extra columns and train one model per extra column.

    Each key of ``copies`` is a new column copied from the column it maps to. The models
    predict their column from speed and load. Returns the data file and the model folders.
    """
    frame = _machine(1500, seed=4, faults=False)
    for column, source in copies.items():
        frame[column] = frame[source]
    data = tmp_path / "d.csv"
    frame.to_csv(data, index=False)
    models = []
    for number, target in enumerate(copies, start=1):
        models.append(tmp_path / f"m{number}")
        args = ["train", str(data), "--target", target, "--inputs", "speed", "load"]
        assert main([*args, "--model-dir", str(models[-1])]) == 0
    return data, models


def _covers(event: dict, rows: range) -> bool:
    return event["onset_row"] <= rows.start + 10 and event["end_row"] >= rows.stop - 1


def test_one_target_misses_a_fault_in_another_measurement(machine, tmp_path):
    out = tmp_path / "out"

    code = _detect(machine["test"], out, machine["temperature"])

    events = json.loads((out / "events.json").read_text())
    assert code == 0
    assert len(events) == 1
    assert _covers(events[0], TEMPERATURE_FAULT)


def test_two_targets_find_both_faults(machine, tmp_path, capsys):
    out = tmp_path / "out"

    code = _detect(machine["test"], out, machine["temperature"], machine["pressure"])

    assert code == 0
    events = json.loads((out / "events.json").read_text())
    # Ordered by onset: the pressure fault comes first in the file.
    assert [e["target"] for e in events] == ["pressure", "temperature"]
    assert _covers(events[0], PRESSURE_FAULT)
    assert _covers(events[1], TEMPERATURE_FAULT)
    assert events[0]["direction"] == "above"
    # 0.3 against a noise of 0.02: many times the normal error.
    assert events[0]["target_deviation"] > 5
    summary = json.loads((out / "summary.json").read_text())
    assert [t["target"] for t in summary["targets"]] == ["temperature", "pressure"]
    assert summary["events"] == 2
    for target in ("temperature", "pressure"):
        folder = out / target_folder(target)
        scored = pd.read_csv(folder / "scored.csv")
        assert len(scored) == 1000  # one output row per input row, for each target
        assert len(json.loads((folder / "events.json").read_text())) == 1
    printed = capsys.readouterr().out
    assert "pressure above" in printed
    assert "temperature above" in printed


def test_two_targets_write_figures_per_target(machine, tmp_path):
    out = tmp_path / "out"

    code = _detect(machine["test"], out, machine["temperature"], machine["pressure"], figures=True)

    assert code == 0
    for target in ("temperature", "pressure"):
        assert (out / target / "score.png").stat().st_size > 0
    assert not (out / "score.png").exists()


def test_two_targets_clear_single_run_results(machine, tmp_path):
    out = tmp_path / "out"
    assert _detect(machine["test"], out, machine["temperature"]) == 0
    assert (out / "scored.csv").exists()

    assert _detect(machine["test"], out, machine["temperature"], machine["pressure"]) == 0

    # A scored.csv beside the merged events would belong to one target only.
    assert not (out / "scored.csv").exists()
    assert len(json.loads((out / "events.json").read_text())) == 2


def test_same_target_twice_is_an_error(machine, tmp_path, capsys):
    assert _detect(machine["test"], tmp_path / "o", machine["pressure"], machine["pressure"]) == 2

    assert "Two models predict the same target (pressure)" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--threshold", "1"], ["--target", "pressure"]])
def test_per_model_options_with_several_models_are_errors(machine, tmp_path, capsys, option):
    args = ["detect", str(machine["test"]), "--out", str(tmp_path / "o"), *option]
    args += ["--model-dir", str(machine["temperature"]), "--model-dir", str(machine["pressure"])]

    assert main(args) == 2

    err = capsys.readouterr().err
    assert f"{option[0]} applies to one model" in err
    assert "Traceback" not in err


def test_targets_whose_folders_collide_are_an_error(tmp_path, capsys):
    data, models = _models_for(tmp_path, {"a b": "pressure", "a_b": "temperature"})

    assert _detect(data, tmp_path / "o", *models) == 2

    assert "would share a results folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("target", "folder"),
    [
        ("Volume Flow RateRMS", "Volume_Flow_RateRMS"),
        ("../../etc", "etc"),
        ("events.json", "events_json"),
        ("temp (°C)", "temp_C"),
        ("température", "température"),
        ("温度", "温度"),
        ("x" * 300, "x" * 100),
        ("温" * 40, "温" * 33),
        ("...", "target"),
        ("pressure", "pressure"),
    ],
)
def test_target_folder_stays_inside_the_output_folder(target, folder):
    assert target_folder(target) == folder


def test_folders_differing_in_case_rejected(tmp_path, capsys):
    data, models = _models_for(tmp_path, {"Temp": "temperature", "temp": "pressure"})

    assert _detect(data, tmp_path / "o", *models) == 2

    assert "not only in case or punctuation" in capsys.readouterr().err


def test_failed_run_leaves_no_earlier_results(machine, tmp_path, capsys):
    out = tmp_path / "out"
    assert _detect(machine["test"], out, machine["temperature"], machine["pressure"]) == 0
    # The same rows without the pressure column: the temperature model still runs, the
    # pressure model fails.
    broken = tmp_path / "broken.csv"
    pd.read_csv(machine["test"]).drop(columns=["pressure"]).to_csv(broken, index=False)

    assert _detect(broken, out, machine["temperature"], machine["pressure"]) == 2

    assert not (out / "events.json").exists()
    assert not (out / "pressure" / "scored.csv").exists()
    assert not (out / "pressure" / "events.json").exists()
    # summary.json names the unfinished run's folders, so evaluate refuses them and the
    # next run removes them.
    assert json.loads((out / "summary.json").read_text())["complete"] is False
    assert main(["evaluate", str(out), "--label-column", "anomaly"]) == 2
    assert "did not finish" in capsys.readouterr().err
    assert _detect(machine["test"], out, machine["pressure"]) == 0
    assert not (out / "temperature").exists()


def test_single_run_removes_earlier_target_folders(machine, tmp_path):
    out = tmp_path / "out"
    assert _detect(machine["test"], out, machine["temperature"], machine["pressure"]) == 0

    assert _detect(machine["test"], out, machine["pressure"]) == 0

    assert not (out / "temperature").exists()
    assert not (out / "pressure").exists()
    assert len(json.loads((out / "events.json").read_text())) == 1


def test_earlier_folder_with_other_files_is_kept(machine, tmp_path):
    out = tmp_path / "out"
    assert _detect(machine["test"], out, machine["temperature"], machine["pressure"]) == 0
    (out / "temperature" / "notes.txt").write_text("mine")

    assert _detect(machine["test"], out, machine["pressure"]) == 0

    assert (out / "temperature" / "notes.txt").read_text() == "mine"
    assert not (out / "temperature" / "scored.csv").exists()


def test_events_by_row_without_timestamps(machine, tmp_path):
    untimed = tmp_path / "untimed.csv"
    pd.read_csv(machine["train"]).drop(columns=["time"]).to_csv(untimed, index=False)
    model = tmp_path / "pressure-untimed"
    args = ["train", str(untimed), "--target", "pressure", "--inputs", "speed", "load"]
    assert main([*args, "--window", "10", "--min-duration", "5", "--model-dir", str(model)]) == 0
    out = tmp_path / "out"

    assert _detect(machine["test"], out, machine["temperature"], model) == 0

    events = json.loads((out / "events.json").read_text())
    # The pressure fault (row 300) comes before the temperature fault (row 700), although
    # only the temperature event has a time.
    assert [e["target"] for e in events] == ["pressure", "temperature"]
    assert isinstance(events[0]["onset"], int)
    assert isinstance(events[1]["onset"], str)


def test_model_dir_file_rejected(machine, tmp_path, capsys):
    assert _detect(machine["test"], tmp_path / "o", machine["test"]) == 2

    assert "Traceback" not in capsys.readouterr().err


def test_target_folder_file_rejected(machine, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "pressure").write_text("not a folder")

    assert _detect(machine["test"], out, machine["temperature"], machine["pressure"]) == 2

    assert "is a file, but a target's results go to that folder" in capsys.readouterr().err
    assert (out / "pressure").read_text() == "not a folder"


def test_markup_and_math_characters_in_names(tmp_path, capsys):
    data, models = _models_for(tmp_path, {"cost $\\frac$ [bold]": "temperature"})
    out = tmp_path / "o[/]x"

    assert _detect(data, out, *models, figures=True) == 0

    assert (out / "score.png").stat().st_size > 0
    assert f"results in {out}/" in capsys.readouterr().out


def test_evaluate_folder_counts_any_target(machine, tmp_path, capsys):
    out = tmp_path / "out"
    assert _detect(machine["test"], out, machine["temperature"], machine["pressure"]) == 0
    single = ["evaluate", str(out / "pressure" / "scored.csv"), "--label-column", "anomaly"]
    assert main([*single, "--events", str(out / "pressure" / "events.json")]) == 0
    pressure_only = json.loads((out / "pressure" / "evaluation.json").read_text())

    assert main(["evaluate", str(out), "--label-column", "anomaly"]) == 0

    both = json.loads((out / "evaluation.json").read_text())
    assert pressure_only["detected_labelled_events"] == 1
    assert both["detected_labelled_events"] == 2
    assert both["labelled_events"] == 2
    # The union of the two targets' event rows, recounted from their events.json files.
    flags = np.zeros(1000, dtype=bool)
    for target in ("temperature", "pressure"):
        for event in json.loads((out / target / "events.json").read_text()):
            flags[event["onset_row"] : event["end_row"] + 1] = True
    labels = pd.read_csv(machine["test"])["anomaly"].to_numpy() == 1
    assert both["tp"] == int((flags & labels).sum())
    assert both["fp"] == int((flags & ~labels).sum())
    assert "written to" in capsys.readouterr().out


def test_evaluate_folder_rejects_events_option(machine, tmp_path, capsys):
    out = tmp_path / "out"
    assert _detect(machine["test"], out, machine["temperature"], machine["pressure"]) == 0
    args = ["evaluate", str(out), "--label-column", "anomaly"]

    assert main([*args, "--events", str(out / "events.json")]) == 2

    assert "leave --events out" in capsys.readouterr().err


def test_evaluate_folder_needs_a_run_over_several_targets(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path), "--label-column", "anomaly"]) == 2

    assert "without the summary.json of a detect run" in capsys.readouterr().err


def test_evaluate_folder_rejects_folders_of_different_runs(machine, tmp_path, capsys):
    out = tmp_path / "out"
    models = (machine["temperature"], machine["pressure"])
    assert _detect(machine["test"], out, *models) == 0
    other = tmp_path / "other"
    assert (
        main(
            ["detect", str(machine["test"]), "--rows", "0:900", "--no-figures", "--out", str(other)]
            + [a for m in models for a in ("--model-dir", str(m))]
        )
        == 0
    )
    for name in ("scored.csv", "events.json"):
        (out / "pressure" / name).write_bytes((other / "pressure" / name).read_bytes())

    assert main(["evaluate", str(out), "--label-column", "anomaly"]) == 2

    assert "contains other rows than" in capsys.readouterr().err


def test_overlapping_events_name_the_other_targets(machine, tmp_path):
    frame = _machine(1000, seed=2, faults=True)
    # A third fault moves both measurements at once.
    frame.loc[880:959, "temperature"] += 2.0
    frame.loc[880:959, "pressure"] -= 0.4
    data = tmp_path / "both.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "out"

    assert _detect(data, out, machine["temperature"], machine["pressure"]) == 0

    events = json.loads((out / "events.json").read_text())
    assert [e["target"] for e in events] == ["pressure", "temperature", "pressure", "temperature"]
    assert events[0]["other_targets"] == []
    assert events[1]["other_targets"] == []
    last_pressure, last_temperature = events[2], events[3]
    assert last_pressure["other_targets"] == [
        {"target": "temperature", "target_deviation": last_temperature["target_deviation"]}
    ]
    assert last_temperature["other_targets"][0]["target"] == "pressure"
    assert last_temperature["other_targets"][0]["target_deviation"] < -5


def _event(target: str, onset: int, end: int, deviation: float | None) -> dict:
    return {
        "target": target,
        "onset": onset,
        "onset_row": onset,
        "end": end,
        "end_row": end,
        "target_deviation": deviation,
    }


def test_other_targets_overlapping_onsets():
    # The second event of "a" begins (its onset) before the first one ends.
    events = [
        _event("a", 0, 10, 3.0),
        _event("a", 8, 30, -5.0),
        _event("b", 25, 40, 2.0),
        _event("b", 100, 110, None),
    ]

    _add_other_targets(events, timed=False)

    assert [e["other_targets"] for e in events] == [
        [],
        [{"target": "b", "target_deviation": 2.0}],
        [{"target": "a", "target_deviation": -5.0}],
        [],
    ]


def test_other_targets_unordered_rows():
    events = [_event("a", 50, 60, 1.0), _event("a", 5, 9, 1.0), _event("b", 0, 100, 1.0)]

    _add_other_targets(events, timed=False)

    assert all(e["other_targets"] is None for e in events)


@pytest.mark.parametrize(
    "entry",
    [{"folder": "../x"}, {"folder": "/tmp"}, {"folder": 5}, None, ["pressure"], {"target": "a"}],
)
def test_evaluate_folder_rejects_edited_summary(machine, tmp_path, capsys, entry):
    out = tmp_path / "out"
    assert _detect(machine["test"], out, machine["temperature"], machine["pressure"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    summary["targets"].append(entry)
    (out / "summary.json").write_text(json.dumps(summary))

    assert main(["evaluate", str(out), "--label-column", "anomaly"]) == 2

    assert "Entry 2 of 'targets'" in capsys.readouterr().err


def test_earlier_link_folder_kept(machine, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "scored.csv").write_text("keep me")
    out = tmp_path / "out"
    assert _detect(machine["test"], out, machine["temperature"], machine["pressure"]) == 0
    (out / "link").symlink_to(outside, target_is_directory=True)
    summary = json.loads((out / "summary.json").read_text())
    summary["targets"].append({"target": "link", "folder": "link"})
    (out / "summary.json").write_text(json.dumps(summary))

    assert _detect(machine["test"], out, machine["pressure"]) == 0

    assert (outside / "scored.csv").read_text() == "keep me"


def test_target_folder_that_is_a_link_is_an_error(machine, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "pressure").symlink_to(tmp_path, target_is_directory=True)

    assert _detect(machine["test"], out, machine["temperature"], machine["pressure"]) == 2

    assert "is a symbolic link" in capsys.readouterr().err
