"""tf.distribute: strategy flags, fit vs the custom multi-worker loop, and two real workers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from lenet_keras import data, experiments, models
from lenet_keras.errors import UserError
from lenet_keras.training import custom_loop, distribute
from lenet_keras.training.run import run_experiment
from tests.conftest import REPO

HISTORY_KEYS = {
    "loss", "accuracy", "top5_accuracy", "val_loss", "val_accuracy", "val_top5_accuracy",
}
WORKER_TIMEOUT_S = 240


def _vanilla(**overrides):
    return experiments.get_config("vanilla").replace(**overrides)


def test_batch_is_per_replica_unless_global_is_given():
    two_replicas = types.SimpleNamespace(num_replicas_in_sync=2)
    assert distribute.batch_config(_vanilla(), two_replicas, None).batch_size == 128
    assert distribute.batch_config(_vanilla(), two_replicas, 96).batch_size == 96
    with pytest.raises(UserError, match="multiple of the 2 replicas"):
        distribute.batch_config(_vanilla(), two_replicas, 97)
    with pytest.raises(UserError, match="not both"):
        distribute.batch_config(_vanilla(), two_replicas, 96, per_replica_override=32)


@pytest.mark.parametrize("tf_config, needle", [
    ("{not json", r"not a valid cluster description \(JSONDecodeError"),
    ("[]", "not a valid cluster description"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "not a valid cluster description"),
    ('{"task": {"type": "worker", "index": 0}}', "not a valid cluster description"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": "x"}}',
     r"not a valid cluster description \(ValueError"),
    ('{"cluster": {"worker": "127.0.0.1:1"}, "task": {"type": "worker", "index": 0}}',
     r"not a valid cluster description \(TypeError"),
    ('{"cluster": 3, "task": {"type": "worker", "index": 0}}', "not a valid cluster description"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
     "is not a chief or worker"),
    ('{"cluster": {"ps": ["127.0.0.1:1"]}, "task": {"type": "ps", "index": 0}}',
     "is not a chief or worker"),
])
def test_bad_tf_config_is_refused_before_any_cluster_starts(monkeypatch, tf_config, needle):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(UserError, match=needle) as refused:
        distribute.resolve_strategy("multi_worker")
    assert "\n" not in str(refused.value)


def test_a_valid_tf_config_passes_the_check_as_tf_distribute_reads_it(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2", "127.0.0.1:3"]},
        "task": {"type": "worker", "index": 1}}))
    resolver = distribute._tf_config_cluster()  # what MultiWorkerMirroredStrategy is then given
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)
    assert resolver.cluster_spec().as_dict()["worker"] == ["127.0.0.1:2", "127.0.0.1:3"]


def test_unknown_strategy_names_the_choices():
    with pytest.raises(UserError, match="unknown --strategy 'horovod': choose one of default, mirrored"):
        distribute.resolve_strategy("horovod")


def test_tpu_without_a_tpu_is_one_clear_user_error(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(UserError) as error:
        distribute.resolve_strategy("tpu")
    message = str(error.value)
    assert message.startswith("--strategy tpu found no TPU") and "TPU_NAME" in message
    assert "\n" not in message


def test_who_writes_is_what_tf_distribute_says():
    # tf.distribute's own rule (the chief task, else worker 0) decides; the two-worker test below
    # checks it end to end: only worker 0 writes.
    assert distribute.is_chief(tf.distribute.get_strategy())
    assert distribute.is_chief(tf.distribute.MirroredStrategy())
    not_chief = types.SimpleNamespace(extended=types.SimpleNamespace(should_checkpoint=False))
    assert not distribute.is_chief(not_chief)


def test_a_worker_starts_from_a_copy_of_the_chiefs_resume_state(tmp_path):
    chief, worker = tmp_path / "chief", tmp_path / "worker"
    (chief / ".staging" / "backup").mkdir(parents=True)
    (chief / ".staging" / "backup" / "epoch.json").write_text('{"epoch": 3}')
    (chief / "model.keras").write_text("the chief's published model")
    worker.mkdir()
    distribute.copy_state(str(chief), str(worker), (".staging", "absent"))
    assert sorted(os.listdir(worker)) == [".staging"]
    assert (worker / ".staging" / "backup" / "epoch.json").read_text() == '{"epoch": 3}'


def _train(strategy, config, data_dir, fit, callbacks=(), fixed_order=False):
    keras.utils.set_random_seed(config.seed)
    splits = data.load_splits(config, data_dir)
    train = splits.train
    if fixed_order:
        # fit draws one extra iterator (one reshuffle) before its first epoch; comparing the
        # arithmetic of both paths needs batches in the same order.
        train = splits.test.unbatch().batch(16).apply(
            tf.data.experimental.assert_cardinality(splits.test_examples // 16))
    with strategy.scope():
        model = models.compile_classifier(models.build_from_config(config, splits.num_classes),
                                          config.learning_rate)
    history = fit(model, strategy, train, splits.val, config.epochs, list(callbacks), 0)
    return model, history.history


class _EpochsBegun(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.begun = []

    def on_epoch_begin(self, epoch, logs=None):
        self.begun.append(epoch)


@pytest.mark.slow
def test_custom_loop_computes_what_fit_computes_and_resumes(data_dir, tmp_path):
    strategy = tf.distribute.MirroredStrategy()  # one CPU replica here
    config = _vanilla(epochs=2)
    backup = str(tmp_path / "backup")
    _, fit_history = _train(strategy, config, data_dir, distribute.fit, fixed_order=True)
    _, loop_history = _train(strategy, config, data_dir, custom_loop.custom_fit, fixed_order=True,
                             callbacks=[keras.callbacks.BackupAndRestore(backup,
                                                                         delete_checkpoint=False)])
    assert set(fit_history) == set(loop_history) == HISTORY_KEYS
    for key in HISTORY_KEYS:
        np.testing.assert_allclose(loop_history[key], fit_history[key], rtol=1e-4, err_msg=key)

    # Started again with more epochs, the loop resumes from the backup after epoch 2.
    resumed = _EpochsBegun()
    model, history = _train(strategy, config.replace(epochs=3), data_dir, custom_loop.custom_fit,
                            [keras.callbacks.BackupAndRestore(backup), resumed], fixed_order=True)
    assert resumed.begun == [2] and len(history["val_accuracy"]) == 1
    assert int(model.optimizer.iterations.numpy()) == 3 * 64 // 16  # restored 8 + 4 new steps


@pytest.mark.slow
def test_mirrored_run_writes_the_usual_artifacts(data_dir, tmp_path):
    strategy = tf.distribute.MirroredStrategy()
    config = distribute.batch_config(_vanilla(epochs=1), strategy, 32)
    metrics = run_experiment(config, data_dir, str(tmp_path), verbose=0,
                                      strategy=strategy)
    assert metrics["distribution"] == {
        "strategy": "mirrored", "replicas_in_sync": 1, "workers": 1,
    }
    exp_dir = tmp_path / "vanilla"
    with open(exp_dir / "config.json") as f:
        assert json.load(f)["batch_size"] == 32
    assert keras.models.load_model(exp_dir / "model.keras").count_params() == 69_656


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loopback_allowed() -> bool:
    try:
        with socket.socket() as server, socket.socket() as client:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            client.settimeout(5)
            client.connect(server.getsockname())
        return True
    except OSError:
        return False


@pytest.mark.slow
def test_two_workers_train_together_and_only_the_chief_writes(data_dir, tmp_path):
    if not _loopback_allowed():
        pytest.skip("this sandbox forbids TCP sockets on 127.0.0.1, which the workers talk over")
    model_dir = tmp_path / "models"
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    workers = []
    for index in range(2):
        temp = tmp_path / f"tmp{index}"
        temp.mkdir()
        env = dict(os.environ, PYTHONPATH=REPO, TMPDIR=str(temp), TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        args = [sys.executable, "-m", "lenet_keras.train", "--strategy", "multi_worker",
                "--exp", "vanilla", "--epochs", "2", "--data_dir", data_dir,
                "--model_dir", str(model_dir)]
        workers.append(subprocess.Popen(args, env=env, cwd=REPO, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=WORKER_TIMEOUT_S))
    except subprocess.TimeoutExpired:
        for worker in workers:
            worker.kill()
            worker.communicate()
        pytest.fail(f"two-worker training did not finish in {WORKER_TIMEOUT_S}s")
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr[-3000:]

    # Synchronous training: both evaluated identical weights on the same test split. Each measured
    # its own training time, the table's last column.
    tables = [[row.split("|")[1:-2] for row in out.splitlines() if row.startswith("|")]
              for out, _ in outputs]
    assert tables[0] == tables[1] and tables[0][-1][0].strip() == "vanilla"
    exp_dir = model_dir / "vanilla"
    assert sorted(os.listdir(model_dir)) == ["vanilla"]
    assert sorted(os.listdir(exp_dir)) == sorted(
        ["config.json", "logs", "metrics.json", "model.keras", "predictions.npz"]
    )
    with open(exp_dir / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["distribution"] == {
        "strategy": "multi_worker", "replicas_in_sync": 2, "workers": 2,
    }
    assert set(metrics["history"]) == HISTORY_KEYS
    assert metrics["epochs_run"] == 2 and len(metrics["epoch_seconds"]) == 2
    with open(exp_dir / "config.json") as f:
        assert json.load(f)["batch_size"] == 2 * 64  # 64 per replica
    model = keras.models.load_model(exp_dir / "model.keras")
    assert model.predict(np.zeros((1, 32, 32, 3), np.uint8), verbose=0).shape == (1, 100)
    # TensorBoard names its event files after the writing process: all must be the chief's.
    events = [name for _, _, names in os.walk(exp_dir / "logs") for name in names]
    assert events and all(f".{workers[0].pid}." in name for name in events), events
    # The worker's own copies went to its temporary folder and were removed.
    assert os.listdir(tmp_path / "tmp1") == []
