"""The same detection done with ADTK's RegressionAD on the same LightGBM model, whole file.

RegressionAD fits its regressor and an interquartile-range bound on |residual| with
``fit``, then flags rows whose residual is outside the bound with ``detect``. The regressor
here wraps the booster that ``anomaly-detector train`` wrote, and its ``fit`` keeps that
booster, so both tools predict with the same trees. ADTK works on a whole frame with a
DatetimeIndex, so the file is read into memory at once. Prints one JSON line of phase times.

If ``adtk`` cannot be imported, a re-implementation of the same steps runs instead, and the
JSON output names it and the import error.

Usage: python -m benchmarks.adtk_detect --train CSV --data CSV --model-dir DIR --out DIR
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

IQR_FACTOR = 3.0  # RegressionAD's default c


class FittedBooster:
    """A scikit-learn style regressor around an already trained LightGBM booster."""

    def __init__(self, booster, inputs: list[str]) -> None:
        self.booster = booster
        self.inputs = inputs

    def fit(self, features, target):
        # The model was trained by `anomaly-detector train`, and fitting again would change it.
        return self

    def predict(self, features):
        import numpy as np

        matrix = features[self.inputs].to_numpy(dtype=np.float64)
        return self.booster.predict(matrix, num_threads=1)


class RegressionResidualBound:
    """Re-implementation of RegressionAD, used only when ADTK cannot be imported.

    Residual = target - prediction. The bound is Q3 + c x IQR of |residual| on the training
    frame, and a row is anomalous when its |residual| is above the bound.
    """

    def __init__(self, regressor, target: str, c: float = IQR_FACTOR) -> None:
        self.regressor = regressor
        self.target = target
        self.c = c
        self.bound = None

    def _abs_residual(self, frame):
        features = frame.drop(columns=[self.target])
        return (frame[self.target] - self.regressor.predict(features)).abs()

    def fit(self, frame):
        residual = self._abs_residual(frame)
        q1, q3 = residual.quantile(0.25), residual.quantile(0.75)
        self.bound = q3 + self.c * (q3 - q1)
        return self

    def detect(self, frame):
        return self._abs_residual(frame) > self.bound


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="normal-operation CSV")
    parser.add_argument("--data", type=Path, required=True, help="CSV to score")
    parser.add_argument("--model-dir", type=Path, required=True, help="from anomaly-detector train")
    parser.add_argument("--out", type=Path, required=True, help="directory for scored.csv")
    args = parser.parse_args()
    phases: dict[str, float] = {}
    started = time.perf_counter()

    import lightgbm
    import pandas as pd

    try:
        from adtk.detector import RegressionAD

        implementation = "ADTK RegressionAD"
    except Exception as error:  # any import failure selects the labelled re-implementation
        RegressionAD = RegressionResidualBound  # noqa: N806
        implementation = f"re-implementation of RegressionAD (adtk import failed: {error!r})"
    phases["imports"] = time.perf_counter() - started

    card = json.loads((args.model_dir / "model_card.json").read_text())
    booster = lightgbm.Booster(model_file=str(args.model_dir / "model.txt"))
    timestamp = card["timestamp_column"]
    target = card["target"]
    columns = [*card["inputs"], target]

    def read(path: Path) -> pd.DataFrame:
        frame = pd.read_csv(path, index_col=timestamp, parse_dates=[timestamp])
        return frame[columns]

    mark = time.perf_counter()
    detector = RegressionAD(regressor=FittedBooster(booster, card["inputs"]), target=target)
    detector.fit(read(args.train))
    phases["fit"] = time.perf_counter() - mark

    mark = time.perf_counter()
    frame = read(args.data)
    phases["read"] = time.perf_counter() - mark

    mark = time.perf_counter()
    flags = detector.detect(frame)
    phases["detect"] = time.perf_counter() - mark

    mark = time.perf_counter()
    frame["is_anomaly"] = flags.astype(bool)
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / "scored.csv", lineterminator="\n")
    phases["write"] = time.perf_counter() - mark

    result = {
        "implementation": implementation,
        "rows": len(frame),
        "anomalous_rows": int(frame["is_anomaly"].sum()),
        "phases_s": phases,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
