"""benchmarks/skab.py on real SKAB files read from ../shared/datasets/skab (GPL-3, not vendored)."""

from __future__ import annotations

import json
import os
import shutil
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
            skab.DEFAULT_TARGET: flow,
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
    (tmp_path / "valve1" / "1.csv").write_text("datetime;x;anomaly\n2020-01-01 00:00:00;1;0\n")

    assert skab.main([str(tmp_path), "--markdown", str(tmp_path / "r.md")]) == 2

    assert "Missing training column 'Volume Flow RateRMS'" in capsys.readouterr().err


def test_skab_rejects_missing_output_folder(tmp_path, capsys):
    _normal_run(tmp_path / "1.csv", 1000, slice(700, 800), labelled=True)

    assert skab.main([str(tmp_path), "--json", str(tmp_path / "no" / "r.json")]) == 2

    assert f"--json: the folder {tmp_path / 'no'} does not exist" in capsys.readouterr().err
