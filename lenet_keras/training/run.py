"""One experiment, start to finish: data, model, fit with a best-val checkpoint, test, artifacts.

Artifacts of a run go to ``<model_dir>/<exp>/``; while it runs they are written into
``<model_dir>/<exp>/.staging/`` and only published into place (``atomic``: temporary file, then
rename, one file at a time) after the test evaluation succeeded, so a failed or interrupted run
never touches the model of an earlier good run. A killed run resumes when started again
(``resume``), and only one run at a time may use an experiment directory (``runlock``).
"""

from __future__ import annotations

import math
import os
import time
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from lenet_keras import data, models
from lenet_keras.config import ExperimentConfig
from lenet_keras.data import labels, tfds_source
from lenet_keras.data.tail import Splits
from lenet_keras.errors import UserError, first_line
from lenet_keras.training import atomic, distribute, precision, resume, runlock
from lenet_keras.training.artifacts import (
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    PREDICTIONS_FILE,
    PUBLISHED,
    STAGING,
    experiment_dir,
)

SAMPLE_IMAGES = 64  # test images kept beside the predictions, for the report's picture grid


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of each epoch's training pass; Keras validates before on_epoch_end."""

    def __init__(self):
        super().__init__()
        self.seconds = []
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_test_begin(self, logs=None):
        if self._start is not None:  # only the validation that closes a training epoch
            self.seconds.append(time.perf_counter() - self._start)
            self._start = None

    def on_epoch_end(self, epoch, logs=None):
        self.on_test_begin()  # an epoch without validation data ends its training pass here


def default_source_model(model_dir: str, config: ExperimentConfig) -> str:
    return os.path.join(experiment_dir(model_dir, config.source_experiment), MODEL_FILE)


def check_source_model(config: ExperimentConfig, source_model: Optional[str]) -> None:
    """Fails before any data is read when transfer has nothing to start from."""
    if config.source_experiment is not None and not os.path.exists(source_model):
        raise UserError(
            f"transfer needs a trained {config.source_experiment} model, but {source_model} does "
            f"not exist: run `python -m lenet_keras.train --exp {config.source_experiment}` first "
            "or pass --source_model"
        )


def build_model(config: ExperimentConfig, num_classes: int, source_model: Optional[str]):
    if config.source_experiment is None:
        return models.build_from_config(config, num_classes)
    source = models.load_classifier(source_model)
    want = (None, config.image_size, config.image_size, 3)
    got = tuple(source.inputs[0].shape)
    if got != want:
        raise UserError(
            f"{source_model} takes inputs of shape {got}, but transfer needs {want}: pass a model "
            f"trained by `--exp {config.source_experiment}` (or any "
            f"{config.image_size}x{config.image_size}x3 image classifier)"
        )
    return models.build_transfer_model(source, num_classes, config.freeze, config.precision)


def _data_loss_reason(exc: tf.errors.DataLossError) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if "record" in line or "corrupt" in line.lower()]
    return first_line(Exception((useful or lines or ["data loss"])[-1]))  # without TF's op text


def _predict_test(model: keras.Model, test: tf.data.Dataset) -> dict:
    probabilities, labels, images = [], [], []
    for x, y in test:
        probabilities.append(model.predict_on_batch(x))
        labels.append(y.numpy())
        if sum(len(i) for i in images) < SAMPLE_IMAGES:
            images.append(x.numpy()[:SAMPLE_IMAGES])
    probabilities = np.concatenate(probabilities)
    return {
        "labels": np.concatenate(labels).astype(np.int32),
        "predictions": probabilities.argmax(axis=1).astype(np.int32),
        # Top-5 with their probabilities is all the report needs; the full matrix is 100x larger.
        "top5": np.argsort(-probabilities, axis=1)[:, :5].astype(np.int32),
        "top5_probabilities": -np.sort(-probabilities, axis=1)[:, :5].astype(np.float32),
        "sample_images": np.concatenate(images)[:SAMPLE_IMAGES],
    }


def _number(value) -> Optional[float]:
    return None if value is None else float(value)


def run_experiment(
    config: ExperimentConfig,
    data_dir: Optional[str] = None,
    model_dir: str = "saved_models",
    source_model: Optional[str] = None,
    verbose: int = 2,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
    strategy: Optional[tf.distribute.Strategy] = None,
    fresh: bool = False,
    precision_choice: Optional[precision.Choice] = None,
    splits: Optional[Splits] = None,
) -> dict:
    """Trains ``config``, evaluates the best-validation weights on test; returns metrics.json's dict.

    Resumes an unfinished run of the same config in ``model_dir`` unless ``fresh``.
    ``precision_choice``: how ``--precision`` became ``config.precision``, for metrics.json.
    ``splits``: the data, when it does not come from ``config``'s source (TFX's ExampleGen files);
    without a test split nothing is evaluated on test and no predictions.npz is written.
    """
    # Under a strategy (lenet_keras.training.distribute) config.batch_size is the global batch.
    strategy = strategy or tf.distribute.get_strategy()
    config.validate()
    # A worker other than the chief trains in a private copy of the chief's resume state.
    exp_dir = distribute.write_dir(experiment_dir(model_dir, config.name), strategy, (STAGING,))
    with runlock.RunLock(exp_dir):
        return _run_locked(config, data_dir, model_dir, exp_dir, source_model, verbose,
                           extra_callbacks, strategy, fresh, precision_choice, splits)


