"""The CLI end to end on the sample motor data: train, detect, evaluate."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anomaly_detector import batch
from anomaly_detector.cli import _target_text, build_parser, main
from anomaly_detector.errors import ConfigurationError
from anomaly_detector.evaluation import runs
from anomaly_detector.local_model import ModelCard

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"
TRAIN = SAMPLE / "motor_train.csv"
TEST = SAMPLE / "motor_test.csv"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("model")
    code = main(
        ["train", str(TRAIN), "--target", "bearing_temperature", "--model-dir", str(directory)]
    )
    assert code == 0
    return directory


@pytest.fixture(scope="module")
def detected(model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    code = main(["detect", str(TEST), "--model-dir", str(model_dir), "--out", str(out)])
    assert code == 0
    return out


def test_train_writes_model_card(model_dir):
    card = json.loads((model_dir / "model_card.json").read_text())

    assert card["target"] == "bearing_temperature"
    assert card["inputs"] == ["motor_speed", "torque", "ambient_temperature"]
    assert card["timestamp_column"] == "timestamp"
    assert card["threshold"] == pytest.approx(2 * card["validation_rmse"], rel=1e-4)
    assert card["validation_rows"] > 0
    assert set(card["versions"]) >= {"lightgbm", "pandas", "numpy", "python"}
    assert (model_dir / "model.txt").stat().st_size > 0


def test_detect_finds_exactly_the_three_injected_anomalies(detected):
    events = json.loads((detected / "events.json").read_text())
    labels = pd.read_csv(TEST)["anomaly"].to_numpy() > 0
    label_runs = runs(labels)

    assert len(events) == 3
    for event, (start, end) in zip(events, label_runs, strict=True):
        assert event["start_row"] < end
        assert event["end_row"] >= start


def test_detect_event_directions(detected):
    events = json.loads((detected / "events.json").read_text())

    assert [e["direction"] for e in events] == ["above", "below", "above"]


def test_detect_writes_one_row_per_input_row(detected):
    scored = pd.read_csv(detected / "scored.csv")
    source = pd.read_csv(TEST)

    assert len(scored) == len(source)
    assert scored["row"].tolist() == list(range(len(source)))
    assert (scored["status"] == "scored").all()
    np.testing.assert_allclose(scored["actual"], source["bearing_temperature"])
    assert scored["anomaly"].tolist() == source["anomaly"].tolist()


def test_detect_writes_summary_and_figures(detected):
    summary = json.loads((detected / "summary.json").read_text())

    assert summary["events"] == 3
    assert summary["rows"] == summary["scored_rows"]
    for name in ("observed_vs_predicted.png", "score.png", "score_histogram.png"):
        assert (detected / name).read_bytes()[:8] == PNG_MAGIC


def test_detect_in_small_chunks_matches_whole_file(model_dir, detected, tmp_path):
    code = main(
        [
            "detect",
            str(TEST),
            "--model-dir",
            str(model_dir),
            "--out",
            str(tmp_path),
            "--chunk-rows",
            "333",
            "--no-figures",
        ]
    )

    assert code == 0
    assert (tmp_path / "scored.csv").read_bytes() == (detected / "scored.csv").read_bytes()
    assert (tmp_path / "events.json").read_text() == (detected / "events.json").read_text()


def test_detect_rows_keeps_file_row_numbers(model_dir, tmp_path):
    code = main(
        [
            "detect",
            str(TEST),
            "--model-dir",
            str(model_dir),
            "--out",
            str(tmp_path),
            "--rows",
            "100:250",
            "--chunk-rows",
            "64",
            "--no-figures",
        ]
    )
    scored = pd.read_csv(tmp_path / "scored.csv")

    assert code == 0
    assert scored["row"].tolist() == list(range(100, 250))


def test_evaluate_prints_and_writes_rates(detected, capsys):
    code = main(["evaluate", str(detected / "scored.csv"), "--label-column", "anomaly"])
    printed = capsys.readouterr().out
    result = json.loads((detected / "evaluation.json").read_text())

    assert code == 0
    assert "F1" in printed
    assert "FAR" in printed
    assert "MAR" in printed
    assert result["labelled_events"] == 3
    assert result["detected_labelled_events"] == 3
    assert result["false_runs"] == 0


def test_detect_missing_column_exits_2_with_message(model_dir, tmp_path, capsys):
    data = tmp_path / "partial.csv"
    pd.read_csv(TEST).drop(columns=["torque"]).to_csv(data, index=False)

    code = main(
        ["detect", str(data), "--model-dir", str(model_dir), "--out", str(tmp_path / "out")]
    )
    message = capsys.readouterr().err

    assert code == 2
    assert "'torque'" in message
    assert "Columns found" in message


def test_detect_neutralizes_formula_cells(model_dir, tmp_path):
    data = tmp_path / "notes.csv"
    frame = pd.read_csv(TEST).head(20)
    frame["note"] = ['=HYPERLINK("x")', "+1+1", "-2", "@SUM(A1)", "fine"] * 4
    frame.to_csv(data, index=False)

    main(
        [
            "detect",
            str(data),
            "--model-dir",
            str(model_dir),
            "--out",
            str(tmp_path / "o"),
            "--no-figures",
        ]
    )
    notes = pd.read_csv(tmp_path / "o" / "scored.csv")["note"].tolist()[:5]

    assert notes == ['\'=HYPERLINK("x")', "'+1+1", "-2", "'@SUM(A1)", "fine"]


@pytest.mark.parametrize("command", ["train", "detect", "evaluate", "serve"])
def test_help_names_units(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # one line per option, so phrases do not wrap
    parser = build_parser()

    with pytest.raises(SystemExit):
        parser.parse_args([command, "--help"])
    text = capsys.readouterr().out

    assert "usage: anomaly-detector " + command in text
    if command in ("detect", "serve"):
        assert "target's unit" in text
        assert "time span" in text


# -- errors name rows of the file, whatever the chunks and --rows --------------------------


def _with_bad_cell(tmp_path: Path, column: str, value: str, row: int = 19) -> Path:
    frame = pd.read_csv(TEST).head(20).astype({column: object})
    frame.loc[row, column] = value
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "options",
    [[], ["--chunk-rows", "4"], ["--rows", "5:"], ["--rows", "3:", "--chunk-rows", "7"]],
)
@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("motor_speed", "abc", "not finite numbers at row(s) 19 "),
        ("timestamp", "2024-03-21T00:19:00+2", "unsupported form at row(s) 19 "),
    ],
)
def test_detect_errors_name_file_rows(model_dir, tmp_path, capsys, options, column, value, words):
    data = _with_bad_cell(tmp_path, column, value)

    code = main(
        ["detect", str(data), "--model-dir", str(model_dir), "--out", str(tmp_path / "o")]
        + ["--no-figures", *options]
    )

    assert code == 2
    assert words in capsys.readouterr().err


def test_train_errors_name_file_rows(tmp_path, capsys):
    data = _with_bad_cell(tmp_path, "torque", "12 kW")
    args = ["train", str(data), "--target", "bearing_temperature", "--rows", "10:"]

    code = main([*args, "--inputs", "motor_speed", "torque", "--model-dir", str(tmp_path / "m")])

    assert code == 2
    assert "'torque' has values that are not finite numbers at row(s) 19 " in (
        capsys.readouterr().err
    )


def test_time_order_error_names_file_row(model_dir, tmp_path, capsys):
    frame = pd.read_csv(TEST).head(40)
    frame.loc[30, "timestamp"] = frame.loc[2, "timestamp"]  # back in time, in a later chunk
    data = tmp_path / "back.csv"
    frame.to_csv(data, index=False)
    options = ["--rows", "10:", "--chunk-rows", "15", "--no-figures"]

    code = main(
        ["detect", str(data), "--model-dir", str(model_dir), "--out", str(tmp_path / "o")] + options
    )

    assert code == 2
    assert "Timestamps go back in time at row 30:" in capsys.readouterr().err


def test_evaluate_events_of_unsorted_file_match_sorted(model_dir, detected, tmp_path):
    # Rows in reverse time order are scored in time order, so the events are the same as for
    # the sorted file, and so is every count that evaluate --events reports.
    reversed_data = tmp_path / "reversed.csv"
    pd.read_csv(TEST).iloc[::-1].to_csv(reversed_data, index=False)
    out = tmp_path / "o"
    detect = ["detect", str(reversed_data), "--model-dir", str(model_dir), "--out", str(out)]
    assert main([*detect, "--no-figures"]) == 0
    evaluate = ["evaluate", "--label-column", "anomaly", "--events"]

    assert (
        main([evaluate[0], str(out / "scored.csv"), *evaluate[1:], str(out / "events.json")]) == 0
    )
    unsorted = json.loads((out / "evaluation.json").read_text())
    sorted_run = [evaluate[0], str(detected / "scored.csv"), *evaluate[1:]]
    assert main([*sorted_run, str(detected / "events.json")]) == 0
    expected = json.loads((detected / "evaluation.json").read_text())

    for key in ("tp", "fp", "tn", "fn"):
        assert unsorted[key] == expected[key]


def test_failed_detect_leaves_no_earlier_results(model_dir, detected, tmp_path, capsys):
    out = tmp_path / "o"
    detect = ["detect", "--model-dir", str(model_dir), "--out", str(out), "--chunk-rows", "1000"]
    assert main([detect[0], str(TEST), *detect[1:]]) == 0
    shuffled = tmp_path / "shuffled.csv"
    pd.read_csv(TEST).sample(frac=1, random_state=0).to_csv(shuffled, index=False)

    # In chunks, shuffled times go back in time from one chunk to the next: an error.
    assert main([detect[0], str(shuffled), *detect[1:]]) == 2

    assert "go back in time" in capsys.readouterr().err
    for name in ("scored.csv", "events.json", "summary.json", "score.png"):
        assert not (out / name).exists()
    assert (out / "scored.csv.partial").exists()


def test_train_rejects_input_column_with_text_cell(tmp_path, capsys):
    data = tmp_path / "train.csv"
    frame = pd.read_csv(TRAIN).head(200).astype({"motor_speed": object})
    frame.loc[150, "motor_speed"] = "abc"
    frame.to_csv(data, index=False)
    args = ["train", str(data), "--target", "bearing_temperature", "--rows", "100:"]

    assert main([*args, "--model-dir", str(tmp_path / "m")]) == 2

    message = capsys.readouterr().err
    assert "'motor_speed' has values that are not finite numbers at row(s) 150 " in message
    assert "picked as an input because most of its cells are numbers" in message
    assert "--exclude 'motor_speed'" in message


def _bytes_with_note(character: str, at: int) -> bytes:
    """TEST as UTF-8 with a text column, ``character`` in it starting at byte ``at``."""
    lines = TEST.read_bytes().splitlines()
    data = lines[0] + b",note\n"
    row = 1
    while len(data) + 200 < at:  # rows are about 40 bytes, and padding fills the rest
        data += lines[row] + b",ok\n"
        row += 1
    prefix = lines[row] + b","
    data += prefix + b"x" * (at - len(data) - len(prefix)) + character.encode() + b"\n"
    return data + b"".join(line + b",ok\n" for line in lines[row + 1 :])


def _detect_bytes(model_dir: Path, tmp_path: Path, data: bytes) -> int:
    """Run detect on ``data`` saved as tmp_path/test.csv, with results in tmp_path/out."""
    (tmp_path / "test.csv").write_bytes(data)
    return main(
        ["detect", str(tmp_path / "test.csv"), "--model-dir", str(model_dir)]
        + ["--out", str(tmp_path / "out")]
    )


def _long_header(ending: str) -> bytes:
    """TEST with a first column whose 70,000-character name passes the 64 KiB header block,
    two blank lines, and ``ending`` after every line."""
    lines = TEST.read_text().splitlines()
    body = ["n" * 70_000 + "," + lines[0]] + ["v," + line for line in lines[1:]]
    body[100:100] = ["", "  "]
    return (ending.join(body) + ending).encode()


# A two-byte character that starts at the last byte of the block read for the header.
_ACROSS = _bytes_with_note("é", batch.HEADER_BYTES - 1)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_ACROSS, id="character across the header block"),
        pytest.param(_ACROSS.replace(b"\n", b"\r"), id="the same with CR line endings"),
        pytest.param(_long_header("\n"), id="long header, LF"),
        pytest.param(_long_header("\r\n"), id="long header, CRLF"),
        pytest.param(_long_header("\r"), id="long header, CR"),
        pytest.param(TEST.read_text().encode("utf-16"), id="UTF-16"),
    ],
)
def test_detect_reads_file_variant(model_dir, detected, tmp_path, data):
    assert _detect_bytes(model_dir, tmp_path, data) == 0

    events = json.loads((tmp_path / "out" / "events.json").read_text())
    assert events == json.loads((detected / "events.json").read_text())


def test_detect_rejects_bad_byte_after_header_block(model_dir, tmp_path, capsys):
    data = _bytes_with_note("é", 100_000).replace("é".encode(), b"\xe9")

    code = _detect_bytes(model_dir, tmp_path, data)

    assert code == 2
    message = capsys.readouterr().err
    assert f"{tmp_path / 'test.csv'} is not valid UTF-8 (" in message
    assert "after the header block). Save or export the file as UTF-8." in message


def _edited_test_file(edit) -> str:
    """TEST with ``edit`` applied to its list of lines (header first, no line breaks)."""
    lines = TEST.read_text().splitlines()
    edit(lines)
    return "\n".join(lines) + "\n"


def _drop_second_field(lines: list[str], number: int) -> None:
    fields = lines[number].split(",")
    del fields[1]
    lines[number] = ",".join(fields)


def _append(lines: list[str], number: int, text: str) -> None:
    lines[number] += text


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # pandas read the first column as an index and shifted every value left.
        (
            lambda lines: _append(lines, 1, ",7"),
            "Line 2 of {path} has 7 fields, but the header has 6",
        ),
        # pandas padded short rows with empty cells.
        (lambda lines: _append(lines, 120, ",7"), "Line 121 of {path} has 7 fields"),
        (
            lambda lines: _drop_second_field(lines, 3001),
            "Line 3002 of {path} has 5 fields, but the header has 6. It is data row 3000 (",
        ),
        (lambda lines: _drop_second_field(lines, 5040), "Line 5041 of {path} has 5 fields"),
        (
            lambda lines: _append(lines, 4000, ',"a,b"'),
            "Line 4001 of {path} has 7 fields, but the header has 6",
        ),
        (
            lambda lines: _append(lines, 4000, "a\x00b"),
            "Line 4001 of {path} contains a NUL byte, so it is not a text file",
        ),
        (
            lambda lines: lines.__setitem__(0, '"time\nstamp",' + lines[0].split(",", 1)[1]),
            "The header of {path} has 6 fields by the CSV rules, but 1 on its first line",
        ),
        (
            # The last name: the field counts agree, the names do not.
            lambda lines: lines.__setitem__(0, lines[0].replace("anomaly", '"anom\naly"')),
            "'anom\\naly'] by the CSV rules, but ['timestamp', ",
        ),
        (
            lambda lines: lines.__setitem__(0, lines[0] + "," + "n" * 200_000),
            "The header row cannot be read: field larger than field limit",
        ),
        (
            lambda lines: _append(lines, 50, "," + "x" * 200_000),
            "Line 51 of {path} has a field longer than 131,072 characters",
        ),
        (
            lambda lines: lines.__setitem__(0, lines[0] + "".join(f",x{i}" for i in range(2000))),
            "{path} has 2006 columns; at most 2000 are accepted",
        ),
    ],
)
def test_detect_rejects_misshapen_file(model_dir, tmp_path, capsys, edit, message):
    assert _detect_bytes(model_dir, tmp_path, _edited_test_file(edit).encode()) == 2

    err = capsys.readouterr().err
    assert message.format(path=tmp_path / "test.csv") in err
    assert "Traceback" not in err


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_detect_json_file(model_dir, detected, tmp_path, suffix):
    data = tmp_path / f"test{suffix}"
    pd.read_csv(TEST).to_json(data, orient="records", lines=suffix == ".jsonl")

    code = main(["detect", str(data), "--model-dir", str(model_dir), "--out", str(tmp_path)])

    assert code == 0
    events = json.loads((tmp_path / "events.json").read_text())
    assert events == json.loads((detected / "events.json").read_text())


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("test.jsonl", '{"a": 1}\n\n{oops\n', "Line 3 of {path} is not valid JSON (Expecting"),
        # U+2028 is allowed in a JSON string: the line is whole, and the record has no target.
        ("test.jsonl", '{"note": "a\u2028b"}\n', "Missing input columns 'motor_speed'"),
        ("test.jsonl", "[1, 2]\n", "{path}: Record 0 of the JSON body is a list, not an object"),
        ("test.json", '[{"a": 1},', "{path}: The body is not valid JSON: Expecting value"),
    ],
)
def test_detect_rejects_bad_json_file(model_dir, tmp_path, capsys, name, text, message):
    data = tmp_path / name
    data.write_text(text)

    code = main(["detect", str(data), "--model-dir", str(model_dir), "--out", str(tmp_path)])

    assert code == 2
    assert message.format(path=data) in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "detect"])
@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (None, "{path} has no data rows. Add rows below the header."),
        ("9000:", "--rows 9000: selects none of the 5,040 data rows of {path} (rows 0 to 5039)"),
    ],
)
def test_no_rows_selected(model_dir, tmp_path, capsys, command, rows, message):
    data = tmp_path / "test.csv"
    text = TEST.read_text()
    data.write_text(text.splitlines()[0] + "\n" if rows is None else text)
    args = ["--target", "bearing_temperature"] if command == "train" else []
    args += ["--model-dir", str(tmp_path / "m" if command == "train" else model_dir)]
    args += [] if rows is None else ["--rows", rows]

    code = main([command, str(data), *args, *(["--out", str(tmp_path)] * (command == "detect"))])

    assert code == 2
    assert message.format(path=data) in capsys.readouterr().err


@pytest.mark.parametrize("rows", ["10:10", "10:5"])
def test_detect_rejects_empty_row_range(model_dir, tmp_path, capsys, rows):
    code = main(
        ["detect", str(TEST), "--model-dir", str(model_dir), "--rows", rows, "--out", str(tmp_path)]
    )

    assert code == 2
    assert f"with 0 <= START < END; got {rows!r}" in capsys.readouterr().err


def test_detect_bom_only_file(model_dir, tmp_path, capsys):
    assert _detect_bytes(model_dir, tmp_path, b"\xef\xbb\xbf") == 2

    assert f"{tmp_path / 'test.csv'} is empty." in capsys.readouterr().err


def test_train_names_misspelt_target(tmp_path, capsys):
    args = ["train", str(TRAIN), "--target", "bearing_temp", "--model-dir", str(tmp_path)]

    assert main(args) == 2

    err = capsys.readouterr().err
    assert "Missing training column 'bearing_temp'. Columns found: 'timestamp'," in err
    assert "Check the names given to --target and --inputs against them." in err


def test_evaluate_folder_of_one_target(detected, capsys):
    assert main(["evaluate", str(detected), "--label-column", "anomaly"]) == 2

    err = capsys.readouterr().err
    assert f"{detected} has the results of a detect run with one target" in err
    assert f"--events {detected / 'events.json'}" in err


def test_serve_port_in_use(model_dir, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        environment = dict(os.environ)

        code = main(["serve", "--model-dir", str(model_dir), "--port", str(port)])

    assert code == 2
    # The local endpoint's address is not left behind for later boto3 clients.
    assert dict(os.environ) == environment
    err = capsys.readouterr().err
    assert f"Port {port} on 127.0.0.1 cannot be used (--port): Address already in use" in err
    assert "or --port 0 for any free port" in err


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("events.json", "[]\n", "is JSON. Give the scored.csv that detect wrote, or its --out"),
        ("notes.txt", "a\n1\n1,2,3\n", "cannot be read as CSV (Error tokenizing data"),
        ("other.csv", "a,b\n1,2\n", "has no column 'is_anomaly'; columns found: ['a', 'b']. Give"),
    ],
)
def test_evaluate_rejects_other_file(tmp_path, capsys, name, text, message):
    (tmp_path / name).write_text(text)

    assert main(["evaluate", str(tmp_path / name), "--label-column", "a"]) == 2

    assert message in capsys.readouterr().err


def _train_card(tmp_path: Path, frame: pd.DataFrame) -> dict:
    """Train with the default inputs on ``frame`` and return the model card."""
    data = tmp_path / "train.csv"
    frame.to_csv(data, index=False)
    code = main(
        ["train", str(data), "--target", "bearing_temperature", "--model-dir", str(tmp_path)]
    )
    assert code == 0
    return json.loads((tmp_path / "model_card.json").read_text())


def test_train_skips_text_columns(tmp_path):
    frame = pd.read_csv(TRAIN).head(300)
    frame["note"] = ["ok", "", "shift change"] * 100

    card = _train_card(tmp_path, frame)

    assert card["inputs"] == ["motor_speed", "torque", "ambient_temperature"]


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_detect_chunk_rows_must_be_positive(model_dir, tmp_path, capsys, value):
    args = ["detect", str(TEST), "--model-dir", str(model_dir), "--out", str(tmp_path)]

    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--chunk-rows", value])

    assert exit_info.value.code == 2
    assert "argument --chunk-rows" in capsys.readouterr().err


def test_evaluate_empty_scored_file(tmp_path, capsys):
    empty = tmp_path / "scored.csv"
    empty.write_text("")

    assert main(["evaluate", str(empty), "--label-column", "anomaly"]) == 2

    assert "is empty. Give the scored.csv that detect wrote." in capsys.readouterr().err


def test_train_keeps_numbers_stored_as_text(tmp_path):
    # A cell of spaces makes pandas read the column as text; it is still a numeric input.
    frame = pd.read_csv(TRAIN).head(300).astype({"torque": object})
    frame.loc[10, "torque"] = " "

    card = _train_card(tmp_path, frame)

    assert card["inputs"] == ["motor_speed", "torque", "ambient_temperature"]
    assert card["dropped_rows"] == 1


def test_detect_without_timestamps_prefixes_timestamp_column(tmp_path):
    # Times that are not ISO 8601 are not a timestamp column, so they come back as a plain
    # column, and evaluate --events uses the file order.
    data = tmp_path / "us_times.csv"
    frame = pd.read_csv(TEST).head(600)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"]).dt.strftime("%m/%d/%Y %H:%M")
    frame.to_csv(data, index=False)
    model = tmp_path / "m"
    train = ["train", str(data), "--target", "bearing_temperature", "--exclude", "anomaly"]
    assert main([*train, "--rows", ":400", "--model-dir", str(model)]) == 0
    out = tmp_path / "o"
    assert (
        main(["detect", str(data), "--model-dir", str(model), "--rows", "400:", "--out", str(out)])
        == 0
    )

    scored = pd.read_csv(out / "scored.csv")
    assert "timestamp" not in scored.columns
    assert scored["input_timestamp"].iloc[0] == frame["timestamp"].iloc[400]
    assert (out / "score.png").exists()
    events = ["evaluate", str(out / "scored.csv"), "--label-column", "anomaly", "--events"]
    assert main([*events, str(out / "events.json")]) == 0


def test_detect_refuses_to_replace_its_input(model_dir, detected, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    data = out / "scored.csv"
    data.write_bytes(TEST.read_bytes())

    code = main(["detect", str(data), "--model-dir", str(model_dir), "--out", str(out)])

    assert code == 2
    assert "would replace its own input" in capsys.readouterr().err
    assert data.read_bytes() == TEST.read_bytes()


def test_detect_refuses_partial_file_as_input(model_dir, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    data = out / "scored.csv.partial"
    data.write_bytes(TEST.read_bytes())

    assert main(["detect", str(data), "--model-dir", str(model_dir), "--out", str(out)]) == 2

    assert "would replace its own input" in capsys.readouterr().err
    assert data.read_bytes() == TEST.read_bytes()


def test_detect_out_must_be_a_folder(model_dir, tmp_path, capsys):
    results_file = tmp_path / "results"
    results_file.write_text("a file")

    assert (
        main(["detect", str(TEST), "--model-dir", str(model_dir), "--out", str(results_file)]) == 2
    )

    assert "is a file, not a folder" in capsys.readouterr().err


def test_evaluate_counts_runs_in_scoring_order(model_dir, detected, tmp_path):
    # Shuffled rows are scored in time order: the event-level counts match the sorted file.
    shuffled = tmp_path / "shuffled.csv"
    pd.read_csv(TEST).sample(frac=1, random_state=1).to_csv(shuffled, index=False)
    out = tmp_path / "o"
    detect = ["detect", str(shuffled), "--model-dir", str(model_dir), "--out", str(out)]
    assert main([*detect, "--no-figures"]) == 0
    labelled = ["--label-column", "anomaly"]

    assert main(["evaluate", str(out / "scored.csv"), *labelled]) == 0
    shuffled_result = json.loads((out / "evaluation.json").read_text())
    assert main(["evaluate", str(detected / "scored.csv"), *labelled]) == 0
    sorted_result = json.loads((detected / "evaluation.json").read_text())

    for key in ("labelled_events", "detected_labelled_events", "predicted_runs", "false_runs"):
        assert shuffled_result[key] == sorted_result[key]


def test_detect_endpoint_without_region_exits_2(tmp_path, monkeypatch, capsys):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    # An empty config file, so that no Region comes from the user's ~/.aws either.
    config = tmp_path / "aws-config"
    config.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    args = ["detect", str(TEST), "--endpoint", "motor", "--target", "bearing_temperature"]
    args += ["--inputs", "motor_speed", "torque", "--threshold", "1", "--out", str(tmp_path / "o")]

    code = main(args)

    err = capsys.readouterr().err
    assert code == 2
    assert "No AWS Region is set for --endpoint" in err
    assert "Traceback" not in err


def test_merge_gap_from_card_and_from_option(tmp_path):
    model = tmp_path / "model"
    train = ["train", str(TRAIN), "--target", "bearing_temperature", "--merge-gap", "10min"]
    assert main([*train, "--model-dir", str(model)]) == 0
    # At threshold 6.2 the score of the third sample fault dips below it a few times.
    detect = ["detect", str(TEST), "--model-dir", str(model), "--threshold", "6.2", "--out"]

    assert json.loads((model / "model_card.json").read_text())["merge_gap"] == "10min"
    assert main([*detect, str(tmp_path / "merged"), "--no-figures"]) == 0
    assert main([*detect, str(tmp_path / "apart"), "--no-figures", "--merge-gap", "0"]) == 0

    merged = json.loads((tmp_path / "merged" / "events.json").read_text())
    apart = json.loads((tmp_path / "apart" / "events.json").read_text())
    assert len(apart) > 3
    assert len(merged) == 3
    assert merged[:2] == apart[:2]
    last = merged[2]
    assert (last["start_row"], last["end_row"]) == (apart[2]["start_row"], apart[-1]["end_row"])
    assert last["rows"] == sum(event["rows"] for event in apart[2:])
    summary = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert summary["merge_gap"] == "10min"


def test_train_rejects_bad_merge_gap(tmp_path, capsys):
    args = ["train", str(TRAIN), "--target", "bearing_temperature", "--merge-gap", "-1"]

    assert main([*args, "--model-dir", str(tmp_path / "m")]) == 2
    assert "Use 0 to merge nothing" in capsys.readouterr().err


@pytest.mark.parametrize(("card_format", "readable"), [(1, True), (2, True), (3, True), (4, False)])
def test_model_card_formats(model_dir, tmp_path, card_format, readable):
    card = json.loads((model_dir / "model_card.json").read_text())
    del card["merge_gap"], card["baseline"]  # format 1 had neither, format 2 no baseline
    (tmp_path / "model_card.json").write_text(json.dumps({**card, "format": card_format}))

    if readable:
        config = ModelCard.load(tmp_path).scoring_config()
        assert (config.merge_gap, config.baseline) == (None, None)
    else:
        with pytest.raises(ConfigurationError, match="reads formats 1, 2, 3"):
            ModelCard.load(tmp_path)


@pytest.mark.parametrize("field", ["window", "min_duration", "merge_gap", "baseline"])
def test_detect_names_card_with_bad_setting(model_dir, tmp_path, capsys, field):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.txt").write_bytes((model_dir / "model.txt").read_bytes())
    card = json.loads((model_dir / "model_card.json").read_text())
    (model / "model_card.json").write_text(json.dumps({**card, field: "abc"}))

    code = main(["detect", str(TEST), "--model-dir", str(model), "--out", str(tmp_path / "o")])

    assert code == 2
    assert f"{field} in {model / 'model_card.json'} must be" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("direction", "text"),
    [("above", "above, 2.5x error"), ("below", "below, 2.5x error"), ("both", "above and below")],
)
def test_event_table_direction_text(direction, text):
    event = {"direction": direction, "target_deviation": -2.5 if direction == "below" else 2.5}

    assert _target_text(event) == text
