"""The report's tables: one row per run, and the most-confused class pairs of one run.

``comparison_table`` is the one comparison table: ``train`` prints it, REPORT.md embeds it. Names
from the data (runs, data sets, classes) are escaped: they are text, never Markdown.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

from lenet_keras.reporting.markdown import escape
from lenet_keras.reporting.runs import Run

CONFUSED_PAIRS = 10
TABLE_HEADER = (
    "| experiment | dataset | epochs | params | trainable params | best val acc (epoch) "
    "| test top-1 | test top-5 | training time |"
)


def table_row(run: Run) -> str:
    if run.metrics is None:
        return f"| {escape(run.name)} | {run.problem} |" + " — |" * 7
    m = run.metrics
    seconds = sum(m.get("epoch_seconds") or [])
    return (
        f"| {escape(run.name)} | {escape(m['dataset'])} | {m['epochs_run']} | {m['params']:,} | "
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


def confused_pairs_table(run: Run) -> str:
    names = [escape(name) for name in run.metrics["class_names"]]
    p = run.predictions
    rows = ["| true class | predicted as | test images | share of the true class |", "|---|---|---|---|"]
    for true, predicted, count, support in most_confused_pairs(p["labels"], p["predictions"]):
        rows.append(f"| {names[true]} | {names[predicted]} | {count} | {count / support:.1%} |")
    return "\n".join(rows) if len(rows) > 2 else "No test image was misclassified."
