"""The one exception type for failures a user can cause and fix (lenet_keras.cli reports it)."""

import re


class UserError(Exception):
    """Wrong input or environment: a command prints ``error: <message>`` on one line and exits 2."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, for embedding in a one-line UserError; a
    TensorFlow op error loses the op location around its message (``{{function_node ...}}``,
    ``[Op:DecodeImage]``), which tells a user nothing."""
    text = re.sub(r"\{\{(?:function_)?node .*?\}\}\s*", "", str(exc))
    text = re.sub(r"\s*\[Op:.*$", "", text, flags=re.S).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]
