"""--precision: auto's choice on given hardware, every policy through train, save, export and serve,
transfer across policies, loss scaling in the custom loop, and exact resume of mixed runs."""

from __future__ import annotations

import json
import logging
import os
import re
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from lenet_keras import experiments, models
from lenet_keras.config import PRECISIONS
from lenet_keras.errors import UserError
from lenet_keras.experiments import vanilla as vanilla_module
from lenet_keras.training import custom_loop, precision
from lenet_keras.training.run import run_experiment
from tests.conftest import run_cli

pytestmark = pytest.mark.slow  # each test trains models: seconds each (the fast set stays under 2 minutes)

AMX_XEON = {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}
ZEN4 = {"avx512f", "avx512_bf16", "avx512_vnni"}
AVX2_EPYC = {"avx2", "fma", "sse4_2"}


@pytest.mark.parametrize("cpu, gpus, onednn, policy, because", [
    (AMX_XEON, [], True, "mixed_bfloat16", "the CPU has amx_bf16 and avx512_bf16"),
    (ZEN4, [], True, "mixed_bfloat16", "the CPU has avx512_bf16"),
    (AVX2_EPYC, [], True, "float32", "neither amx_bf16 nor avx512_bf16"),
    (ZEN4, [], False, "float32", "TF_ENABLE_ONEDNN_OPTS=0"),
    (AVX2_EPYC, [(8, 0)], True, "mixed_bfloat16", "compute capability 8.0"),
    (AMX_XEON, [(7, 5)], True, "float32", "compute capability 7.5"),  # a T4 trains, not the CPU
    (AVX2_EPYC, [(9, 0), (7, 0)], True, "float32", "compute capability 7.0"),  # all GPUs train
])
def test_auto_picks_bfloat16_only_where_the_training_device_computes_it(
        cpu, gpus, onednn, policy, because, caplog):
    caplog.set_level(logging.INFO, logger="absl")
    choice = precision.resolve("auto", cpu=cpu, gpus=gpus, onednn=onednn)
    assert (choice.policy, choice.requested) == (policy, "auto")
    assert because in choice.reason
    assert f"precision auto: {policy}, because {choice.reason}" in caplog.text


def test_a_named_policy_is_used_as_named_whatever_the_hardware():
    for policy in PRECISIONS:
        choice = precision.resolve(policy, cpu=AVX2_EPYC, gpus=[], onednn=True)
        assert choice == precision.Choice(policy, policy, "requested")


def test_onednn_follows_the_users_variable(monkeypatch):
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert not precision.onednn_enabled()
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    assert precision.onednn_enabled()


def test_unknown_precision_is_one_clear_error_and_auto_never_reaches_a_config():
    with pytest.raises(UserError, match="--precision must be one of float32, mixed_bfloat16, "
                                        "mixed_float16, auto, got 'bf16'"):
        precision.resolve("bf16")
    with pytest.raises(UserError, match="precision must be one of"):
        experiments.get_config("vanilla").replace(precision="auto")


def test_the_searched_models_take_the_configs_precision():
    from lenet_keras.search import space

    hp = {"activation": "relu", "pooling": "max", "batch_norm": True, "hidden_units": "64x128",
          "learning_rate": 1e-3}
    config = experiments.get_config("tuned").replace(precision="mixed_bfloat16")
    model = space.build_hypermodel(hp, 100, config)
    assert model.get_layer("conv1").compute_dtype == "bfloat16"
    assert model.get_layer(models.HEAD_NAME).compute_dtype == "float32"


# Each policy end to end, through TFX's run_fn: it trains, publishes model.keras and metrics.json,
# and exports the SavedModel that is then served.

def _serve(saved_model_dir, images):
    loaded = tf.saved_model.load(saved_model_dir)
    return loaded, loaded.signatures["serving_default"](images=tf.constant(images))


