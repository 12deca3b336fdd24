"""One search per --tune_dir: a second `tune` started beside a running one is refused in one line
naming the holder and how to search with several workers; a dead search's lock is taken over;
keras-tuner's chief and workers (--parallel_trials' among them) take no lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from lenet_keras.search.lock import search_lock
from lenet_keras.training.runlock import LOCK_FILE
from tests.conftest import REPO, assert_one_line_error, run_cli


def _holder_pid(lock_path) -> str:
    try:
        with open(lock_path) as f:
            return f.read()
    except OSError:
        return ""


@pytest.mark.slow
def test_a_second_search_in_one_tune_dir_is_refused_and_a_dead_ones_lock_taken_over(
        data_dir, tmp_path, monkeypatch):
    tune_dir = tmp_path / "search"
    lock = tune_dir / LOCK_FILE
    with open(tmp_path / "first.log", "w") as log:
        # Far more epochs than the test lasts: it is searching for as long as the test needs.
        first = subprocess.Popen(
            [sys.executable, "-m", "lenet_keras.tune", "--tune_dir", str(tune_dir), "--data_dir",
             data_dir, "--tuner", "random", "--max_trials", "1", "--max_epochs", "100000"],
            cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while f"pid {first.pid} " not in _holder_pid(lock):
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the first search never took its lock"
            time.sleep(0.2)

        no_data = tmp_path / "no-data"  # never read: the refusal comes first
        second = run_cli("lenet_keras.tune", "--tune_dir", str(tune_dir), "--data_dir", str(no_data),
                         "--tuner", "random", "--max_trials", "1", "--max_epochs", "1")
        assert second.returncode == 2
        assert_one_line_error(second, f"another search (pid {first.pid} on ", str(tune_dir),
                              "--parallel_trials", "KERASTUNER_TUNER_ID=chief")
        assert not no_data.exists()
        assert first.poll() is None  # the first search goes on

        # keras-tuner's chief and workers share the folder by design: no lock to be refused by.
        monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
        with search_lock(str(tune_dir)):
            pass
        monkeypatch.delenv("KERASTUNER_TUNER_ID")

        first.send_signal(signal.SIGKILL)  # dies holding it: the file stays, the flock does not
        first.wait()
        assert f"pid {first.pid} " in _holder_pid(lock)
        with search_lock(str(tune_dir)):
            assert f"pid {os.getpid()} " in _holder_pid(lock)
        assert not lock.exists()
    finally:
        first.kill()
        first.wait()
