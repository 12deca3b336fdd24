"""The architecture search space, and the one mapping from its hyperparameters to config fields.

keras-tuner's ``HyperParameters``, TFX's ``fn_args.hyperparameters`` (a ``get_config()`` dict) and
``best_hyperparameters.json`` all become ExperimentConfig fields through ``config_overrides``, and
the model is then built by ``models.build_from_config``: the search space and the trained
architecture cannot drift apart (``build_hypermodel`` is what the tuner runs). Nothing here
imports keras_tuner or TensorFlow at module level, so reading an hparams file (``train --hparams``)
stays cheap.
"""

from __future__ import annotations

import json
import math
from typing import Mapping

from lenet_keras.config import ACTIVATIONS, POOLINGS, ExperimentConfig
from lenet_keras.errors import UserError, first_line

# keras-tuner choices must be scalars, so each hidden-layer stack is named by its sizes.
HIDDEN_UNITS = {
    "120x84": (120, 84),  # classic LeNet-5
    "64x128": (64, 128),  # the seed's tuned variant
    "128x64": (128, 64),
}
# Log-uniform around the seed's 1e-3, half a decade each side.
LEARNING_RATE_RANGE = (3e-4, 3e-3)
NAMES = ("activation", "pooling", "batch_norm", "hidden_units", "learning_rate")


def define_search_space(hp):
    """Registers every searched decision on ``hp`` (a keras_tuner.HyperParameters); returns hp."""
    hp.Choice("activation", list(ACTIVATIONS))
    hp.Choice("pooling", list(POOLINGS))
    hp.Boolean("batch_norm")
    hp.Choice("hidden_units", list(HIDDEN_UNITS))
    hp.Float("learning_rate", *LEARNING_RATE_RANGE, sampling="log", default=1e-3)
    return hp


def build_hypermodel(hp, num_classes: int, base_config: ExperimentConfig):
    """The compiled model keras-tuner's ``hp`` (or a TFX/best_hyperparameters dict) describes.

    Called with a ``keras_tuner.HyperParameters`` it also declares the search space, so this is
    the hypermodel the tuner runs; every value goes through ``apply`` to the same config fields
    and ``models.build_from_config`` that training uses.
    """
    from lenet_keras import models

    if hasattr(hp, "Choice"):
        define_search_space(hp)
    config = apply(base_config, hp)
    return models.compile_from_config(models.build_from_config(config, num_classes), config)


def hidden_units_name(units) -> str:
    return "x".join(str(int(u)) for u in units)


def _values(hparams) -> Mapping:
    """The chosen values of a HyperParameters, a TFX hyperparameters dict, or a plain dict."""
    if hasattr(hparams, "values") and not isinstance(hparams, Mapping):
        return hparams.values
    if isinstance(hparams, Mapping) and isinstance(hparams.get("values"), Mapping):
        return hparams["values"]
    if isinstance(hparams, Mapping):
        return hparams
    raise UserError(f"hyperparameters must be a mapping of {', '.join(NAMES)}, got {type(hparams)}")


def _shown(value, limit: int = 60) -> str:
    """A value from a file, quoted and cut short, for a one-line error."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def config_overrides(hparams) -> dict:
    """ExperimentConfig fields for the searched decisions; UserError names what is missing or wrong."""
    values = _values(hparams)
    missing = [name for name in NAMES if name not in values]
    if missing:
        raise UserError(
            f"hyperparameters lack {', '.join(missing)}: they must come from "
            "`python -m lenet_keras.tune` (its best_hyperparameters.json)"
        )
    problems = []
    # Each value must be of the type and among the values the search space itself offers (a
    # JSON list or number where a choice's name belongs would otherwise fail deep in Keras).
    for name, choices in (("activation", ACTIVATIONS), ("pooling", POOLINGS),
                          ("hidden_units", tuple(HIDDEN_UNITS))):
        if not isinstance(values[name], str) or values[name] not in choices:
            problems.append(f"{name} {_shown(values[name])} is not one of {', '.join(choices)}")
    if not isinstance(values["batch_norm"], bool):
        problems.append(f"batch_norm {_shown(values['batch_norm'])} is not true/false")
    lr = values["learning_rate"]
    low, high = LEARNING_RATE_RANGE
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr):
        problems.append(f"learning_rate {_shown(lr)} is not a number")
    elif not low <= lr <= high:
        problems.append(f"learning_rate {lr!r} is outside the searched range [{low}, {high}] "
                        "(train's --learning_rate sets any other)")
    if problems:
        raise UserError("bad hyperparameters: " + "; ".join(problems))
    return {
        "activation": values["activation"],
        "pooling": values["pooling"],
        "batch_norm": values["batch_norm"],
        "hidden_units": HIDDEN_UNITS[values["hidden_units"]],
        "learning_rate": float(lr),
    }


def apply(config: ExperimentConfig, hparams) -> ExperimentConfig:
    """``config`` with its architecture and learning rate taken from ``hparams``."""
    return config.replace(**config_overrides(hparams))


def load(path: str) -> dict:
    """Reads a best_hyperparameters.json; a missing, malformed or foreign file is a UserError."""
    hint = "pass the best_hyperparameters.json that `python -m lenet_keras.tune` wrote"
    try:
        with open(path) as f:
            payload = json.load(f)
    except FileNotFoundError:
        raise UserError(f"hparams file {path} does not exist: {hint}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"hparams file {path} is not readable JSON ({first_line(exc)}): {hint}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("values"), dict):
        raise UserError(f"hparams file {path} has no hyperparameter 'values': {hint}")
    try:
        config_overrides(payload)
    except UserError as exc:
        raise UserError(f"hparams file {path}: {exc}") from None
    return payload


def apply_file(configs, path: str) -> list:
    """``train --hparams``: the tuned experiment takes the file's architecture and learning rate.

    A transfer config whose source is tuned takes the architecture only: its fields describe the
    source model, while its own learning rate trains the new head.
    """
    if not any(c.name == "tuned" for c in configs):
        raise UserError("--hparams sets the tuned experiment's architecture: use it with "
                        "--exp tuned or --exp all")
    overrides = config_overrides(load(path))
    architecture = {k: v for k, v in overrides.items() if k != "learning_rate"}
    return [
        c.replace(**overrides) if c.name == "tuned"
        else c.replace(**architecture) if c.source_experiment == "tuned"
        else c
        for c in configs
    ]
