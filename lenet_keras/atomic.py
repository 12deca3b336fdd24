"""Files that are either the old complete version or the new complete version, never half of one.

Every artifact is written under a temporary name, flushed to disk and renamed over its final name
(``os.replace`` is atomic on POSIX); the directory is then fsynced so that the rename itself
survives a power loss, not only a killed process.
"""

from __future__ import annotations

import json
import os
import shutil


def fsync_path(path: str) -> None:
    """fsync a file or a directory by name.

    Keras and numpy close their files without fsync; without it a renamed file can be empty after a
    power loss on file systems that reorder data and metadata writes. A directory is synced so the
    rename itself survives.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)





def replace(src: str, dst: str) -> None:
    """Moves a finished file ``src`` over ``dst`` durably; ``dst`` is never seen half-written."""
    fsync_path(src)
    os.replace(src, dst)
    fsync_path(os.path.dirname(os.path.abspath(dst)))


def publish(src: str, dst: str) -> None:
    """Puts a copy of ``src`` at ``dst`` atomically; ``src`` stays, so a killed publish can be redone."""
    tmp = dst + ".tmp"
    shutil.copyfile(src, tmp)
    replace(tmp, dst)


def write_json(path: str, payload: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(os.path.dirname(os.path.abspath(path)))
