"""One run per experiment directory; a dead run's lock is taken over; an unwritable model_dir is refused."""

from __future__ import annotations

import ctypes
import os
import signal
import stat
import subprocess
import sys

import pytest

from lenet_keras import experiments
from lenet_keras.errors import UserError
from lenet_keras.training.run import run_experiment
from lenet_keras.training.runlock import LOCK_FILE, RunLock
from tests.conftest import REPO, assert_one_line_error

HOLD = ("import sys; from lenet_keras.training.runlock import RunLock; RunLock(sys.argv[1]).acquire(); "
        "print('held', flush=True); sys.stdin.read()")


def test_second_run_refused_while_another_process_trains(data_dir, tmp_path):
    exp_dir = str(tmp_path / "vanilla")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, exp_dir], cwd=REPO, text=True,
                              env=dict(os.environ, PYTHONPATH=REPO),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        config = experiments.get_config("vanilla").replace(epochs=1)
        with pytest.raises(UserError, match=rf"another run \(pid {holder.pid} on .*\) is training"):
            run_experiment(config, data_dir, str(tmp_path), verbose=0)
        assert sorted(os.listdir(exp_dir)) == [LOCK_FILE]  # the refused run wrote nothing

        holder.send_signal(signal.SIGKILL)  # dies holding it: the file stays, the flock does not
        holder.wait()
        with open(os.path.join(exp_dir, LOCK_FILE)) as f:
            assert f"pid {holder.pid} " in f.read()
        with RunLock(exp_dir):
            with open(os.path.join(exp_dir, LOCK_FILE)) as f:
                assert f"pid {os.getpid()} " in f.read()
            with pytest.raises(UserError, match=rf"another run \(pid {os.getpid()} "):
                RunLock(exp_dir).acquire()
        assert not os.path.exists(os.path.join(exp_dir, LOCK_FILE))
    finally:
        holder.kill()
        holder.wait()


def _without_root_override():
    # Root ignores file modes; drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding
    # set so the child, though uid 0, sees the read-only directory as a normal user would.
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for capability in (1, 2):
            if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.slow
def test_read_only_model_dir_is_refused_and_earlier_results_kept(data_dir, tmp_path):
    exp_dir = tmp_path / "vanilla"
    exp_dir.mkdir()
    earlier = {"model.keras": b"an earlier run's model", "metrics.json": b'{"test_accuracy": 0.5}'}
    for name, content in earlier.items():
        (exp_dir / name).write_bytes(content)
    read_only = stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
    for path in (exp_dir, tmp_path):
        path.chmod(read_only)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lenet_keras.train", "--exp", "vanilla", "--epochs", "1",
             "--data_dir", data_dir, "--model_dir", str(tmp_path)],
            capture_output=True, text=True, timeout=300, cwd=REPO,
            env=dict(os.environ, PYTHONPATH=REPO), preexec_fn=_without_root_override,
        )
    except subprocess.SubprocessError as exc:
        pytest.skip(f"cannot take root's permission override away here: {exc}")
    finally:
        for path in (tmp_path, exp_dir):
            path.chmod(stat.S_IRWXU)
    assert_one_line_error(proc, str(tmp_path), "not writable")  # refused at the flag boundary
    assert {p.name: p.read_bytes() for p in exp_dir.iterdir()} == earlier
