"""A search a person can look at: every trial's HParams session and curves in TensorBoard, read back
from the event files with TensorBoard's own reader, and the report's search section."""

from __future__ import annotations

import glob
import os
import shutil

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import api_pb2, metadata
from tensorboard.util import tensor_util

from lenet_keras import data, experiments
from lenet_keras.reporting import plots, search_section
from lenet_keras.reporting.document import write_report
from lenet_keras.search import durable, layout, space
from lenet_keras.search import tuner as tuning
from tests.conftest import assert_one_line_error, run_cli

CONFIG = experiments.get_config("tuned")
MAX_EPOCHS = 1


def event_files(tune_dir: str) -> dict:
    """{path: (size, mtime)} of every event file under the search's TensorBoard folder."""
    paths = glob.glob(os.path.join(layout.tensorboard_dir(tune_dir), "**", "events.*"), recursive=True)
    return {p: (os.path.getsize(p), os.stat(p).st_mtime_ns) for p in paths}


def sessions(tune_dir: str) -> dict:
    """{trial_id: ({hparam: value}, [session ends' status], final validation epoch_accuracy)} of
    every HParams session TensorBoard finds under the search's TensorBoard folder."""
    found = {}
    for run_dir in sorted(glob.glob(os.path.join(layout.tensorboard_dir(tune_dir), "*", "*"))):
        events = event_accumulator.EventAccumulator(run_dir, size_guidance={"tensors": 0})
        events.Reload()
        starts = events.Tensors(metadata.SESSION_START_INFO_TAG)
        assert len(starts) == 1, run_dir  # one session per trial, never two
        start = metadata.parse_session_start_info_plugin_data(
            events.SummaryMetadata(metadata.SESSION_START_INFO_TAG).plugin_data.content)
        values = {name: getattr(value, value.WhichOneof("kind"))
                  for name, value in start.hparams.items()}
        ends = [metadata.parse_session_end_info_plugin_data(
            events.SummaryMetadata(metadata.SESSION_END_INFO_TAG).plugin_data.content).status
        ] * len(events.Tensors(metadata.SESSION_END_INFO_TAG))
        validation = event_accumulator.EventAccumulator(os.path.join(run_dir, "validation"),
                                                        size_guidance={"tensors": 0})
        validation.Reload()
        accuracy = [float(tensor_util.make_ndarray(e.tensor_proto))
                    for e in validation.Tensors("epoch_accuracy")]
        found[start.group_name] = (values, ends, accuracy)
    return found


@pytest.fixture(scope="module")
def search(tmp_path_factory, data_dir):
    """A random search of 2 trials, 1 epoch each, then resumed to 3: (tune_dir, event files after
    the first 2 trials, the tuner). About 20 s on a 2-core machine."""
    splits = data.load_splits(CONFIG, data_dir)
    tune_dir = str(tmp_path_factory.mktemp("tune"))

    def run(max_trials):
        tuner = tuning.make_tuner("random", CONFIG, splits.num_classes, tune_dir,
                                  max_trials=max_trials, max_epochs=MAX_EPOCHS, seed=3)
        tuning.search(tuner, splits, epochs=MAX_EPOCHS, verbose=0)
        tuning.write_results(tuner, tune_dir, "random", MAX_EPOCHS)
        return tuner

    run(2)
    before = event_files(tune_dir)
    return tune_dir, before, run(3)


@pytest.mark.slow
def test_every_trial_is_one_hparams_session_with_its_values_and_accuracy(search):
    tune_dir, _, tuner = search
    found = sessions(tune_dir)
    trials = tuner.oracle.trials
    assert sorted(found) == sorted(trials) and len(found) == 3
    for trial_id, (values, ends, accuracy) in found.items():
        trial = trials[trial_id]
        assert set(values) == set(space.NAMES)
        assert values == pytest.approx(trial.hyperparameters.values)
        assert ends == [api_pb2.STATUS_SUCCESS]
        assert len(accuracy) == MAX_EPOCHS and accuracy[-1] == pytest.approx(trial.score)


@pytest.mark.slow
def test_a_resumed_search_adds_sessions_only_for_its_new_trials(search):
    tune_dir, before, _ = search
    after = event_files(tune_dir)
    assert {p: after[p] for p in before} == before  # the first two trials' files untouched
    new = {os.path.relpath(p, layout.tensorboard_dir(tune_dir)).split(os.sep)[0]
           for p in set(after) - set(before)}
    assert len(before) == 2 * 3 and new == {"2"}  # session, train and validation of trial 2 only


@pytest.mark.slow
def test_the_report_shows_the_search(search, trained_dir, tmp_path):
    tune_dir, _, tuner = search
    # The tuned run alone (its metrics, no predictions): the study's own pictures are not the point.
    os.makedirs(tmp_path / "models" / "tuned")
    shutil.copy(os.path.join(trained_dir, "tuned", "metrics.json"), tmp_path / "models" / "tuned")
    path = write_report(str(tmp_path / "models"), str(tmp_path), tune_dir)
    markdown = open(path).read()
    section = markdown[markdown.index("## Architecture search (random)"):]
    assert layout.tensorboard_command(tune_dir) in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and "COMPLETED" in line]
    scores = [float(row.rstrip(" |").rsplit("|", 1)[1]) for row in rows]
    assert len(rows) == 3 and scores == sorted(scores, reverse=True)  # best first
    best = tuning.best_trial(tuner.oracle.trials.values())
    assert rows[0].startswith(f"| {best.trial_id} |")
    for png in (search_section.DECISIONS_PNG, search_section.CURVES_PNG):
        assert f"]({png})" in section
        with Image.open(tmp_path / png) as image:
            pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
        assert len(np.unique(pixels, axis=0)) > 50, png  # drawn, not a blank canvas

    # A search from before tune logged to TensorBoard: the table and decisions, no curve.
    old = tmp_path / "old"
    shutil.copytree(tune_dir, old, ignore=shutil.ignore_patterns(layout.TENSORBOARD_DIR))
    markdown = open(write_report(str(tmp_path / "models"), str(tmp_path / "old_report"),
                                 str(old))).read()
    assert f"No TensorBoard logs of trial {best.trial_id}" in markdown
    assert search_section.DECISIONS_PNG in markdown and search_section.CURVES_PNG not in markdown


