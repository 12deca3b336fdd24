"""How every command starts: absl flags defined at import, quiet libraries, and the one answer to
a mistake a user can make (one ``error:`` line on stderr, exit code 2, no traceback).

Each command module defines its flags at import and ends in ``cli.run(main, ...)``; the modules
are entry points only, so nothing imports two of them into one process.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import sys
from typing import Callable

from absl import app, flags
from absl import logging as absl_logging

from lenet_keras import startup
from lenet_keras.errors import UserError, within_any

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


def import_tensorflow() -> None:
    """Imports TensorFlow as the command's --library_logs says: without its start-up chatter
    (lenet_keras.startup; anything else it prints, a native crash's last words included, is
    shown), or with --library_logs plainly, chatter and all."""
    if FLAGS.library_logs:
        import tensorflow  # noqa: F401
    else:
        startup.import_tensorflow_without_chatter()


def keras_verbosity() -> int:
    """Keras ``verbose``: progress bars on a terminal, one line per epoch in a log or CI."""
    return 1 if sys.stdout.isatty() else 2


def fail(message: str, code: int = 2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


# A full disk or quota: the machine's state, whatever path was being written.
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# Refusals that a wrong path built by a bug gets as readily as a user's folder does: the user's
# only on a path the user chose (_PATH_FLAGS), or one inside it.
_PATH_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR,
                          errno.ENAMETOOLONG})
# The flags that name a file or folder the user chose (path_flags, require_writable_folder).
_PATH_FLAGS: set = set()


def path_flags(*names: str) -> None:
    """Declares flags whose values are files or folders the user chose: a permission or
    file-type error on one of them, or inside one, is one ``error:`` line; elsewhere, a bug's
    traceback."""
    _PATH_FLAGS.update(names)


def _tfds_default_data_dir() -> str:
    return os.environ.get("TFDS_DATA_DIR") or os.path.join("~", "tensorflow_datasets")


def chosen_paths(extra=()) -> list:
    """The files and folders the user chose for this command: the path flags' values (the TFDS
    folder TFDS itself picks when ``--data_dir`` is not given) and ``extra``."""
    paths = list(extra)
    for name in sorted(_PATH_FLAGS):
        if name not in FLAGS:
            continue
        value = FLAGS[name].value
        if value is None and name == "data_dir":
            value = _tfds_default_data_dir()
        if value:
            paths.append(value)
    return paths


def _users_os_error(exc: OSError, chosen) -> bool:
    if not exc.filename:
        return False
    if exc.errno in _FULL_ERRNOS:
        return True
    return exc.errno in _PATH_ERRNOS and any(
        within_any(name, chosen) for name in (exc.filename, exc.filename2) if name)


def _caused_by_interrupt(exc: BaseException) -> bool:
    """A Ctrl-C that surfaced through TensorFlow's C++ (while tracing, say) as another error."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def one_line_errors(on_interrupt: str = "nothing already on disk was changed", paths=()):
    """A UserError or Ctrl-C becomes one `error:` line and exit 2 / 130, no traceback; so does an
    OSError of a full disk, or one refusing a path the user chose (``chosen_paths(paths)``)."""
    try:
        yield
    except UserError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail(f"interrupted; {on_interrupt}", code=130)
    except SystemError as exc:
        if not _caused_by_interrupt(exc):
            raise
        fail(f"interrupted; {on_interrupt}", code=130)
    except OSError as exc:
        # The last net for a write the command did not expect to fail (its own handlers name more):
        # a full disk, a read-only folder, a file where a folder should be. Files are published
        # whole or not at all (training.atomic), so what was on disk before is still there.
        if not _users_os_error(exc, chosen_paths(paths)):
            raise
        fail(f"{exc.filename}: {exc.strerror}: free disk space, fix its permissions or choose "
             "another path, then run the same command again")


# keras.utils.set_random_seed takes what numpy's seeding takes: 0 <= seed < 2**32.
SEED_BOUNDS = dict(lower_bound=0, upper_bound=2**32 - 1)
# Far above any batch that fits in memory; keeps TensorFlow from being the first to see 2**64.
BATCH_BOUNDS = dict(lower_bound=1, upper_bound=2**20)
COUNT_BOUNDS = dict(lower_bound=1, upper_bound=10**6)


def require_positive(name: str) -> None:
    """A float flag that must be a finite number above 0 (or unset)."""
    flags.register_validator(
        name, lambda v: v is None or (math.isfinite(v) and v > 0),
        message=f"--{name} must be a positive number")


def require_fraction(name: str) -> None:
    """A float flag that must lie strictly between 0 and 1 (or unset)."""
    flags.register_validator(name, lambda v: v is None or 0 < v < 1,
                             message=f"--{name} must be between 0 and 1 (exclusive)")


def _writable_folder(path) -> bool:
    if path is None:
        return True
    if not path:
        raise flags.ValidationError("an empty path: name a folder")
    probe = os.path.abspath(os.path.expanduser(path))
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise flags.ValidationError(f"{probe} is a file, not a folder: choose another path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise flags.ValidationError(f"{probe} is not writable by this user: choose another path")
    return True


def require_writable_folder(name: str) -> None:
    """A path flag naming a folder this command creates or writes into: no file in the way, and
    the nearest existing folder writable (checked before anything runs)."""
    flags.register_validator(name, _writable_folder, message=f"--{name} is not a usable folder")
    path_flags(name)


def parse_flags(argv):
    """absl's parser with the one-line answer: a mistyped, unknown or out-of-range flag is
    ``error: ...`` and exit 2 (absl's own prints a FATAL line and exits 1)."""
    try:
        return FLAGS(argv)
    except flags.Error as exc:
        reason = " ".join(str(exc).split())
        fail(f"{reason}; see --helpfull for every flag")


def run(main: Callable, *, positional: bool = False, tensorflow: bool = True,
        on_interrupt: str = "nothing already on disk was changed") -> None:
    """``app.run`` for a command: ``main()`` (or ``main(args)`` when it takes ``positional``
    arguments) runs with quiet libraries, and its UserErrors become one line. A command that uses
    ``tensorflow`` gets it imported first, quietly."""

    def entry(argv):
        quiet_libraries(FLAGS.library_logs)
        if tensorflow:
            import_tensorflow()
        with one_line_errors(on_interrupt, paths=argv[1:] if positional else ()):
            startup.interrupt_normally()
            if positional:
                return main(argv[1:])
            if len(argv) > 1:
                raise UserError(f"unexpected arguments {argv[1:]}: all options are --flags")
            return main()

    # Its command module installed this as its first line already (run as `python -m`); here
    # for one that did not: Ctrl-C while absl parses and TensorFlow imports is still one line.
    startup.exit_on_interrupt()
    with one_line_errors(on_interrupt):
        app.run(entry, flags_parser=parse_flags)
