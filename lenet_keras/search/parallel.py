"""``tune --parallel_trials N``: keras-tuner's chief/worker mode on this machine.

A LeNet-5 step is too small to keep two threads busy, and trials are independent, so N
single-threaded workers train more images per second than one N-threaded process. This starts a
chief (it only serves the oracle) and N workers on 127.0.0.1, each a ``python -m lenet_keras.tune``
with keras-tuner's KERASTUNER_* variables, and reports the first that fails in one line.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from lenet_keras.errors import UserError
from lenet_keras.search import tuner


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(workers: int, search_args: list, tune_dir: str, overwrite: bool = False) -> str:
    """Runs ``python -m lenet_keras.tune *search_args`` as a chief and ``workers`` worker processes
    on this machine; ``search_args`` must name ``tune_dir`` and must not overwrite.

    The chief serves keras-tuner's oracle and, once every worker is done, writes the results
    (keras-tuner's chief checks for that every 20 s); this returns the summary it wrote.
    """
    if os.environ.get("KERASTUNER_TUNER_ID"):
        raise UserError("--parallel_trials starts its own chief and workers: unset "
                        "KERASTUNER_TUNER_ID, or run without --parallel_trials")
    if overwrite:  # once, here: a worker that overwrote would delete the chief's trials
        tuner.clear_search(tune_dir)
    log_dir = os.path.join(tune_dir, "logs")
    os.makedirs(log_dir, exist_ok=True)
    command = [sys.executable, "-m", "lenet_keras.tune", *search_args]
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    env = dict(os.environ, KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(free_port()))
    worker_ids = [f"tuner{i}" for i in range(workers)]
    procs, logs = {}, {}
    try:
        for tuner_id in ["chief"] + worker_ids:
            logs[tuner_id] = os.path.join(log_dir, f"{tuner_id}.log")
            if tuner_id == "chief":  # it waits for every worker, even one that starts late
                extra = [f"--worker_ids={','.join(worker_ids)}"]
            else:
                extra = [f"--tf_threads={threads}"]
            with open(logs[tuner_id], "w") as log:
                procs[tuner_id] = subprocess.Popen(
                    command + extra, env=dict(env, KERASTUNER_TUNER_ID=tuner_id),
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        print(f"searching with {workers} workers of {threads} TensorFlow thread(s) each; their "
              f"output is in {log_dir}/", flush=True)
        supervise(procs, logs)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
    with open(os.path.join(tune_dir, tuner.SUMMARY_FILE)) as f:
        return f.read()


def supervise(procs: dict, logs: dict, poll_s: float = 1.0) -> None:
    """Waits until every process has exited; the first one found failed (workers are looked at
    first: their errors are the training's) is a UserError naming it, its last error and its log."""
    while True:
        for tuner_id, proc in sorted(procs.items(), key=lambda item: item[0] == "chief"):
            if proc.poll() not in (None, 0):
                role = "chief" if tuner_id == "chief" else f"worker {tuner_id}"
                raise UserError(f"search {role} failed (exit code {proc.returncode}): "
                                f"{_last_error(logs[tuner_id])} (full output: {logs[tuner_id]})")
        if all(proc.poll() == 0 for proc in procs.values()):
            return
        time.sleep(poll_s)


def _last_error(path: str) -> str:
    """The process's last ``error:`` line; else the exception line of its last traceback (whose
    message may go on over more lines, as gRPC's do); else its last line."""
    with open(path, errors="replace") as f:
        lines = [line.rstrip() for line in f if line.strip()]
    errors = [line.removeprefix("error:").strip() for line in lines if line.startswith("error:")]
    if errors:
        return errors[-1]
    tracebacks = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call")]
    if tracebacks:
        after = [line for line in lines[tracebacks[-1] + 1:] if not line[:1].isspace()]
        if after:
            return after[0].strip()
    return lines[-1].strip() if lines else "no output"
