"""The ``anomaly-detector`` CLI with the changes proposed for local_server.py and local_model.py.

- socketserver's default listen backlog is 5 pending connections, so a burst of new
  connections from 32 clients overflows it and some are reset. Both local servers get a
  backlog of 128 here.
- The local model predicts with one thread. Here LightGBM uses every core
  (``num_threads=0``), as proposed for the CLI.

The CLI itself is unchanged. This module applies the changes named by its leading options,
``--backlog`` and ``--every-core``, then runs the CLI with the remaining arguments.

Usage: python -m benchmarks.cli_proposed --backlog serve --model-dir DIR --port 0
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from anomaly_detector import local_model, local_server
from anomaly_detector.cli import main

PROPOSED_BACKLOG = 128


def predict_on_every_core(self: local_model.LocalModel, inputs: pd.DataFrame) -> np.ndarray:
    if list(inputs.columns) != list(self.card.inputs):
        raise local_model.ConfigurationError(
            f"Model inputs {list(inputs.columns)} differ from the training order "
            f"{self.card.inputs}."
        )
    return self.booster.predict(inputs.to_numpy(dtype=np.float64), num_threads=0)


def apply(options: list[str]) -> None:
    for option in options:
        if option == "--backlog":
            local_server.ApiServer.request_queue_size = PROPOSED_BACKLOG
            local_server.ModelEndpointServer.request_queue_size = PROPOSED_BACKLOG
        elif option == "--every-core":
            local_model.LocalModel.predict = predict_on_every_core
        else:
            raise SystemExit(f"Unknown option {option!r}. Use --backlog or --every-core.")


if __name__ == "__main__":
    arguments = sys.argv[1:]
    options = [argument for argument in arguments if argument in ("--backlog", "--every-core")]
    apply(options)
    sys.exit(main(arguments[len(options) :]))
