"""Shared fixtures: small synthetic CIFAR-100 / STL-10 prepared in the real TFDS format, a CLI runner,
and a time bound for code that might block on a FIFO.

Tests that start processes (the CLIs, distributed runs, searches) are marked ``slow``:
``pytest -m "not slow"`` runs the rest in under two minutes; the README's command runs all.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
import threading

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


@contextlib.contextmanager
def train_flags(*args: str):
    """``train``'s flags parsed from ``args`` in this process (its own parser, so a mistake is a
    SystemExit), then unparsed. absl's logger level, which parsing resets, is put back: later
    tests in this process log at INFO."""
    from absl import flags
    from absl import logging as absl_logging

    from lenet_keras import cli, train  # noqa: F401 - defines train's flags

    level = absl_logging.get_absl_logger().level
    try:
        cli.parse_flags(["train", *args])
        yield flags.FLAGS
    finally:
        flags.FLAGS.unparse_flags()
        absl_logging.get_absl_logger().setLevel(level)


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
    from lenet_keras.data import synthetic

    path = str(tmp_path_factory.mktemp("tfds"))
    synthetic.prepare("cifar100", path, train=TRAIN_EXAMPLES, test=TEST_EXAMPLES)
    synthetic.prepare("stl10", path, train=TRAIN_EXAMPLES, test=TEST_EXAMPLES)
    return path


def train_study(data_dir: str, model_dir: str, epochs: dict) -> str:
    """Runs the study's three experiments in this process, each for ``epochs[name]``."""
    from lenet_keras import experiments
    from lenet_keras.training.run import run_experiment

    for name in experiments.STUDY_ORDER:
        run_experiment(experiments.get_config(name).replace(epochs=epochs[name]), data_dir,
                       model_dir, verbose=0)
    return model_dir


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory, data_dir) -> str:
    """A model_dir where the study's three experiments have run for 1 epoch, in this process (fast
    tests read it; the `train --exp all` CLI itself is tested by ``study``); read-only."""
    return train_study(data_dir, str(tmp_path_factory.mktemp("trained")),
                       dict.fromkeys(("vanilla", "tuned", "transfer"), 1))


# Enough images and epochs for LeNet-5 to land where it does on real CIFAR-100 (measured: vanilla
# 0.235 after 12 epochs, tuned 0.302 after 6, transfer 0.468; about 35 s of training).
HARD_SIZES = {"cifar100": (20_000, 1_000), "stl10": (1_000, 500)}
HARD_EPOCHS = {"vanilla": 16, "tuned": 6, "transfer": 5}


@pytest.fixture(scope="session")
def hard_data_dir(tmp_path_factory) -> str:
    """Synthetic cifar100 and stl10 at real CIFAR-100's difficulty (``--difficulty hard``): close
    classes a model cannot tell apart, so it is unsure, as LeNet-5 is on the real data."""
    from lenet_keras.data import synthetic

    path = str(tmp_path_factory.mktemp("tfds_hard"))
    for name, (train, test) in HARD_SIZES.items():
        synthetic.prepare(name, path, train=train, test=test, difficulty="hard")
    return path


@pytest.fixture(scope="session")
def hard_trained_dir(tmp_path_factory, hard_data_dir) -> str:
    """The study trained on ``hard_data_dir`` to real CIFAR-100's accuracy range; read-only."""
    return train_study(hard_data_dir, str(tmp_path_factory.mktemp("hard_trained")), HARD_EPOCHS)


@pytest.fixture(scope="session")
def study(tmp_path_factory, data_dir) -> subprocess.CompletedProcess:
    """`train --exp all --epochs 1` run once as a user runs it; its model_dir is ``study.model_dir``."""
    model_dir = str(tmp_path_factory.mktemp("study"))
    proc = run_cli("lenet_keras.train", "--exp", "all", "--epochs", "1",
                   "--data_dir", data_dir, "--model_dir", model_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc.model_dir = model_dir
    return proc


@pytest.fixture(scope="session")
def study_dir(study) -> str:
    """The model_dir of ``study``; read-only for tests that use it."""
    return study.model_dir


def release_fifos(root: str) -> None:
    """Gives every FIFO under ``root`` a writer that closes at once, so that a reader blocked in
    open() or read() gets end-of-file: a hung load ends instead of holding the test process."""
    for parent, dirs, names in os.walk(os.fsencode(root)):
        for name in names + dirs:
            path = os.path.join(parent, name)
            if stat.S_ISFIFO(os.lstat(path).st_mode):
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:  # no reader (ENXIO): nothing to release
                    pass


def call_with_bound(fn, root: str, bound_s: float = 60.0):
    """``fn()``'s result, raising what it raised; fails the test if it runs past ``bound_s``.

    It runs in a thread because a read blocked on a FIFO inside TensorFlow does not return to
    Python, so no signal could interrupt it; afterwards the FIFOs are released so the thread ends.
    """
    outcome = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the caller, whatever it is
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(bound_s)
    hung = thread.is_alive()
    release_fifos(root)
    thread.join(10)
    assert not hung, f"loading {root} still ran after {bound_s} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def pytest_collection_modifyitems(config, items):
    """CI's Python 3.10 leg runs ``tests/test_tfx_*.py``: a test that needs TFX anywhere else would
    never run against real TFX, so collecting one is an error."""
    stray = sorted({item.path.name for item in items if item.get_closest_marker("tfx")
                    and not item.path.name.startswith("test_tfx_")})
    if stray:
        raise pytest.UsageError(f"tests marked tfx must live in tests/test_tfx_*.py (CI's TFX leg "
                                f"runs only those): move them out of {', '.join(stray)}")
