"""The one exception type for failures a user can cause and fix, and how every CLI reports it."""

import contextlib
import sys


class UserError(Exception):
    """Wrong input or environment: the CLI prints ``error: <message>`` on one line and exits 2."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, for embedding in a one-line UserError."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


def fail(message: str, code: int = 2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def reject_positional(argv) -> None:
    """absl leaves non-flag words in argv; these CLIs take none."""
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}: all options are --flags")


@contextlib.contextmanager
def one_line_errors(on_interrupt: str = "nothing already on disk was changed"):
    """A CLI body: a UserError or Ctrl-C becomes one `error:` line and exit 2 / 130, no traceback."""
    try:
        yield
    except UserError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail(f"interrupted; {on_interrupt}", code=130)
