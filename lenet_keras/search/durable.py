"""What keras-tuner needs so that a search killed at any instant resumes with the same command,
losing no finished trial, training none twice, and ending with the trials an uninterrupted search
ends with.

- **Whole state files.** keras-tuner writes ``oracle.json``, ``tuner0.json`` and each
  ``trial.json`` in place; a kill mid-write leaves a truncated file its reload cannot parse.
  ``write_state_atomically`` makes its writer write a temporary file and rename it, through
  keras-tuner's own file layer (so a ``gs://`` directory keeps working).
- **No finished trial trained again, none counted twice.** keras-tuner saves a finished trial's
  ``trial.json`` (COMPLETED) before ``oracle.json``, which still lists it as running until the
  next trial starts, and its reload sends every trial listed as running back for a retry; and it
  saves a new trial's ``trial.json`` before the ``oracle.json`` that records it, so a kill between
  the two leaves a trial the oracle never heard of, whose number and values the next trial would
  take again. ``repair_after_kill`` takes finished trials off the retry queue and forgets the
  unrecorded one, so it is created again exactly as it was.
- **Each trial on its own.** A trial's weights and batch order must not depend on what ran before it
  in the process, or a trial rerun after a kill would train differently. ``seed_each_trial`` seeds
  every trial from the search seed and its trial number, and gives it a fresh training pipeline.
- **One TensorBoard session per trial.** A trial retried after a kill would add a second HParams
  session and a second set of curves to the folder of its first attempt. ``fresh_logs_each_trial``
  empties a trial's log folder before it runs; a finished trial is never run again, so its logs stay.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from typing import Callable, Optional

import keras
import keras_tuner as kt
from keras_tuner.src import utils as kt_utils
from keras_tuner.src.backend import io as kt_io


def _save_json_atomically(path, obj) -> str:
    text = json.dumps(obj)
    tmp = f"{path}.{socket.gethostname()}-{os.getpid()}.tmp"
    with kt_io.File(tmp, "w") as f:
        f.write(text)
    import tensorflow as tf

    tf.io.gfile.rename(tmp, path, overwrite=True)
    return text


def write_state_atomically() -> None:
    """keras-tuner's state files appear whole or not at all (idempotent; process-wide)."""
    kt_utils.save_json = _save_json_atomically


def repair_after_kill(oracle) -> None:
    """After keras-tuner reloaded a search: retry only the trials that really stopped mid-run."""
    queue = getattr(oracle, "_retry_queue", None)
    if queue is None:  # a distributed worker's oracle is the chief's client: nothing to repair
        return
    status = kt.engine.trial.TrialStatus
    queue[:] = [tid for tid in queue
                if oracle.trials[tid].status not in (status.COMPLETED, status.FAILED)]
    recorded = set(oracle.start_order)
    for trial_id in [tid for tid in oracle.trials if tid not in recorded]:
        del oracle.trials[trial_id]
        shutil.rmtree(oracle._get_trial_dir(trial_id), ignore_errors=True)


def seed_each_trial(tuner, seed: int, fresh_train: Optional[Callable] = None) -> None:
    """Every trial starts from ``keras.utils.set_random_seed(seed + its number)`` and, when
    ``fresh_train`` is given, a new training dataset from it (the ``x`` of ``tuner.search``), so a
    shuffle's seed sequence starts anew for each trial."""
    run_trial = tuner.run_trial

    def run_seeded_trial(trial, *args, **kwargs):
        keras.utils.set_random_seed(seed + int(trial.trial_id))
        if fresh_train is not None:
            kwargs["x"] = fresh_train()
        return run_trial(trial, *args, **kwargs)

    tuner.run_trial = run_seeded_trial


def fresh_logs_each_trial(tuner, log_dir: str) -> None:
    """Each trial starts with an empty ``<log_dir>/<trial_id>/`` (see ``search.tuner.search``)."""
    run_trial = tuner.run_trial

    def run_trial_with_fresh_logs(trial, *args, **kwargs):
        shutil.rmtree(os.path.join(log_dir, str(trial.trial_id)), ignore_errors=True)
        return run_trial(trial, *args, **kwargs)

    tuner.run_trial = run_trial_with_fresh_logs