@pytest.mark.slow
def test_the_decisions_plot_has_a_point_per_trial_and_decision(search):
    tune_dir, _, tuner = search
    trials = search_section.load_trials(tune_dir)
    rows = tuning.trial_rows(trials)
    best = tuning.best_trial(trials)
    figure = plots.search_decisions(rows, search_section._domains(best), best.trial_id)
    assert [ax.get_xlabel() for ax in figure.axes] == [n.replace("_", " ") for n in space.NAMES]
    for ax in figure.axes:
        points, star = ax.get_lines()
        assert len(points.get_ydata()) == 3
        assert list(star.get_ydata()) == [best.score]
    assert sorted(points.get_xdata()) == sorted(r["learning_rate"] for r in rows)
    curves = search_section.trial_curves(tune_dir, best, {t.trial_id: t for t in trials})
    assert curves["validation"] == {1: pytest.approx(best.score)}


def test_the_learning_rate_axis_labels_do_not_overlap():
    """Learning rates over the search's range (a decade): matplotlib would also label minor ticks,
    and its 4x10^-4 and 6x10^-4 ran together in a 2.6-inch panel."""
    rng = np.random.default_rng(0)
    choices = {name: ["a", "b"] for name in space.NAMES[:-1]}  # five panels, as a real search
    rows = [{"trial": str(i), "best_val_accuracy": float(rng.uniform(0.1, 0.3)), "epochs": 2,
             "learning_rate": float(lr), **{name: "a" for name in choices}}
            for i, lr in enumerate(np.exp(rng.uniform(*np.log(space.LEARNING_RATE_RANGE), 30)))]
    figure = plots.search_decisions(rows, {**choices, "learning_rate": None}, "3")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = figure.axes[-1]
    labels = [t for t in ax.get_xticklabels(minor=False) + ax.get_xticklabels(minor=True)
              if t.get_text() and t.get_visible()]
    low, high = ax.get_xlim()
    shown_ = sorted((t for t in labels if low <= t.get_position()[0] <= high),
                    key=lambda t: t.get_position()[0])
    assert len(shown_) >= 2, [t.get_text() for t in labels]
    boxes = [t.get_window_extent(renderer) for t in shown_]
    gaps = [b.x0 - a.x1 for a, b in zip(boxes, boxes[1:], strict=False)]
    assert min(gaps) > 0, [(t.get_text(), gap) for t, gap in zip(shown_, gaps, strict=False)]


def test_a_retried_trial_starts_with_empty_logs(tmp_path):
    log_dir = tmp_path / "tensorboard"
    (log_dir / "4" / "execution0").mkdir(parents=True)
    (log_dir / "4" / "execution0" / "events.out.tfevents.killed").write_text("half a trial")
    (log_dir / "3").mkdir()
    seen = []

    class Trial:
        trial_id = "4"

    class Tuner:
        def run_trial(self, trial, *args, **kwargs):
            seen.append(sorted(os.listdir(log_dir)))

    tuner = Tuner()
    durable.fresh_logs_each_trial(tuner, str(log_dir))
    tuner.run_trial(Trial())
    assert seen == [["3"]]


def test_overwrite_clears_the_tensorboard_logs(tmp_path):
    (tmp_path / layout.TENSORBOARD_DIR / "0").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    tuning.clear_search(str(tmp_path))
    assert os.listdir(tmp_path) == ["other"]


@pytest.mark.slow
def test_report_tune_dir_without_a_search_is_one_line(trained_dir, tmp_path):
    proc = run_cli("lenet_keras.report", "--model_dir", trained_dir, "--out_dir", str(tmp_path),
                   "--tune_dir", str(tmp_path / "nothing"))
    assert_one_line_error(proc, "holds no search", "lenet_keras.tune")


def test_a_continued_hyperband_model_has_the_curve_of_every_epoch(tmp_path):
    import keras_tuner as kt
    import tensorflow as tf

    def trial(trial_id, **values):
        hp = kt.HyperParameters()
        hp.values.update(values)
        return kt.engine.trial.Trial(hp, trial_id=trial_id, status="COMPLETED")

    # Trial 1 continues trial 0's model: epoch 1 was trained in trial 0, epochs 2-3 in trial 1.
    logged = {"0": {0: 0.1}, "1": {1: 0.2, 2: 0.3}}
    for trial_id, points in logged.items():
        run_dir = os.path.join(layout.tensorboard_dir(str(tmp_path)), trial_id, "execution0")
        writer = tf.summary.create_file_writer(os.path.join(run_dir, "validation"))
        with writer.as_default():
            for step, value in points.items():
                tf.summary.scalar("epoch_accuracy", value, step=step)
        writer.close()
    trials = {"0": trial("0"), "1": trial("1", **{"tuner/trial_id": "0"})}
    curves = search_section.trial_curves(str(tmp_path), trials["1"], trials)
    assert curves["validation"] == pytest.approx({1: 0.1, 2: 0.2, 3: 0.3})
    assert curves["train"] == {}