def _run_locked(config, data_dir, model_dir, exp_dir, source_model, verbose, extra_callbacks,
                strategy, fresh, precision_choice=None, splits=None) -> dict:
    keras.utils.set_random_seed(config.seed)
    if config.source_experiment is not None:
        source_model = source_model or default_source_model(model_dir, config)
    check_source_model(config, source_model)
    state = resume.RunState(exp_dir, config, fresh=fresh)
    staging = state.staging

    from_config = splits is None
    if from_config:
        splits = data.load_splits(config, data_dir)
    with strategy.scope():
        model = build_model(config, splits.num_classes, source_model)
        models.compile_from_config(model, config)

    timer = EpochTimer()
    checkpoint = keras.callbacks.ModelCheckpoint(
        state.candidate_pattern, monitor=resume.MONITOR, mode="max", save_best_only=True,
        initial_value_threshold=state.best_value,
    )
    steps_per_epoch = math.ceil(splits.train_examples / config.batch_size)
    callbacks = [
        resume.StopOnNaN(state),
        timer,
        checkpoint,  # before the backup: it only writes a candidate that the backup then commits
        resume.ResumableBackup(state, checkpoint, timer, splits.train, steps_per_epoch,
                               iterators_per_epoch=1 if distribute.uses_custom_loop(strategy) else 2),
        keras.callbacks.TensorBoard(os.path.join(exp_dir, "logs")),
        *extra_callbacks,
    ]
    logging.info("training %s on %s: %d train / %d val / %d test examples",
                 config.name, config.dataset, splits.train_examples, splits.val_examples,
                 splits.test_examples)
    try:
        distribute.fit(
            model,
            strategy,
            splits.train,
            validation_data=splits.val,
            epochs=config.epochs,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,  # the tf.data pipeline shuffles, with the experiment's seed
        )
        best = keras.models.load_model(state.best_model_path)
        test, predictions, coarse = {}, None, None
        if splits.test is not None:
            test = best.evaluate(splits.test, return_dict=True, verbose=0)
            predictions = _predict_test(best, splits.test)
        if from_config and predictions is not None:
            coarse = data.coarse_labels(config, data_dir)
    except tf.errors.DataLossError as exc:
        raise UserError(
            f"the prepared {config.dataset} data is corrupt or truncated ({_data_loss_reason(exc)}): "
            f"move {os.path.join(tfds_source.default_data_dir(data_dir), config.dataset)} aside and "
            "let it be prepared again (the earlier results in the model dir are untouched)"
        ) from None
    except tf.errors.InvalidArgumentError as exc:
        error = labels.out_of_range(exc, "rerun the same command: it resumes this run, and the "
                                         "earlier results in the model dir are untouched")
        if error is None:
            raise
        raise error from None
    except OSError as exc:
        raise state.write_error(exc) from None

    # The state's history, not fit's History: it includes the epochs before a resume.
    val_acc = state.history["val_accuracy"]
    best_epoch = int(np.argmax(val_acc)) + 1
    trainable = int(sum(np.prod(w.shape) for w in best.trainable_weights))
    metrics = {
        "experiment": config.name,
        "dataset": config.dataset,
        # None without a test split (a TFX Trainer not given one).
        "test_accuracy": _number(test.get("accuracy")),
        "test_top5_accuracy": _number(test.get("top5_accuracy")),
        "test_loss": _number(test.get("loss")),
        "best_val_accuracy": max(val_acc),
        "best_epoch": best_epoch,
        "epochs_run": len(val_acc),
        "train_examples": splits.train_examples,
        "val_examples": splits.val_examples,
        "test_examples": splits.test_examples,
        "params": int(best.count_params()),
        "trainable_params": trainable,
        "history": state.history,
        "epoch_seconds": state.epoch_seconds,
        "class_names": splits.class_names,
        "source_model": source_model,
        "distribution": distribute.describe(strategy),
        "precision": (precision_choice or precision.Choice(config.precision, config.precision,
                                                            "the experiment's setting")).to_dict(),
        "config": config.to_dict(),
    }
    if coarse is not None:
        test_coarse, metrics["coarse_class_names"], fine_to_coarse = coarse
        predictions.update(coarse_labels=test_coarse, fine_to_coarse=fine_to_coarse)
    try:
        published = PUBLISHED
        if predictions is None:
            published = tuple(name for name in PUBLISHED if name != PREDICTIONS_FILE)
        else:
            np.savez_compressed(os.path.join(staging, PREDICTIONS_FILE), **predictions)
        atomic.write_json(os.path.join(staging, CONFIG_FILE), config.to_dict())
        atomic.write_json(os.path.join(staging, METRICS_FILE), metrics)
        # The model goes first and metrics.json last: metrics.json present means its run finished.
        # A kill in between leaves staging and the backup, so the rerun publishes them all again.
        for name in published:
            atomic.publish(os.path.join(staging, name), os.path.join(exp_dir, name))
    except OSError as exc:
        raise state.write_error(exc) from None
    state.finish()
    distribute.finish(exp_dir, strategy)
    return metrics
