"""What every command shares: quiet libraries, progress bars only on a terminal, one-line errors."""

from __future__ import annotations

import logging
import os

import pytest

from lenet_keras import cli
from tests.conftest import run_cli


def _record(pathname: str, level: int, msg: str = "x") -> logging.LogRecord:
    return logging.LogRecord("absl", level, pathname, 1, msg, (), None)


def test_library_info_is_dropped_and_ours_and_warnings_kept():
    keep = cli._OwnInfoOnly().filter
    tfds = "/venv/site-packages/tensorflow_datasets/core/dataset_builder.py"
    ours = os.path.join(os.path.dirname(cli.__file__), "training", "run.py")
    assert not keep(_record(tfds, logging.INFO, "Load dataset info from %s"))
    assert keep(_record(ours, logging.INFO, "training %s on %s"))
    assert keep(_record(tfds, logging.WARNING, "something the user should see"))
    assert not keep(_record(tfds, logging.WARNING, "`FeatureConnector.dtype` is deprecated. ..."))


def test_progress_bars_only_on_a_terminal(monkeypatch):
    monkeypatch.setattr(cli.sys.stdout, "isatty", lambda: True)
    assert cli.keras_verbosity() == 1
    monkeypatch.setattr(cli.sys.stdout, "isatty", lambda: False)
    assert cli.keras_verbosity() == 2


@pytest.mark.slow
def test_a_run_prints_its_own_lines_and_library_logs_bring_the_rest_back(data_dir, tmp_path):
    args = ["--exp", "vanilla", "--epochs", "1", "--data_dir", data_dir]
    quiet = run_cli("lenet_keras.train", *args, "--model_dir", str(tmp_path / "a"))
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "training vanilla on cifar100" in quiet.stderr
    assert "5/5 - " in quiet.stdout  # one line per epoch: stdout is not a terminal here
    for chatter in ("Load dataset info", "Constructing tf.data.Dataset", "I0000", "oneDNN",
                    "FeatureConnector.dtype"):
        assert chatter not in quiet.stderr, chatter
    loud = run_cli("lenet_keras.train", *args, "--model_dir", str(tmp_path / "b"),
                   "--library_logs")
    assert loud.returncode == 0, loud.stderr[-2000:]
    assert "Load dataset info" in loud.stderr and "oneDNN" in loud.stderr