@pytest.mark.parametrize("policy", PRECISIONS)
def test_each_policy_trains_saves_exports_and_serves_the_same_contract(policy, data_dir, tmp_path):
    args = types.SimpleNamespace(
        working_dir=str(tmp_path / "work"), serving_model_dir=str(tmp_path / "serving"),
        custom_config={"data_dir": data_dir, "precision": policy}, train_steps=1)
    metrics = vanilla_module.run_fn(args)
    assert metrics["config"]["precision"] == policy
    assert metrics["precision"] == {"policy": policy, "requested": policy, "reason": "requested"}
    assert np.isfinite(metrics["test_loss"]) and 0 <= metrics["test_top5_accuracy"] <= 1
    exp_dir = tmp_path / "work" / "vanilla"
    assert json.loads((exp_dir / "config.json").read_text())["precision"] == policy

    model = keras.models.load_model(exp_dir / "model.keras")  # compiled: its optimizer too
    assert model.get_layer("conv1").dtype_policy.name == policy
    assert model.get_layer(models.HEAD_NAME).dtype_policy.name == "float32"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (
        policy == "mixed_float16")

    images = np.random.default_rng(1).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    _, served = _serve(args.serving_model_dir, images)
    assert served["probabilities"].dtype == tf.float32
    assert served["probabilities"].shape == (3, 100)
    np.testing.assert_allclose(served["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-5)
    names = [n.decode() for n in served["class_names"].numpy()]
    assert names == [metrics["class_names"][i] for i in served["class_ids"].numpy()]
    # The SavedModel computes what the Keras model computes (same resize, same policy).
    _, same = _serve(args.serving_model_dir, images[:, :32, :32])
    np.testing.assert_allclose(same["probabilities"].numpy(),
                               model.predict_on_batch(images[:, :32, :32]), atol=1e-6)


@pytest.mark.parametrize("source_policy, policy", [
    ("float32", "mixed_bfloat16"), ("mixed_bfloat16", "float32"),
])
def test_transfer_trains_from_a_source_of_another_policy(source_policy, policy, data_dir, tmp_path):
    source_path = str(tmp_path / "tuned.keras")
    tuned = experiments.get_config("tuned").replace(precision=source_policy)
    models.build_from_config(tuned, 100).save(source_path)
    config = experiments.get_config("transfer").replace(epochs=1, precision=policy)
    metrics = run_experiment(config, data_dir, str(tmp_path), source_model=source_path, verbose=0)
    assert metrics["config"]["precision"] == policy and metrics["trainable_params"] == 128 * 10 + 10
    model = keras.models.load_model(tmp_path / "transfer" / "model.keras")
    assert model.get_layer("conv1").dtype_policy.name == policy
    assert model.layers[-1].dtype_policy.name == "float32"


# Loss scaling in the custom loop (multi-worker training): without it, mixed_float16's gradients
# would be divided by a scale the loss was never multiplied by.

def _trained_weights(fit, strategy):
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4 * 16, 32, 32, 3), dtype=np.uint8)
    train = tf.data.Dataset.from_tensor_slices((images, np.arange(4 * 16) % 10)).batch(16)
    with strategy.scope():
        model = models.build_lenet5(10, hidden_units=(16, 8), precision="mixed_float16")
        models.compile_classifier(model, 1e-3)
    fit(model, strategy, train, train.take(1), 1, [], 0)
    return model.get_weights()


def test_custom_loop_scales_the_loss_as_fit_does_under_mixed_float16():
    strategy = tf.distribute.MirroredStrategy()  # one CPU replica here

    def keras_fit(model, strategy, train, validation_data, epochs, callbacks, verbose):
        return model.fit(train, validation_data=validation_data, epochs=epochs, verbose=verbose)

    for loop, fit in zip(_trained_weights(custom_loop.custom_fit, strategy),
                         _trained_weights(keras_fit, strategy), strict=True):
        np.testing.assert_allclose(loop, fit, atol=1e-5)


# Resume: a killed mixed-precision run, run again, ends where an uninterrupted one does.

class Killed(BaseException):
    """Stands in for SIGKILL (as in test_resume): no handler runs."""


SAME_RUN_KEYS = ("test_accuracy", "test_top5_accuracy", "test_loss", "best_val_accuracy",
                 "best_epoch", "epochs_run")


@pytest.mark.parametrize("policy, initial_scale", [
    ("mixed_bfloat16", None),
    # Scale 2**24 overflows float16 for the first steps, which are skipped: the epoch to resume
    # from must still be read right off the restored optimizer. Slow: float16 is emulated on CPUs.
    pytest.param("mixed_float16", 2.0**24, marks=pytest.mark.slow),
])
def test_killed_mixed_precision_run_resumes_to_the_uninterrupted_metrics(
        policy, initial_scale, data_dir, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="absl")
    if initial_scale:
        monkeypatch.setattr(models, "INITIAL_LOSS_SCALE", initial_scale)
    config = experiments.get_config("vanilla").replace(epochs=2, precision=policy)
    reference = run_experiment(config, data_dir, str(tmp_path / "reference"), verbose=0)

    model_dir = str(tmp_path / "interrupted")
    save_weights, calls = keras.Model.save_weights, []

    def killed_at_epoch_2s_backup(self, filepath, *args, **kwargs):
        calls.append(filepath)
        if len(calls) == 2:
            raise Killed
        save_weights(self, filepath, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(keras.Model, "save_weights", killed_at_epoch_2s_backup)
        with pytest.raises(Killed):
            run_experiment(config, data_dir, model_dir, verbose=0)
    caplog.clear()
    resumed = run_experiment(config, data_dir, model_dir, verbose=0)
    assert re.search(r"resuming vanilla from epoch 2/2", caplog.text), caplog.text
    for key in SAME_RUN_KEYS:
        assert resumed[key] == pytest.approx(reference[key], abs=1e-6), key
    for key, values in reference["history"].items():
        assert resumed["history"][key] == pytest.approx(values, abs=1e-6), key
    if initial_scale:
        best = keras.models.load_model(os.path.join(model_dir, "vanilla", "model.keras"))
        skipped = int(best.optimizer.iterations) - int(best.optimizer.inner_optimizer.iterations)
        assert skipped > 0  # the case this parameter is for really happened


@pytest.mark.slow
def test_train_precision_auto_says_what_it_chose_and_records_it(data_dir, tmp_path):
    expected = precision.resolve("auto")  # this machine's answer
    proc = run_cli("lenet_keras.train", "--exp", "vanilla", "--epochs", "1", "--precision", "auto",
                   "--data_dir", data_dir, "--model_dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"precision auto: {expected.policy}, because {expected.reason}" in proc.stderr
    exp_dir = tmp_path / "vanilla"
    assert json.loads((exp_dir / "config.json").read_text())["precision"] == expected.policy
    metrics = json.loads((exp_dir / "metrics.json").read_text())
    assert metrics["precision"] == {"policy": expected.policy, "requested": "auto",
                                    "reason": expected.reason}
