"""The report's pictures: learning curves, confusion matrices and a grid of test predictions.

Each function returns a ``matplotlib.figure.Figure`` built without pyplot, so nothing needs a display,
no global figure state leaks between calls, and a test can read a figure's labels before it is saved.
Text from the data (run and class names) is drawn with ``parse_math=False``: a class folder named
``$\nope$`` would otherwise be parsed as mathtext and fail the whole report when it is drawn.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatterSciNotation, LogLocator, MaxNLocator, NullFormatter

CORRECT = "#1a9641"
WRONG = "#d7191c"


def learning_curves(name: str, history: Mapping[str, Sequence[float]], best_epoch: int) -> Figure:
    """Train and validation accuracy and loss per epoch, the best-validation epoch marked."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key in zip(axes, ("accuracy", "loss"), strict=True):
        for prefix, label in (("", "train"), ("val_", "validation")):
            values = history.get(prefix + key)
            if values:
                ax.plot(range(1, len(values) + 1), values, "o-", markersize=4, label=label)
        ax.axvline(best_epoch, color="0.4", linestyle="--", linewidth=1,
                   label=f"best validation accuracy (epoch {best_epoch})")
        val = history.get("val_" + key)
        if val and 1 <= best_epoch <= len(val):
            ax.plot(best_epoch, val[best_epoch - 1], "*", markersize=16, markerfacecolor="none",
                    markeredgecolor="black", zorder=3)
        epochs = max((len(v) for v in history.values()), default=1)
        ax.set_xlim(0.5, epochs + 0.5)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_title(key)
        if epochs <= 25:
            ax.set_xticks(range(1, epochs + 1))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle(f"{name}: learning curves", parse_math=False)
    return fig


