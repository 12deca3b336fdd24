"""Which component failures are the user's to fix (one ``error:`` line, exit 2) and which are bugs
(the traceback, another exit code), under LocalDagRunner and under Beam's re-raising: a file error
is the user's only on a path the user gave, under one, or a folder above one."""

from __future__ import annotations

import errno
import importlib.util
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = [
    pytest.mark.tfx,
    pytest.mark.skipif(importlib.util.find_spec("tfx") is None,
                       reason="TFX is not installed: it needs Python 3.10"),
    pytest.mark.filterwarnings("ignore:You are using a non-supported Python version:FutureWarning"),
]


def _as_beam_raises(exc: BaseException) -> BaseException:
    """``exc`` as BeamDagRunner surfaces it: raised in a step of a Beam pipeline on the DirectRunner
    (BeamDagRunner runs each component as such a step)."""
    import apache_beam as beam

    def fail(_):
        raise exc

    try:
        with beam.Pipeline() as pipeline:
            _ = pipeline | beam.Create([0]) | "Run[tuned_pusher]" >> beam.Map(fail)
    except Exception as raised:
        return raised
    raise AssertionError("Beam did not raise")


# The paths a user gave: a pipeline root, a serving base under a file, a remote data dir.
USER_PATHS = ["/srv/tfx", "/srv/blocker/serving", "gs://b/tfds"]


def _user_errors():
    import tensorflow as tf

    from lenet_keras.errors import UserError

    return [UserError("bad data: prepare it again"),
            FileNotFoundError(errno.ENOENT, "No such file", "/srv/tfx/Trainer/model/1"),
            tf.errors.FailedPreconditionError(None, None, "/srv/blocker is not a directory"),
            tf.errors.PermissionDeniedError(None, None, "gs://b/tfds/cifar100: permission denied"),
            tf.errors.NotFoundError(None, None, "/srv/tfx; No such file or directory"),
            OSError(errno.ENOSPC, "No space left on device", "/var/tmp/beam-temp"),  # anywhere
            MemoryError("out of memory")]


def _bugs_on_paths():
    """File errors on paths no user gave: a bug built them, so they keep their traceback."""
    import tensorflow as tf

    return [FileNotFoundError(errno.ENOENT, "No such file", "/srv/tfx_other/model"),
            NotADirectoryError(errno.ENOTDIR, "Not a directory", "/opt/made/up"),
            PermissionError(errno.EACCES, "Permission denied", "relative/made/up"),
            FileNotFoundError(errno.ENOENT, "No such file"),  # names no path at all
            tf.errors.NotFoundError(None, None, "/opt/made/up/saved_model.pb; No such file"),
            tf.errors.FailedPreconditionError(None, None, "gs://b/tfds2 is not a directory"),
            tf.errors.UnavailableError(None, None, "the connection was reset")]


def test_beam_hides_the_type_of_tensorflows_errors():
    """Why ``user_caused`` unwraps: Beam cannot rebuild an OpError, so it raises a RuntimeError."""
    import tensorflow as tf

    raised = _as_beam_raises(tf.errors.FailedPreconditionError(None, None, "x is not a directory"))
    assert not isinstance(raised, tf.errors.OpError) and "x is not a directory" in str(raised)


@pytest.mark.parametrize("through_beam", [False, True])
def test_what_a_user_can_fix_is_recognised_also_through_beam(through_beam):
    from lenet_keras.tfx_components import runners

    for error in _user_errors():
        raised = _as_beam_raises(error) if through_beam else error
        cause = runners.user_caused(raised, USER_PATHS)
        assert type(cause) is type(error) and str(error) in str(cause), (type(raised), raised)


@pytest.mark.parametrize("through_beam", [False, True])
def test_a_file_error_on_a_path_no_user_gave_is_a_bug_also_through_beam(through_beam):
    from lenet_keras.tfx_components import runners

    for bug in _bugs_on_paths():
        raised = _as_beam_raises(bug) if through_beam else bug
        assert runners.user_caused(raised, USER_PATHS) is None, (type(raised), raised)


def test_a_relative_user_path_matches_its_absolute_form_in_an_error(tmp_path, monkeypatch):
    from lenet_keras.tfx_components import runners

    monkeypatch.chdir(tmp_path)
    error = FileNotFoundError(errno.ENOENT, "No such file", str(tmp_path / "root" / "x"))
    assert runners.user_caused(error, ["root"]) is error
    assert runners.user_caused(error, ["other"]) is None


BUGS = [TypeError("f() takes 1 argument"), KeyError("probabilities"),
        AttributeError("'NoneType' has no attribute 'uri'"),
        ValueError("Unable to find tf_example function"), RuntimeError("something inconsistent")]


@pytest.mark.parametrize("bug", BUGS)
def test_programming_errors_are_not_the_users(bug):
    from lenet_keras.tfx_components import runners

    assert runners.user_caused(bug, USER_PATHS) is None


def test_programming_errors_through_beam_are_not_the_users():
    from lenet_keras.tfx_components import runners

    for bug in BUGS[:2]:  # one Beam pipeline each: a few seconds
        assert runners.user_caused(_as_beam_raises(bug), USER_PATHS) is None


@pytest.mark.slow
def test_a_bug_in_a_component_keeps_its_traceback_and_is_not_exit_2(data_dir, tmp_path):
    """The command, with TFX's LocalDagRunner raising a bug: no `error:` line, the traceback."""
    script = tmp_path / "buggy.py"
    script.write_text(
        "import runpy, sys\n"
        "from tfx.orchestration.local import local_dag_runner\n"
        "def run(self, pipeline, run_options=None, **kwargs):\n"
        "    raise TypeError('a bug inside a component')\n"
        "local_dag_runner.LocalDagRunner.run = run\n"
        "sys.argv = ['pipeline'] + sys.argv[1:]\n"
        "runpy.run_module('lenet_keras.pipeline', run_name='__main__')\n")
    proc = subprocess.run(
        [sys.executable, str(script), "--data_dir", data_dir, "--pipeline_root",
         str(tmp_path / "root"), "--serving_base", str(tmp_path / "serving")],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode not in (0, 2), proc.stderr[-3000:]
    assert "Traceback" in proc.stderr and "TypeError: a bug inside a component" in proc.stderr
    assert "error in the code" in proc.stderr and "error: TFX component" not in proc.stderr
