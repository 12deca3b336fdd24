"""A killed, diverged or disk-starved run loses nothing and, rerun, ends where an uninterrupted one does.

Every resumed run below is compared with one uninterrupted run of the same seed: histories and
test metrics must agree to TOLERANCE (on one machine they come out bit-identical, because the
optimizer state, the epoch, the best value and the data order are all restored).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time

import keras
import pytest

from lenet_keras import experiments
from lenet_keras.errors import UserError
from lenet_keras.training import atomic, resume
from lenet_keras.training.run import run_experiment
from lenet_keras.training.study import Study
from tests.conftest import REPO, assert_one_line_error, run_cli

EPOCHS = 3
TOLERANCE = 1e-6
SAME_RUN_KEYS = ("test_accuracy", "test_top5_accuracy", "test_loss", "best_val_accuracy", "best_epoch",
                 "epochs_run")


def vanilla():
    return experiments.get_config("vanilla").replace(epochs=EPOCHS)


def assert_same_run(metrics: dict, reference: dict) -> None:
    for key in SAME_RUN_KEYS:
        assert metrics[key] == pytest.approx(reference[key], abs=TOLERANCE), key
    assert sorted(metrics["history"]) == sorted(reference["history"])
    for key, values in reference["history"].items():
        assert metrics["history"][key] == pytest.approx(values, abs=TOLERANCE), key
    assert len(metrics["epoch_seconds"]) == EPOCHS


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory) -> dict:
    """One uninterrupted run: what every interrupted run must end up as."""
    return run_experiment(vanilla(), data_dir, str(tmp_path_factory.mktemp("reference")), verbose=0)


@pytest.mark.slow
def test_same_seed_gives_identical_metrics(data_dir, tmp_path, reference):
    assert_same_run(run_experiment(vanilla(), data_dir, str(tmp_path), verbose=0), reference)


def _backup_epoch(exp_dir: str) -> int:
    try:
        with open(os.path.join(exp_dir, resume.STAGING, resume.BACKUP_DIR,
                               "training_metadata.json")) as f:
            return json.load(f)["epoch"]
    except (OSError, ValueError):
        return 0


# The real CLI in a process of its own, held at the start of epoch 2 (epoch 1's backup is on
# disk) until it is killed: a fixed sleep raced against training, which got fast enough to finish
# all three epochs before the signal arrived.
HELD_IN_EPOCH_2 = """
import runpy, sys, time
from lenet_keras.training import resume
marker, sys.argv = sys.argv[1], ["lenet_keras.train", *sys.argv[2:]]
begin = resume.ResumableBackup.on_epoch_begin
def held(self, epoch, logs=None):
    begin(self, epoch, logs)
    if epoch == 1:
        open(marker, "w").close()
        time.sleep(600)
