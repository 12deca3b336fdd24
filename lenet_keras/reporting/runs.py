"""The runs a report reads: each experiment's metrics.json and predictions.npz in a model dir."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from lenet_keras.errors import UserError, first_line
from lenet_keras.training.artifacts import METRICS_FILE, PREDICTIONS_FILE

METRICS_KEYS = ("dataset", "epochs_run", "params", "trainable_params", "best_val_accuracy",
                "best_epoch", "test_accuracy", "test_top5_accuracy", "history", "class_names")


@dataclasses.dataclass
class Run:
    name: str
    metrics: Optional[dict] = None  # None: the run is missing or unreadable, see `problem`
    predictions: Optional[Dict[str, np.ndarray]] = None
    problem: Optional[str] = None


def _train_command(model_dir: str, exp: str = "all") -> str:
    return f"`python -m lenet_keras.train --exp {exp} --model_dir {model_dir}`"


def load_run(model_dir: str, name: str) -> Run:
    """One experiment's outputs; a missing or broken run becomes a Run with a `problem`, not an error."""
    exp_dir = os.path.join(model_dir, name)
    metrics_path = os.path.join(exp_dir, METRICS_FILE)
    if not os.path.exists(metrics_path):
        return Run(name, problem=f"missing: run {_train_command(model_dir, name)}")
    try:
        with open(metrics_path) as f:
            metrics = json.load(f)
        absent = [key for key in METRICS_KEYS if key not in metrics]
        if absent:
            raise ValueError(f"no {', '.join(absent)}")
    except (OSError, ValueError) as exc:
        return Run(name, problem=f"unreadable {METRICS_FILE} ({first_line(exc, 100)}): train it again "
                                 f"with {_train_command(model_dir, name)}")
    run = Run(name, metrics=metrics)
    try:
        with np.load(os.path.join(exp_dir, PREDICTIONS_FILE)) as npz:
            run.predictions = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as exc:
        run.problem = f"no usable {PREDICTIONS_FILE} ({first_line(exc, 100)}): pictures skipped"
    return run


def find_runs(model_dir: str, study_order: Sequence[str] = ()) -> List[Run]:
    """The experiments of ``study_order`` in that order (one not trained yet says how to train it),
    then any other run found in ``model_dir``, by name."""
    if not os.path.isdir(model_dir):
        what = "is not a directory" if os.path.exists(model_dir) else "does not exist"
        raise UserError(f"--model_dir {model_dir} {what}: train first with {_train_command(model_dir)}")
    extra = sorted(
        name for name in os.listdir(model_dir)
        if name not in study_order and os.path.isfile(os.path.join(model_dir, name, METRICS_FILE))
    )
    runs = [load_run(model_dir, name) for name in (*study_order, *extra)]
    if not any(run.metrics for run in runs):
        raise UserError(
            f"no finished runs in {model_dir} (no <exp>/{METRICS_FILE}): "
            f"train first with {_train_command(model_dir)}"
        )
    return runs
