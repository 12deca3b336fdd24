"""One search per --tune_dir: the lock ``python -m lenet_keras.tune`` holds while it searches."""

from __future__ import annotations

import contextlib
import os

from lenet_keras.training.runlock import RunLock

SEARCH_REFUSAL = (
    "another search ({holder}) is running in {folder}: wait for it to finish or stop it, or pass "
    "a different --tune_dir. To train several trials of one search at once, run a single search "
    "with --parallel_trials N, or keras-tuner's chief and workers (KERASTUNER_TUNER_ID=chief, "
    "tuner0, ...; docs/search.md)"
)


def search_lock(tune_dir: str):
    """The lock of a search in ``tune_dir``: two searches that were not told of each other would
    run every trial twice into the same folders. A process of a distributed search (any
    KERASTUNER_TUNER_ID: keras-tuner's chief and workers, --parallel_trials' among them) shares
    the folder by design and takes none; the --parallel_trials launcher holds it for them."""
    if os.environ.get("KERASTUNER_TUNER_ID"):
        return contextlib.nullcontext()
    return RunLock(tune_dir, refusal=SEARCH_REFUSAL, folder_flag="--tune_dir")
