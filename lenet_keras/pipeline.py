"""Run the study's tuned and transfer experiments as a TFX pipeline (TFX 1.16, Python 3.10).

    python -m lenet_keras.pipeline --data_dir D --pipeline_root R --serving_base S [--epochs N]
        [--max_trials T] [--tuner hyperband|random|bayesian] [--metadata_path P] [--precision P]

ImportExampleGen for CIFAR-100 and for STL-10 (train / eval / test cut as `train` cuts them) ->
Tuner -> Trainer (tuned, the Tuner's best hyperparameters) -> Trainer (transfer, from the tuned
model) -> a Pusher each, into S/lenet_tuned/<version>/ and S/lenet_transfer/<version>/ (TF Serving's
layout). ML Metadata: R/metadata.sqlite unless --metadata_path. A rerun reuses, from TFX's cache,
every component whose inputs, settings and code did not change. See docs/tfx.md.
"""

from __future__ import annotations

import importlib.util
import logging as std_logging
import os
import sys
import traceback
import warnings

from absl import flags

from lenet_keras import cli
from lenet_keras.errors import UserError, first_line

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "TFDS data dir holding prepared cifar100 and stl10 "
                    "(default: $TFDS_DATA_DIR or ~/tensorflow_datasets).")
flags.DEFINE_string("pipeline_root", os.path.join("saved_models", "tfx"),
                    "TFX's pipeline root: component outputs, the ExampleGen inputs, the search.")
flags.DEFINE_string("serving_base", os.path.join("saved_models", "tfx_serving"),
                    "Where the Pushers write <serving_base>/lenet_tuned|lenet_transfer/<version>/.")
flags.DEFINE_integer("epochs", None, "Cap on the epochs of the Tuner's trials and of every Trainer.",
                     **cli.COUNT_BOUNDS)
flags.DEFINE_integer("max_trials", None, "Cap on the Tuner's trials (as tune's --max_trials).",
                     **cli.COUNT_BOUNDS)
flags.DEFINE_enum("tuner", "hyperband", ["hyperband", "random", "bayesian"], "keras-tuner algorithm.")
flags.DEFINE_string("metadata_path", None,
                    "ML Metadata's SQLite file (default: <pipeline_root>/metadata.sqlite).")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16", "mixed_float16", "auto"],
                  "Keras dtype policy of the Tuner and the Trainers: "
                    "float32, mixed_bfloat16, mixed_float16 or auto, as for train.")

TFX_PYTHON = (3, 10)  # TFX 1.16, the newest that installs here, requires Python <3.11
# Warnings nobody running this pipeline can act on: TFX's input resolution's internals, the Pusher
# pushing without an Evaluator (docs/tfx.md says why), Beam's slower CRC without python-snappy for
# ExampleGen's small job. --library_logs shows them.
_TFX_NOISE = ("ArtifactQuery.property_predicate is not supported",
              "Pusher is going to push the model without validation",
              "Couldn't find python-snappy")


def check_tfx() -> None:
    """One line if TFX cannot be imported here: which Python this is, and what to install."""
    here = f"Python {sys.version.split()[0]} ({sys.executable})"
    if importlib.util.find_spec("tfx") is None:
        if sys.version_info[:2] != TFX_PYTHON:
            raise UserError(f"the TFX pipeline needs TFX 1.16, which needs Python 3.10, and this is "
                            f"{here}: make a Python 3.10 virtualenv and pip install '.[tfx]' in it")
        raise UserError(f"TFX is not installed in this {here}: pip install '.[tfx]'")
    try:
        import tfx  # noqa: F401
    except (ImportError, AttributeError, TypeError) as exc:  # a broken or mismatched install
        raise UserError(f"TFX does not import in this {here} ({first_line(exc)}): reinstall it "
                        "with pip install '.[tfx]' on Python 3.10") from None


class _UserFacingOnly(std_logging.Filter):
    """The console rules of lenet_keras.cli (warnings, and INFO from this package only), applied on
    the root logger's handlers: TFX runs Beam and TensorFlow's SavedModel writer in this process,
    and they log through loggers of their own, past the filter cli puts on absl's logger."""

    def __init__(self):
        super().__init__()
        self._own_info_only = cli._OwnInfoOnly()

    def filter(self, record: std_logging.LogRecord) -> bool:
        return self._own_info_only.filter(record) and not str(record.msg).startswith(_TFX_NOISE)


def quiet_tfx() -> None:
    """Hides TFX's, Beam's and Google Cloud's chatter; call before TFX is imported."""
    for handler in std_logging.getLogger().handlers:
        handler.addFilter(_UserFacingOnly())
    # google-cloud-* (TFX's dependencies) warn at import that Python 3.10, TFX's only Python, is old.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")


def _check_flags() -> None:
    for name in ("epochs", "max_trials"):
        value = getattr(FLAGS, name)
        if value is not None and value <= 0:
            raise UserError(f"--{name} must be a positive integer, got {value}")


def run(metadata_path: str) -> dict:
    """Exports the examples, builds the pipeline, runs it; node id -> its execution in this run."""
    from lenet_keras.data import tfds_source
    from lenet_keras.tfx_components import components
    from lenet_keras.training import precision

    policy = precision.resolve(FLAGS.precision).policy  # `auto` logs what it picks, once
    data_dir = os.path.abspath(tfds_source.default_data_dir(FLAGS.data_dir))
    folders = components.export_examples(data_dir, FLAGS.pipeline_root)
    pipeline = components.create_pipeline(
        folders, data_dir, FLAGS.pipeline_root, FLAGS.serving_base, metadata_path=metadata_path,
        epochs=FLAGS.epochs, max_trials=FLAGS.max_trials, tuner=FLAGS.tuner, precision=policy)
    try:
        return components.run_pipeline(pipeline, metadata_path)
    except components.ComponentFailed as exc:
        if FLAGS.library_logs:
            cause = exc.__cause__
            traceback.print_exception(type(cause), cause, cause.__traceback__)
        raise


def main() -> None:
    _check_flags()
    if not FLAGS.library_logs:
        quiet_tfx()
    check_tfx()
    cli.import_tensorflow()
    from lenet_keras.tfx_components import components, executions

    metadata_path = os.path.abspath(
        FLAGS.metadata_path or components.default_metadata_path(FLAGS.pipeline_root))
    nodes = run(metadata_path)
    for node_id, model_name in components.PUSHERS.items():
        reused = " (unchanged, from TFX's cache)" if nodes[node_id].state == "CACHED" else ""
        print(f"{model_name}: pushed to {executions.pushed_to(nodes[node_id])}{reused}")
    print(f"ML Metadata: {metadata_path}")


if __name__ == "__main__":
    cli.run(main, tensorflow=False, on_interrupt="finished components are reused when the same "
            "command runs again")
