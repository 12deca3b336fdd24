"""End to end through the CLI on prepared synthetic data: artifacts, checkpoint choice, freezing."""

import json
import os

import keras
import numpy as np
import pytest

from lenet_keras import data, experiments
from lenet_keras.data import synthetic as synthetic_data
from lenet_keras.training.run import run_experiment
from tests.conftest import TEST_EXAMPLES, TRAIN_EXAMPLES, run_cli

METRIC_KEYS = {
    "test_accuracy", "test_top5_accuracy", "best_val_accuracy", "best_epoch", "epochs_run",
    "train_examples", "params", "history", "epoch_seconds", "class_names", "config",
}


def read_metrics(model_dir, exp):
    with open(os.path.join(model_dir, exp, "metrics.json")) as f:
        return json.load(f)


@pytest.mark.slow
@pytest.mark.parametrize("exp", experiments.STUDY_ORDER)
def test_each_experiment_writes_its_artifacts(study_dir, exp):
    exp_dir = os.path.join(study_dir, exp)
    for name in ("model.keras", "metrics.json", "config.json", "predictions.npz"):
        assert os.path.isfile(os.path.join(exp_dir, name)), name
    assert os.listdir(os.path.join(exp_dir, "logs"))  # TensorBoard
    assert not os.path.exists(os.path.join(exp_dir, ".staging"))
    metrics = read_metrics(study_dir, exp)
    assert METRIC_KEYS <= set(metrics)
    assert metrics["epochs_run"] == 1 and len(metrics["epoch_seconds"]) == 1
    assert metrics["epoch_seconds"][0] > 0
    assert set(metrics["history"]) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert metrics["train_examples"] == TRAIN_EXAMPLES - TRAIN_EXAMPLES // 10
    assert metrics["test_examples"] == TEST_EXAMPLES
    assert 0 <= metrics["test_accuracy"] <= metrics["test_top5_accuracy"] <= 1
    want_classes = synthetic_data.STL10_CLASSES if exp == "transfer" else synthetic_data.CIFAR100_FINE
    assert metrics["class_names"] == want_classes
    with open(os.path.join(exp_dir, "config.json")) as f:
        assert json.load(f)["name"] == exp
    model = keras.models.load_model(os.path.join(exp_dir, "model.keras"))
    assert model.count_params() == metrics["params"]
    if exp == "vanilla":
        assert metrics["params"] == 69_656


@pytest.mark.slow
def test_all_prints_a_comparison_table(study):
    # The table `--exp all` printed: one row per experiment, in study order, with metrics.json's numbers.
    rows = [line for line in study.stdout.splitlines() if line.startswith("| ")][1:]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    assert [row[0] for row in cells] == list(experiments.STUDY_ORDER), study.stdout
    for row in cells:
        m = read_metrics(study.model_dir, row[0])
        assert row[1:4] == [m["dataset"], str(m["epochs_run"]), f"{m['params']:,}"]
        assert row[6:8] == [f"{m['test_accuracy']:.4f}", f"{m['test_top5_accuracy']:.4f}"]
    assert f"report: {os.path.join(study.model_dir, 'report', 'REPORT.md')}" in study.stdout


def test_transfer_trains_only_the_head_and_leaves_every_frozen_weight_bit_identical(trained_dir):
    tuned = keras.models.load_model(os.path.join(trained_dir, "tuned", "model.keras"))
    transfer = keras.models.load_model(os.path.join(trained_dir, "transfer", "model.keras"))
    assert sorted(w.path for w in transfer.trainable_weights) == [
        "classifier_transfer/bias", "classifier_transfer/kernel"]
    compared = 0
    for layer in tuned.layers[:-1]:
        for before, after in zip(layer.weights, transfer.get_layer(layer.name).weights, strict=True):
            np.testing.assert_array_equal(before.numpy(), after.numpy())  # BN moving stats too
            compared += 1
    assert compared == 12  # conv1, conv2, dense1, dense2: kernel+bias; BN: gamma, beta, mean, var
    metrics = read_metrics(trained_dir, "transfer")
    assert metrics["trainable_params"] == 128 * 10 + 10
    assert transfer.layers[-1].units == 10


