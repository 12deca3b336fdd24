"""What export's flags may say, in one place: the command checks its flags against these before
TensorFlow is imported, and the library checks its arguments against the same (TFX and tests call it
without the command)."""

from __future__ import annotations

import os

QUANTIZATIONS = ("none", "float16", "int8")  # LiteRT: float32, float16 weights, full-integer int8
MODEL_NAME_RULE = ("--model_name must be one folder name under --export_base, as TF Serving names a "
                   "model: not empty, no '/', not starting with '.' (e.g. lenet_tuned)")


def is_model_name(name: str) -> bool:
    """Whether ``name`` is a model folder name: one visible folder (a hidden one holds an export
    being written, and ``..`` would leave --export_base)."""
    return bool(name) and "/" not in name and os.sep not in name and not name.startswith(".")
