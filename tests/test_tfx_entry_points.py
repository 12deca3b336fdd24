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
from lenet_keras.data import synthetic
from lenet_keras.errors import UserError
from lenet_keras.search import space as hparams


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


def serve(saved_model_dir, n, size=32):
    """Calls the SavedModel's serving_default signature, as TF Serving does: the serving contract
    of `lenet_keras.export` (uint8 images of any size in; probabilities and class names out)."""
    signature = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    outputs = signature(images=tf.zeros((n, size, size, 3), tf.uint8))
    assert set(outputs) == {"probabilities", "class_ids", "class_names"}
    assert outputs["probabilities"].dtype == tf.float32
    return outputs["probabilities"], [name.decode() for name in outputs["class_names"].numpy()]


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
    probabilities, names = serve(args.serving_model_dir, 2)
    assert probabilities.shape == (2, 100) and set(names) <= set(synthetic.CIFAR100_FINE)

    source = os.path.join(args.working_dir, "tuned", "model.keras")
    t_args = fn_args(tmp_path / "transfer", data_dir, base_model=source)
    t_metrics = transfer.run_fn(t_args)
    assert t_metrics["source_model"] == source
    assert t_metrics["trainable_params"] == 64 * 10 + 10  # only the new head over Dense 64
    probabilities, names = serve(t_args.serving_model_dir, 1, size=96)
    assert probabilities.shape == (1, 10) and names[0] in synthetic.STL10_CLASSES


def test_vanilla_run_fn_trains_its_own_config(tmp_path, data_dir):
    args = fn_args(tmp_path, data_dir, train_steps=1)
    metrics = vanilla.run_fn(args)
    assert metrics["config"] == experiments.get_config("vanilla").replace(epochs=1).to_dict()
    assert metrics["params"] == 69_656 and metrics["epochs_run"] == 1
    probabilities, _ = serve(args.serving_model_dir, 3, size=20)
    assert probabilities.shape == (3, 100)


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
