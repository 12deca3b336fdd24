"""Files that are either the old complete version or the new complete version, never half of one.

The one way this package writes a file others read: under a temporary name of this process's own
in the same folder, flushed to disk, then renamed over the final name (``os.replace`` is atomic on
POSIX) and the folder fsynced, so the rename itself survives a power loss, not only a killed
process. Concurrent writers (a distributed search's chief and workers) never see each other's
half-written files, since each writes its own temporary file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Iterator


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


def _umask() -> int:
    """This process's umask, read without changing it where Linux shows it (os.umask can only be
    read by setting it, which races with other threads creating files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def ordinary_mode(path: str, folder: bool = False) -> None:
    """Gives ``path`` the mode a plain ``open``/``mkdir`` would (0644/0755 under umask 022).

    ``mkstemp``/``mkdtemp`` make private files, which a renamed-into-place file would keep: a
    serving or report process running as another user could not read what was published.
    """
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


def replace(src: str, dst: str) -> None:
    """Moves a finished file ``src`` over ``dst`` durably; ``dst`` is never seen half-written."""
    fsync_path(src)
    os.replace(src, dst)
    fsync_path(os.path.dirname(os.path.abspath(dst)))


@contextlib.contextmanager
def writing(path: str) -> Iterator[str]:
    """Yields a temporary path beside ``path``; what was written there replaces ``path`` on exit.

    If the body fails, ``path`` is untouched and the temporary file removed. The temporary name
    keeps ``path``'s extension, for writers that choose a format by it (matplotlib, numpy).
    """
    folder, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{ext}", dir=folder)
    os.close(fd)
    try:
        ordinary_mode(tmp)
        yield tmp
        replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def new_folder(final: str, prefix: str) -> Iterator[str]:
    """Yields a hidden temporary folder beside ``final`` (named ``<prefix>...``); what was written
    there becomes ``final`` in one rename on exit, so ``final`` appears whole or not at all.

    The rename refuses to replace a non-empty folder (OSError, errno ENOTEMPTY or EEXIST): a
    ``final`` that appeared meanwhile is never overwritten, and the caller decides what that means.
    The temporary folder never outlives the block. It gets an ordinary mode (mkdtemp's are
    private): it holds data other programs serve or read.
    """
    parent = os.path.dirname(os.path.abspath(final))
    with staging_folder(parent, prefix) as staging:
        yield staging
        os.rename(staging, final)
        fsync_path(parent)


@contextlib.contextmanager
def staging_folder(parent: str, prefix: str) -> Iterator[str]:
    """Yields a new hidden folder ``<parent>/<prefix>...`` of ordinary mode, for the caller to fill
    and rename into place; it is removed on exit unless it was renamed away."""
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        ordinary_mode(staging, folder=True)
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish(src: str, dst: str) -> None:
    """Puts a copy of ``src`` at ``dst`` atomically; ``src`` stays, so a killed publish can be redone."""
    with writing(dst) as tmp:
        shutil.copyfile(src, tmp)


def write_text(path: str, text: str) -> None:
    with writing(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def write_json(path: str, payload) -> None:
    write_text(path, json.dumps(payload, indent=2))
