"""Kill anywhere: the study and the search, SIGKILLed at chosen and at random (seeded) instants and
rerun after each kill, end exactly as uninterrupted runs do, and never redo finished work."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile

import pytest

from lenet_keras import experiments
from tests.conftest import REPO

pytestmark = pytest.mark.slow

CHAOS = os.path.join(REPO, "tests", "chaos.py")
TOLERANCE = 1e-6
SAME_RUN_KEYS = ("test_accuracy", "test_top5_accuracy", "test_loss", "best_val_accuracy",
                 "best_epoch", "epochs_run")


class Run:
    """One process of a command, its output kept in files (a killed process's too)."""

    def __init__(self, tmp, module, args, hold=None):
        self.index = len(os.listdir(tmp))
        self.folder = os.path.join(tmp, f"run{self.index:02d}")
        os.makedirs(self.folder)
        self.marker = os.path.join(self.folder, "held")
        env = dict(os.environ, PYTHONPATH=REPO, CHAOS_MARKER=self.marker)
        if hold:
            env["CHAOS_HOLD"] = hold
        self.out = open(os.path.join(self.folder, "stdout"), "w")
        self.err = open(os.path.join(self.folder, "stderr"), "w")
        self.proc = subprocess.Popen([sys.executable, CHAOS, module, *args], cwd=REPO, env=env,
                                     stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL)

    def kill_when_held(self, timeout=240) -> bool:
        """SIGKILLs the process once it is held; False if it ended before getting there."""
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.marker):
            if self.proc.poll() is not None:
                return False
            assert time.monotonic() < deadline, f"{self.folder}: not held in {timeout} s"
            time.sleep(0.05)
        self.kill()
        return True

    def kill_after(self, seconds) -> bool:
        try:
            self.proc.wait(timeout=seconds)
            return False
        except subprocess.TimeoutExpired:
            self.kill()
            return True

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def finish(self, timeout=300) -> int:
        return self.proc.wait(timeout=timeout)

    @property
    def stderr(self) -> str:
        self.err.flush()
        with open(os.path.join(self.folder, "stderr")) as f:
            return f.read()


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def uninterrupted(tmp_path, module, args, out_flag):
    """The command run once, unkilled, into tmp_path/reference: (the runs' folder, its wall seconds)."""
    runs = str(tmp_path / "runs")
    os.makedirs(runs)
    start = time.monotonic()
    reference = Run(runs, module, [*args, out_flag, str(tmp_path / "reference")])
    assert reference.finish() == 0, reference.stderr[-3000:]
    return runs, time.monotonic() - start


def kill_by_plan(runs, module, args, plan, wall, rng, finished, trained_line=None):
    """Runs the command once per plan entry, each run killed at its named instant (a hold point),
    or after a seeded random delay (None). ``finished()``: {name: digest} of the work finished so
    far, which no later run may change; ``trained_line(name)``: a log line no later run may print."""
    for hold in plan:
        before = finished()
        run = Run(runs, module, args, hold=hold)
        stopped = run.kill_when_held() if hold else run.kill_after(rng.uniform(1, 0.3 * wall))
        assert stopped, (hold, run.stderr[-3000:])  # the work must not end before the plan does
        after = finished()
        for name, digest in before.items():  # finished work is never done again
            assert after.get(name) == digest, (hold, name)
            if trained_line is not None:
                assert trained_line(name) not in run.stderr, (hold, name)


# ---------------------------------------------------------------------------------------- study


def finished(model_dir):
    """{experiment: sha of its model.keras and metrics.json} for each published, finished run."""
    done = {}
    for config in experiments.STUDY_ORDER:
        exp_dir = os.path.join(model_dir, config)
        metrics = os.path.join(exp_dir, "metrics.json")
        if os.path.exists(metrics):
            with open(metrics) as f:
                json.load(f)  # whole
            with zipfile.ZipFile(os.path.join(exp_dir, "model.keras")) as z:
                assert z.testzip() is None  # whole
            done[config] = (sha(os.path.join(exp_dir, "model.keras")), sha(metrics))
    return done


def read_metrics(model_dir):
    out = {}
    for name in experiments.STUDY_ORDER:
        with open(os.path.join(model_dir, name, "metrics.json")) as f:
            out[name] = json.load(f)
    return out


def assert_same_run(metrics, reference):
    for key in SAME_RUN_KEYS:
        assert metrics[key] == pytest.approx(reference[key], abs=TOLERANCE), key
    assert sorted(metrics["history"]) == sorted(reference["history"])
    for key, values in reference["history"].items():
        assert metrics["history"][key] == pytest.approx(values, abs=TOLERANCE), key


