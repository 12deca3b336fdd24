"""The study report: table numbers, pictures, confusion-matrix labels, missing runs, bad model dirs."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from lenet_keras import experiments
from lenet_keras.data import synthetic as synthetic_data
from lenet_keras.errors import UserError
from lenet_keras.reporting import plots
from lenet_keras.reporting.document import figures, write_report
from lenet_keras.reporting.runs import find_runs, load_run
from lenet_keras.reporting.tables import comparison_table, most_confused_pairs
from tests.conftest import assert_one_line_error, run_cli

STUDY = ("vanilla", "tuned", "transfer")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _metrics(model_dir, exp):
    with open(os.path.join(model_dir, exp, "metrics.json")) as f:
        return json.load(f)


def _table_cells(markdown: str, exp: str) -> list:
    rows = [line for line in markdown.splitlines() if line.startswith(f"| {exp} |")]
    assert len(rows) == 1, markdown
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def _read_report(path):
    with open(path) as f:
        return f.read()


@pytest.fixture(scope="module")
def report_dir(trained_dir, tmp_path_factory) -> str:
    """The folder where REPORT.md of ``trained_dir``'s three runs was written, in this process."""
    out = str(tmp_path_factory.mktemp("report"))
    assert write_report(trained_dir, out) == os.path.join(out, "REPORT.md")
    return out


@pytest.mark.slow
def test_train_all_wrote_report_with_metrics_json_numbers(study_dir):
    markdown = _read_report(os.path.join(study_dir, "report", "REPORT.md"))
    for exp in STUDY:
        m = _metrics(study_dir, exp)
        assert _table_cells(markdown, exp) == [
            exp,
            m["dataset"],
            str(m["epochs_run"]),
            f"{m['params']:,}",
            f"{m['trainable_params']:,}",
            f"{m['best_val_accuracy']:.4f} ({m['best_epoch']})",
            f"{m['test_accuracy']:.4f}",
            f"{m['test_top5_accuracy']:.4f}",
            f"{sum(m['epoch_seconds']):.1f} s",
        ]
    # Transfer trains only its new head: the table must not show the total as trainable.
    transfer = _table_cells(markdown, "transfer")
    assert transfer[3] != transfer[4]


def test_report_pictures_are_valid_pngs_of_sensible_size(report_dir):
    out = report_dir
    markdown = _read_report(os.path.join(out, "REPORT.md"))
    linked = re.findall(r"\]\(([^)]+\.png)\)", markdown)
    expected = {f"{kind}_{exp}.png" for kind in ("curves", "confusion", "predictions") for exp in STUDY}
    assert set(linked) == expected
    assert sorted(f for f in os.listdir(out) if f.endswith(".png")) == sorted(expected)
    for name in expected:
        path = os.path.join(out, name)
        with open(path, "rb") as f:
            assert f.read(8) == PNG_SIGNATURE, name
        with Image.open(path) as image:
            assert image.format == "PNG"
            width, height = image.size
            assert 500 <= width <= 2500 and 300 <= height <= 2500, (name, image.size)
            pixels = np.asarray(image.convert("RGB"))
        # Not a blank canvas: a drawn figure has many colours.
        packed = pixels.astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.uint32)
        assert len(np.unique(packed)) > 50, name


