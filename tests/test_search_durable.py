"""A search killed at the worst instants resumes without losing, repeating or changing a trial."""

from __future__ import annotations

import json
import os

import keras_tuner as kt
import pytest
from keras_tuner.src.backend import io as kt_io

from lenet_keras import data, experiments
from lenet_keras.errors import UserError
from lenet_keras.search import tuner as tuning

pytestmark = pytest.mark.slow  # each test runs a search

CONFIG = experiments.get_config("tuned")


class Killed(BaseException):
    """Stands in for SIGKILL at an exact instant: no handler runs, the files stay as they are."""


@pytest.fixture(scope="module")
def splits(data_dir):
    return data.load_splits(CONFIG, data_dir)


def search(directory, splits, data_dir, max_trials=2):
    tuner = tuning.make_tuner("random", CONFIG, splits.num_classes, str(directory),
                              max_trials=max_trials, max_epochs=1, seed=3,
                              fresh_train=lambda: data.load_splits(CONFIG, data_dir).train)
    tuning.search(tuner, splits, epochs=1, verbose=0)
    return tuner


def trials(directory):
    project = os.path.join(str(directory), tuning.PROJECT)
    found = {}
    for name in sorted(os.listdir(project)):
        if name.startswith("trial_"):
            with open(os.path.join(project, name, "trial.json")) as f:
                trial = json.load(f)
            found[trial["trial_id"]] = (trial["status"], trial["hyperparameters"]["values"],
                                        trial["score"])
    return found


def oracle_state(directory):
    with open(os.path.join(str(directory), tuning.PROJECT, "oracle.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, splits, data_dir):
    """The trials of an uninterrupted two-trial search."""
    directory = tmp_path_factory.mktemp("reference")
    search(directory, splits, data_dir)
    return trials(directory)


def test_a_kill_while_oracle_json_is_written_leaves_a_whole_file(tmp_path, splits, data_dir,
                                                                 reference, monkeypatch):
    real_file, writes = kt_io.File, []

    class TornWrite:
        def __init__(self, name, mode):
            self.file = real_file(name, mode)
            self.name = name

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, text):
            writes.append(self.name)
            if len(writes) == 3:  # the oracle's save as the second trial starts
                self.file.write(text[: len(text) // 2])
                self.file.close()
                raise Killed
            self.file.write(text)

    def file(name, mode):
        return TornWrite(name, mode) if "oracle.json" in name and "w" in mode else real_file(name, mode)

    with monkeypatch.context() as m:
        m.setattr(kt_io, "File", file)
        with pytest.raises(Killed):
            search(tmp_path, splits, data_dir)
    oracle_state(tmp_path)  # whole JSON
    search(tmp_path, splits, data_dir)  # the same call resumes
    assert trials(tmp_path) == reference


def test_a_finished_trial_still_listed_as_running_is_not_trained_again(tmp_path, splits, data_dir,
                                                                      reference):
    search(tmp_path, splits, data_dir, max_trials=1)
    # keras-tuner's own state between a trial's end and the next trial's start: trial.json says
    # COMPLETED, oracle.json still lists the trial as running.
    path = os.path.join(str(tmp_path), tuning.PROJECT, "oracle.json")
    state = oracle_state(tmp_path)
    state["ongoing_trials"] = {"tuner0": "0"}
    with open(path, "w") as f:
        json.dump(state, f)
    trial_file = os.path.join(str(tmp_path), tuning.PROJECT, "trial_0", "trial.json")
    before = open(trial_file).read()
    search(tmp_path, splits, data_dir, max_trials=2)
    assert open(trial_file).read() == before  # not run again
    assert trials(tmp_path) == reference
    assert oracle_state(tmp_path)["end_order"] == ["0", "1"]  # none counted twice


def test_a_trial_the_oracle_never_recorded_is_created_again_as_it_was(tmp_path, splits, data_dir,
                                                                     reference, monkeypatch):
    save_trial = kt.engine.oracle.Oracle._save_trial

    def killed_before_the_oracle_records_trial_1(self, trial):
        save_trial(self, trial)
        if trial.trial_id == "1" and trial.status == "RUNNING":
            raise Killed

    with monkeypatch.context() as m:
        m.setattr(kt.engine.oracle.Oracle, "_save_trial", killed_before_the_oracle_records_trial_1)
        with pytest.raises(Killed):
            search(tmp_path, splits, data_dir)
    assert "1" not in oracle_state(tmp_path)["start_order"]
    search(tmp_path, splits, data_dir)
    # Same ids, values and scores: the trial was created anew and trained from its own seed.
    assert trials(tmp_path) == reference


def test_overwrite_on_a_distributed_worker_is_refused_and_deletes_nothing(tmp_path, monkeypatch):
    (tmp_path / tuning.PROJECT).mkdir()
    (tmp_path / tuning.PROJECT / "oracle.json").write_text("{}")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "9")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    with pytest.raises(UserError, match="--overwrite") as error:
        tuning.make_tuner("random", CONFIG, 100, str(tmp_path), max_trials=1, overwrite=True)
    assert "\n" not in str(error.value)
    assert (tmp_path / tuning.PROJECT / "oracle.json").read_text() == "{}"