def test_study_killed_anywhere_ends_as_an_uninterrupted_one(data_dir, tmp_path):
    args = ["--exp", "all", "--epochs", "2", "--data_dir", data_dir]
    runs, wall = uninterrupted(tmp_path, "lenet_keras.train", args, "--model_dir")

    model_dir = str(tmp_path / "chaos")
    args += ["--model_dir", model_dir]
    rng = random.Random(20261129)
    # Chosen instants, in the order a study passes them, and seeded random ones (None) early
    # enough that the rest of the study still takes longer than the longest random delay.
    plan = ["load:vanilla", None, "epoch:vanilla:1", None, "evaluate:vanilla", "experiment:tuned",
            "build:tuned", None, "epoch:tuned:1", "publish:tuned", "experiment:transfer",
            "load:transfer", "epoch:transfer:1", "evaluate:transfer", "publish:transfer", "report"]
    kill_by_plan(runs, "lenet_keras.train", args, plan, wall, rng, lambda: finished(model_dir),
                 trained_line=lambda name: f"training {name} on")
    final = Run(runs, "lenet_keras.train", args)
    assert final.finish() == 0, final.stderr[-3000:]
    assert not os.path.exists(os.path.join(model_dir, ".study.json"))
    assert os.path.exists(os.path.join(model_dir, "report", "REPORT.md"))
    got, want = read_metrics(model_dir), read_metrics(str(tmp_path / "reference"))
    for name in experiments.STUDY_ORDER:
        assert_same_run(got[name], want[name])


# --------------------------------------------------------------------------------------- search


def search_state(tune_dir):
    project = os.path.join(tune_dir, "lenet5")
    trials = {}
    for name in sorted(os.listdir(project)):
        if name.startswith("trial_"):
            with open(os.path.join(project, name, "trial.json")) as f:
                t = json.load(f)
            trials[t["trial_id"]] = (t["status"], t["hyperparameters"]["values"], t["score"])
    with open(os.path.join(tune_dir, "best_hyperparameters.json")) as f:
        best = json.load(f)
    return trials, best


def completed_trials(tune_dir):
    """{trial id: sha of trial.json} for each COMPLETED trial."""
    project = os.path.join(tune_dir, "lenet5")
    done = {}
    if not os.path.isdir(project):
        return done
    for name in os.listdir(project):
        path = os.path.join(project, name, "trial.json")
        if name.startswith("trial_") and os.path.exists(path):
            with open(path) as f:
                if json.load(f)["status"] == "COMPLETED":
                    done[name] = sha(path)
    return done


def test_search_killed_anywhere_ends_as_an_uninterrupted_one(data_dir, tmp_path):
    args = ["--tuner", "random", "--max_trials", "3", "--max_epochs", "2", "--seed", "5",
            "--data_dir", data_dir]
    runs, wall = uninterrupted(tmp_path, "lenet_keras.tune", args, "--tune_dir")

    tune_dir = str(tmp_path / "chaos")
    args += ["--tune_dir", tune_dir]
    rng = random.Random(7)
    plan = ["trial_epoch:0:1", None, "oracle_write:3", None, "checkpoint:1", "trial_epoch:2:0",
            "best"]
    kill_by_plan(runs, "lenet_keras.tune", args, plan, wall, rng,
                 lambda: completed_trials(tune_dir))
    final = Run(runs, "lenet_keras.tune", args)
    assert final.finish() == 0, final.stderr[-3000:]
    trials, best = search_state(tune_dir)
    want_trials, want_best = search_state(str(tmp_path / "reference"))
    assert trials.keys() == want_trials.keys()
    for trial_id, (status, values, score) in want_trials.items():
        assert trials[trial_id][:2] == (status, values), trial_id
        assert trials[trial_id][2] == pytest.approx(score, abs=TOLERANCE), trial_id
    assert best == {**want_best, "best_val_accuracy": pytest.approx(want_best["best_val_accuracy"])}
    with open(os.path.join(tune_dir, "lenet5", "oracle.json")) as f:
        oracle = json.load(f)
    assert sorted(oracle["end_order"]) == sorted(want_trials)  # each trial counted once


# --------------------------------------------------------------------------------------- export


def test_an_export_killed_mid_write_leaves_no_version_tf_serving_would_load(trained_dir, tmp_path):
    base = str(tmp_path / "serving")
    args = ["--exp", "vanilla", "--model_dir", trained_dir, "--export_base", base]
    runs = str(tmp_path / "runs")
    os.makedirs(runs)
    run = Run(runs, "lenet_keras.export", args, hold="export")
    assert run.kill_when_held()
    model_base = os.path.join(base, "lenet_vanilla")
    assert not [name for name in os.listdir(model_base) if name.isdigit()]  # what TF Serving loads
    again = Run(runs, "lenet_keras.export", args)
    assert again.finish() == 0, again.stderr[-3000:]
    from lenet_keras.serving.load import load_saved_model

    assert len(load_saved_model(model_base).class_names) == 100
    assert [name for name in os.listdir(model_base) if name.isdigit()] == ["1"]
