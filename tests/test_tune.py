"""keras-tuner search on the tiny synthetic CIFAR-100: outputs, caps, resume, --hparams round trip."""

import json
import os
import shutil
import socket

import keras
import keras_tuner as kt
import pytest
from conftest import assert_one_line_error, run_cli

import experiments
from lenet_keras import data, hparams, models, tuning
from lenet_keras.errors import UserError

CONFIG = experiments.get_config("tuned")


@pytest.fixture(scope="module")
def splits(data_dir):
    return data.load_splits(CONFIG, data_dir)


def trial_files(tune_dir):
    project = os.path.join(tune_dir, tuning.PROJECT)
    return {
        name: os.stat(os.path.join(project, name, "trial.json")).st_mtime_ns
        for name in os.listdir(project) if name.startswith("trial_")
    }


@pytest.fixture(scope="module")
def hyperband_dir(tmp_path_factory, splits):
    """A finished Hyperband search, capped at 2 trials (uncapped, max_epochs=3 would run 6)."""
    tune_dir = str(tmp_path_factory.mktemp("tune"))
    tuner = tuning.make_tuner("hyperband", CONFIG, splits.num_classes, tune_dir,
                              max_trials=2, max_epochs=3, seed=1)
    tuning.search(tuner, splits, epochs=3, verbose=0)
    tuning.write_results(tuner, tune_dir, "hyperband", 3)
    return tune_dir


def test_hyperband_max_trials_is_a_real_cap_and_results_are_written(hyperband_dir):
    project = os.path.join(hyperband_dir, tuning.PROJECT)
    assert os.path.exists(os.path.join(project, "oracle.json"))
    assert len(trial_files(hyperband_dir)) == 2
    best = json.load(open(os.path.join(hyperband_dir, tuning.BEST_FILE)))
    assert set(best["values"]) == set(hparams.NAMES)
    restored = kt.HyperParameters.from_config(best)  # the form TFX's Tuner component writes
    assert restored.values == best["values"]
    summary = open(os.path.join(hyperband_dir, tuning.SUMMARY_FILE)).read()
    assert summary.count("| COMPLETED |") == 2 and f"{best['best_val_accuracy']:.4f}" in summary


@pytest.mark.parametrize("kind, oracle", [
    ("hyperband", kt.oracles.HyperbandOracle),
    ("random", kt.oracles.RandomSearchOracle),
    ("bayesian", kt.oracles.BayesianOptimizationOracle),  # needs keras-tuner[bayesian]
])
def test_max_trials_caps_every_tuner(tmp_path, kind, oracle):
    tuner = tuning.make_tuner(kind, CONFIG, 100, str(tmp_path), max_trials=5, max_epochs=2)
    assert isinstance(tuner.oracle, oracle)
    assert tuner.oracle.max_trials == 5
    assert tuner.oracle.objective.name == "val_accuracy"
    assert {p.name for p in tuner.oracle.hyperparameters.space} == set(hparams.NAMES)


def test_objective_is_validation_never_test(hyperband_dir):
    oracle = json.load(open(os.path.join(hyperband_dir, tuning.PROJECT, "oracle.json")))
    trial = json.load(open(os.path.join(hyperband_dir, tuning.PROJECT, "trial_0", "trial.json")))
    assert "val_accuracy" in trial["metrics"]["metrics"]
    assert not any("test" in m for m in trial["metrics"]["metrics"])
    assert oracle["ongoing_trials"] == {}


def test_resume_keeps_finished_trials_and_runs_only_new_ones(hyperband_dir, tmp_path, splits):
    tune_dir = str(tmp_path / "copy")
    shutil.copytree(hyperband_dir, tune_dir)
    before = trial_files(tune_dir)
    resumed = tuning.make_tuner("hyperband", CONFIG, splits.num_classes, tune_dir,
                                max_trials=3, max_epochs=3, seed=1)
    tuning.search(resumed, splits, epochs=3, verbose=0)
    after = trial_files(tune_dir)
    assert len(before) == 2 and len(after) == 3
    assert {k: after[k] for k in before} == before  # finished trials were not run again
    assert all(t.status == "COMPLETED" for t in resumed.oracle.trials.values())

    with pytest.raises(UserError, match="--overwrite"):
        tuning.make_tuner("random", CONFIG, splits.num_classes, tune_dir, max_epochs=3)


def architecture(model):
    return [
        (type(layer).__name__, layer.name, tuple(layer.output.shape), layer.count_params(),
         getattr(getattr(layer, "activation", None), "__name__", None))
        for layer in model.layers
    ]


def test_train_hparams_round_trips_into_the_same_architecture(hyperband_dir, data_dir, tmp_path):
    best_file = os.path.join(hyperband_dir, tuning.BEST_FILE)
    proc = run_cli("lenet_keras.train", "--exp", "tuned", "--hparams", best_file, "--epochs", "1",
                   "--data_dir", data_dir, "--model_dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = keras.models.load_model(str(tmp_path / "tuned" / "model.keras"))
    best = json.load(open(best_file))
    expected = models.build_from_hparams(best, 100, CONFIG)
    assert architecture(trained) == architecture(expected)
    config = json.load(open(tmp_path / "tuned" / "config.json"))
    assert config["learning_rate"] == pytest.approx(best["values"]["learning_rate"])


def test_train_rejects_a_foreign_hparams_file(hyperband_dir, tmp_path):
    foreign = os.path.join(hyperband_dir, tuning.PROJECT, "trial_0", "trial.json")
    proc = run_cli("lenet_keras.train", "--exp", "tuned", "--hparams", foreign,
                   "--model_dir", str(tmp_path))
    assert_one_line_error(proc, foreign, "lenet_keras.tune")
    assert not os.path.exists(tmp_path / "tuned")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_chief_and_two_workers(data_dir, tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    tune_dir = str(tmp_path / "tune")
    args = [sys.executable, "-m", "lenet_keras.tune", "--tuner", "random", "--max_trials", "2",
            "--max_epochs", "1", "--data_dir", data_dir, "--tune_dir", tune_dir]
    base_env = dict(os.environ, PYTHONPATH=REPO, KERASTUNER_ORACLE_IP="127.0.0.1",
                    KERASTUNER_ORACLE_PORT=str(free_port()))
    procs = {
        tuner_id: subprocess.Popen(args, env=dict(base_env, KERASTUNER_TUNER_ID=tuner_id),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   cwd=REPO)
        for tuner_id in ("chief", "tuner0", "tuner1")
    }
    outputs = {}
    try:
        for tuner_id, proc in procs.items():
            outputs[tuner_id] = proc.communicate(timeout=240)
    finally:
        for proc in procs.values():
            proc.kill()
    for tuner_id, proc in procs.items():
        assert proc.returncode == 0, (tuner_id, outputs[tuner_id][1][-2000:])
    project = os.path.join(tune_dir, tuning.PROJECT)
    trials = [json.load(open(os.path.join(project, t, "trial.json")))
              for t in sorted(os.listdir(project)) if t.startswith("trial_")]
    assert [t["status"] for t in trials] == ["COMPLETED", "COMPLETED"]
    # The chief only serves the oracle: the two workers ran the trials.
    assert "worker done" in outputs["tuner0"][0] and "worker done" in outputs["tuner1"][0]
    assert json.load(open(os.path.join(tune_dir, tuning.BEST_FILE)))["values"]
