"""One training run per ``<model_dir>/<exp>`` at a time (and one search per ``--tune_dir``).

The lock is ``flock`` on ``<folder>/.lock``: the kernel drops it when its process dies, however it
dies, so a SIGKILLed or powered-off run never holds it forever and the next run simply takes it
over. The file also records the holder's pid and host so the refusal can say who holds it; a pid
alone would not do, because after a crash the pid may belong to some unrelated new process.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time

from lenet_keras.errors import UserError

LOCK_FILE = ".lock"
# What a refused training run is told; ``holder`` and ``folder`` are filled in.
TRAINING_REFUSAL = ("another run ({holder}) is training into {folder}: wait for it to finish or "
                    "stop it, or pass a different --model_dir")


def _holder(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip() or "unknown process"
    except OSError:
        return "unknown process"


class RunLock:
    """Context manager holding the lock of one experiment directory (created if missing).

    ``refusal``: the error when another process holds it (``{holder}``, ``{folder}`` filled in);
    ``folder_flag``: the flag that chose the folder, named when it cannot be written.
    """

    def __init__(self, exp_dir: str, refusal: str = TRAINING_REFUSAL,
                 folder_flag: str = "--model_dir"):
        self.exp_dir = exp_dir
        self.path = os.path.join(exp_dir, LOCK_FILE)
        self.refusal = refusal
        self.folder_flag = folder_flag
        self._fd = None

    def acquire(self) -> RunLock:
        try:
            os.makedirs(self.exp_dir, exist_ok=True)
            while True:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    raise UserError(
                        self.refusal.format(holder=_holder(self.path), folder=self.exp_dir)
                    ) from None
                # A releasing holder unlinks the file; if it did so after our open, we locked an
                # orphaned inode that nobody else will ever see, so lock the new file instead.
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)
            os.ftruncate(fd, 0)
            info = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}"
            os.write(fd, info.encode())
        except OSError as exc:
            raise UserError(
                f"cannot write to {self.exp_dir} ({exc.strerror or exc}): make it writable or "
                f"choose another {self.folder_flag}"
            ) from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass  # a read-only or vanished directory: the flock still goes away with the fd
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()