def test_training_saves_cifar100_superclasses_for_the_report(trained_dir):
    vanilla = np.load(os.path.join(trained_dir, "vanilla", "predictions.npz"))
    # Synthetic CIFAR-100 puts fine class f into superclass f // 5.
    np.testing.assert_array_equal(vanilla["coarse_labels"], vanilla["labels"] // 5)
    seen = vanilla["fine_to_coarse"] >= 0
    assert seen.sum() > 50
    np.testing.assert_array_equal(vanilla["fine_to_coarse"][seen], np.arange(100)[seen] // 5)
    assert _metrics(trained_dir, "vanilla")["coarse_class_names"] == synthetic_data.CIFAR100_COARSE
    transfer = np.load(os.path.join(trained_dir, "transfer", "predictions.npz"))
    assert "coarse_labels" not in transfer.files
    assert "coarse_class_names" not in _metrics(trained_dir, "transfer")


def _confusion_axes(trained_dir, exp):
    draw = figures(load_run(trained_dir, exp))[f"confusion_{exp}.png"][1]
    return draw().axes[0]


def test_confusion_matrices_are_labelled_with_class_names(trained_dir):
    ax = _confusion_axes(trained_dir, "transfer")
    assert [t.get_text() for t in ax.get_xticklabels()] == synthetic_data.STL10_CLASSES
    assert [t.get_text() for t in ax.get_yticklabels()] == synthetic_data.STL10_CLASSES

    ax = _confusion_axes(trained_dir, "vanilla")
    assert [t.get_text() for t in ax.get_yticklabels()] == synthetic_data.CIFAR100_COARSE
    assert [t.get_text() for t in ax.get_xticklabels()] == synthetic_data.CIFAR100_COARSE
    # The annotated counts are superclass agreements, checked against an independent f // 5.
    p = np.load(os.path.join(trained_dir, "vanilla", "predictions.npz"))
    known = p["fine_to_coarse"][p["predictions"]] >= 0
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): int(t.get_text())
             for t in ax.texts}
    assert sum(cells.values()) == known.sum()
    agree = (p["labels"] // 5 == p["predictions"] // 5) & known
    assert sum(c for (i, j), c in cells.items() if i == j) == agree.sum()


def test_missing_and_unreadable_runs_are_rows_not_crashes(trained_dir, tmp_path):
    model_dir = tmp_path / "models"
    (model_dir / "vanilla").mkdir(parents=True)
    for name in ("metrics.json", "predictions.npz"):
        shutil.copy(os.path.join(trained_dir, "vanilla", name), model_dir / "vanilla" / name)
    (model_dir / "tuned").mkdir()
    (model_dir / "tuned" / "metrics.json").write_text("{not json")
    (model_dir / "transfer").mkdir()
    shutil.copy(os.path.join(trained_dir, "transfer", "metrics.json"), model_dir / "transfer")

    path = write_report(str(model_dir), str(tmp_path / "out"))
    assert path == str(tmp_path / "out" / "REPORT.md")
    assert not (model_dir / "report").exists()
    markdown = _read_report(path)
    m = _metrics(trained_dir, "vanilla")
    assert _table_cells(markdown, "vanilla")[6] == f"{m['test_accuracy']:.4f}"
    assert "unreadable metrics.json" in _table_cells(markdown, "tuned")[1]
    # A run with metrics but no predictions.npz keeps its row and curves and says what is missing.
    m = _metrics(trained_dir, "transfer")
    assert _table_cells(markdown, "transfer")[7] == f"{m['test_top5_accuracy']:.4f}"
    assert "no usable predictions.npz" in markdown
    pngs = sorted(f for f in os.listdir(os.path.dirname(path)) if f.endswith(".png"))
    assert pngs == [
        "confusion_vanilla.png", "curves_transfer.png", "curves_vanilla.png", "predictions_vanilla.png"
    ]

    shutil.rmtree(model_dir / "transfer")
    table = comparison_table(find_runs(str(model_dir), experiments.STUDY_ORDER))
    transfer = _table_cells(table, "transfer")[1]
    assert transfer.startswith("missing") and "--exp transfer" in transfer


def test_most_confused_pairs_counts_and_orders():
    labels = np.array([0, 0, 0, 1, 1, 2, 2])
    predictions = np.array([1, 1, 0, 2, 0, 2, 2])
    assert most_confused_pairs(labels, predictions) == [(0, 1, 2, 3), (1, 0, 1, 2), (1, 2, 1, 2)]
    assert most_confused_pairs(labels, predictions, k=1) == [(0, 1, 2, 3)]


@pytest.mark.slow
def test_empty_model_dir_is_a_one_line_error(tmp_path):
    proc = run_cli("lenet_keras.report", "--model_dir", str(tmp_path))
    assert_one_line_error(proc, "no finished runs", "lenet_keras.train")
    assert os.listdir(tmp_path) == []
    with pytest.raises(UserError, match="does not exist"):
        write_report(str(tmp_path / "nowhere"))


@pytest.mark.slow
def test_the_default_search_is_the_studys_not_the_current_folders(trained_dir, tmp_path):
    """A search sits in the folder the report is run from (a damaged one: reading it would fail);
    the report for another --model_dir leaves it alone, and reads <model_dir>/tuning instead."""
    import subprocess
    import sys

    from tests.conftest import REPO

    def damaged_search(tune_dir):
        os.makedirs(tune_dir / "lenet5" / "trial_0")
        (tune_dir / "lenet5" / "trial_0" / "trial.json").write_text("{not json")

    cwd, model_dir = tmp_path / "elsewhere", tmp_path / "run1"
    damaged_search(cwd / "saved_models" / "tuning")
    os.makedirs(model_dir / "tuned")
    shutil.copy(os.path.join(trained_dir, "tuned", "metrics.json"), model_dir / "tuned")

    def report():
        return subprocess.run([sys.executable, "-m", "lenet_keras.report", "--model_dir",
                               str(model_dir)], capture_output=True, text=True, timeout=300,
                              cwd=cwd, env=dict(os.environ, PYTHONPATH=REPO))

    proc = report()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Architecture search" not in _read_report(model_dir / "report" / "REPORT.md")
    damaged_search(model_dir / "tuning")
    assert_one_line_error(report(), f"unreadable {model_dir / 'tuning' / 'lenet5'}")


def test_learning_curves_mark_the_best_validation_epoch(trained_dir):
    m = _metrics(trained_dir, "tuned")
    draw = figures(load_run(trained_dir, "tuned"))["curves_tuned.png"][1]
    accuracy_ax, loss_ax = draw().axes
    lines = {line.get_label(): line for line in accuracy_ax.get_lines()}
    np.testing.assert_allclose(lines["validation"].get_ydata(), m["history"]["val_accuracy"])
    np.testing.assert_allclose(lines["train"].get_ydata(), m["history"]["accuracy"])
    marker = lines[f"best validation accuracy (epoch {m['best_epoch']})"]
    assert list(marker.get_xdata()) == [m["best_epoch"]] * 2
    assert [t.get_text() for t in loss_ax.get_xticklabels()][0] == "1"


def test_prediction_grid_frames_and_captions_each_image():
    images = np.full((3, 32, 32, 3), 128, np.uint8)
    fig = plots.prediction_grid(images, np.array([0, 1, 2]), np.array([0, 2, 2]), ["a", "b", "c"],
                                "run", columns=2)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.texts] == ["✓ a", "✗ c\ntrue: b", "✓ c"]
    assert [t.get_color() for t in ax.texts] == [plots.CORRECT, plots.WRONG, plots.CORRECT]
    mosaic = ax.images[0].get_array()

    def pixels(colour):
        return int(np.all(np.isclose(mosaic, to_rgb(colour)), axis=-1).sum())

    frame = 36 * 36 - 32 * 32  # a 2-pixel frame around each 32x32 image
    assert (pixels(plots.CORRECT), pixels(plots.WRONG)) == (2 * frame, frame)
    assert pixels((128 / 255,) * 3) == 3 * 32 * 32
    assert "2/3 correct" in fig.get_suptitle()


