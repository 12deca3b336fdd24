"""TFX-style run_fn / tuner_fn of the experiment modules, called with a stand-in for TFX's FnArgs."""

import dataclasses
import json
import os
from typing import Any, Optional

import keras_tuner as kt
import pytest
import tensorflow as tf

import experiments
from experiments import transfer, tuned, vanilla
from lenet_keras import hparams, tfx_fns
from lenet_keras.errors import UserError


@dataclasses.dataclass
class FnArgs:
    """The attributes of tfx.components.FnArgs these modules read; TFX does not install here."""

    working_dir: str
    serving_model_dir: str
    custom_config: dict
    hyperparameters: Any = None
    train_steps: Optional[int] = None
    eval_steps: Optional[int] = None
    base_model: Optional[str] = None
    train_files: list = dataclasses.field(default_factory=list)
    eval_files: list = dataclasses.field(default_factory=list)


def fn_args(tmp_path, data_dir, **kwargs):
    return FnArgs(str(tmp_path / "work"), str(tmp_path / "serving"), {"data_dir": data_dir},
                  **kwargs)


def serve(saved_model_dir, n):
    """Calls the SavedModel's serving_default signature, as TF Serving does."""
    signature = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    (output,) = signature(images=tf.zeros((n, 32, 32, 3), tf.uint8)).values()
    return output


def test_tuned_then_transfer_run_fn_train_and_export(tmp_path, data_dir):
    hp = hparams.define_search_space(kt.HyperParameters())
    hp.values.update(activation="tanh", pooling="average", batch_norm=False,
                     hidden_units="128x64", learning_rate=5e-4)
    # TFX hands run_fn the tuner's best hyperparameters as their get_config() dict.
    args = fn_args(tmp_path / "tuned", data_dir, hyperparameters=hp.get_config(), train_steps=6)
    metrics = tuned.run_fn(args)
    # 288 train examples / batch 64 = 5 steps an epoch: 6 steps need 2 whole epochs.
    assert metrics["epochs_run"] == 2
    assert metrics["config"]["hidden_units"] == [128, 64]
    assert metrics["config"]["learning_rate"] == pytest.approx(5e-4)
    assert serve(args.serving_model_dir, 2).shape == (2, 100)

    source = os.path.join(args.working_dir, "tuned", "model.keras")
    t_args = fn_args(tmp_path / "transfer", data_dir, base_model=source)
    t_metrics = transfer.run_fn(t_args)
    assert t_metrics["source_model"] == source
    assert t_metrics["trainable_params"] == 64 * 10 + 10  # only the new head over Dense 64
    assert serve(t_args.serving_model_dir, 1).shape == (1, 10)


def test_vanilla_run_fn_trains_its_own_config(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(tfx_fns, "run_fn", lambda config, args: seen.setdefault("c", config))
    assert vanilla.run_fn(object()) is experiments.get_config("vanilla")


def test_tuner_fn_returns_a_runnable_tuner_and_fit_kwargs(tmp_path, data_dir):
    args = fn_args(tmp_path, data_dir, eval_steps=1)
    args.custom_config.update(tuner="random", max_trials=1, max_epochs=1)
    result = tuned.tuner_fn(args)
    assert isinstance(result.tuner, kt.RandomSearch)
    assert result.fit_kwargs["epochs"] == 1 and result.fit_kwargs["validation_steps"] == 1
    result.tuner.search(**result.fit_kwargs, verbose=0)
    trials = result.tuner.oracle.trials
    assert [t.status for t in trials.values()] == ["COMPLETED"]
    oracle = json.load(open(os.path.join(args.working_dir, "lenet5", "oracle.json")))
    assert set(oracle["hyperparameters"]["values"]) >= set(hparams.NAMES)


def test_example_files_are_refused_with_a_clear_error(tmp_path, data_dir):
    args = fn_args(tmp_path, data_dir, train_files=["/pipeline/Transform/train/*.gz"])
    with pytest.raises(UserError, match="through TFDS"):
        tuned.run_fn(args)
    with pytest.raises(UserError, match="through TFDS"):
        tuned.tuner_fn(args)
