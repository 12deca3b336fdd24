"""keras-tuner over the LeNet-5 search space: tuner construction, the search, and its outputs.

The hypermodel is ``space.build_hypermodel`` with the tuned experiment's config as base, so a
trial trains exactly the model ``train --exp tuned --hparams`` later trains. The objective is
``val_accuracy`` on the config's validation split (held-out 10% of train); test is never read.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Callable, Optional, Sequence

import keras
import keras_tuner as kt

from lenet_keras.config import ExperimentConfig
from lenet_keras.errors import UserError, first_line
from lenet_keras.search import durable, space
from lenet_keras.search.layout import (
    BEST_FILE,
    PROJECT,
    SEARCH_FILE,
    SUMMARY_FILE,
    TENSORBOARD_DIR,
    TUNERS,
    tensorboard_dir,
)
from lenet_keras.training import atomic

IDLE_WAIT_S = 1.0  # a worker told to wait for other trials asks again after this long
DEFAULT_MAX_TRIALS = 30  # random/bayesian; a full Hyperband at max_epochs=20, factor=3 runs 30


def make_tuner(
    kind: str,
    base_config: ExperimentConfig,
    num_classes: int,
    directory: str,
    *,
    max_trials: Optional[int] = None,
    max_epochs: int = 20,
    factor: int = 3,
    seed: int = 42,
    overwrite: bool = False,
    worker_ids: Sequence[str] = (),
    fresh_train: Optional[Callable] = None,
) -> kt.Tuner:
    """A keras-tuner tuner whose project lives in ``<directory>/lenet5``; resumes unless overwrite.

    ``worker_ids``, on a distributed chief only: the workers it must wait for (see ``tune --worker_ids``).
    ``fresh_train``: makes the training dataset anew, given to each trial (see ``durable``).
    """
    if kind not in TUNERS:
        raise UserError(f"unknown tuner {kind!r}: choose one of {', '.join(TUNERS)}")
    if max_trials is not None and max_trials <= 0:
        raise UserError(f"max_trials must be a positive integer, got {max_trials}")
    if max_epochs <= 0:
        raise UserError(f"max_epochs must be a positive integer, got {max_epochs}")
    if factor < 2:
        raise UserError(f"factor must be an integer >= 2, got {factor}")
    if worker_ids and not is_search_chief():
        raise UserError("worker_ids is for the chief of a distributed search: set "
                        "KERASTUNER_TUNER_ID=chief (and KERASTUNER_ORACLE_IP/PORT), or leave it out")
    if overwrite and is_search_worker():
        raise UserError(
            "--overwrite on a distributed search's worker would delete the chief's trials: start "
            "only the chief (KERASTUNER_TUNER_ID=chief) with --overwrite, the workers without it"
        )
    durable.write_state_atomically()
    _check_same_search(directory, kind, max_epochs, factor, base_config.precision, overwrite)

    def build(hp):
        return space.build_hypermodel(hp, num_classes, base_config)

    common = dict(
        objective="val_accuracy",
        seed=seed,
        # Declared up front and closed: the builder cannot add a decision the space lacks.
        hyperparameters=space.define_search_space(kt.HyperParameters()),
        allow_new_entries=False,
        directory=directory,
        project_name=PROJECT,
        overwrite=overwrite,
    )
    if kind == "hyperband":
        tuner = kt.Hyperband(build, max_epochs=max_epochs, factor=factor, **common)
        # Hyperband's oracle takes no max_trials, but Oracle.create_trial honours the attribute.
        # A worker's oracle is a client of the chief's, which holds the cap.
        if isinstance(tuner.oracle, kt.oracles.HyperbandOracle):
            tuner.oracle.max_trials = max_trials
    else:
        tuner_class = kt.RandomSearch if kind == "random" else kt.BayesianOptimization
        tuner = tuner_class(build, max_trials=max_trials or DEFAULT_MAX_TRIALS, **common)
    durable.repair_after_kill(tuner.oracle)
    durable.seed_each_trial(tuner, seed, fresh_train)
    durable.fresh_logs_each_trial(tuner, tensorboard_dir(directory))
    if is_search_worker():
        _wait_when_idle(tuner.oracle)
    # keras-tuner's chief exits once no worker it has heard from is left, so one that has not
    # asked for a trial yet would find no chief. Known workers count from the start instead; the
    # oracle takes each off when it tells it the search is over. The set is not saved in oracle.json.
    if worker_ids:
        tuner.oracle.tuner_ids.update(worker_ids)
    return tuner


def _wait_when_idle(oracle) -> None:
    """keras-tuner's worker asks the chief for a trial again at once when told IDLE (Hyperband
    waits for a round to finish), a busy loop of gRPC calls that takes a core from the workers still
    training. Pause between asks instead."""
    create_trial = oracle.create_trial

    def create_trial_or_wait(tuner_id):
        trial = create_trial(tuner_id)
        if trial.status == kt.engine.trial.TrialStatus.IDLE:
            time.sleep(IDLE_WAIT_S)
        return trial

    oracle.create_trial = create_trial_or_wait


def clear_search(directory: str) -> None:
    """Deletes the search in ``directory``: keras-tuner's project, its TensorBoard logs and the
    results that describe it."""
    for folder in (PROJECT, TENSORBOARD_DIR):
        shutil.rmtree(os.path.join(directory, folder), ignore_errors=True)
    for name in (BEST_FILE, SUMMARY_FILE, SEARCH_FILE):
        if os.path.exists(os.path.join(directory, name)):
            os.remove(os.path.join(directory, name))


def _check_same_search(directory, kind, max_epochs, factor, precision, overwrite) -> None:
    search = {"tuner": kind, "max_epochs": max_epochs}
    if kind == "hyperband":
        search["factor"] = factor
    if precision != "float32":  # a float32 search is one written before the field existed
        search["precision"] = precision
    path = os.path.join(directory, SEARCH_FILE)
    if overwrite:
        clear_search(directory)
    elif os.path.exists(path):
        try:
            with open(path) as f:
                previous = json.load(f)
        except (OSError, ValueError):
            previous = "an unreadable search.json"
        if previous != search:
            raise UserError(
                f"{directory} holds a search with {previous}, not {search}: rerun with those "
                "settings to resume it, or pass --overwrite (or another --tune_dir) to start anew"
            )
        return
    # Chief and workers of a distributed search all get here at once: none may ever read a
    # half-written search.json.
    os.makedirs(directory, exist_ok=True)
    atomic.write_json(path, search)


def is_search_worker() -> bool:
    """A distributed worker (KERASTUNER_TUNER_ID not 'chief'): it trains, the chief keeps results."""
    from keras_tuner.src.distribute import utils

    return utils.has_chief_oracle() and not utils.is_chief_oracle()


def is_search_chief() -> bool:
    """The chief of a distributed search (KERASTUNER_TUNER_ID=chief): it serves the oracle."""
    from keras_tuner.src.distribute import utils

    return utils.has_chief_oracle() and utils.is_chief_oracle()


def search(tuner: kt.Tuner, splits, epochs: int, verbose: int = 2, **fit_kwargs) -> None:
    """Runs (or resumes) the search; keras-tuner skips trials already completed in its project.

    Every trial logs to TensorBoard: keras-tuner's own ``Tuner._configure_tensorboard_dir`` acts on
    a callback named TensorBoard, moving its log dir to ``<tensorboard_dir>/<trial_id>/execution0``
    and adding TensorBoard's HParams ``KerasCallback`` with the trial's values, so the HParams
    dashboard lists one session per trial. Workers of a distributed search run the trials, so they
    log too, each trial into its own folder of the shared directory.
    """
    # No graph: a search is read for its curves and values, and a graph per trial costs time.
    board = keras.callbacks.TensorBoard(tensorboard_dir(tuner.directory), write_graph=False)
    callbacks = [board, *fit_kwargs.pop("callbacks", [])]
    try:
        tuner.search(x=splits.train, validation_data=splits.val, epochs=epochs, verbose=verbose,
                     callbacks=callbacks, **fit_kwargs)
    except RuntimeError as exc:  # keras-tuner's "too many consecutive failed trials"
        raise UserError(f"the search stopped: {first_line(exc)}") from None
    if not is_search_worker():
        # keras-tuner's chief saves oracle.json before it drops a finished trial from its ongoing
        # trials and never saves after the last one, so the file names the last finished trial as
        # running, and a resumed search would train it again. One save of the final state fixes it.
        tuner.oracle.save()


def trial_rows(trials) -> list:
    """One dict per keras-tuner Trial, in the order trials were created."""
    rows = []
    for trial in sorted(trials, key=lambda t: int(t.trial_id)):
        values = trial.hyperparameters.values
        rows.append({
            "trial": trial.trial_id,
            "status": trial.status,
            **{name: values.get(name) for name in space.NAMES},
            "epochs": values.get("tuner/epochs"),
            "continues": values.get("tuner/trial_id"),
            "best_val_accuracy": trial.score,
        })
    return rows


def summary_table(rows: list, default_epochs: int) -> str:
    header = ("| trial | status | activation | pooling | batch norm | hidden | learning rate | "
              "epochs | best val acc |")
    lines = [header, "|" + "---|" * 9]
    for r in rows:
        score = "-" if r["best_val_accuracy"] is None else f"{r['best_val_accuracy']:.4f}"
        lr = "-" if r["learning_rate"] is None else f"{r['learning_rate']:.2e}"
        epochs = r["epochs"] or default_epochs
        if r["continues"]:
            epochs = f"{epochs} (from trial {r['continues']})"
        lines.append(
            f"| {r['trial']} | {r['status']} | {r['activation']} | {r['pooling']} | "
            f"{r['batch_norm']} | {r['hidden_units']} | {lr} | {epochs} | {score} |"
        )
    return "\n".join(lines)


def best_trial(trials):
    """The completed trial of highest val_accuracy; among equals the earliest, so the choice does
    not depend on the order keras-tuner reloaded its trials in (a resumed search's differs)."""
    scored = [t for t in trials
              if t.status == kt.engine.trial.TrialStatus.COMPLETED and t.score is not None]
    return max(scored, key=lambda t: (t.score, -int(t.trial_id)), default=None)


def write_results(tuner: kt.Tuner, directory: str, kind: str, default_epochs: int) -> str:
    """Writes best_hyperparameters.json and trials_summary.md into ``directory``; returns the table."""
    best = best_trial(tuner.oracle.trials.values())
    if best is None:
        raise UserError(
            f"no trial in {directory} completed, so there is no best model: see the trial errors "
            "above, fix their cause and rerun (finished trials are kept)"
        )
    config = best.hyperparameters.get_config()
    # The Hyperband bookkeeping values describe one trial's schedule, not the architecture.
    config["values"] = {k: v for k, v in config["values"].items() if not k.startswith("tuner/")}
    # TFX's Tuner writes this same get_config() form; the extra keys are for people.
    payload = {**config, "tuner": kind, "trial_id": best.trial_id, "best_val_accuracy": best.score}
    atomic.write_json(os.path.join(directory, BEST_FILE), payload)
    table = summary_table(trial_rows(tuner.oracle.trials.values()), default_epochs)
    text = (f"# keras-tuner {kind} search: {len(tuner.oracle.trials)} trials, objective "
            f"val_accuracy\n\nBest: trial {best.trial_id}, val accuracy {best.score:.4f}\n\n"
            f"{table}\n")
    atomic.write_text(os.path.join(directory, SUMMARY_FILE), text)
    return text

