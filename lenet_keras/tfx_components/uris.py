"""Paths a remote run is given (``gs://...``): what the pipeline command checks its flags with
and the pipeline keeps as they are. Imports nothing heavy, so the command checks flags before
TensorFlow or TFX start."""

import os


def is_remote(path: str) -> bool:
    """A URI of another filesystem (``gs://...``), which only a remote run may be given."""
    return "://" in path


def local_or_remote(path: str) -> str:
    """A URI as it is, a local path made absolute."""
    return path if is_remote(path) else os.path.abspath(path)
