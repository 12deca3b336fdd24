"""Runs a command module as ``python -m`` would, held at one named instant until it is killed.

    CHAOS_HOLD=<point> CHAOS_MARKER=<file> python tests/chaos.py lenet_keras.train --exp all ...

At the point, the process creates the marker file and sleeps; the test then SIGKILLs it, so the
kill lands exactly there. Without CHAOS_HOLD it runs the command unchanged (a test kills it after
a random delay instead). Points:

- ``experiment:<exp>``: in a study, when everything before <exp> is done and <exp> starts;
- ``load:<exp>`` / ``build:<exp>``: while an experiment loads its data / builds its model;
- ``epoch:<exp>:<n>``: at the start of epoch n (0-based), after epoch n-1's backup is on disk;
- ``evaluate:<exp>``: in the test evaluation (after evaluate, before the predictions are kept);
  ``publish:<exp>``: with model.keras published, before
  metrics.json; ``report``: while the report draws its first picture;
- ``oracle_write:<n>``: half-way through keras-tuner's n-th write of oracle.json (1-based);
- ``checkpoint:<trial>``: with a trial's checkpoint half written; ``trial_epoch:<trial>:<n>``;
- ``best``: best_hyperparameters.json written but not yet renamed into place;
- ``export``: with the SavedModel half written.
"""

from __future__ import annotations

import os
import runpy
import sys
import time


def hold() -> None:
    open(os.environ["CHAOS_MARKER"], "w").close()
    time.sleep(600)


def install(point: str) -> None:
    kind, _, arg = point.partition(":")
    import keras

    if kind == "experiment":
        from lenet_keras.training import run

        real = run.run_experiment

        def run_experiment(config, *args, **kwargs):
            if config.name == arg:
                hold()
            return real(config, *args, **kwargs)

        run.run_experiment = run_experiment
    elif kind in ("load", "build", "evaluate", "publish"):
        from lenet_keras.training import atomic, run

        def current(config_or_path) -> bool:
            return getattr(config_or_path, "name", None) == arg

        if kind == "load":
            real_load = run.data.load_splits

            def load_splits(config, *args, **kwargs):
                splits = real_load(config, *args, **kwargs)
                if current(config):
                    hold()
                return splits

            run.data.load_splits = load_splits
        elif kind == "build":
            real_build = run.build_model

            def build_model(config, *args, **kwargs):
                model = real_build(config, *args, **kwargs)
                if current(config):
                    hold()
                return model

            run.build_model = build_model
        elif kind == "evaluate":
            real_predict = run._predict_test
            real_run = run._run_locked
            running = []

            def run_locked(config, *args, **kwargs):
                running[:] = [config.name]
                return real_run(config, *args, **kwargs)

            def predict_test(*args, **kwargs):  # right after the test split's evaluate()
                if running == [arg]:
                    hold()
                return real_predict(*args, **kwargs)

            run._run_locked, run._predict_test = run_locked, predict_test
        else:
            real_publish = atomic.publish

            def publish(src, dst):
                if dst.endswith(os.path.join(arg, "metrics.json")):
                    hold()
                return real_publish(src, dst)

            atomic.publish = publish
    elif kind == "epoch":
        from lenet_keras.training import resume

        exp, epoch = arg.split(":")
        begin = resume.ResumableBackup.on_epoch_begin

        def on_epoch_begin(self, n, logs=None):
            begin(self, n, logs)
            if self.state.name == exp and n == int(epoch):
                hold()

        resume.ResumableBackup.on_epoch_begin = on_epoch_begin
    elif kind == "report":
        from lenet_keras.reporting import document

        document._save = lambda figure, path: hold()
    elif kind == "oracle_write":
        from keras_tuner.src.backend import io as kt_io

        real_file, writes = kt_io.File, []

        class HalfWritten:
            def __init__(self, name, mode):
                self.file = real_file(name, mode)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.file.close()

            def write(self, text):
                writes.append(1)
                if len(writes) == int(arg):
                    self.file.write(text[: len(text) // 2])
                    self.file.flush()
                    hold()
                self.file.write(text)

        kt_io.File = lambda name, mode: (
            HalfWritten(name, mode) if "oracle.json" in name and "w" in mode else real_file(name, mode))
    elif kind == "checkpoint":
        save_weights = keras.Model.save_weights

        def half_saved(self, filepath, *args, **kwargs):
            save_weights(self, filepath, *args, **kwargs)
            if f"trial_{arg}" in str(filepath):
                os.truncate(filepath, os.path.getsize(filepath) // 2)
                hold()

        keras.Model.save_weights = half_saved
    elif kind == "trial_epoch":
        import keras_tuner as kt

        trial_id, epoch = arg.split(":")
        run_trial = kt.engine.tuner.Tuner.run_trial

        def held_trial(self, trial, *args, **kwargs):
            if trial.trial_id == trial_id:
                class Hold(keras.callbacks.Callback):
                    def on_epoch_begin(self, n, logs=None):
                        if n == int(epoch):
                            hold()

                kwargs["callbacks"] = [*kwargs.get("callbacks", []), Hold()]
            return run_trial(self, trial, *args, **kwargs)

        kt.engine.tuner.Tuner.run_trial = held_trial
    elif kind == "best":
        from lenet_keras.training import atomic

        replace = atomic.replace

        def held_replace(src, dst):
            if dst.endswith("best_hyperparameters.json"):
                hold()
            replace(src, dst)

        atomic.replace = held_replace
    elif kind == "export":
        archive_type = type(keras.export.ExportArchive())
        write_out = archive_type.write_out

        def half_written(self, filepath, **kwargs):
            write_out(self, filepath, **kwargs)
            pb = os.path.join(filepath, "saved_model.pb")
            os.truncate(pb, os.path.getsize(pb) // 2)
            hold()

        archive_type.write_out = half_written
    else:
        raise SystemExit(f"unknown CHAOS_HOLD point {point!r}")


if __name__ == "__main__":
    module, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
    if os.environ.get("CHAOS_HOLD"):
        import lenet_keras  # noqa: F401  (before TensorFlow, as the commands import it)

        install(os.environ["CHAOS_HOLD"])
    runpy.run_module(module, run_name="__main__", alter_sys=True)
