"""Shared fixtures: small synthetic CIFAR-100 / STL-10 prepared in the real TFDS format, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Before any test module imports TensorFlow: the package sets TF's oneDNN switch at import, and the
# suite should run the kernels the product runs whatever order pytest collects modules in.
import lenet_keras  # noqa: F401

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Small but not trivial: enough for a few batches per epoch and every class-name lookup.
TRAIN_EXAMPLES = 320
TEST_EXAMPLES = 64


def run_cli(module: str, *args: str, timeout: int = 300, env: dict | None = None):
    """Runs ``python -m module args`` as a user would; returns the CompletedProcess."""
    full_env = dict(os.environ, PYTHONPATH=REPO, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True, text=True, timeout=timeout, env=full_env, cwd=REPO,
    )


def assert_one_line_error(proc, *needles: str) -> str:
    """The failure contract: exit != 0, no traceback, last stderr line says what and what to do."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in last, last
    return last


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
    """A TFDS data_dir holding prepared synthetic cifar100 and stl10, read by the real tfds loaders."""
    from lenet_keras import synthetic_data

    path = str(tmp_path_factory.mktemp("tfds"))
    synthetic_data.prepare("cifar100", path, train=TRAIN_EXAMPLES, test=TEST_EXAMPLES)
    synthetic_data.prepare("stl10", path, train=TRAIN_EXAMPLES, test=TEST_EXAMPLES)
    return path


@pytest.fixture(scope="session")
def study_dir(tmp_path_factory, data_dir) -> str:
    """A model_dir where `train --exp all --epochs 1` has run once; read-only for tests that use it."""
    model_dir = str(tmp_path_factory.mktemp("study"))
    proc = run_cli("lenet_keras.train", "--exp", "all", "--epochs", "1",
                   "--data_dir", data_dir, "--model_dir", model_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return model_dir
