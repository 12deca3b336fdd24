"""Odd but real input to the commands: flags absl or TensorFlow would reject, a file where a folder
belongs, Ctrl-C at any instant, a library that dies while it imports, a full disk, file modes.

The contract: exit 0, or exit 2 (130 for Ctrl-C) with one ``error:`` line and no traceback, and
nothing already on disk changed. The property-based half is tests/test_flag_properties.py.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from lenet_keras import cli
from lenet_keras.training import atomic
from tests.conftest import REPO, assert_one_line_error, run_cli


def _snapshot(folder) -> dict:
    """Every file under ``folder`` with its bytes: what "nothing on disk changed" compares."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


# --- flags: absl's own parse errors and values TensorFlow would be the first to see -------------

@pytest.mark.parametrize("module,args,needle", [
    # One of each mechanism, through each command's own process; tests/test_flag_properties.py
    # generates the rest of train's in-process.
    ("lenet_keras.train", ["--epochs=abc"], "--epochs"),  # absl's own parse error
    ("lenet_keras.train", ["--no_such_flag"], "no_such_flag"),  # absl's own parse error
    ("lenet_keras.train", ["--seed", "-1"], "--seed"),  # a bound
    ("lenet_keras.train", ["--batch_size", "18446744073709551616"], "--batch_size"),
    ("lenet_keras.tune", ["--tuner", "foo"], "--tuner"),  # an enum
    ("lenet_keras.export", ["--exp", "tuned", "--model_name", "../x"], "--model_name"),  # a validator
    ("lenet_keras.predict", ["--top_k", "0", "a.png"], "--top_k"),
])
def test_flag_mistakes_are_one_line_before_tensorflow_starts(tmp_path, module, args, needle):
    """The command runs with a stand-in ``tensorflow`` package first on PYTHONPATH that, if
    anything imports it, says so and exits 99: a one-line refusal from it proves TensorFlow never
    started (a time bound could only suggest it)."""
    proc = _without_tensorflow(tmp_path, module, *args)
    assert "tensorflow was imported" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stderr
    assert_one_line_error(proc, needle)
    assert "FATAL" not in proc.stderr


def test_the_tensorflow_stand_in_reports_an_import(tmp_path):
    """The control: flags that pass get as far as TensorFlow, and the stand-in says so."""
    proc = _without_tensorflow(tmp_path, "lenet_keras.train", "--exp", "vanilla",
                               "--model_dir", str(tmp_path / "m"))
    assert proc.returncode == 99 and "tensorflow was imported" in proc.stderr, proc.stderr


