"""A study (``train --exp all``) that a kill at any instant cannot make redo finished work.

The study writes ``<model_dir>/.study.json`` (its experiments' configs) before it trains anything
and deletes it only after the report is written. A rerun that finds the file, with the same
configs, is a resumed study: every experiment whose finished ``metrics.json`` matches its config
is kept, up to the first that is not (transfer depends on tuned, so what follows an unfinished
experiment trains again); the unfinished one resumes from its own ``.staging/``. A rerun without
the file is a new study and trains every experiment, as the first run did. So wherever a kill
lands — data preparation, model building, an epoch, the test evaluation, publishing, between
experiments, the report — the rerun keeps exactly what had finished.
"""

from __future__ import annotations

import json
import os
from typing import List, Sequence

from lenet_keras.errors import UserError
from lenet_keras.training import atomic
from lenet_keras.training.artifacts import STAGING, experiment_dir, finished_metrics
from lenet_keras.training.resume import PROGRESS_FILE

STUDY_FILE = ".study.json"


class Study:
    """The progress marker of one study in ``model_dir``; only the writing task calls begin/end."""

    def __init__(self, model_dir: str, configs: Sequence):
        self.path = os.path.join(model_dir, STUDY_FILE)
        self.model_dir = model_dir
        self.configs = list(configs)

    def _payload(self) -> dict:
        return {"experiments": [config.to_dict() for config in self.configs]}

    def interrupted(self) -> bool:
        """Whether an earlier run of this very study stopped before its end."""
        try:
            with open(self.path) as f:
                if json.load(f) == self._payload():
                    return True
        except (OSError, ValueError):
            pass
        # Written by a version that kept no marker: an experiment left mid-run.
        return any(
            os.path.exists(os.path.join(experiment_dir(self.model_dir, c.name), STAGING,
                                        PROGRESS_FILE))
            for c in self.configs
        )

    def kept(self) -> List[dict]:
        """metrics.json of each leading experiment an interrupted run of this study finished."""
        if not self.interrupted():
            return []
        kept = []
        for config in self.configs:
            metrics = finished_metrics(experiment_dir(self.model_dir, config.name), config)
            if metrics is None:
                break
            kept.append(metrics)
        return kept

    def begin(self) -> None:
        try:
            os.makedirs(self.model_dir, exist_ok=True)
            atomic.write_json(self.path, self._payload())
        except OSError as exc:
            raise UserError(f"cannot write {exc.filename or self.path} ({exc.strerror or exc}): "
                            "choose another --model_dir, or free disk space") from None

    def end(self) -> None:
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