def _overlapping_texts(fig):
    """Pairs of texts drawn on ``fig``'s axes whose boxes overlap, and texts outside the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    texts = [t for ax in fig.axes for t in ax.texts if t.get_text().strip()]
    boxes = [t.get_window_extent(renderer).shrunk(0.98, 0.98) for t in texts]
    whole = fig.bbox
    clashes = [(texts[i].get_text(), texts[j].get_text())
               for i in range(len(boxes)) for j in range(i + 1, len(boxes))
               if boxes[i].overlaps(boxes[j])]
    outside = [t.get_text() for t, b in zip(texts, boxes, strict=True)
               if b.x0 < whole.x0 - 1 or b.x1 > whole.x1 + 1 or b.y0 < whole.y0 - 1
               or b.y1 > whole.y1 + 1]
    return clashes, outside


@pytest.mark.slow
def test_pictures_stay_readable_for_models_as_unsure_as_on_real_cifar100(hard_trained_dir):
    """On data as hard as real CIFAR-100 most answers are wrong: every caption of the prediction
    grid has two lines (predicted and true class) and every confusion-matrix cell has a count.
    No caption or count may cover another, or leave the picture."""
    runs = {run.name: run for run in find_runs(hard_trained_dir)}
    assert max(run.metrics["test_accuracy"] for run in runs.values()) < 0.6
    grid_captions = 0
    for run in runs.values():
        for name, (_, draw) in figures(run).items():
            fig = draw()
            clashes, outside = _overlapping_texts(fig)
            assert not clashes, (name, clashes[:5])
            assert not outside, (name, outside[:5])
            if name.startswith("predictions_"):
                grid_captions += sum("\ntrue: " in t.get_text() for t in fig.axes[0].texts)
    assert grid_captions >= 64  # the two-line captions were drawn, and checked
