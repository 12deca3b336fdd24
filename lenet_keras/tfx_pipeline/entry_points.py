"""TFX's Trainer and Tuner entry points, shared by the experiment modules in ``experiments/``.

``experiments/<name>.py`` exposes ``run_fn(fn_args)`` (and ``tuner_fn`` for tuned) by passing its
CONFIG here. ``fn_args`` is anything carrying TFX FnArgs' attribute names; TFX itself is not a
dependency. Attributes used:

- ``working_dir``: where training writes ``<working_dir>/<exp>/`` (or the tuner its project);
- ``serving_model_dir``: where run_fn exports the best model as a SavedModel;
- ``hyperparameters``: keras-tuner HyperParameters, or their ``get_config()`` dict as TFX passes;
- ``train_steps`` / ``eval_steps``: see run_fn / tuner_fn;
- ``base_model``: TFX's warm-start model, used by transfer as its source model;
- ``custom_config``: ``data_dir`` (TFDS), ``precision`` (as ``--precision``, default float32), and
  for tuner_fn ``tuner``, ``max_trials``, ``max_epochs``;
- ``train_files`` / ``eval_files``: must be absent or empty, data always comes through TFDS.
"""

from __future__ import annotations

import collections
import math
import os

from lenet_keras import data
from lenet_keras.config import ExperimentConfig
from lenet_keras.data import tfds_source
from lenet_keras.errors import UserError
from lenet_keras.search import space
from lenet_keras.training import precision

# The shape of tfx.components.TunerFnResult, without importing TFX.
TunerFnResult = collections.namedtuple("TunerFnResult", ["tuner", "fit_kwargs"])


def _custom_config(fn_args) -> dict:
    return dict(getattr(fn_args, "custom_config", None) or {})


def _precision(fn_args) -> precision.Choice:
    return precision.resolve(_custom_config(fn_args).get("precision", "float32"))


def _check_no_example_files(fn_args) -> None:
    for name in ("train_files", "eval_files"):
        if getattr(fn_args, name, None):
            raise UserError(
                f"fn_args.{name} is set, but these modules read their data through TFDS: leave it "
                "empty and pass custom_config={'data_dir': <TFDS data dir>}"
            )


def _epochs_for_steps(config: ExperimentConfig, train_steps: int, data_dir) -> int:
    """TFX's train_steps counts batches over the whole run; the experiment counts epochs."""
    builder = tfds_source.ensure_available(config.dataset, data_dir)
    examples = builder.info.splits[config.train_split].num_examples
    return max(1, math.ceil(train_steps / math.ceil(examples / config.batch_size)))


def run_fn(config: ExperimentConfig, fn_args) -> dict:
    """Trains ``config`` (with fn_args.hyperparameters applied, if any) and exports the best model.

    ``train_steps``, when given, sets the number of epochs (rounded up to whole epochs, because
    the checkpoint keeps the best epoch); ``eval_steps`` is not used: validation and test always
    cover their whole splits, so scores stay comparable between runs. Returns metrics.json's dict.
    """
    from lenet_keras.serving.export import load_trained, write_saved_model
    from lenet_keras.training.artifacts import MODEL_FILE, experiment_dir
    from lenet_keras.training.run import run_experiment

    _check_no_example_files(fn_args)
    data_dir = _custom_config(fn_args).get("data_dir")
    choice = _precision(fn_args)
    config = config.replace(precision=choice.policy)
    if getattr(fn_args, "hyperparameters", None) is not None:
        config = space.apply(config, fn_args.hyperparameters)
    train_steps = getattr(fn_args, "train_steps", None)
    if train_steps:
        config = config.replace(epochs=_epochs_for_steps(config, train_steps, data_dir))
    model_dir = getattr(fn_args, "working_dir", None) or getattr(fn_args, "model_run_dir", None)
    if not model_dir or not getattr(fn_args, "serving_model_dir", None):
        raise UserError("fn_args needs working_dir and serving_model_dir")
    metrics = run_experiment(
        config, data_dir, model_dir, source_model=getattr(fn_args, "base_model", None),
        precision_choice=choice,
    )
    model, class_names = load_trained(
        os.path.join(experiment_dir(model_dir, config.name), MODEL_FILE))
    write_saved_model(model, class_names, fn_args.serving_model_dir)
    return metrics


def tuner_fn(config: ExperimentConfig, fn_args) -> TunerFnResult:
    """A keras-tuner tuner over the search space, in ``<working_dir>/lenet5``, and its fit kwargs.

    ``train_steps`` / ``eval_steps``, when given, become steps_per_epoch / validation_steps, as in
    TFX's own examples; custom_config picks ``tuner`` (default hyperband), ``max_trials`` and
    ``max_epochs`` (default the config's epochs) with the meaning of the tune CLI's flags.
    """
    from lenet_keras.search import tuner as tuning

    _check_no_example_files(fn_args)
    custom = _custom_config(fn_args)
    config = config.replace(precision=_precision(fn_args).policy)
    splits = data.load_splits(config, custom.get("data_dir"))
    max_epochs = int(custom.get("max_epochs", config.epochs))
    tuner = tuning.make_tuner(
        custom.get("tuner", "hyperband"), config, splits.num_classes, fn_args.working_dir,
        max_trials=custom.get("max_trials"), max_epochs=max_epochs, seed=config.seed,
        fresh_train=lambda: data.load_splits(config, custom.get("data_dir")).train,
    )
    fit_kwargs = {"x": splits.train, "validation_data": splits.val, "epochs": max_epochs}
    if getattr(fn_args, "train_steps", None):
        fit_kwargs["steps_per_epoch"] = fn_args.train_steps
    if getattr(fn_args, "eval_steps", None):
        fit_kwargs["validation_steps"] = fn_args.eval_steps
    return TunerFnResult(tuner=tuner, fit_kwargs=fit_kwargs)
