"""REPORT.md and its pictures, from the runs in a model dir and, when there is one, a search.

It loads no model and no data set, so it needs no retraining and runs in seconds; without a search
it does not even import TensorFlow (the search section reads keras-tuner's and TensorBoard's files
with their own readers, which do).
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable, Dict, Optional, Sequence, Tuple

from matplotlib.figure import Figure

from lenet_keras.errors import UserError, first_line
from lenet_keras.reporting import plots, search_section
from lenet_keras.reporting.markdown import escape, image
from lenet_keras.reporting.runs import Run, find_runs
from lenet_keras.reporting.tables import comparison_table, confused_pairs_table
from lenet_keras.training import atomic

REPORT_DIR = "report"
REPORT_FILE = "REPORT.md"
# Above this many classes a full confusion matrix is unreadable; superclasses or pairs instead.
READABLE_CLASSES = 20


def figures(run: Run) -> Dict[str, Tuple[str, Callable[[], Figure]]]:
    """``{png file name: (caption, function drawing the Figure)}`` for one finished run.

    Drawing is deferred so that each figure is drawn, saved and dropped in turn.
    """
    m, name = run.metrics, run.name
    out = {
        f"curves_{name}.png": (
            "Learning curves (star: the best validation epoch, whose weights were tested)",
            functools.partial(plots.learning_curves, name, m["history"], m["best_epoch"]),
        )
    }
    p = run.predictions
    if p is None:
        return out
    names = m["class_names"]
    labels, predictions = p["labels"], p["predictions"]
    if len(names) <= READABLE_CLASSES:
        out[f"confusion_{name}.png"] = (
            "Confusion matrix on the test split",
            functools.partial(
                plots.confusion_matrix,
                plots.confusion_counts(labels, predictions, len(names)),
                names,
                f"{name}: confusion matrix ({len(labels)} test images)",
            ),
        )
    elif "coarse_labels" in p and m.get("coarse_class_names"):
        coarse_names = m["coarse_class_names"]
        coarse_predicted = p["fine_to_coarse"][predictions]
        known = coarse_predicted >= 0
        out[f"confusion_{name}.png"] = (
            "Superclass confusion: true superclass vs the superclass of the predicted fine class",
            functools.partial(
                plots.confusion_matrix,
                plots.confusion_counts(p["coarse_labels"][known], coarse_predicted[known],
                                       len(coarse_names)),
                coarse_names,
                f"{name}: superclass confusion ({int(known.sum())} test images)",
            ),
        )
    shown = len(p["sample_images"])
    out[f"predictions_{name}.png"] = (
        f"The first {shown} test images with predicted and true class",
        functools.partial(
            plots.prediction_grid, p["sample_images"], labels[:shown], predictions[:shown], names,
            f"{name}: first {shown} test images",
        ),
    )
    return out


def write_report(model_dir: str, out_dir: Optional[str] = None, tune_dir: Optional[str] = None,
                 study_order: Sequence[str] = ()) -> str:
    """Writes REPORT.md and its PNGs into ``out_dir`` (default <model_dir>/report); returns its path.
    A search in ``tune_dir`` (``python -m lenet_keras.tune``) gets a section of its own. The runs
    are ``find_runs(model_dir, study_order)``."""
    runs = find_runs(model_dir, study_order)
    out_dir = out_dir or os.path.join(model_dir, REPORT_DIR)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {out_dir} ({exc.strerror}): pass another --out_dir") from None
    lines = [
        "# LeNet-5 study report",
        "",
        f"Runs read from `{os.path.abspath(model_dir)}`. Accuracies are fractions; the test numbers "
        "are those of the best-validation-accuracy weights; training time is the sum of the "
        "epochs' training passes.",
        "",
        comparison_table(runs),
        "",
        f"Per-epoch curves of every run: `tensorboard --logdir {model_dir}`.",
    ]
    for run in runs:
        if run.metrics is None:
            continue
        lines += ["", f"## {escape(run.name)} ({escape(run.metrics['dataset'])})", ""]
        if run.problem:
            lines += [f"*{run.problem}*", ""]
        elif len(run.metrics["class_names"]) > READABLE_CLASSES and "coarse_labels" not in run.predictions:
            lines += ["*No superclass labels in its predictions.npz (trained by an older version, or "
                      "the dataset has none): the most-confused pairs stand in for a confusion matrix.*",
                      ""]
        for filename, (caption, draw) in figures(run).items():
            _save(draw(), os.path.join(out_dir, filename))
            lines += [f"{escape(caption)}:", "", image(filename[:-4], filename), ""]
        if run.predictions is not None:
            lines += ["Most confused class pairs on the test split:", "", confused_pairs_table(run)]
    if search_section.has_search(tune_dir):
        tuned = next((run for run in runs if run.name == "tuned"), None)
        lines += search_section.section(
            tune_dir, tuned, lambda figure, name: _save(figure, os.path.join(out_dir, name)))
    path = os.path.join(out_dir, REPORT_FILE)
    try:
        atomic.write_text(path, "\n".join(lines).rstrip() + "\n")
    except OSError as exc:
        raise _unwritable(path, exc) from None
    return path


def write_study_report(model_dir: str, tune_dir: Optional[str] = None, *,
                       study_order: Sequence[str]) -> str:
    """``write_report`` at the end of ``train --exp all``, whose experiments are finished and
    published by then: a failure the user can fix is one UserError that says they are kept and how
    to retry the report alone; a bug keeps its traceback (exit 1), after a line saying the same."""
    retry = f"`python -m lenet_keras.report --model_dir {model_dir}`"
    kept = f"the experiments finished and are kept in {model_dir}, but the report failed"
    try:
        return write_report(model_dir, tune_dir=tune_dir, study_order=study_order)
    except (UserError, OSError) as exc:
        raise UserError(f"{kept} ({first_line(exc)}): fix that and retry the report with "
                        f"{retry}") from None
    except Exception:
        print(f"{kept}; retry it with {retry} once this is fixed:", file=sys.stderr)
        raise


def _unwritable(path: str, exc: OSError) -> UserError:
    return UserError(f"cannot write {path} ({exc.strerror}): free some space or pass another --out_dir")


def _save(figure: Figure, path: str) -> None:
    try:
        with atomic.writing(path) as tmp:  # an interrupted report never leaves a truncated PNG
            figure.savefig(tmp, dpi=100)
    except OSError as exc:
        raise _unwritable(path, exc) from None
