"""What a finished training run leaves in ``<model_dir>/<exp>/``, and how others read it.

Kept free of TensorFlow so the report, serving and resume code can share it without importing
the trainer.
"""

from __future__ import annotations

import json
import os
from typing import List, Optional

from lenet_keras.errors import UserError

MODEL_FILE = "model.keras"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.json"
PREDICTIONS_FILE = "predictions.npz"
STAGING = ".staging"  # an unfinished run's files; see lenet_keras.training.resume
# Published in this order, metrics.json last: its presence means the run finished.
PUBLISHED = (MODEL_FILE, PREDICTIONS_FILE, CONFIG_FILE, METRICS_FILE)


def experiment_dir(model_dir: str, name: str) -> str:
    return os.path.join(model_dir, name)


def finished_metrics(exp_dir: str, config) -> Optional[dict]:
    """metrics.json of a finished run of exactly ``config`` in ``exp_dir``, else None."""
    try:
        with open(os.path.join(exp_dir, METRICS_FILE)) as f:
            metrics = json.load(f)
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) and metrics.get("config") == config.to_dict() else None


def class_names_beside(model_path: str, num_classes: int) -> List[str]:
    """Label names from the metrics.json that training wrote beside ``model_path``."""
    metrics_path = os.path.join(os.path.dirname(os.path.abspath(model_path)), METRICS_FILE)
    try:
        with open(metrics_path) as f:
            names = json.load(f)["class_names"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(
            f"cannot read class_names from {metrics_path}, which training writes beside "
            f"{os.path.basename(model_path)}: use a model that lenet_keras.train produced"
        ) from None
    if len(names) != num_classes:
        raise UserError(f"{metrics_path} lists {len(names)} class names but the model has "
                        f"{num_classes} outputs: the two files come from different runs")
    return [str(n) for n in names]
