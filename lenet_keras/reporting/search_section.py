"""REPORT.md's search section: a keras-tuner search's trials (best first), validation accuracy
against each searched decision, and the best trial's learning curve beside the tuned experiment's.

The trials are read with keras-tuner's own ``Trial.load`` and their curves from the TensorBoard
logs ``tune`` writes, with TensorBoard's ``EventAccumulator``. Both import TensorFlow, so a report
with a search takes a few seconds more than one without; ``has_search`` itself is cheap.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Dict, List, Optional

from matplotlib.figure import Figure

from lenet_keras.errors import UserError, first_line
from lenet_keras.reporting import plots
from lenet_keras.reporting.markdown import escape, image
from lenet_keras.reporting.runs import Run
from lenet_keras.search import layout

DECISIONS_PNG = "search_decisions.png"
CURVES_PNG = "search_curves.png"
# TensorBoard's run folder and tag of each curve, as keras.callbacks.TensorBoard writes them.
CURVES = {"train": ("train", "epoch_accuracy"), "validation": ("validation", "epoch_accuracy")}


def has_search(tune_dir: Optional[str]) -> bool:
    return bool(tune_dir) and bool(layout.trial_files(tune_dir))


def load_trials(tune_dir: str) -> list:
    """keras-tuner's Trials of the search in ``tune_dir``, in trial order."""
    import keras_tuner as kt

    trials = []
    for path in layout.trial_files(tune_dir):
        try:
            trials.append(kt.engine.trial.Trial.load(path))
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"unreadable {path} ({first_line(exc, 100)}): resume the search with "
                            f"`python -m lenet_keras.tune --tune_dir {tune_dir}`, or pass another "
                            "--tune_dir") from None
    return trials


def _scalars(run_dir: str, tag: str) -> Dict[int, float]:
    """``{epoch (from 1): value}`` of one TensorBoard scalar; empty when the run has none."""
    import logging

    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    # Its reader logs every file it opens at INFO: its own level, not ours, keeps that quiet.
    logging.getLogger("tensorboard").setLevel(logging.WARNING)
    if not os.path.isdir(run_dir):
        return {}
    events = event_accumulator.EventAccumulator(
        run_dir, size_guidance={event_accumulator.TENSORS: 0})  # 0: keep every epoch
    events.Reload()
    if tag not in events.Tags()["tensors"]:
        return {}
    return {e.step + 1: float(tensor_util.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)}


def trial_curves(tune_dir: str, trial, trials: Dict[str, object]) -> Dict[str, Dict[int, float]]:
    """A trial's model's accuracy per epoch from the search's TensorBoard logs. A Hyperband trial
    that continues an earlier trial's model (``tuner/trial_id``) trained only the later epochs; the
    earlier ones are that trial's, so the curve covers every epoch of the model."""
    chain = [trial]
    while chain[-1].hyperparameters.values.get("tuner/trial_id") in trials:
        chain.append(trials[chain[-1].hyperparameters.values["tuner/trial_id"]])
    curves = {}
    for label, (run, tag) in CURVES.items():
        points = {}
        for earlier_first in reversed(chain):
            run_dir = os.path.join(layout.tensorboard_dir(tune_dir), str(earlier_first.trial_id),
                                   "execution0", run)
            points.update(_scalars(run_dir, tag))
        curves[label] = points
    return curves


def _domains(trial) -> Dict[str, Optional[list]]:
    """Each searched decision's choices in the search space's order; None for a number."""
    import keras_tuner as kt

    hp_module = kt.engine.hyperparameters

    domains = {}
    for hp in trial.hyperparameters.space:
        if isinstance(hp, hp_module.Choice):
            domains[hp.name] = list(hp.values)
        elif isinstance(hp, hp_module.Boolean):
            domains[hp.name] = [False, True]
        else:
            domains[hp.name] = None
    return domains


def _search_settings(tune_dir: str) -> dict:
    try:
        with open(os.path.join(tune_dir, layout.SEARCH_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def section(tune_dir: str, tuned: Optional[Run], save: Callable[[Figure, str], None]) -> List[str]:
    """The section's Markdown lines; its pictures are handed to ``save(figure, png name)``."""
    from lenet_keras.search import tuner as tuning

    trials = load_trials(tune_dir)
    by_id = {t.trial_id: t for t in trials}
    settings = _search_settings(tune_dir)
    kind, max_epochs = settings.get("tuner", "keras-tuner"), settings.get("max_epochs", "?")
    rows = tuning.trial_rows(trials)
    for row in rows:
        row["epochs"] = row["epochs"] or max_epochs
    best = tuning.best_trial(trials)
    lines = ["", f"## Architecture search ({escape(kind)})", "",
             f"{len(trials)} trials read from `{os.path.abspath(tune_dir)}`; the objective is "
             "val_accuracy on the tuned experiment's validation split. Every trial's curves and "
             f"hyperparameters: `{layout.tensorboard_command(tune_dir)}`.", ""]
    if best is None:
        return lines + ["*No trial has completed yet: resume the search with "
                        f"`python -m lenet_keras.tune --tune_dir {tune_dir}`.*", "",
                        tuning.summary_table(rows, max_epochs)]
    rows.sort(key=lambda r: (r["best_val_accuracy"] is None, -(r["best_val_accuracy"] or 0),
                             int(r["trial"])))
    lines += [f"Best: trial {best.trial_id}, val accuracy {best.score:.4f}. Trials, best first:", "",
              tuning.summary_table(rows, max_epochs), ""]
    completed = [r for r in rows if r["best_val_accuracy"] is not None]
    save(plots.search_decisions(completed, _domains(best), best.trial_id), DECISIONS_PNG)
    lines += ["Each completed trial's best validation accuracy against each searched decision "
              "(star: the best trial):", "", image(DECISIONS_PNG[:-4], DECISIONS_PNG), ""]
    panels = {f"search: best trial {best.trial_id}": trial_curves(tune_dir, best, by_id)}
    if not any(panels[next(iter(panels))].values()):
        return lines + [f"*No TensorBoard logs of trial {best.trial_id} in "
                        f"`{layout.tensorboard_dir(tune_dir)}` (a search from before `tune` logged "
                        "its trials): no learning curve.*"]
    if tuned is not None and tuned.metrics is not None:
        history = tuned.metrics["history"]
        panels["the tuned experiment"] = {
            "train": dict(enumerate(history.get("accuracy", []), start=1)),
            "validation": dict(enumerate(history.get("val_accuracy", []), start=1)),
        }
    save(plots.side_by_side_curves(panels), CURVES_PNG)
    beside = (" beside the tuned experiment's" if len(panels) > 1
              else " (no finished tuned experiment to compare with)")
    return lines + [f"The best trial's learning curve{beside}, accuracy per epoch:", "",
                    image(CURVES_PNG[:-4], CURVES_PNG)]
