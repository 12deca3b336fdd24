"""The study's report: comparison table, learning curves, confusion matrices, test predictions.

    python -m lenet_keras.report --model_dir saved_models [--out_dir DIR]

Reads what each training run left in <model_dir>/<exp>/ (metrics.json, predictions.npz) and writes
<model_dir>/report/REPORT.md with PNGs beside it. It loads no model and no data set, so it needs
neither TensorFlow nor retraining and runs in seconds.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
from matplotlib.figure import Figure

from lenet_keras import plots
from lenet_keras.errors import UserError, first_line, one_line_errors, reject_positional
from lenet_keras.layout import METRICS_FILE, PREDICTIONS_FILE

REPORT_DIR = "report"
REPORT_FILE = "REPORT.md"
CONFUSED_PAIRS = 10
# Above this many classes a full confusion matrix is unreadable; superclasses or pairs instead.
READABLE_CLASSES = 20
TABLE_HEADER = (
    "| experiment | dataset | epochs | params | trainable params | best val acc (epoch) "
    "| test top-1 | test top-5 | training time |"
)
METRICS_KEYS = ("dataset", "epochs_run", "params", "trainable_params", "best_val_accuracy",
                "best_epoch", "test_accuracy", "test_top5_accuracy", "history", "class_names")


@dataclasses.dataclass
class Run:
    name: str
    metrics: Optional[dict] = None  # None: the run is missing or unreadable, see `problem`
    predictions: Optional[Dict[str, np.ndarray]] = None
    problem: Optional[str] = None


def _train_command(model_dir: str, exp: str = "all") -> str:
    return f"`python -m lenet_keras.train --exp {exp} --model_dir {model_dir}`"


def load_run(model_dir: str, name: str) -> Run:
    """One experiment's outputs; a missing or broken run becomes a Run with a `problem`, not an error."""
    exp_dir = os.path.join(model_dir, name)
    metrics_path = os.path.join(exp_dir, METRICS_FILE)
    if not os.path.exists(metrics_path):
        return Run(name, problem=f"missing: run {_train_command(model_dir, name)}")
    try:
        with open(metrics_path) as f:
            metrics = json.load(f)
        absent = [key for key in METRICS_KEYS if key not in metrics]
        if absent:
            raise ValueError(f"no {', '.join(absent)}")
    except (OSError, ValueError) as exc:
        return Run(name, problem=f"unreadable {METRICS_FILE} ({first_line(exc, 100)}): train it again "
                                 f"with {_train_command(model_dir, name)}")
    run = Run(name, metrics=metrics)
    try:
        with np.load(os.path.join(exp_dir, PREDICTIONS_FILE)) as npz:
            run.predictions = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as exc:
        run.problem = f"no usable {PREDICTIONS_FILE} ({first_line(exc, 100)}): pictures skipped"
    return run


def find_runs(model_dir: str) -> List[Run]:
    """The study's experiments in study order, then any other run found in ``model_dir``."""
    from experiments import STUDY_ORDER

    if not os.path.isdir(model_dir):
        what = "is not a directory" if os.path.exists(model_dir) else "does not exist"
        raise UserError(f"--model_dir {model_dir} {what}: train first with {_train_command(model_dir)}")
    extra = sorted(
        name for name in os.listdir(model_dir)
        if name not in STUDY_ORDER and os.path.isfile(os.path.join(model_dir, name, METRICS_FILE))
    )
    runs = [load_run(model_dir, name) for name in (*STUDY_ORDER, *extra)]
    if not any(run.metrics for run in runs):
        raise UserError(
            f"no finished runs in {model_dir} (no <exp>/{METRICS_FILE}): "
            f"train first with {_train_command(model_dir)}"
        )
    return runs


