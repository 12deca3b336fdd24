"""TFX's Trainer and Tuner entry points, behind ``experiments/<name>.py``'s ``run_fn``/``tuner_fn``.

``fn_args`` is TFX's FnArgs (or anything with its attribute names). Attributes used:

- ``train_files`` / ``eval_files``: ExampleGen's gzipped TFRecords of tf.Example, one file pattern
  per split (``<uri>/Split-<name>/*``). ``eval_files`` is the validation split, which picks the best
  epoch (and the Tuner's trials); a ``Split-test`` pattern among them (a Trainer given
  ``eval_args`` splits ``['eval', 'test']``) is read only by the final test evaluation. Without
  files, the data comes from TFDS (``custom_config['data_dir']``), as for ``lenet_keras.train``.
- ``custom_config``: ``data_dir`` (the TFDS data dir; with files it names the classes: they are
  the labels of the experiment's TFDS data set, read from its info there), ``epochs`` (a cap on
  the epochs of every Trainer and of the Tuner), ``precision`` (as ``--precision``), and for the
  Tuner ``tuner``, ``max_trials``, ``max_epochs`` and ``tune_dir`` (keras-tuner's project
  folder; TFX deletes its ``working_dir`` after the run, so a failed Tuner resumes only from a
  ``tune_dir``); other keys (``code_version``) only change TFX's cache key.
- ``hyperparameters``: keras-tuner HyperParameters, or their ``get_config()`` dict as TFX passes.
- ``train_steps`` (run_fn: total batches, rounded up to whole epochs; tuner_fn: steps per epoch),
  ``eval_steps`` (tuner_fn only).
- ``base_model``: the upstream Trainer's model (its ``Format-Serving`` SavedModel, which carries the
  Keras model), transfer's source.
- ``serving_model_dir``: run_fn exports the serving contract of ``lenet_keras.export`` there;
  ``model_run_dir`` (or ``working_dir``): the run's ``<exp>/`` artifacts and TensorBoard logs.
"""

from __future__ import annotations

import collections
import math
import os
from typing import List, Optional, Tuple

from lenet_keras import data
from lenet_keras.config import ExperimentConfig
from lenet_keras.data import tf_examples, tfds_source
from lenet_keras.data.tail import Splits
from lenet_keras.errors import UserError, first_line
from lenet_keras.search import space
from lenet_keras.training import precision

# The shape of tfx.components.TunerFnResult, without importing TFX.
TunerFnResult = collections.namedtuple("TunerFnResult", ["tuner", "fit_kwargs"])
TEST_SPLIT = "Split-test"


def _custom_config(fn_args) -> dict:
    return dict(getattr(fn_args, "custom_config", None) or {})


def _configure(config: ExperimentConfig, fn_args, custom: dict) -> Tuple[ExperimentConfig,
                                                                         precision.Choice]:
    """``config`` under the requested precision and the Tuner's hyperparameters, if any."""
    choice = precision.resolve(custom.get("precision", "float32"))
    config = config.replace(precision=choice.policy)
    if getattr(fn_args, "hyperparameters", None) is not None:
        config = space.apply(config, fn_args.hyperparameters)
    return config, choice


def _class_names(config: ExperimentConfig, data_dir: Optional[str]) -> List[str]:
    builder = tfds_source.builder_of(config.dataset, tfds_source.default_data_dir(data_dir))
    try:
        return list(builder.info.features["label"].names)
    except (KeyError, AttributeError) as exc:
        raise UserError(f"TFDS data set {config.dataset} names no classes ({first_line(exc)}): "
                        "the examples must come from a TFDS image classifier") from None


def _example_splits(config: ExperimentConfig, fn_args, custom: dict,
                    with_test: bool = True) -> Optional[Splits]:
    """The ExampleGen files as Splits, or None when there are none (TFDS is read instead)."""
    train_files = list(getattr(fn_args, "train_files", None) or [])
    eval_files = list(getattr(fn_args, "eval_files", None) or [])
    if not train_files and not eval_files:
        return None
    test_files = [pattern for pattern in eval_files if TEST_SPLIT in pattern.split(os.sep)]
    val_files = [pattern for pattern in eval_files if pattern not in test_files]
    if not train_files or not val_files:
        raise UserError(
            f"fn_args has train_files {train_files} and eval_files {eval_files}: give both a "
            "training split and a validation split (eval_args splits ['eval'], or ['eval', 'test'] "
            "for a Trainer to also evaluate on test)"
        )
    names = _class_names(config, custom.get("data_dir"))
    return tf_examples.load_splits(config, train_files, val_files,
                                   test_files if with_test else None, names)


