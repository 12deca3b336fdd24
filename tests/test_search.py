"""keras-tuner search on the tiny synthetic CIFAR-100: outputs, caps, resume, --hparams round trip,
distributed and parallel searches."""

import json
import os
import re
import shutil

import keras
import keras_tuner as kt
import pytest

from lenet_keras import data, experiments
from lenet_keras.errors import UserError
from lenet_keras.search import space as hparams
from lenet_keras.search import tuner as tuning
from lenet_keras.search.parallel import free_port, supervise
from tests.conftest import assert_one_line_error, run_cli
from tests.test_search_tensorboard import sessions

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


@pytest.mark.slow
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


@pytest.mark.slow
def test_objective_is_validation_never_test(hyperband_dir):
    oracle = json.load(open(os.path.join(hyperband_dir, tuning.PROJECT, "oracle.json")))
    trial = json.load(open(os.path.join(hyperband_dir, tuning.PROJECT, "trial_0", "trial.json")))
    assert "val_accuracy" in trial["metrics"]["metrics"]
    assert not any("test" in m for m in trial["metrics"]["metrics"])
    assert oracle["ongoing_trials"] == {}


@pytest.mark.slow
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


def test_search_json_is_written_once_and_never_half_written(splits, tmp_path, monkeypatch):
    # A distributed chief and its workers all check search.json at once: a process that truncated
    # it to rewrite it would make another read an unreadable file and refuse the search.
    from lenet_keras.training import atomic

    replace = atomic.replace
    renamed = []

    def watched_replace(src, dst):
        renamed.append((src, dst))
        assert not os.path.exists(dst)  # only a finished file appears
        replace(src, dst)

    monkeypatch.setattr(atomic, "replace", watched_replace)
    for _ in range(2):
        tuning.make_tuner("random", CONFIG, splits.num_classes, str(tmp_path), max_trials=1)
    final = str(tmp_path / tuning.SEARCH_FILE)
    assert [dst for _, dst in renamed] == [final]  # resumed: read only
    assert renamed[0][0] != final and os.path.dirname(renamed[0][0]) == str(tmp_path)
    assert json.load(open(tmp_path / tuning.SEARCH_FILE)) == {"tuner": "random", "max_epochs": 20}
    assert not [name for name in os.listdir(tmp_path) if ".tmp" in name]


def architecture(model):
    return [
        (type(layer).__name__, layer.name, tuple(layer.output.shape), layer.count_params(),
         getattr(getattr(layer, "activation", None), "__name__", None))
        for layer in model.layers
    ]


