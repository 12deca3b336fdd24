"""How every command starts: absl flags defined at import, quiet libraries, and the one answer to
a mistake a user can make (one ``error:`` line on stderr, exit code 2, no traceback).

Each command module defines its flags at import and ends in ``cli.run(main, ...)``; the modules
are entry points only, so nothing imports two of them into one process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Callable

from absl import app, flags
from absl import logging as absl_logging

from lenet_keras.errors import UserError

FLAGS = flags.FLAGS
flags.DEFINE_bool(
    "library_logs", False,
    "Also show TensorFlow's and TFDS's informational messages (hidden by default: they bury the "
    "epoch lines).",
)

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
# This package's and the experiments' code: their INFO lines are the user's to read.
_OWN_CODE = (_PACKAGE + os.sep, os.path.join(os.path.dirname(_PACKAGE), "experiments") + os.sep)


# TFDS warns about its own use of a deprecated attribute of its own: nothing a user can act on.
_NOT_FOR_USERS = ("`FeatureConnector.dtype` is deprecated",)


class _OwnInfoOnly(logging.Filter):
    """Lets through warnings and errors, and INFO only from this package's code.

    absl logging is one logger for every library, so TFDS's "Load dataset info ..." lines can only
    be told from ours by where they were logged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return not str(record.msg).startswith(_NOT_FOR_USERS)
        return record.pathname.startswith(_OWN_CODE)


def quiet_libraries(library_logs: bool = False) -> None:
    """Hide libraries' INFO chatter (not their warnings), unless ``library_logs``.

    Call before TensorFlow is imported: its C++ log level is read then.
    """
    absl_logging.set_verbosity(absl_logging.INFO)
    if library_logs:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    absl_logging.get_absl_logger().addFilter(_OwnInfoOnly())


@contextlib.contextmanager
def _stderr_silenced():
    """File descriptor 2 to /dev/null: TensorFlow's C++ start-up lines are written before its
    log level applies (absl's "before InitializeLog" notice, oneDNN, CUDA probes)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow without its start-up chatter; an import error still surfaces."""
    if "tensorflow" not in sys.modules:
        with _stderr_silenced():
            import tensorflow  # noqa: F401


def keras_verbosity() -> int:
    """Keras ``verbose``: progress bars on a terminal, one line per epoch in a log or CI."""
    return 1 if sys.stdout.isatty() else 2


def fail(message: str, code: int = 2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


@contextlib.contextmanager
def one_line_errors(on_interrupt: str = "nothing already on disk was changed"):
    """A UserError or Ctrl-C becomes one `error:` line and exit 2 / 130, no traceback."""
    try:
        yield
    except UserError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail(f"interrupted; {on_interrupt}", code=130)


def run(main: Callable, *, positional: bool = False, tensorflow: bool = True,
        on_interrupt: str = "nothing already on disk was changed") -> None:
    """``app.run`` for a command: ``main()`` (or ``main(args)`` when it takes ``positional``
    arguments) runs with quiet libraries, and its UserErrors become one line. A command that uses
    ``tensorflow`` gets it imported first, quietly."""

    def entry(argv):
        quiet_libraries(FLAGS.library_logs)
        if tensorflow and not FLAGS.library_logs:
            import_tensorflow_quietly()
        with one_line_errors(on_interrupt):
            if positional:
                return main(argv[1:])
            if len(argv) > 1:
                raise UserError(f"unexpected arguments {argv[1:]}: all options are --flags")
            return main()

    app.run(entry)
