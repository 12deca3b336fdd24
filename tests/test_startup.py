"""A command's first seconds (lenet_keras.startup): the stderr filter around TensorFlow's import
when it cannot fork, when its filter dies and when a process outlives the import; and where the
Ctrl-C handler of start-up is installed.

The filter runs around a stand-in ``tensorflow`` package first on PYTHONPATH (this process has
imported the real one already): it prints a start-up chatter line and two of its own, half a
second apart, and in one case starts a process that keeps the pipe open.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys

import pytest

from lenet_keras import startup
from tests.conftest import REPO

STUB = """\
import os, subprocess, time
os.write(2, b"I0000 00:00:1.5   77 cudart_stub.cc:31] Could not find cuda drivers\\n")
os.write(2, b"first line\\n")
if os.environ.get("STRAGGLER_PID_FILE"):
    straggler = subprocess.Popen(["sleep", "120"], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL)  # its stderr: the filter's pipe
    with open(os.environ["STRAGGLER_PID_FILE"], "w") as f:
        f.write(str(straggler.pid))
time.sleep(0.5)
os.write(2, b"second line\\n")
"""

DRIVER = """\
import errno, os, sys, time
from lenet_keras import startup
how = sys.argv[1]
if how == "filter exits":
    startup._forward_all_but_chatter = lambda read_end, stderr: os._exit(3)
elif how == "filter killed":
    startup._forward_all_but_chatter = lambda read_end, stderr: os.kill(os.getpid(), 9)
elif how == "filtering raises":
    startup.is_startup_chatter = lambda line: 1 / 0
elif how == "fork fails":
    def refused():
        raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
    os.fork = refused
open_before = len(os.listdir("/proc/self/fd"))
started = time.monotonic()
startup.import_tensorflow_without_chatter()
print(f"{time.monotonic() - started:.2f} {len(os.listdir('/proc/self/fd')) - open_before}")
"""


def _import_with_stub(tmp_path, how: str, straggler_pid_file=None):
    """(seconds the import took, descriptors it left open, stderr) for ``how``."""
    stub = tmp_path / "stub" / "tensorflow"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(STUB)
    env = dict(os.environ, PYTHONPATH=f"{stub.parent}{os.pathsep}{REPO}")
    if straggler_pid_file:
        env["STRAGGLER_PID_FILE"] = str(straggler_pid_file)
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, how], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    try:
        # Read before waiting: a straggler keeps the filter, and with it both pipes, open.
        answer = proc.stdout.readline()
        assert proc.wait(timeout=120) == 0
    finally:
        if straggler_pid_file and straggler_pid_file.exists():
            try:
                os.kill(int(straggler_pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    seconds, leaked = answer.split()
    return float(seconds), int(leaked), err


def test_the_filter_drops_chatter_and_shows_the_rest(tmp_path):
    _, leaked, err = _import_with_stub(tmp_path, "filter works")
    assert err.splitlines() == ["first line", "second line"]
    assert leaked == 0


@pytest.mark.parametrize("how", ["filter exits", "filter killed", "filtering raises"])
def test_a_dying_filter_loses_nothing_tensorflow_prints(tmp_path, how):
    """The filter dies before it reads a line (or its filtering fails): what the import printed
    still reaches stderr, unfiltered, and the import goes on."""
    _, leaked, err = _import_with_stub(tmp_path, how)
    assert "first line" in err and "second line" in err, err
    assert err.index("first line") < err.index("second line")
    assert leaked == 0


def test_a_failing_fork_imports_plainly_and_leaks_no_descriptor(tmp_path):
    _, leaked, err = _import_with_stub(tmp_path, "fork fails")
    assert "first line" in err and "second line" in err
    assert "Could not find cuda drivers" in err  # unfiltered: the one thing a failed fork costs
    assert leaked == 0


def test_a_process_that_outlives_the_import_does_not_hold_it(tmp_path):
    """A process started during the import keeps the filter's pipe open (for 120 s here): the
    import still returns after at most FILTER_WAIT_S of waiting for the filter."""
    seconds, leaked, err = _import_with_stub(tmp_path, "straggler", tmp_path / "straggler.pid")
    assert seconds < 0.5 + startup.FILTER_WAIT_S + 5, seconds
    assert "first line" in err and "second line" in err
    assert leaked == 0


# --- where the Ctrl-C handler of start-up is installed ----------------------------------------

def _commands():
    """Every module that ends in ``cli.run``: the commands."""
    for folder, _, names in os.walk(os.path.join(REPO, "lenet_keras")):
        for name in names:
            path = os.path.join(folder, name)
            if name.endswith(".py") and "cli.run(" in open(path).read() and name != "cli.py":
                yield os.path.relpath(path, REPO)


@pytest.mark.parametrize("path", sorted(_commands()))
def test_each_command_installs_the_handler_as_its_first_statement(path):
    with open(os.path.join(REPO, path)) as f:
        body = ast.parse(f.read()).body
    statements = [s for s in body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
                  and not (isinstance(s, ast.ImportFrom) and s.module == "__future__")]
    first = ast.unparse(statements[0])
    assert first.startswith("if __name__ == '__main__':") and "startup.exit_on_interrupt()" in first, first


def test_a_module_run_with_dash_m_outside_the_commands_keeps_pythons_ctrl_c():
    """Importing the package installs nothing: a `python -m lenet_keras.<module>` that is not a
    command (none today; lenet_keras.config stands in) keeps Python's own KeyboardInterrupt."""
    proc = subprocess.run(
        [sys.executable, "-i", "-m", "lenet_keras.config"], capture_output=True, text=True,
        input="import signal\nprint(signal.getsignal(signal.SIGINT))\n", timeout=60, cwd=REPO,
        env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.stdout.strip() == "<built-in function default_int_handler>", proc.stdout
