"""benchmarks/skab_event_settings.py: choosing the minimum duration and merge gap without labels."""

from __future__ import annotations

import pandas as pd
import pytest
from test_skab_benchmark import _pump_run

from benchmarks import skab_event_settings as settings


def _row(min_duration: str, merge_gap: str, far: float, mar: float) -> dict:
    return {"min_duration": min_duration, "merge_gap": merge_gap, "far": far, "mar": mar}


def test_choose_lowest_far_that_misses_no_more():
    table = [
        _row("30s", "0", far=0.20, mar=0.10),  # the former setting
        _row("60s", "0", far=0.05, mar=0.30),  # fewer false alarms, but misses more
        _row("60s", "30s", far=0.08, mar=0.10),
        _row("120s", "0", far=0.08, mar=0.05),
        _row("120s", "60s", far=0.12, mar=0.00),
    ]

    chosen = settings.choose(table)

    # 60s/30s and 120s/0 tie on FAR; the shorter minimum duration wins.
    assert (chosen["min_duration"], chosen["merge_gap"]) == ("60s", "30s")


def test_choose_keeps_former_setting_when_nothing_beats_it():
    table = [_row("30s", "0", far=0.02, mar=0.10), _row("60s", "0", far=0.01, mar=0.11)]

    assert settings.choose(table) is table[0]


def _normal_run(tmp_path) -> None:
    (tmp_path / "anomaly-free").mkdir()
    run = tmp_path / "anomaly-free" / "run.csv"
    _pump_run(run, slice(0, 0), rows=2 * 1150)
    frame = pd.read_csv(run, sep=";").drop(columns=["anomaly", "changepoint"])
    frame.to_csv(run, sep=";", index=False)


def test_event_settings_table_and_halves(tmp_path, capsys):
    _normal_run(tmp_path)

    code = settings.main([str(tmp_path), "--steps", "5", "--halves"])

    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0] == "2 normal pieces; steps of 5 sd up and down in the flow rate"
    pairs = [line.split() for line in lines[2:44]]
    assert len(pairs) == len(settings.MIN_DURATIONS) * len(settings.MERGE_GAPS)
    assert sum(line.endswith("<- chosen") for line in lines) == 1
    # The synthetic flow follows the current closely, so a 5-sd step is found in full.
    former = next(p for p in pairs if p[:2] == ["30s", "0"])
    assert former[3] == "0.00%"
    assert [line.split()[0] for line in lines[45:]] == ["first", "last", "even", "odd"]


@pytest.mark.parametrize("rows", [None, 1000])
def test_event_settings_need_a_whole_normal_piece(tmp_path, capsys, rows):
    if rows is not None:
        (tmp_path / "anomaly-free").mkdir()
        _pump_run(tmp_path / "anomaly-free" / "run.csv", slice(0, 0), rows=rows)
        run = tmp_path / "anomaly-free" / "run.csv"
        pd.read_csv(run, sep=";").drop(columns=["anomaly"]).to_csv(run, sep=";", index=False)

    assert settings.main([str(tmp_path)]) == 2
    assert "error: no unlabelled file" in capsys.readouterr().err
