"""The one exception type for failures a user can cause and fix (lenet_keras.cli reports it), and
what decides that a file error is the user's: it is on a path the user gave."""

import os
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


def _forms(path) -> set:
    """``path`` as an error may name it: absolute (``~`` expanded) and with its links resolved; a
    URI (``gs://...``) as written."""
    path = os.fsdecode(path)
    if "://" in path:
        return {path.rstrip("/")}
    path = os.path.abspath(os.path.expanduser(path))
    return {path, os.path.realpath(path)}


def within_any(path, roots) -> bool:
    """Whether ``path`` is one of ``roots`` or inside one, as written or with links resolved."""
    if not path:
        return False
    folders = {form for root in roots if root for form in _forms(root)}
    return any(form == folder or form.startswith(folder.rstrip("/") + "/")
               for form in _forms(path) for folder in folders)