def confusion_counts(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
    return counts


def confusion_matrix(counts: np.ndarray, class_names: Sequence[str], title: str) -> Figure:
    """Colour = share of each true class's examples (rows sum to 1); numbers = example counts."""
    n = len(class_names)
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    side = 2.5 + 0.42 * n
    fig = Figure(figsize=(side + 1.5, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fontsize = 10 if n <= 12 else 7.5
    for (i, j), count in np.ndenumerate(counts):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=fontsize,
                    color="white" if shares[i, j] > 0.6 else "black")
    ax.set_xticks(range(n), labels=list(class_names), rotation=45, ha="right",
                  rotation_mode="anchor", fontsize=9 if n <= 12 else 8, parse_math=False)
    ax.set_yticks(range(n), labels=list(class_names), fontsize=9 if n <= 12 else 8,
                  parse_math=False)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, parse_math=False)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    return fig


def prediction_grid(
    images: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    class_names: Sequence[str],
    title: str,
    columns: int = 8,
) -> Figure:
    """Test images, each framed and captioned green (correct) or red (wrong, with the true class).

    The grid is one mosaic image on one axes: 64 separate axes took about a second per grid to
    build and draw, a third of the report's time.
    """
    count = len(images)
    rows = max(1, -(-count // columns))
    size, border, gap, caption = images.shape[1], 2, 8, 20  # in image pixels
    framed = size + 2 * border
    cell_w, cell_h = framed + gap, framed + caption
    mosaic = np.ones((rows * cell_h, columns * cell_w, 3))
    width = columns * 1.55  # inches
    grid_height = width * mosaic.shape[0] / mosaic.shape[1]
    height = grid_height + 0.6
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, grid_height / height))
    for i, (image, true, predicted) in enumerate(zip(images, labels, predictions, strict=False)):
        ok = true == predicted
        colour = CORRECT if ok else WRONG
        top, left = (i // columns) * cell_h + caption, (i % columns) * cell_w + gap // 2
        mosaic[top:top + framed, left:left + framed] = to_rgb(colour)
        mosaic[top + border:top + border + size, left + border:left + border + size] = image / 255
        text = f"✓ {class_names[predicted]}" if ok else (
            f"✗ {class_names[predicted]}\ntrue: {class_names[true]}"
        )
        ax.text(left + framed / 2, top - 1.5, text, ha="center", va="bottom", fontsize=7,
                color=colour, linespacing=1.0, clip_on=True, parse_math=False)
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    correct = int(np.sum(labels[:count] == predictions[:count]))
    fig.suptitle(f"{title}: {correct}/{count} correct (green ✓ correct, red ✗ wrong)",
                 y=1 - 0.15 / height, va="top", parse_math=False)
    return fig


def search_decisions(rows: Sequence[Mapping], domains: Mapping[str, object], best: str) -> Figure:
    """Small multiples: each trial's best val_accuracy against each searched decision.

    ``rows``: one mapping per completed trial, with ``trial``, ``best_val_accuracy``, ``epochs`` and
    a value per decision; ``domains``: per decision, its choices in order, or None for a number
    drawn on a log axis (the learning rate); ``best``: the id of the trial starred. Trials trained
    for different epochs (Hyperband's rounds) get one colour per budget: their accuracies are not
    comparable across colours.
    """
    fig = Figure(figsize=(2.6 * len(domains) + 1, 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(domains), sharey=True))
    budgets = sorted({r["epochs"] for r in rows})
    colours = dict(zip(budgets, ("C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7"), strict=False))
    y = np.array([r["best_val_accuracy"] for r in rows], dtype=float)
    for ax, (name, choices) in zip(axes, domains.items(), strict=True):
        values = [r[name] for r in rows]
        if choices is None:
            x = np.array(values, dtype=float)
            _log_ticks(ax, x)
        else:
            # A value the space no longer offers (a search from an older version) gets a place too.
            choices = list(choices) + sorted({v for v in values if v not in choices}, key=str)
            # Points of one choice spread a little sideways, so equal scores stay visible.
            spread = (np.arange(len(rows)) % 5 - 2) * 0.05
            x = np.array([list(choices).index(v) for v in values], dtype=float) + spread
            ax.set_xticks(range(len(choices)), labels=[str(c) for c in choices], parse_math=False)
            ax.set_xlim(-0.5, len(choices) - 0.5)
        for budget in budgets:
            mine = np.array([r["epochs"] == budget for r in rows])
            ax.plot(x[mine], y[mine], "o", color=colours.get(budget, "0.5"), alpha=0.8,
                    label=_epochs(budget) if len(budgets) > 1 else "trial")
        starred = np.array([str(r["trial"]) == str(best) for r in rows])
        ax.plot(x[starred], y[starred], "*", markersize=16, markerfacecolor="none",
                markeredgecolor="black", label=f"best (trial {best})")
        ax.set_xlabel(name.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("best val accuracy")
    axes[0].legend(loc="best", fontsize=7)
    each = f", {_epochs(budgets[0])} each" if len(budgets) == 1 else ""
    fig.suptitle(f"{len(rows)} completed trials{each}: validation accuracy against each decision")
    return fig


def _log_ticks(ax, x: np.ndarray) -> None:
    """A log x axis whose labels fit a narrow panel: matplotlib labels minor ticks too when the data
    span about a decade (``4×10⁻⁴6×10⁻⁴`` ran together), so only major ticks are labelled, at 1 and
    3 times a power of ten over a short span (the learning rate's 3e-4 to 3e-3), else at powers."""
    ax.set_xscale("log")
    positive = x[x > 0]
    decades = np.log10(positive.max() / positive.min()) if len(positive) else 0.0
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 3.0) if decades <= 1.5 else (1.0,)))
    ax.xaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _epochs(count) -> str:
    return f"{count} epoch" + ("" if count == 1 else "s")


def side_by_side_curves(panels: Mapping[str, Mapping[str, Mapping[int, float]]]) -> Figure:
    """Accuracy per epoch of several models side by side on one y scale: ``panels`` maps each
    panel's title to ``{"train": {epoch: accuracy}, "validation": {epoch: accuracy}}``."""
    fig = Figure(figsize=(5.5 * len(panels), 4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharex=True, sharey=True))
    last = max((max(points, default=1) for curves in panels.values() for points in curves.values()),
               default=1)
    for ax, (title, curves) in zip(axes, panels.items(), strict=True):
        for label, points in curves.items():
            epochs = sorted(points)
            ax.plot(epochs, [points[e] for e in epochs], "o-", markersize=4, label=label)
        ax.set_title(title, parse_math=False)
        ax.set_xlabel("epoch")
        ax.set_xlim(0.5, last + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="best", fontsize=8)
    return fig
