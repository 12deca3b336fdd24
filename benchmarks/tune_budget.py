"""How long a keras-tuner search over the LeNet-5 space takes here: its epoch budget x epoch time.

    python benchmarks/tune_budget.py --data_dir DIR [--max_epochs 20] [--factor 3] [--epochs 4]

1. Counts the trials and epochs a full Hyperband runs, by driving keras-tuner's own HyperbandOracle
   with random scores (its schedule does not depend on the scores' values).
2. Trains the tuned experiment's model for --epochs epochs on the config's train split and prints
   the wall and process-CPU seconds of each epoch after the first (the first fills the cache and
   traces), median with min/max.
3. Prints the projected search time: budget epochs x median epoch seconds.
Run the search itself (`python -m lenet_keras.tune`) to time it end to end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lenet_keras  # noqa: E402,F401  (before TensorFlow: it sets TF's oneDNN switch)


def hyperband_budget(max_epochs: int, factor: int, max_trials=None):
    import keras_tuner as kt

    from lenet_keras.search import space as hparams

    oracle = kt.oracles.HyperbandOracle(
        objective=kt.Objective("val_accuracy", "max"), max_epochs=max_epochs, factor=factor,
        hyperparameters=hparams.define_search_space(kt.HyperParameters()), seed=0,
    )
    oracle.max_trials = max_trials
    oracle._set_project_dir(tempfile.mkdtemp(), "budget")
    trials, epochs = 0, 0
    while True:
        with contextlib.redirect_stdout(io.StringIO()):  # the oracle's per-trial display
            trial = oracle.create_trial("tuner0")
        if trial.status != "RUNNING":
            return trials, epochs
        values = trial.hyperparameters.values
        trials += 1
        epochs += values["tuner/epochs"] - values["tuner/initial_epoch"]
        with contextlib.redirect_stdout(io.StringIO()):
            oracle.update_trial(trial.trial_id, {"val_accuracy": random.random()})
            trial.status = "COMPLETED"
            oracle.end_trial(trial)


def epoch_seconds(data_dir: str, epochs: int):
    import keras

    from lenet_keras import data, experiments, models

    config = experiments.get_config("tuned")
    splits = data.load_splits(config, data_dir)
    model = models.compile_from_config(models.build_from_config(config, splits.num_classes), config)
    wall, cpu = [], []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = (time.perf_counter(), time.process_time())

        def on_epoch_end(self, epoch, logs=None):
            wall.append(time.perf_counter() - self.start[0])
            cpu.append(time.process_time() - self.start[1])

    model.fit(splits.train, validation_data=splits.val, epochs=epochs, callbacks=[Timer()],
              verbose=0)
    return splits.train_examples, wall, cpu


def spread(values) -> str:
    return f"median {statistics.median(values):.1f} s (min {min(values):.1f}, max {max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--max_epochs", type=int, default=20)
    parser.add_argument("--factor", type=int, default=3)
    parser.add_argument("--max_trials", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()

    trials, budget = hyperband_budget(args.max_epochs, args.factor, args.max_trials)
    print(f"hyperband max_epochs={args.max_epochs} factor={args.factor} "
          f"max_trials={args.max_trials}: {trials} trials, {budget} epochs of training")
    print(f"cpus: {os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), "
          f"load average {os.getloadavg()[0]:.1f}")
    examples, wall, cpu = epoch_seconds(args.data_dir, args.epochs)
    print(f"{examples} train examples; first epoch {wall[0]:.1f} s wall (cache fill + tracing)")
    print(f"epoch wall: {spread(wall[1:])}; epoch process CPU: {spread(cpu[1:])}")
    median = statistics.median(wall[1:])
    print(f"projected search: {budget} x {median:.1f} s = {budget * median / 60:.1f} min "
          "(plus per-trial model build and tracing)")


if __name__ == "__main__":
    main()