resume.ResumableBackup.on_epoch_begin = held
runpy.run_module("lenet_keras.train", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_sigkill_mid_training_then_same_command_resumes(data_dir, tmp_path, reference):
    model_dir = tmp_path / "models"
    args = ["--exp", "vanilla", "--epochs", str(EPOCHS), "--data_dir", data_dir,
            "--model_dir", str(model_dir)]
    exp_dir = os.path.join(str(model_dir), "vanilla")
    in_epoch_2 = tmp_path / "in_epoch_2"
    proc = subprocess.Popen([sys.executable, "-c", HELD_IN_EPOCH_2, str(in_epoch_2), *args],
                            cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not in_epoch_2.exists():
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline, "no epoch finished in 240 s"
            time.sleep(0.05)
        assert _backup_epoch(exp_dir) == 1
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(exp_dir, "metrics.json"))

    rerun = run_cli("lenet_keras.train", *args)  # also takes over the dead process's lock
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed = re.search(rf"resuming vanilla from epoch (\d+)/{EPOCHS}", rerun.stderr)
    assert resumed and int(resumed.group(1)) == 2, rerun.stderr[-3000:]
    with open(os.path.join(exp_dir, "metrics.json")) as f:
        assert_same_run(json.load(f), reference)
    assert sorted(os.listdir(exp_dir)) == [
        "config.json", "logs", "metrics.json", "model.keras", "predictions.npz"]


class Killed(BaseException):
    """Stands in for SIGKILL at an exact instant: no handler runs, the files stay as they are."""


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _truncate(path: str) -> None:
    os.truncate(path, os.path.getsize(path) // 2)


@pytest.mark.slow
def test_killed_at_every_write_point_then_resumed_matches_uninterrupted(
        data_dir, tmp_path, reference, monkeypatch, caplog):
    """One run, crashed in turn at each write it makes, each time resumed by the next attempt."""
    model_dir = str(tmp_path)
    exp_dir = os.path.join(model_dir, "vanilla")
    staging = os.path.join(exp_dir, resume.STAGING)
    best = os.path.join(staging, resume.BEST_MODEL)
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="absl")  # a test that parsed absl flags set it to WARNING

    def attempt(patches: dict, expect=Killed):
        caplog.clear()
        with monkeypatch.context() as m:
            for (owner, name), replacement in patches.items():
                m.setattr(owner, name, replacement)
            with pytest.raises(expect) as caught:
                run_experiment(vanilla(), data_dir, model_dir, verbose=0)
        return caught.value

    def resumed_from() -> int:
        found = re.findall(r"resuming vanilla from epoch (\d+)/", caplog.text)
        return int(found[0]) if found else 1

    save_weights, write_json, replace = keras.Model.save_weights, atomic.write_json, atomic.replace
    calls = []

    # 1. Killed while BackupAndRestore writes epoch 2's weights: its double checkpoint has epoch 1.
    def torn_backup(self, filepath, *args, **kwargs):
        save_weights(self, filepath, *args, **kwargs)
        calls.append(filepath)
        if len(calls) == 2:
            _truncate(filepath)
            raise Killed

    attempt({(keras.Model, "save_weights"): torn_backup})
    best_after_epoch_1 = _sha(best)
    assert keras.models.load_model(best).count_params() == reference["params"]

    # 2. Disk full while ModelCheckpoint writes epoch 2's model: clear error, best of epoch 1 kept.
    def disk_full(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filepath)

    error = attempt({(keras.Model, "save"): disk_full}, expect=UserError)
    assert resumed_from() == 2
    message = str(error)
    assert "No space left on device" in message and "\n" not in message, message
    assert "resume after epoch 1" in message and "best model so far (epoch 1" in message, message
    assert _sha(best) == best_after_epoch_1

    # 3. Killed while writing progress.json for epoch 2: the old complete file is still there.
    def torn_progress(path, payload):
        if path.endswith(resume.PROGRESS_FILE) and len(payload["history"]["loss"]) == 2:
            with open(path + ".tmp", "w") as f:
                f.write(json.dumps(payload)[:50])
            raise Killed
        write_json(path, payload)

    attempt({(atomic, "write_json"): torn_progress})
    assert resumed_from() == 2
    with open(os.path.join(staging, resume.PROGRESS_FILE)) as f:
        assert len(json.load(f)["history"]["loss"]) == 1
    assert _sha(best) == best_after_epoch_1

    # 4. Killed between the backup's weights and its metadata file: the weights are of epoch 2,
    #    the metadata still says 1, and epoch 2's best-model candidate was never renamed into place.
    def killed_after_weights(self, filepath, *args, **kwargs):
        save_weights(self, filepath, *args, **kwargs)
        raise Killed

    attempt({(keras.Model, "save_weights"): killed_after_weights})
    assert resumed_from() == 2
    assert _backup_epoch(exp_dir) == 1

    # 5. The loss turns NaN in epoch 3: one-line error, the best model (epoch 2) is kept.
    on_epoch_begin = resume.StopOnNaN.on_epoch_begin

    def diverge(self, epoch, logs=None):
        on_epoch_begin(self, epoch, logs)
        self.model.optimizer.learning_rate.assign(1e38)

    error = attempt({(resume.StopOnNaN, "on_epoch_begin"): diverge}, expect=UserError)
    assert resumed_from() == 3  # from the weights, not the stale metadata
    assert "NaN/Inf in epoch 3" in str(error) and "best model so far (epoch 2" in str(error)
    assert keras.models.load_model(best).count_params() == reference["params"]

    # 6. Killed while publishing: model.keras is in place, metrics.json is not. Before it, the
    #    backup's metadata is emptied as a kill inside Keras's in-place write of it would leave it.
    os.truncate(os.path.join(staging, resume.BACKUP_DIR, "training_metadata.json"), 0)
    def torn_publish(src, dst):
        if dst.endswith("predictions.npz"):
            raise Killed
        replace(src, dst)

    attempt({(atomic, "replace"): torn_publish})
    assert resumed_from() == 3
    assert os.path.exists(os.path.join(exp_dir, "model.keras"))
    assert not os.path.exists(os.path.join(exp_dir, "metrics.json"))

    # 7. The same command once more: all epochs are done, it evaluates and publishes.
    caplog.clear()
    metrics = run_experiment(vanilla(), data_dir, model_dir, verbose=0)
    assert f"resuming vanilla after its last epoch ({EPOCHS}/{EPOCHS}" in caplog.text
    assert_same_run(metrics, reference)
    assert not os.path.exists(staging)


def test_changed_settings_refuse_to_resume_until_fresh(tmp_path):
    exp_dir = str(tmp_path / "vanilla")
    state = resume.RunState(exp_dir, vanilla())
    state.record_epoch(0, {"loss": 4.0, "val_accuracy": 0.1}, 1.0)
    os.makedirs(state.backup_dir)

    with pytest.raises(UserError, match=r"different settings \(learning_rate\).*--fresh"):
        resume.RunState(exp_dir, vanilla().replace(learning_rate=0.5))
    assert resume.RunState(exp_dir, vanilla()).epochs_done == 1

    fresh = resume.RunState(exp_dir, vanilla().replace(learning_rate=0.5), fresh=True)
    assert fresh.epochs_done == 0 and fresh.best_value is None
    assert not os.path.exists(state.backup_dir)


@pytest.mark.slow
def test_absurd_learning_rate_stops_with_one_line_error(data_dir, tmp_path):
    proc = run_cli("lenet_keras.train", "--exp", "vanilla", "--epochs", "2", "--learning_rate", "1e38",
                   "--data_dir", data_dir, "--model_dir", str(tmp_path), "--deterministic")
    assert_one_line_error(proc, "NaN/Inf in epoch 1", "Lower --learning_rate")
    assert not os.path.exists(tmp_path / "vanilla" / "model.keras")


def test_rerun_study_keeps_what_it_finished_and_continues_the_interrupted_experiment(tmp_path):
    study = [experiments.get_config(name) for name in experiments.STUDY_ORDER]
    model_dir = str(tmp_path)

    def kept(configs):
        return [m["config"]["name"] for m in Study(model_dir, configs).kept()]

    assert kept(study) == []  # nothing there: a new study
    for config in study[:2]:
        os.makedirs(tmp_path / config.name)
        atomic.write_json(str(tmp_path / config.name / "metrics.json"), {"config": config.to_dict()})
    assert kept(study) == []  # finished, but no study was interrupted: a new study
    Study(model_dir, study).begin()  # killed anywhere after this...
    assert kept(study) == ["vanilla", "tuned"]  # ...the rerun keeps both, transfer trains
    changed = [study[0].replace(seed=7), *study[1:]]
    assert kept(changed) == []  # another study: vanilla's settings changed
    os.remove(tmp_path / "vanilla" / "metrics.json")
    assert kept(study) == []  # tuned follows an unfinished vanilla: it trains again too
    Study(model_dir, study).end()
    assert kept(study) == []  # the study ended: a rerun is a new study
    resume.RunState(str(tmp_path / "transfer"), study[2]).record_epoch(0, {"val_accuracy": 0.1}, 1.0)
    atomic.write_json(str(tmp_path / "vanilla" / "metrics.json"), {"config": study[0].to_dict()})
    assert kept(study) == ["vanilla", "tuned"]  # left mid-run by a version without the marker


@pytest.mark.slow
def test_disk_full_names_the_file_that_really_holds_the_best_model(data_dir, tmp_path,
                                                                     monkeypatch, reference):
    """The disk fills while epoch 2 is recorded, after ModelCheckpoint wrote epoch 2's candidate
    but before it became model.keras: the message must name the candidate, and that file must
    hold epoch 2's model (its validation accuracy is the one the message gives)."""
    from lenet_keras import data

    config = vanilla().replace(epochs=2)
    assert reference["history"]["val_accuracy"][1] > reference["history"]["val_accuracy"][0]
    write_json = atomic.write_json

    def full_at_epoch_2(path, payload):
        if path.endswith(resume.PROGRESS_FILE) and len(payload["history"]["loss"]) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        write_json(path, payload)

    monkeypatch.setattr(atomic, "write_json", full_at_epoch_2)
    with pytest.raises(UserError) as caught:
        run_experiment(config, data_dir, str(tmp_path), verbose=0)
    message = str(caught.value)
    found = re.search(r"best model so far \(epoch (\d+), val_accuracy ([\d.]+)\) is kept in (\S+)",
                      message)
    assert found, message
    epoch, accuracy, path = int(found[1]), float(found[2]), found[3]
    assert epoch == 2 and path.endswith("candidate-0002.keras"), message
    splits = data.load_splits(config, data_dir)
    held = keras.models.load_model(path).evaluate(splits.val, return_dict=True, verbose=0)
    assert held["accuracy"] == pytest.approx(accuracy, abs=1e-4)  # the message rounds to 4 places
    assert held["accuracy"] == pytest.approx(reference["history"]["val_accuracy"][1], abs=1e-6)