def table_row(run: Run) -> str:
    if run.metrics is None:
        return f"| {run.name} | {run.problem} |" + " — |" * 7
    m = run.metrics
    seconds = sum(m.get("epoch_seconds") or [])
    return (
        f"| {run.name} | {m['dataset']} | {m['epochs_run']} | {m['params']:,} | "
        f"{m['trainable_params']:,} | {m['best_val_accuracy']:.4f} ({m['best_epoch']}) | "
        f"{m['test_accuracy']:.4f} | {m['test_top5_accuracy']:.4f} | {seconds:.1f} s |"
    )


def comparison_table(runs: List[Run]) -> str:
    return "\n".join([TABLE_HEADER, "|" + "---|" * 9, *(table_row(run) for run in runs)])


def most_confused_pairs(labels, predictions, k: int = CONFUSED_PAIRS) -> List[Tuple[int, int, int, int]]:
    """The k most frequent (true, predicted, count, true-class examples) with true != predicted."""
    pairs, counts = np.unique(np.stack([labels, predictions], axis=1), axis=0, return_counts=True)
    wrong = pairs[:, 0] != pairs[:, 1]
    pairs, counts = pairs[wrong], counts[wrong]
    order = np.lexsort((pairs[:, 1], pairs[:, 0], -counts))[:k]
    support = np.bincount(labels)
    return [
        (int(t), int(p), int(c), int(support[t]))
        for (t, p), c in zip(pairs[order], counts[order], strict=True)
    ]


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


def confused_pairs_table(run: Run) -> str:
    names = run.metrics["class_names"]
    p = run.predictions
    rows = ["| true class | predicted as | test images | share of the true class |", "|---|---|---|---|"]
    for true, predicted, count, support in most_confused_pairs(p["labels"], p["predictions"]):
        rows.append(f"| {names[true]} | {names[predicted]} | {count} | {count / support:.1%} |")
    return "\n".join(rows) if len(rows) > 2 else "No test image was misclassified."


def write_report(model_dir: str, out_dir: Optional[str] = None) -> str:
    """Writes REPORT.md and its PNGs into ``out_dir`` (default <model_dir>/report); returns its path."""
    runs = find_runs(model_dir)
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
        lines += ["", f"## {run.name} ({run.metrics['dataset']})", ""]
        if run.problem:
            lines += [f"*{run.problem}*", ""]
        elif len(run.metrics["class_names"]) > READABLE_CLASSES and "coarse_labels" not in run.predictions:
            lines += ["*No superclass labels in its predictions.npz (trained by an older version, or "
                      "the dataset has none): the most-confused pairs stand in for a confusion matrix.*",
                      ""]
        for filename, (caption, draw) in figures(run).items():
            _save(draw(), os.path.join(out_dir, filename))
            lines += [f"{caption}:", "", f"![{filename[:-4]}]({filename})", ""]
        if run.predictions is not None:
            lines += ["Most confused class pairs on the test split:", "", confused_pairs_table(run)]
    path = os.path.join(out_dir, REPORT_FILE)
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            f.write("\n".join(lines).rstrip() + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise _unwritable(path, exc) from None
    return path


def _unwritable(path: str, exc: OSError) -> UserError:
    return UserError(f"cannot write {path} ({exc.strerror}): free some space or pass another --out_dir")


def _save(figure: Figure, path: str) -> None:
    # Written beside and renamed so that an interrupted report never leaves a truncated PNG.
    tmp = path + ".tmp.png"
    try:
        figure.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    except OSError as exc:
        raise _unwritable(path, exc) from None


def main(argv):
    from absl import flags

    reject_positional(argv)
    with one_line_errors():
        print(write_report(flags.FLAGS.model_dir, flags.FLAGS.out_dir))


if __name__ == "__main__":
    from absl import app, flags

    # Defined here, not at import: train.py imports this module and has its own --model_dir.
    flags.DEFINE_string("model_dir", "saved_models", "Where training wrote <model_dir>/<exp>/.")
    flags.DEFINE_string("out_dir", None, "Where to write REPORT.md and PNGs (default <model_dir>/report).")
    app.run(main)
