"""Names from the data reach REPORT.md as text: escaped in Markdown, drawn without mathtext, and a
report that fails at the end of `train --exp all` never takes the study with it."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import unicodedata

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lenet_keras import experiments
from lenet_keras.errors import UserError
from lenet_keras.reporting import document, plots
from lenet_keras.reporting.markdown import escape
from lenet_keras.reporting.runs import Run
from lenet_keras.reporting.tables import confused_pairs_table
from tests.conftest import train_flags

NASTY = ["$\\nope$", "a|b", "<script>alert(1)</script>", "x\ny", "**bold** [l](u) `c` &amp;"]


def cells(row: str) -> list:
    """A GFM table row's cells, split where a ``|`` is not backslash-escaped, escapes undone."""
    out, cell, chars = [], "", iter(row.strip()[1:-1])
    for char in chars:
        if char == "\\":
            cell += next(chars, "")
        elif char == "|":
            out.append(cell.strip())
            cell = ""
        else:
            cell += char
    return out + [cell.strip()]


def shown(name: str) -> str:
    """What a name reads as in REPORT.md: line breaks and control characters become spaces."""
    return "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in name).strip()


def confused_run(names) -> Run:
    """Every test image of class i predicted as class i+1: each class is in one confused pair."""
    labels = np.arange(len(names))
    return Run("names", metrics={"class_names": list(names)},
               predictions={"labels": labels, "predictions": (labels + 1) % len(names)})


def draw(figure) -> None:
    """Rendering is where mathtext parses a label (and where a `$\\nope$` used to fail)."""
    figure.savefig(io.BytesIO(), format="png", dpi=40)


def check_names(names) -> None:
    images = np.zeros((len(names), 8, 8, 3), np.uint8)
    labels = np.arange(len(names))
    draw(plots.prediction_grid(images, labels, (labels + 1) % len(names), names, "names", columns=3))
    figure = plots.confusion_matrix(np.eye(len(names), dtype=int), names, "names")
    draw(figure)
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == list(names)
    table = confused_pairs_table(confused_run(names)).splitlines()
    assert len(table) == 2 + len(names)  # no name ended a row early
    for i, row in enumerate(table[2:]):
        true, predicted, count, share = cells(row)  # no name split a row into more cells
        assert (true, predicted, count, share) == (
            shown(names[i]), shown(names[(i + 1) % len(names)]), "1", "100.0%")
        # Outside backslash escapes, no Markdown syntax is left but the row's own 5 pipes.
        bare = re.sub(r"\\.", "", row)
        assert bare.count("|") == 5 and not set(bare) & set("\\`*[]<>&$~#"), row


@pytest.mark.filterwarnings("ignore:Glyph")  # a character the font lacks is drawn as a box
@pytest.mark.parametrize("name", NASTY)
def test_a_nasty_class_name_is_text_in_tables_and_pictures(name):
    check_names([name, "plain", "aquarium_fish"])


def test_escaping_leaves_ordinary_names_readable():
    assert [escape(n) for n in ("aquarium_fish", "non-insect_invertebrates", "vehicles_1")] == [
        "aquarium_fish", "non-insect_invertebrates", "vehicles_1"]
    assert escape("<b>|$x$") == "\\<b\\>\\|\\$x\\$"
    assert escape("_a_ *b*") == "\\_a\\_ \\*b\\*"


@pytest.mark.filterwarnings("ignore:Glyph")
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(min_size=1, max_size=12).filter(lambda s: shown(s)), min_size=2,
                max_size=3, unique_by=shown))
def test_any_class_names_survive_the_tables_and_the_pictures(names):
    check_names(names)


@pytest.fixture
def nasty_model_dir(trained_dir, tmp_path):
    """The transfer run of ``trained_dir`` (ten classes) with its classes renamed to nasty names."""
    model_dir = tmp_path / "models"
    shutil.copytree(os.path.join(trained_dir, "transfer"), model_dir / "transfer",
                    ignore=shutil.ignore_patterns("*.keras", "logs", ".staging"))
    path = model_dir / "transfer" / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["class_names"] = NASTY + [f"c{i}" for i in range(len(NASTY), 10)]
    path.write_text(json.dumps(metrics))
    return model_dir


def test_a_report_of_nasty_class_names_is_written_whole(nasty_model_dir):
    path = document.write_report(str(nasty_model_dir))
    markdown = open(path).read()
    assert "<script>" not in markdown and "\\<script\\>" in markdown
    for png in ("confusion_transfer.png", "predictions_transfer.png"):
        assert os.path.getsize(os.path.join(os.path.dirname(path), png)) > 1000


def test_a_failed_study_report_keeps_the_experiments_and_says_how_to_retry(
        nasty_model_dir, monkeypatch, capsys):
    before = sorted(os.listdir(nasty_model_dir / "transfer"))

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", "learning_curves.png")

    monkeypatch.setattr(plots, "learning_curves", full_disk)
    with pytest.raises(UserError) as error:
        document.write_study_report(str(nasty_model_dir), study_order=experiments.STUDY_ORDER)
    message = str(error.value)
    assert "No space left on device" in message and "kept in" in message
    assert f"python -m lenet_keras.report --model_dir {nasty_model_dir}" in message
    assert sorted(os.listdir(nasty_model_dir / "transfer")) == before

    def bug(*args, **kwargs):
        raise ValueError("a bug in the report")

    # A bug keeps its traceback (not a one-line UserError), after the line that says what is kept.
    monkeypatch.setattr(plots, "learning_curves", bug)
    with pytest.raises(ValueError, match="a bug in the report"):
        document.write_study_report(str(nasty_model_dir), study_order=experiments.STUDY_ORDER)
    err = capsys.readouterr().err
    assert "kept in" in err and "python -m lenet_keras.report" in err
    assert sorted(os.listdir(nasty_model_dir / "transfer")) == before


def test_train_all_whose_report_fails_keeps_the_study_and_exits_2(trained_dir, data_dir, tmp_path,
                                                                  capsys):
    """train's own main, in this process, on a finished but unreported study (its experiments kept,
    nothing retrained): a file where the report folder goes makes the report fail."""
    from lenet_keras import cli, train
    from lenet_keras.training.study import Study

    model_dir = tmp_path / "models"
    shutil.copytree(trained_dir, model_dir)
    (model_dir / "report").write_text("not a folder")
    before = {exp: (model_dir / exp / "metrics.json").read_bytes()
              for exp in ("vanilla", "tuned", "transfer")}
    with train_flags("--exp=all", "--epochs=1", f"--data_dir={data_dir}",
                     f"--model_dir={model_dir}"):
        Study(str(model_dir), train.resolve_configs("all")).begin()  # killed before its report
        with pytest.raises(SystemExit) as caught:
            with cli.one_line_errors():
                train.main()
    assert caught.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "kept in" in last and "python -m lenet_keras.report" in last
    assert {exp: (model_dir / exp / "metrics.json").read_bytes() for exp in before} == before
    assert not (model_dir / ".study.json").exists()  # the study is over; only its report failed
