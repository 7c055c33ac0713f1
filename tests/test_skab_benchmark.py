"""benchmarks/skab.py on real SKAB files read from ../shared/datasets/skab (GPL-3, not vendored)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

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
    # Both files contain one clear valve closure that the calibrated settings find.
    assert result["f1"] > 0.8
    assert all(r["detected_labelled_events"] == 1 for r in result["per_file"])
    printed = capsys.readouterr().out
    assert "pooled over 2 files" in printed
    assert "'threshold_method': 'calibrated'" in printed


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