def _epochs(config: ExperimentConfig, train_steps, custom: dict, splits: Optional[Splits],
            data_dir) -> int:
    """The Trainer's epochs: TFX's train_steps (batches over the whole run) rounded up to whole
    epochs, since the checkpoint keeps the best epoch; then custom_config's ``epochs`` cap."""
    epochs = config.epochs
    if train_steps:
        if splits is not None:
            examples = splits.train_examples
        else:
            builder = tfds_source.ensure_available(config.dataset, data_dir)
            examples = builder.info.splits[config.train_split].num_examples
        epochs = max(1, math.ceil(train_steps / math.ceil(examples / config.batch_size)))
    if custom.get("epochs"):
        epochs = min(epochs, int(custom["epochs"]))
    return epochs


def run_fn(config: ExperimentConfig, fn_args) -> dict:
    """Trains ``config`` and exports the best-validation model; returns metrics.json's dict.

    ``eval_steps`` is not used: validation and test always cover their whole splits, so scores
    stay comparable between runs.
    """
    from lenet_keras.models import load_classifier
    from lenet_keras.serving.export import write_saved_model
    from lenet_keras.training.artifacts import MODEL_FILE, experiment_dir
    from lenet_keras.training.run import run_experiment

    custom = _custom_config(fn_args)
    model_dir = getattr(fn_args, "working_dir", None) or getattr(fn_args, "model_run_dir", None)
    if not model_dir or not getattr(fn_args, "serving_model_dir", None):
        raise UserError("fn_args needs model_run_dir (or working_dir) and serving_model_dir")
    config, choice = _configure(config, fn_args, custom)
    splits = _example_splits(config, fn_args, custom)
    data_dir = custom.get("data_dir")
    config = config.replace(
        epochs=_epochs(config, getattr(fn_args, "train_steps", None), custom, splits, data_dir))
    metrics = run_experiment(
        config, data_dir, model_dir, source_model=getattr(fn_args, "base_model", None),
        precision_choice=choice, splits=splits,
    )
    model = load_classifier(os.path.join(experiment_dir(model_dir, config.name), MODEL_FILE))
    write_saved_model(model, metrics["class_names"], fn_args.serving_model_dir)
    return metrics


def tuner_fn(config: ExperimentConfig, fn_args) -> TunerFnResult:
    """A keras-tuner tuner over the search space, in ``<tune_dir>/lenet5``, and its fit kwargs.

    ``train_steps`` / ``eval_steps``, when given, become steps_per_epoch / validation_steps, as in
    TFX's own examples; custom_config picks ``tuner`` (default hyperband), ``max_trials`` and
    ``max_epochs`` (default the config's epochs) with the meaning of the tune CLI's flags. The test
    split is never read here.
    """
    from lenet_keras.search import tuner as tuning

    custom = _custom_config(fn_args)
    config, _ = _configure(config, fn_args, custom)

    def load() -> Splits:
        return _example_splits(config, fn_args, custom, with_test=False) or data.load_splits(
            config, custom.get("data_dir"))

    splits = load()
    max_epochs = int(custom.get("max_epochs", config.epochs))
    if custom.get("epochs"):
        max_epochs = min(max_epochs, int(custom["epochs"]))
    tune_dir = custom.get("tune_dir") or getattr(fn_args, "working_dir", None)
    if not tune_dir:
        raise UserError("fn_args needs working_dir, or custom_config['tune_dir']")
    tuner = tuning.make_tuner(
        custom.get("tuner", "hyperband"), config, splits.num_classes, tune_dir,
        max_trials=custom.get("max_trials"), max_epochs=max_epochs, seed=config.seed,
        fresh_train=lambda: load().train,
    )
    fit_kwargs = {"x": splits.train, "validation_data": splits.val, "epochs": max_epochs}
    if getattr(fn_args, "train_steps", None):
        fit_kwargs["steps_per_epoch"] = fn_args.train_steps
    if getattr(fn_args, "eval_steps", None):
        fit_kwargs["validation_steps"] = fn_args.eval_steps
    return TunerFnResult(tuner=tuner, fit_kwargs=fit_kwargs)
