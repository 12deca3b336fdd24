"""A command's first seconds: Ctrl-C while Python and TensorFlow import, and TensorFlow's start-up lines.

Importing TensorFlow takes seconds and prints lines of its own before its log level applies (absl's
"before InitializeLog" notice, the CUDA probe, the CPU-instruction note). Those are hidden; every
other line it prints is shown as it comes, so a protobuf FATAL line or NumPy's ABI explanation
before a native abort still reaches the user.
"""

from __future__ import annotations

import os
import re
import signal
import sys

INTERRUPTED_WHILE_STARTING = b"error: interrupted while starting; nothing was changed\n"

# The lines TensorFlow prints on every start-up, which its log level cannot quiet. Only INFO lines
# (glog's "I<mmdd> ...") and absl's notice: warnings and errors always pass.
_STARTUP_CHATTER = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|I\d{4} [\d:.]+\s+\d+ \S+:\d+\] .*"
    rb"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler "
    rb"flags\.)\r?\n?$"
)


def is_startup_chatter(line: bytes) -> bool:
    return bool(_STARTUP_CHATTER.match(line))


def _exit_interrupted(signum, frame):
    # Nothing has been written yet, and a KeyboardInterrupt raised inside an import would end in
    # a traceback through importlib: leave at once, with the one line.
    os.write(2, INTERRUPTED_WHILE_STARTING)
    os._exit(130)


def started_as_command() -> bool:
    """Whether this process is ``python -m lenet_keras.<command>`` (not a library user's)."""
    argv = getattr(sys, "orig_argv", sys.argv)
    return any(a == "-m" and b.startswith("lenet_keras.") for a, b in zip(argv, argv[1:], strict=False))


def exit_on_interrupt() -> None:
    """Until ``interrupt_normally``: Ctrl-C prints one line and exits 130 at once."""
    signal.signal(signal.SIGINT, _exit_interrupted)


def interrupt_normally() -> None:
    """Ctrl-C raises KeyboardInterrupt again, for the command's own handler."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _forward_all_but_chatter(read_end: int, stderr: int) -> None:
    """The filter process: copies each line from ``read_end`` to ``stderr`` unless it is chatter,
    until every writer has closed the pipe (a native abort of the parent included)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to answer
    with os.fdopen(read_end, "rb") as lines:
        for line in lines:
            if not is_startup_chatter(line):
                os.write(stderr, line)


def import_tensorflow(filter_chatter: bool = True) -> None:
    """Imports TensorFlow; with ``filter_chatter`` its start-up lines are dropped, all else shown.

    File descriptor 2 goes to a pipe read by a forked process that forwards every line but the
    chatter, so what TensorFlow prints reaches the terminal even if the import dies natively.
    """
    if "tensorflow" in sys.modules:
        return
    if not filter_chatter or not hasattr(os, "fork"):
        import tensorflow  # noqa: F401
        return
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    stderr = os.dup(2)
    pid = os.fork()  # before TensorFlow starts its threads
    if pid == 0:
        os.close(write_end)
        try:
            _forward_all_but_chatter(read_end, stderr)
        finally:
            os._exit(0)
    os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        import tensorflow  # noqa: F401
    finally:
        sys.stderr.flush()
        os.dup2(stderr, 2)  # the pipe's last writer closes: the filter forwards the rest and ends
        os.close(stderr)
        os.waitpid(pid, 0)