@pytest.mark.slow
def test_train_hparams_round_trips_into_the_same_architecture(hyperband_dir, data_dir, tmp_path):
    best_file = os.path.join(hyperband_dir, tuning.BEST_FILE)
    proc = run_cli("lenet_keras.train", "--exp", "tuned", "--hparams", best_file, "--epochs", "1",
                   "--data_dir", data_dir, "--model_dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = keras.models.load_model(str(tmp_path / "tuned" / "model.keras"))
    best = json.load(open(best_file))
    expected = hparams.build_hypermodel(best, 100, CONFIG)
    assert architecture(trained) == architecture(expected)
    config = json.load(open(tmp_path / "tuned" / "config.json"))
    assert config["learning_rate"] == pytest.approx(best["values"]["learning_rate"])


@pytest.mark.slow
def test_train_rejects_a_foreign_hparams_file(hyperband_dir, tmp_path):
    foreign = os.path.join(hyperband_dir, tuning.PROJECT, "trial_0", "trial.json")
    proc = run_cli("lenet_keras.train", "--exp", "tuned", "--hparams", foreign,
                   "--model_dir", str(tmp_path))
    assert_one_line_error(proc, foreign, "lenet_keras.tune")
    assert not os.path.exists(tmp_path / "tuned")


def oracle_state(tune_dir):
    with open(os.path.join(tune_dir, tuning.PROJECT, "oracle.json")) as f:
        return json.load(f)


@pytest.mark.slow
def test_distributed_chief_and_two_workers(data_dir, tmp_path):
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    tune_dir = str(tmp_path / "tune")
    args = [sys.executable, "-m", "lenet_keras.tune", "--tuner", "random", "--max_trials", "2",
            "--max_epochs", "1", "--data_dir", data_dir, "--tune_dir", tune_dir]
    base_env = dict(os.environ, PYTHONPATH=REPO, KERASTUNER_ORACLE_IP="127.0.0.1",
                    KERASTUNER_ORACLE_PORT=str(free_port()))

    def start(tuner_id, *extra):
        return subprocess.Popen(args + list(extra), env=dict(base_env, KERASTUNER_TUNER_ID=tuner_id),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)

    def finish(procs, outputs, timeout):
        """Waits for each process not yet in ``outputs``; all must exit 0. Kills any left over."""
        try:
            for tuner_id, proc in procs.items():
                if tuner_id not in outputs:
                    outputs[tuner_id] = proc.communicate(timeout=timeout)
        finally:
            for proc in procs.values():
                proc.kill()
        for tuner_id, proc in procs.items():
            assert proc.returncode == 0, (tuner_id, outputs[tuner_id][1][-2000:])
        return outputs

    # As the README runs them: the chief is told its workers.
    procs = {"chief": start("chief", "--worker_ids=tuner0,tuner1"),
             "tuner0": start("tuner0"), "tuner1": start("tuner1")}
    outputs = finish(procs, {}, timeout=240)
    project = os.path.join(tune_dir, tuning.PROJECT)
    trials = [json.load(open(os.path.join(project, t, "trial.json")))
              for t in sorted(os.listdir(project)) if t.startswith("trial_")]
    assert [t["status"] for t in trials] == ["COMPLETED", "COMPLETED"]
    assert sorted(sessions(tune_dir)) == sorted(t["trial_id"] for t in trials)  # workers log them
    # The chief only serves the oracle: the two workers ran the trials.
    assert "worker done" in outputs["tuner0"][0] and "worker done" in outputs["tuner1"][0]
    assert json.load(open(os.path.join(tune_dir, tuning.BEST_FILE)))["values"]
    # keras-tuner's chief alone would leave the last finished trial in ongoing_trials, to be rerun.
    assert oracle_state(tune_dir)["ongoing_trials"] == {}

    # Resuming the finished search with one worker late: told its workers, the chief waits for the
    # late one (keras-tuner's chief alone exits within a second of tuner0's "search over", and the
    # late worker then finds no chief).
    procs = {"chief": start("chief", "--worker_ids=tuner0,tuner1"), "tuner0": start("tuner0")}
    try:
        outputs = {"tuner0": procs["tuner0"].communicate(timeout=120)}
        time.sleep(3)
        assert procs["chief"].poll() is None, procs["chief"].communicate()[1][-2000:]
        procs["tuner1"] = start("tuner1")
    finally:
        if "tuner1" not in procs:  # the check failed: stop the chief rather than wait for it
            for proc in procs.values():
                proc.kill()
    outputs = finish(procs, outputs, timeout=120)
    for out, err in outputs.values():
        assert "/step" not in out + err  # nothing trained again
    assert "worker done" in outputs["tuner1"][0]
    assert oracle_state(tune_dir)["ongoing_trials"] == {}


@pytest.mark.slow
def test_worker_ids_are_only_for_a_distributed_chief(splits, tmp_path):
    with pytest.raises(UserError, match="KERASTUNER_TUNER_ID=chief"):
        tuning.make_tuner("random", CONFIG, splits.num_classes, str(tmp_path), max_trials=1,
                          worker_ids=["tuner0"])
    proc = run_cli("lenet_keras.tune", "--parallel_trials", "2", "--worker_ids", "tuner0",
                   "--tune_dir", str(tmp_path / "t"))
    assert_one_line_error(proc, "leave out --worker_ids")
    assert not os.path.exists(tmp_path / "t")


@pytest.mark.slow
def test_parallel_trials_trains_in_workers_and_overwrite_starts_anew(data_dir, tmp_path):
    tune_dir = str(tmp_path / "tune")
    common = ("--tuner", "random", "--max_epochs", "1", "--data_dir", data_dir, "--tune_dir", tune_dir,
              "--parallel_trials", "2")
    proc = run_cli("lenet_keras.tune", *common, "--max_trials", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 trials" in proc.stdout
    assert len(trial_files(tune_dir)) == 2
    # Every trial, whichever worker trained it, is one HParams session; the way to see them is
    # printed at the start and at the end.
    assert sorted(sessions(tune_dir)) == ["0", "1"]
    watch = f"tensorboard --logdir {os.path.join(tune_dir, 'tensorboard')}"
    lines = proc.stdout.strip().splitlines()
    assert watch in lines[0] and watch in lines[-1], proc.stdout
    assert json.load(open(os.path.join(tune_dir, tuning.BEST_FILE)))["values"]
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    for worker in ("tuner0", "tuner1"):
        log = open(os.path.join(tune_dir, "logs", f"{worker}.log")).read()
        assert "worker done" in log and f"{threads} TensorFlow thread(s)" in log, log[-2000:]
    assert oracle_state(tune_dir)["ongoing_trials"] == {}
    # The same command resumes the finished search: no trial runs again.
    proc = run_cli("lenet_keras.tune", *common, "--max_trials", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(trial_files(tune_dir)) == 2
    for worker in ("tuner0", "tuner1"):
        log = open(os.path.join(tune_dir, "logs", f"{worker}.log")).read()
        assert "worker done" in log and "/step" not in log, log[-2000:]
    assert sorted(sessions(tune_dir)) == ["0", "1"]  # and no session twice
    # --overwrite clears the search once, before any worker starts: one new trial, not three.
    proc = run_cli("lenet_keras.tune", *common, "--max_trials", "1", "--overwrite")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(trial_files(tune_dir)) == 1
    assert sorted(sessions(tune_dir)) == ["0"]  # the old trials' logs went with them


@pytest.mark.slow
def test_parallel_trials_failure_is_one_line(tmp_path):
    # No data: the chief and both workers fail on it, and whichever is seen first is reported (the
    # supervisor's worker-first order is tested on real processes below).
    proc = run_cli("lenet_keras.tune", "--parallel_trials", "2", "--data_dir", str(tmp_path / "empty"),
                   "--tune_dir", str(tmp_path / "tune"), env={"TFDS_DATA_DIR": str(tmp_path / "empty")})
    last = assert_one_line_error(proc, "failed (exit code", "cifar100", "full output:")
    assert re.search(r"^error: search (chief|worker tuner[01]) failed \(exit code \d+\): dataset ",
                     last), last
    assert "error: dataset" not in last  # the worker's own prefix is not repeated


@pytest.mark.slow
def test_parallel_trials_below_one_is_refused_before_anything_starts(tmp_path):
    proc = run_cli("lenet_keras.tune", "--parallel_trials", "0", "--tune_dir", str(tmp_path / "t"))
    assert_one_line_error(proc, "--parallel_trials=0", "range [1,")
    assert not os.path.exists(tmp_path / "t")


@pytest.mark.slow
def test_parallel_trials_refuses_to_run_inside_a_distributed_search(tmp_path):
    proc = run_cli("lenet_keras.tune", "--parallel_trials", "2", "--tune_dir", str(tmp_path / "t"),
                   env={"KERASTUNER_TUNER_ID": "tuner0"})
    assert_one_line_error(proc, "unset KERASTUNER_TUNER_ID")


def _processes(tmp_path, **codes):
    """Real processes that print a line and exit with the given code (None: run until killed)."""
    import subprocess
    import sys

    procs, logs = {}, {}
    for tuner_id, code in codes.items():
        logs[tuner_id] = str(tmp_path / f"{tuner_id}.log")
        script = ("import sys, time; print('error: ' + sys.argv[1], flush=True); "
                  + ("time.sleep(60)" if code is None else f"sys.exit({code})"))
        with open(logs[tuner_id], "w") as log:
            procs[tuner_id] = subprocess.Popen([sys.executable, "-c", script, f"{tuner_id} broke"],
                                               stdout=log, stderr=subprocess.STDOUT)
    return procs, logs


@pytest.mark.parametrize("codes, message", [
    (dict(chief=0, tuner0=0, tuner1=0), None),
    (dict(chief=None, tuner0=0, tuner1=3), r"search worker tuner1 failed \(exit code 3\): tuner1 broke"),
    (dict(chief=2, tuner0=None, tuner1=None), r"search chief failed \(exit code 2\): chief broke"),
    (dict(chief=2, tuner0=3, tuner1=None), "search worker tuner0 failed"),  # workers' errors first
])
def test_supervise_waits_for_every_process_and_names_the_one_that_failed(tmp_path, codes, message):
    procs, logs = _processes(tmp_path, **codes)
    for tuner_id, code in codes.items():
        if code is not None:
            procs[tuner_id].wait()  # so which has failed by the first look does not race
    try:
        if message is None:
            supervise(procs, logs, poll_s=0.05)
            assert all(proc.returncode == 0 for proc in procs.values())
        else:
            with pytest.raises(UserError, match=message) as caught:
                supervise(procs, logs, poll_s=0.05)
            assert "full output: " in str(caught.value)
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()


def test_the_last_error_of_a_traceback_is_its_exception_line(tmp_path):
    import subprocess
    import sys

    from lenet_keras.search.parallel import _last_error

    log = tmp_path / "tuner0.log"
    with open(log, "w") as f:  # a gRPC error's message runs over lines and ends in a lone ">"
        subprocess.run([sys.executable, "-c", "print('I0000 some log'); raise RuntimeError("
                        "'<_InactiveRpcError of RPC that terminated with:\\n\\tstatus = UNAVAILABLE\\n>')"],
                       stdout=f, stderr=subprocess.STDOUT)
    assert log.read_text().rstrip().endswith(">")
    assert _last_error(str(log)) == "RuntimeError: <_InactiveRpcError of RPC that terminated with:"
    log.write_text("I0000 some log\nerror: dataset missing\nTraceback (most recent call last):\n")
    assert _last_error(str(log)) == "dataset missing"
    log.write_text("")
    assert _last_error(str(log)) == "no output"


def test_a_worker_told_to_wait_asks_again_after_a_pause(monkeypatch):
    statuses = iter([kt.engine.trial.TrialStatus.IDLE, kt.engine.trial.TrialStatus.RUNNING])

    class Oracle:  # stands in for keras-tuner's gRPC oracle client, which needs a chief
        def create_trial(self, tuner_id):
            return kt.engine.trial.Trial(kt.HyperParameters(), trial_id="0", status=next(statuses))

    slept = []
    monkeypatch.setattr(tuning.time, "sleep", slept.append)
    oracle = Oracle()
    tuning._wait_when_idle(oracle)
    assert oracle.create_trial("tuner0").status == kt.engine.trial.TrialStatus.IDLE
    assert slept == [tuning.IDLE_WAIT_S]
    assert oracle.create_trial("tuner0").status == kt.engine.trial.TrialStatus.RUNNING
    assert slept == [tuning.IDLE_WAIT_S]


def test_a_search_resumes_only_under_the_precision_it_began_with(splits, tmp_path):
    tuning.make_tuner("random", CONFIG, splits.num_classes, str(tmp_path), max_trials=1)
    bf16 = CONFIG.replace(precision="mixed_bfloat16")
    with pytest.raises(UserError, match="precision.*--overwrite"):
        tuning.make_tuner("random", bf16, splits.num_classes, str(tmp_path), max_trials=1)
    tuning.make_tuner("random", bf16, splits.num_classes, str(tmp_path / "b"), max_trials=1)
    assert json.load(open(tmp_path / "b" / tuning.SEARCH_FILE))["precision"] == "mixed_bfloat16"


def test_the_best_of_equal_trials_is_the_earliest_whatever_the_order_they_were_loaded_in():
    def trial(trial_id, score, status="COMPLETED"):
        t = kt.engine.trial.Trial(kt.HyperParameters(), trial_id=trial_id, status=status)
        t.score = score
        return t

    trials = {t.trial_id: t for t in (trial("2", 0.5), trial("0", 0.5), trial("1", 0.25),
                                      trial("3", 0.9, status="RUNNING"))}
    assert tuning.best_trial(trials.values()).trial_id == "0"
    trials["1"].score = 0.75
    assert tuning.best_trial(trials.values()).trial_id == "1"
    assert tuning.best_trial([]) is None
