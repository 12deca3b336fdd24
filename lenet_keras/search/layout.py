"""The files a search leaves in its ``--tune_dir``, and the tuners that run one; importing this
imports nothing heavy, so the report can look for a search, and tune and pipeline check --tuner,
without loading keras-tuner."""

import os

TUNERS = ("hyperband", "random", "bayesian")  # keras-tuner's algorithms; search.json's "tuner"

TUNING_FOLDER = "tuning"  # a study's search, beside its experiments in the model dir
DEFAULT_TUNE_DIR = os.path.join("saved_models", TUNING_FOLDER)  # tune's: train's --model_dir + tuning
PROJECT = "lenet5"  # keras-tuner's project folder: oracle.json, trial_<id>/trial.json
BEST_FILE = "best_hyperparameters.json"
SUMMARY_FILE = "trials_summary.md"
SEARCH_FILE = "search.json"  # what kind of search tune_dir holds, to refuse resuming another kind
TENSORBOARD_DIR = "tensorboard"  # every trial's curves and HParams session


def study_tune_dir(model_dir: str) -> str:
    """The search a study in ``model_dir`` reports by default: its own, not whatever search the
    current folder happens to hold (for the default --model_dir, tune's default --tune_dir)."""
    return os.path.join(model_dir, TUNING_FOLDER)


def tensorboard_dir(tune_dir: str) -> str:
    """Where a search logs its trials, each in ``<trial_id>/execution0/`` (keras-tuner's layout)."""
    return os.path.join(tune_dir, TENSORBOARD_DIR)


def tensorboard_command(tune_dir: str) -> str:
    return f"tensorboard --logdir {tensorboard_dir(tune_dir)}"


def trial_files(tune_dir: str) -> list:
    """The ``trial.json`` of every trial keras-tuner recorded in ``tune_dir``, in trial order."""
    project = os.path.join(tune_dir, PROJECT)
    try:
        names = os.listdir(project)
    except OSError:
        return []
    paths = [os.path.join(project, name, "trial.json") for name in names if name.startswith("trial_")]
    return sorted((p for p in paths if os.path.isfile(p)),
                  key=lambda p: int(os.path.basename(os.path.dirname(p))[len("trial_"):]))
