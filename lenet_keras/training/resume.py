"""Crash-safe training state: a killed run, started again with the same command, carries on.

Layout inside ``<model_dir>/<exp>/.staging/`` while a run is unfinished (one folder, so a
multi-worker run can hand a worker a copy of all of it):

- ``backup/``: Keras ``BackupAndRestore`` (weights + optimizer), written at every epoch end with
  ``double_checkpoint=True`` so a kill during its own write leaves the previous copy loadable.
- ``progress.json``: the config and the per-epoch history and epoch seconds, which
  ``BackupAndRestore`` does not keep; written atomically *before* the backup of the same epoch.
- ``model.keras``: the best-validation model so far. ``ModelCheckpoint`` writes to
  ``candidate-<epoch>.keras`` and the candidate is renamed over it only once that epoch's backup
  is on disk, so a kill while Keras writes a model can never destroy the previous best.

On a restart the epoch to resume from is read off the restored optimizer's step counter rather
than ``BackupAndRestore``'s metadata file, which is written after the weights and so may lag
them by one epoch; progress.json is then cut back to that epoch, which makes every kill point
land on one consistent state.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from typing import Optional

import keras
from absl import logging

from lenet_keras.errors import UserError, first_line
from lenet_keras.training import atomic
from lenet_keras.training.artifacts import MODEL_FILE, STAGING

BACKUP_DIR = "backup"
PROGRESS_FILE = "progress.json"
BEST_MODEL = MODEL_FILE
CANDIDATE = "candidate-{epoch:04d}.keras"  # ModelCheckpoint fills in the 1-based epoch
MONITOR = "val_accuracy"


class RunState:
    """What an unfinished run of one experiment has done, read from and written to disk."""

    def __init__(self, exp_dir: str, config, fresh: bool = False):
        self.exp_dir = exp_dir
        self.name = config.name
        self.config = config.to_dict()
        self.staging = os.path.join(exp_dir, STAGING)
        self.backup_dir = os.path.join(self.staging, BACKUP_DIR)
        self.progress_path = os.path.join(self.staging, PROGRESS_FILE)
        self.best_model_path = os.path.join(self.staging, BEST_MODEL)
        self.candidate_pattern = os.path.join(self.staging, CANDIDATE)
        progress = None if fresh else self._read_progress()
        if progress is not None and progress["config"] != self.config:
            changed = sorted(k for k in self.config if progress["config"].get(k) != self.config[k])
            raise UserError(
                f"{exp_dir} holds an unfinished {self.name} run with different settings "
                f"({', '.join(changed)}): rerun with the same flags to resume it, or pass --fresh "
                "to discard it and start over"
            )
        try:
            if progress is None:
                # Nothing resumable: whatever an earlier run left behind is stale.
                shutil.rmtree(self.staging, ignore_errors=True)
            os.makedirs(self.staging, exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"cannot write to {exp_dir} ({exc.strerror}): choose another --model_dir"
            ) from None
        progress = progress or {}
        self.history = progress.get("history", {})
        self.epoch_seconds = progress.get("epoch_seconds", [])

    def _read_progress(self) -> Optional[dict]:
        try:
            with open(self.progress_path) as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise UserError(
                f"cannot read {self.progress_path} ({first_line(exc)}): pass --fresh to start over"
            ) from None

    @property
    def epochs_done(self) -> int:
        return len(self.history.get(MONITOR, []))

    @property
    def best_value(self) -> Optional[float]:
        values = self.history.get(MONITOR, [])
        return max(values) if values else None

    def _save(self) -> None:
        atomic.write_json(self.progress_path, {
            "config": self.config,
            "history": self.history,
            "epoch_seconds": self.epoch_seconds,
        })

    def record_epoch(self, epoch: int, logs: dict, seconds: Optional[float]) -> None:
        """Appends epoch ``epoch`` (0-based) to the history; called before its backup is written."""
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        if seconds is not None:
            self.epoch_seconds.append(float(seconds))
        self._save()

    def promote_candidate(self, epoch: int) -> None:
        """Makes epoch ``epoch``'s (1-based) candidate, if it improved, the best model."""
        candidate = self.candidate_pattern.format(epoch=epoch)
        if os.path.exists(candidate):
            atomic.replace(candidate, self.best_model_path)

    def rewind(self, epoch: int) -> None:
        """Makes the recorded state that of the end of ``epoch`` (1-based count of epochs done)."""
        done = self.epochs_done
        if done < epoch:
            raise UserError(
                f"{self.backup_dir} is {epoch} epochs in but {self.progress_path} records only "
                f"{done}: pass --fresh to start over"
            )
        if done > epoch:
            # Killed after recording an epoch but before its backup was complete: it runs again.
            self.history = {k: v[:epoch] for k, v in self.history.items()}
            self.epoch_seconds = self.epoch_seconds[:epoch]
            self._save()
        # A candidate of the restored epoch was killed between its backup and its rename; any
        # later one belongs to an epoch that runs again.
        self.promote_candidate(epoch)
        for name in os.listdir(self.staging):
            if name.startswith("candidate-"):
                os.remove(os.path.join(self.staging, name))

    def finish(self) -> None:
        """The artifacts are published: nothing is left to resume."""
        shutil.rmtree(self.staging, ignore_errors=True)

    def best_model_file(self) -> Optional[str]:
        """The file that holds the best epoch's model now, or None.

        ModelCheckpoint writes an improving epoch's candidate before that epoch is recorded, and
        the candidate becomes ``model.keras`` only after the epoch's backup: a run that failed in
        between (a full disk while writing the backup) has its best model in the candidate, and
        ``model.keras`` still holds the previous best.
        """
        if self.best_value is None:
            return None
        epoch = self.history[MONITOR].index(self.best_value) + 1
        candidate = self.candidate_pattern.format(epoch=epoch)
        if os.path.exists(candidate):
            return candidate
        return self.best_model_path if os.path.exists(self.best_model_path) else None

    def where_best(self) -> str:
        path = self.best_model_file()
        if path is None:
            return "no epoch had finished, so there is no model to keep"
        best = self.history[MONITOR].index(self.best_value) + 1
        rerun = ("" if path == self.best_model_path
                 else " (copy it elsewhere to keep it: a rerun trains that epoch again)")
        return (f"the best model so far (epoch {best}, {MONITOR} {self.best_value:.4f}) is "
                f"kept in {path}{rerun}")

    def write_error(self, exc: OSError) -> UserError:
        where = exc.filename or self.exp_dir
        return UserError(
            f"{self.name}: writing {where} failed ({exc.strerror or first_line(exc)}): free disk "
            f"space or fix permissions, then rerun the same command to resume after epoch "
            f"{self.epochs_done}; {self.where_best()}, and earlier finished runs are untouched"
        )


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` that also restores what Keras leaves out (see the module docstring).

    ``checkpoint`` is the run's ModelCheckpoint (its best value is restored), ``timer`` the
    EpochTimer, ``train_data`` the training dataset whose shuffle order is replayed so a resumed
    epoch sees the batches the uninterrupted run would have seen. ``iterators_per_epoch``: how
    many iterators of ``train_data`` the training loop creates per epoch; Keras 3's ``fit`` makes
    two (one at each epoch's end, and a new one at the next epoch's start when the dataset has a
    known length); a custom loop that calls ``iter`` once per epoch passes 1.
    """

    def __init__(self, state: RunState, checkpoint, timer, train_data, steps_per_epoch: int,
                 iterators_per_epoch: int = 2):
        super().__init__(state.backup_dir, double_checkpoint=True, delete_checkpoint=False)
        self.state = state
        self.checkpoint = checkpoint
        self.timer = timer
        self.train_data = train_data
        self.steps_per_epoch = steps_per_epoch
        self.iterators_per_epoch = iterators_per_epoch

    def on_train_begin(self, logs=None):
        try:
            with open(self._training_metadata_path) as f:
                json.load(f)
        except FileNotFoundError:
            pass
        except ValueError:
            # Cut short by a kill (Keras writes it in place); the epoch comes from the weights.
            os.remove(self._training_metadata_path)
        try:
            super().on_train_begin(logs)
        except (OSError, ValueError) as exc:
            raise UserError(
                f"cannot load the backup in {self.backup_dir} ({first_line(exc)}): pass --fresh "
                "to start over"
            ) from None
        epoch = self._restored_epoch()
        self.state.rewind(epoch)
        self.checkpoint.best = self.state.best_value
        self.model._initial_epoch = epoch
        # Each new iterator of the training data draws the next reshuffle seed, so the resumed
        # epochs see the uninterrupted run's batch order only if the draws are replayed.
        for _ in range(epoch * self.iterators_per_epoch):
            iter(self.train_data)
        planned = (self.params or {}).get("epochs")
        if epoch and planned is not None and epoch >= planned:
            logging.info("resuming %s after its last epoch (%d/%d, restored from %s): evaluating",
                         self.state.name, epoch, planned, self.backup_dir)
        elif epoch:
            logging.info("resuming %s from epoch %d/%s (state restored from %s)",
                         self.state.name, epoch + 1, planned, self.backup_dir)

    def _restored_epoch(self) -> int:
        if not os.path.exists(self._weights_path):
            return 0
        steps = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        epoch, rest = divmod(steps, self.steps_per_epoch)
        if rest:
            raise UserError(
                f"the backup in {self.backup_dir} stopped mid-epoch ({steps} steps, "
                f"{self.steps_per_epoch} per epoch): pass --fresh to start over"
            )
        return epoch

    def on_epoch_end(self, epoch, logs=None):
        seconds = self.timer.seconds[-1] if self.timer.seconds else None
        self.state.record_epoch(epoch, logs, seconds)
        super().on_epoch_end(epoch, logs)
        self.state.promote_candidate(epoch + 1)


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """Keras's TerminateOnNaN check, raising an error that says what happened and what was kept.

    Keras 3.13's ``raise_error=True`` would raise without that message, and Keras 3.12 (the newest
    on Python 3.10) has no such option: the check is TerminateOnNaN's, the raise is ours.
    """

    def __init__(self, state: RunState):
        super().__init__()
        self.state = state
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise UserError(
                f"{self.state.name}: the loss became NaN/Inf in epoch {self._epoch + 1}, batch "
                f"{batch + 1}, so training stopped; {self.state.where_best()}. Lower "
                "--learning_rate and rerun with --fresh"
            )