def _without_tensorflow(tmp_path, module: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m module args`` where importing TensorFlow prints a line and exits 99."""
    stub = tmp_path / "stub" / "tensorflow"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(
        "import os\nos.write(2, b'tensorflow was imported\\n')\nos._exit(99)\n")
    env = dict(os.environ, PYTHONPATH=f"{stub.parent}{os.pathsep}{REPO}")
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=REPO)


@pytest.mark.slow
def test_a_file_where_the_model_dir_belongs(tmp_path):
    a_file = tmp_path / "results"
    a_file.write_text("keep me")
    for exp in ("all", "tuned"):
        proc = run_cli("lenet_keras.train", "--exp", exp, "--model_dir", str(a_file / "inside"))
        assert proc.returncode == 2
        assert_one_line_error(proc, str(a_file), "is a file")
    assert a_file.read_text() == "keep me"


def test_a_study_that_cannot_write_its_marker_is_one_line(tmp_path, monkeypatch):
    """A read-only model dir (simulated: this suite runs as root, which ignores modes)."""
    from lenet_keras.errors import UserError
    from lenet_keras.training.study import Study

    def read_only(path, payload):
        raise PermissionError(errno.EROFS, os.strerror(errno.EROFS), path)

    monkeypatch.setattr(atomic, "write_json", read_only)
    with pytest.raises(UserError, match="Read-only file system") as caught:
        Study(str(tmp_path), []).begin()
    assert "\n" not in str(caught.value) and "--model_dir" in str(caught.value)


def test_an_unexpected_write_failure_is_one_line_but_a_bug_keeps_its_traceback():
    def full_disk():
        with cli.one_line_errors():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/models/x.json")

    with pytest.raises(SystemExit) as caught:
        full_disk()
    assert caught.value.code == 2

    def bug():
        with cli.one_line_errors():
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    with pytest.raises(OSError):
        bug()
    with pytest.raises(ZeroDivisionError):
        with cli.one_line_errors():
            raise ZeroDivisionError("a programming error")


@pytest.mark.parametrize("code", [errno.EACCES, errno.EISDIR, errno.ENOTDIR, errno.EROFS])
def test_a_refused_path_is_one_line_only_if_the_user_chose_it(tmp_path, code):
    """Under --model_dir (or through a link to it), the user's to fix: one line. Anywhere else,
    a path this code built wrong: the traceback stays."""
    from tests.conftest import train_flags

    model_dir = tmp_path / "models"
    (tmp_path / "link").symlink_to(model_dir, target_is_directory=True)
    model_dir.mkdir()

    def refused(path):
        with cli.one_line_errors():
            raise OSError(code, os.strerror(code), str(path))

    with train_flags(f"--model_dir={model_dir}", f"--data_dir={tmp_path / 'data'}"):
        for chosen in (model_dir / "vanilla" / "model.keras", tmp_path / "link" / "x",
                       tmp_path / "data" / "cifar100"):
            with pytest.raises(SystemExit) as caught:
                refused(chosen)
            assert caught.value.code == 2
        for elsewhere in (tmp_path / "models-but-not-inside", "/etc/lenet_keras/x", "relative/x"):
            with pytest.raises(OSError):
                refused(elsewhere)
    # A positional argument (predict's images) is a path the user chose too.
    with pytest.raises(SystemExit):
        with cli.one_line_errors(paths=[str(tmp_path / "cat.png")]):
            raise OSError(code, os.strerror(code), str(tmp_path / "cat.png"))


def test_a_full_disk_is_one_line_whatever_the_path():
    with pytest.raises(SystemExit) as caught:
        with cli.one_line_errors():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/tmp/somewhere/x")
    assert caught.value.code == 2


@pytest.mark.slow
def test_hparams_of_the_wrong_types_name_what_is_wrong(tmp_path):
    path = tmp_path / "best.json"
    path.write_text(json.dumps({"values": {
        "activation": "relu", "pooling": "max", "batch_norm": True,
        "hidden_units": [64, 128], "learning_rate": "fast"}}))
    proc = run_cli("lenet_keras.train", "--exp", "tuned", "--hparams", str(path),
                   "--model_dir", str(tmp_path / "m"))
    assert proc.returncode == 2
    assert_one_line_error(proc, "hidden_units [64, 128]", "learning_rate 'fast'")
    assert not (tmp_path / "m").exists()


# --- what a library prints is never hidden ------------------------------------------------------

@pytest.mark.slow
def test_a_native_crash_while_tensorflow_imports_still_shows_its_last_words(tmp_path):
    stub = tmp_path / "stub" / "tensorflow"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(
        "import os, sys\n"
        "sys.stderr.write('I0000 00:00:1.5   77 cudart_stub.cc:31] Could not find cuda drivers\\n')\n"
        "sys.stderr.write('A module compiled using NumPy 1.x cannot be run in NumPy 2: downgrade\\n')\n"
        "sys.stderr.flush()\n"
        "os.abort()\n")
    env = dict(os.environ, PYTHONPATH=f"{stub.parent}{os.pathsep}{REPO}")
    proc = subprocess.run([sys.executable, "-m", "lenet_keras.predict", "--model", "m", "x.png"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert proc.returncode == -signal.SIGABRT
    assert "cannot be run in NumPy 2: downgrade" in proc.stderr
    assert "Could not find cuda drivers" not in proc.stderr  # start-up chatter stays hidden


def test_startup_chatter_is_told_from_everything_else():
    from lenet_keras import startup

    hidden = [
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        b"I0000 00:00:1796318048.157054    8347 cudart_stub.cc:31] Could not find cuda drivers on "
        b"your machine, GPU will not be used.\n",
        b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
        b"with the appropriate compiler flags.\n",
    ]
    shown = [
        b"E0000 00:00:1796318180.721332    9625 cuda_platform.cc:52] failed call to cuInit\n",
        b"W0000 00:00:1.5  1 op_kernel.cc:1] something a user should see\n",
        b"[libprotobuf FATAL google/protobuf/message_lite.cc:1] CHECK failed\n",
        b"Traceback (most recent call last):\n",
    ]
    assert all(startup.is_startup_chatter(line) for line in hidden)
    assert not any(startup.is_startup_chatter(line) for line in shown)


def test_keras_safe_mode_refusal_is_shown_in_full(tmp_path):
    import keras

    from lenet_keras import models
    from lenet_keras.errors import UserError

    inputs = keras.Input((32, 32, 3))
    doubled = keras.layers.Lambda(lambda x: x * 2)(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(doubled))
    path = str(tmp_path / "lambda.keras")
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(UserError) as caught:
        models.load_classifier(path)
    message = str(caught.value)
    assert "safe mode" in message and "safe_mode=False" in message, message
    assert message.rstrip().endswith("enable_unsafe_deserialization().`") or \
        "arbitrary code execution" in message


# --- file modes -------------------------------------------------------------------------------

@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_published_files_get_the_mode_plain_open_would(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic.write_text(str(tmp_path / "REPORT.md"), "# report\n")
        atomic.publish(str(tmp_path / "REPORT.md"), str(tmp_path / "copy.md"))
        with atomic.new_folder(str(tmp_path / "1"), prefix=".export-") as staging:
            with open(os.path.join(staging, "saved_model.pb"), "w") as f:
                f.write("x")
    finally:
        os.umask(old)
    for name in ("REPORT.md", "copy.md"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == mode, name
    assert stat.S_IMODE(os.stat(tmp_path / "1").st_mode) == mode | ((mode & 0o444) >> 2)


@pytest.mark.slow
def test_a_trained_runs_published_files_are_readable_by_others(study_dir):
    for name in ("model.keras", "metrics.json", "predictions.npz", "config.json"):
        path = os.path.join(study_dir, "vanilla", name)
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o044 == 0o044, path
    report = os.path.join(study_dir, "report")
    for name in os.listdir(report):
        assert stat.S_IMODE(os.stat(os.path.join(report, name)).st_mode) & 0o044 == 0o044, name


# --- Ctrl-C at any instant -------------------------------------------------------------------

def _interrupted_train(data_dir: str, model_dir, after_s: float):
    env = dict(os.environ, PYTHONPATH=REPO)
    # Far more epochs than fit in the test's seconds: the run is always still going when the
    # signal comes, so an exit 0 can only mean the signal was ignored.
    proc = subprocess.Popen(
        [sys.executable, "-m", "lenet_keras.train", "--exp", "vanilla", "--epochs", "500",
         "--data_dir", data_dir, "--model_dir", str(model_dir)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(after_s)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    return proc.returncode, err


def _before_the_first_line(err: str) -> bool:
    """Whether a Ctrl-C landed before the command's first line had installed the handler."""
    if "KeyboardInterrupt" not in err:
        return False
    last_frame = err[err.rindex('  File "'):]
    return ("init_import_site" in err or "from lenet_keras import startup" in err
            or "lenet_keras/" not in err or "lenet_keras/__init__.py" in last_frame
            or "lenet_keras/startup.py" in last_frame)


@pytest.mark.slow
@pytest.mark.parametrize("after_s", [0.1, 0.6, 2.0, 6.0])
def test_ctrl_c_at_any_instant_of_start_up_is_one_line_and_130(tmp_path, data_dir, after_s):
    """From the command's first line through TensorFlow's import into data loading and training.

    Before that, the interpreter is still setting itself up (site-packages, runpy, the package's
    __init__ and the handler's own module), which no command can answer for: a signal that lands
    there is sent again a little later.
    """
    model_dir = tmp_path / "m"
    (model_dir / "vanilla").mkdir(parents=True)
    (model_dir / "vanilla" / "model.keras").write_bytes(b"an earlier run's model")
    before = _snapshot(model_dir)
    code, err = _interrupted_train(data_dir, model_dir, after_s)
    while _before_the_first_line(err) and after_s < 3:
        after_s += 0.1
        code, err = _interrupted_train(data_dir, model_dir, after_s)
    assert code == 130, (code, err[-2000:])  # 0 would be a Ctrl-C that did not stop the run
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: interrupted"), err[-2000:]
    after = _snapshot(model_dir)
    assert {name: after.get(name) for name in before} == before
    # Anything new is the run's resume state, its lock or its TensorBoard events (appended as it
    # trains), never a half-published artifact.
    new = set(after) - set(before)
    assert all(".staging" in name or name.endswith(".lock") or "/logs/" in name for name in new), new


def test_an_interrupt_that_surfaces_as_a_system_error_is_an_interrupt():
    def traced():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise SystemError("<built-in function X> returned a result with an exception set")  # noqa: B904 - as TensorFlow's C++ does

    with pytest.raises(SystemExit) as caught:
        with cli.one_line_errors():
            traced()
    assert caught.value.code == 130
    with pytest.raises(SystemError):
        with cli.one_line_errors():
            raise SystemError("a real one")