@pytest.mark.slow
def test_freeze_none_fine_tunes_every_layer_from_the_source(trained_dir, data_dir, tmp_path):
    source = os.path.join(trained_dir, "tuned", "model.keras")
    config = experiments.get_config("transfer").replace(epochs=1, freeze="none")
    metrics = run_experiment(config, data_dir, str(tmp_path), source_model=source, verbose=0)
    assert metrics["trainable_params"] == metrics["params"] - 2 * 64  # BN's moving mean/variance
    tuned = keras.models.load_model(source)
    transfer = keras.models.load_model(os.path.join(str(tmp_path), "transfer", "model.keras"))
    for name in ("conv1", "conv2", "dense1", "dense2"):
        before, after = tuned.get_layer(name).get_weights(), transfer.get_layer(name).get_weights()
        assert all(a.shape == b.shape for a, b in zip(before, after, strict=True))
        assert not np.array_equal(before[0], after[0]), name  # trained from, not kept as


def test_an_stl10_label_outside_its_classes_is_a_user_error_naming_it(trained_dir, data_dir,
                                                                        tmp_path):
    """The issue's data: a prepared STL-10 whose train split holds label 12 (10 classes)."""
    import shutil

    from lenet_keras.errors import UserError

    shutil.copytree(os.path.join(data_dir, "stl10"), tmp_path / "tfds" / "stl10")
    version_dir = next((tmp_path / "tfds" / "stl10").iterdir())
    assert synthetic_data.mislabel(str(version_dir), "train", 12) > 0
    config = experiments.get_config("transfer").replace(epochs=1)
    source = os.path.join(trained_dir, "tuned", "model.keras")
    with pytest.raises(UserError, match=r"stl10 data set's train\[:90%\] split holds label 12, "
                                        r"outside its 10 classes"):
        run_experiment(config, str(tmp_path / "tfds"), str(tmp_path / "m"), source_model=source,
                       verbose=0)


class SabotageLastEpoch(keras.callbacks.Callback):
    """Zeroes every weight during the last epoch's training pass: its validation is then at chance."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == self.params["epochs"] - 1:
            for w in self.model.weights:
                w.assign(np.zeros(w.shape, dtype=w.dtype))


def test_the_best_validation_checkpoint_is_the_one_reloaded_and_tested(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("learnable"))
    synthetic_data.prepare("cifar100", data_dir, train=3000, test=300)
    model_dir = str(tmp_path_factory.mktemp("models"))
    config = experiments.get_config("vanilla").replace(epochs=3)
    metrics = run_experiment(config, data_dir, model_dir, verbose=0,
                             extra_callbacks=[SabotageLastEpoch()])
    val = metrics["history"]["val_accuracy"]
    assert val[2] < val[1] and metrics["best_epoch"] == 2
    model = keras.models.load_model(os.path.join(model_dir, "vanilla", "model.keras"))
    splits = data.load_splits(config, data_dir)
    assert model.evaluate(splits.val, return_dict=True, verbose=0)["accuracy"] == pytest.approx(val[1])
    # Learnable data, real labels: a pipeline that scrambled labels would sit near 1% here.
    assert metrics["test_accuracy"] > 0.2


@pytest.mark.slow
def test_a_model_dir_with_an_earlier_run_keeps_it_when_a_new_run_fails(trained_dir, tmp_path):
    import shutil

    model_dir = str(tmp_path / "models")
    shutil.copytree(os.path.join(trained_dir, "vanilla"), os.path.join(model_dir, "vanilla"),
                    ignore=shutil.ignore_patterns("logs"))
    before = {n: open(os.path.join(model_dir, "vanilla", n), "rb").read()
              for n in ("model.keras", "metrics.json")}
    proc = run_cli("lenet_keras.train", "--exp", "vanilla", "--epochs", "1",
                   "--data_dir", str(tmp_path / "nothing_here"), "--model_dir", model_dir,
                   env={"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"})
    assert proc.returncode != 0
    for name, content in before.items():
        assert open(os.path.join(model_dir, "vanilla", name), "rb").read() == content
