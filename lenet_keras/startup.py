"""A command's first seconds: Ctrl-C while Python and TensorFlow import, and TensorFlow's start-up lines.

Importing TensorFlow takes seconds and prints lines of its own before its log level applies (absl's
"before InitializeLog" notice, the CUDA probe, the CPU-instruction note). Those are hidden; every
other line it prints is shown as it comes, so a protobuf FATAL line or NumPy's ABI explanation
before a native abort still reaches the user.
"""

from __future__ import annotations

# _signal, not signal: the interpreter has loaded it already, while importing signal (its enums)
# would widen the start-up window in which Ctrl-C still ends in a traceback. threading is imported
# where the filter needs it, for the same reason.
import _signal
import os
import re
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


def exit_on_interrupt() -> None:
    """Until ``interrupt_normally``: Ctrl-C prints one line and exits 130 at once. Each command
    calls it first thing when run as ``python -m`` (and ``cli.run`` again), never on import."""
    _signal.signal(_signal.SIGINT, _exit_interrupted)


def interrupt_normally() -> None:
    """Ctrl-C raises KeyboardInterrupt again, for the command's own handler."""
    _signal.signal(_signal.SIGINT, _signal.default_int_handler)


# How long the import waits for the filter to forward TensorFlow's last lines: it ends when every
# writer of its pipe has closed, and a process started during the import may hold one for ever.
FILTER_WAIT_S = 2.0


def _copy_all(read_end: int, stderr: int) -> None:
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            return
        os.write(stderr, chunk)


def _forward_all_but_chatter(read_end: int, stderr: int) -> None:
    """The filter process: copies each line from ``read_end`` to ``stderr`` unless it is chatter,
    until every writer has closed the pipe (a native abort of the parent included). Should the
    filtering itself fail, the rest is copied as it is: nothing TensorFlow prints is lost."""
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)  # Ctrl-C is the parent's to answer
    unsent = b""  # read, not yet forwarded or dropped
    try:
        while True:
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            unsent += chunk
            while b"\n" in unsent:
                line, _, rest = unsent.partition(b"\n")
                if not is_startup_chatter(line + b"\n"):
                    os.write(stderr, line + b"\n")
                unsent = rest
        if unsent and not is_startup_chatter(unsent):
            os.write(stderr, unsent)
    except Exception:  # whatever broke the filtering, the copying still works
        os.write(stderr, unsent)
        _copy_all(read_end, stderr)


class _ChatterFilter:
    """File descriptor 2 sent through a forked filter process (``_forward_all_but_chatter``).

    The parent keeps the pipe's read end and a thread that waits for the filter: should the filter
    die before ``stop``, the thread points descriptor 2 back at the terminal and copies out what
    the pipe still holds, so the rest of the import prints directly and nothing is lost.
    """

    def __init__(self):
        import threading

        sys.stderr.flush()
        self._read_end, write_end = os.pipe()
        try:
            self._stderr = os.dup(2)
            try:
                self._pid = os.fork()  # before TensorFlow starts its threads
            except OSError:
                os.close(self._stderr)
                raise
        except OSError:
            os.close(self._read_end)
            os.close(write_end)
            raise
        if self._pid == 0:
            os.close(write_end)
            try:
                _forward_all_but_chatter(self._read_end, self._stderr)
            finally:
                os._exit(0)
        os.dup2(write_end, 2)
        os.close(write_end)
        self._lock = threading.Lock()
        self._stopped = False
        self._reaped = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="stderr-filter", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        os.waitpid(self._pid, 0)
        self._reaped.set()
        with self._lock:
            if self._stopped:
                return
            os.dup2(self._stderr, 2)  # from now on straight to the terminal
            os.set_blocking(self._read_end, False)
            try:
                _copy_all(self._read_end, self._stderr)
            except BlockingIOError:  # all it held is out; any other writer writes directly now
                pass

    def stop(self) -> None:
        """Descriptor 2 back to the terminal; waits up to FILTER_WAIT_S for the filter to
        forward the last lines, then leaves it to finish by itself."""
        sys.stderr.flush()
        with self._lock:
            self._stopped = True
            os.dup2(self._stderr, 2)  # the pipe's last writer closes: the filter forwards the rest
        self._reaped.wait(FILTER_WAIT_S)
        with self._lock:
            os.close(self._read_end)
            os.close(self._stderr)


def import_tensorflow_without_chatter() -> None:
    """Imports TensorFlow with its start-up lines dropped and every other line shown as it comes.

    Descriptor 2 goes to a pipe read by a forked process that forwards every line but the chatter,
    so what TensorFlow prints reaches the terminal even if the import dies natively. Where no
    process can be forked (no fork(), or the system refuses one), TensorFlow is imported plainly,
    chatter and all.
    """
    if "tensorflow" in sys.modules:
        return
    chatter_filter = None
    if hasattr(os, "fork"):
        try:
            chatter_filter = _ChatterFilter()
        except OSError:
            pass  # EAGAIN/ENOMEM/EMFILE: a few more lines on screen, nothing else changes
    try:
        import tensorflow  # noqa: F401
    finally:
        if chatter_filter is not None:
            chatter_filter.stop()
