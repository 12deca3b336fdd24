"""TFX's run_fn / tuner_fn of the experiment modules, called with a stand-in for TFX's FnArgs, on
TFDS data and on ExampleGen-like files. tests/test_tfx_components.py runs them in real TFX."""

import dataclasses
import json
import os
from typing import Any, Optional

import keras_tuner as kt
import pytest
import tensorflow as tf

from lenet_keras import experiments
from lenet_keras.data import synthetic
from lenet_keras.errors import UserError
from lenet_keras.experiments import transfer, tuned, vanilla
from lenet_keras.search import space as hparams

pytestmark = pytest.mark.slow  # each test trains models: seconds each (the fast set stays under 2 minutes)


@dataclasses.dataclass
class FnArgs:
    """The attributes of tfx.components.FnArgs these modules read (TFX installs on Python 3.10 only)."""

    working_dir: str
    serving_model_dir: str
    custom_config: dict
    hyperparameters: Any = None
    train_steps: Optional[int] = None
    eval_steps: Optional[int] = None
    base_model: Optional[str] = None
    train_files: list = dataclasses.field(default_factory=list)
    eval_files: list = dataclasses.field(default_factory=list)
    model_run_dir: Optional[str] = None


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


def examplegen_output(data_dir, name, folder) -> dict:
    """{split: file pattern} of ``name``'s TFDS records as ExampleGen writes them: gzipped TFRecords
    of the same tf.Example bytes in Split-<split>/, train cut 9:1 into train and eval as TFDS's
    train[:90%] / train[90%:], and test."""
    import tensorflow_datasets as tfds

    info = tfds.builder(name, data_dir=data_dir).info
    train = list(tf.data.TFRecordDataset(info.splits["train"].filepaths).as_numpy_iterator())
    cut = info.splits["train[:90%]"].num_examples
    records = {"train": train[:cut], "eval": train[cut:],
               "test": list(tf.data.TFRecordDataset(info.splits["test"].filepaths).as_numpy_iterator())}
    patterns = {}
    for split, rows in records.items():
        os.makedirs(os.path.join(folder, f"Split-{split}"))
        path = os.path.join(folder, f"Split-{split}", "data_tfrecord-00000-of-00001.gz")
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for row in rows:
                writer.write(row)
        patterns[split] = os.path.join(folder, f"Split-{split}", "*")
    return patterns


@pytest.fixture(scope="module")
def examples(data_dir, tmp_path_factory):
    return {name: examplegen_output(data_dir, name, str(tmp_path_factory.mktemp(name)))
            for name in ("cifar100", "stl10")}


def trainer_args(tmp_path, data_dir, files, **kwargs):
    """As a TFX Trainer passes them: no working_dir, eval_args splits ['eval', 'test']."""
    return FnArgs(None, str(tmp_path / "Format-Serving"), {"data_dir": data_dir, "epochs": 1},
                  train_files=[files["train"]], eval_files=[files["eval"], files["test"]],
                  model_run_dir=str(tmp_path / "model_run"), **kwargs)


def test_run_fn_trains_on_examplegen_files_and_transfer_starts_from_the_served_model(
        tmp_path, data_dir, examples):
    hp = hparams.define_search_space(kt.HyperParameters())
    hp.values.update(activation="relu", pooling="max", batch_norm=True, hidden_units="120x84",
                     learning_rate=1e-3)
    args = trainer_args(tmp_path / "tuned", data_dir, examples["cifar100"],
                        hyperparameters=hp.get_config())
    metrics = tuned.run_fn(args)
    assert (metrics["train_examples"], metrics["val_examples"], metrics["test_examples"]) == (
        288, 32, 64)  # the test split evaluated the best epoch; it chose nothing
    assert metrics["epochs_run"] == 1 and metrics["config"]["hidden_units"] == [120, 84]
    assert metrics["class_names"] == synthetic.CIFAR100_FINE
    assert 0 <= metrics["test_accuracy"] <= metrics["test_top5_accuracy"] <= 1
    assert os.path.isfile(os.path.join(args.model_run_dir, "tuned", "model.keras"))
    probabilities, names = serve(args.serving_model_dir, 2, size=40)
    assert probabilities.shape == (2, 100) and set(names) <= set(synthetic.CIFAR100_FINE)

    # TFX hands transfer's Trainer the upstream model's Format-Serving folder.
    t_args = trainer_args(tmp_path / "transfer", data_dir, examples["stl10"],
                          base_model=args.serving_model_dir)
    t_metrics = transfer.run_fn(t_args)
    assert t_metrics["source_model"] == args.serving_model_dir
    assert t_metrics["trainable_params"] == 84 * 10 + 10  # only the new head over Dense 84
    assert t_metrics["class_names"] == synthetic.STL10_CLASSES
    probabilities, names = serve(t_args.serving_model_dir, 1, size=96)
    assert probabilities.shape == (1, 10) and names[0] in synthetic.STL10_CLASSES


def test_a_files_run_without_a_test_split_evaluates_nothing_on_test(tmp_path, data_dir, examples):
    files = examples["cifar100"]
    args = trainer_args(tmp_path, data_dir, files)
    args.eval_files = [files["eval"]]
    metrics = vanilla.run_fn(args)
    assert metrics["test_accuracy"] is None and metrics["test_examples"] == 0
    assert sorted(os.listdir(os.path.join(args.model_run_dir, "vanilla"))) == [
        "config.json", "logs", "metrics.json", "model.keras"]


def test_tuner_fn_on_files_validates_on_eval_and_keeps_its_project(tmp_path, data_dir, examples):
    files = examples["cifar100"]
    tune_dir = str(tmp_path / "kept")
    args = FnArgs(str(tmp_path / "temp"), None,
                  {"data_dir": data_dir, "tuner": "random", "max_trials": 1, "epochs": 1,
                   "tune_dir": tune_dir},
                  train_files=[files["train"]], eval_files=[files["eval"], files["test"]])
    result = tuned.tuner_fn(args)
    assert result.fit_kwargs["epochs"] == 1
    assert sum(int(y.shape[0]) for _, y in result.fit_kwargs["validation_data"]) == 32
    result.tuner.search(**result.fit_kwargs, verbose=0)
    assert os.path.exists(os.path.join(tune_dir, "lenet5", "oracle.json"))
    assert not os.path.exists(args.working_dir)  # TFX deletes it: nothing may live there


def test_files_without_a_validation_split_are_a_clear_error(tmp_path, data_dir, examples):
    files = examples["cifar100"]
    args = trainer_args(tmp_path, data_dir, files)
    args.eval_files = [files["test"]]
    with pytest.raises(UserError, match="validation split"):
        tuned.run_fn(args)
    with pytest.raises(UserError, match="validation split"):
        tuned.tuner_fn(args)
