"""Run the study's tuned and transfer experiments as a TFX pipeline (TFX 1.16, Python 3.10).

    python -m lenet_keras.pipeline --data_dir D --pipeline_root R --serving_base S [--epochs N]
        [--max_trials T] [--tuner hyperband|random|bayesian] [--metadata_path P] [--precision P]
        [--min_accuracy A] [--max_accuracy_drop D] [--runner local|beam] [--beam_pipeline_args ARGS]
    python -m lenet_keras.pipeline --runner kubeflow_v2 --output job.json --image IMAGE
        --data_dir gs://... --pipeline_root gs://... --serving_base gs://... [...]

ImportExampleGen for CIFAR-100 and for STL-10 (train / eval / test cut as `train` cuts them) ->
StatisticsGen, ImportSchemaGen, ExampleValidator each (a data set with anomalies is neither trained
nor pushed, and the command ends in one error line naming it) -> Tuner -> Trainer (tuned, the
Tuner's best hyperparameters) -> Trainer (transfer, from the tuned model) -> an Evaluator each
(test split; a floor, and a largest drop against the last model of the same trainer it blessed) ->
a Pusher each, which pushes only a blessed model, into S/lenet_tuned/<version>/ and
S/lenet_transfer/<version>/ (TF Serving's layout), each with a model card from ML Metadata in
<version>/assets.extra/model_card.md. It ends with one line per model. `local` and `beam` run here
(LocalDagRunner, BeamDagRunner), ML Metadata in R/metadata.sqlite unless --metadata_path;
`kubeflow_v2` compiles a Kubeflow Pipelines v2 / Vertex AI PipelineJob to --output and runs
nothing. A rerun reuses, from TFX's cache, every component whose inputs, settings and code did not
change. See docs/tfx.md.
"""


from __future__ import annotations

if __name__ == "__main__":  # first, so Ctrl-C while the command imports is one line too
    from lenet_keras import startup

    startup.exit_on_interrupt()

import importlib.util
import logging as std_logging
import os
import shlex
import sys
import traceback
import warnings

from absl import flags

from lenet_keras import cli
from lenet_keras.errors import UserError, first_line
from lenet_keras.search.layout import TUNERS
from lenet_keras.tfx_components import evaluation
from lenet_keras.tfx_components.uris import is_remote
from lenet_keras.training import precision

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
flags.DEFINE_enum("tuner", "hyperband", list(TUNERS), "keras-tuner algorithm.")
flags.DEFINE_string("metadata_path", None,
                    "ML Metadata's SQLite file (default: <pipeline_root>/metadata.sqlite).")
flags.DEFINE_enum("precision", "float32", list(precision.CHOICES),
                  "Keras dtype policy of the Tuner and the Trainers: "
                    "float32, mixed_bfloat16, mixed_float16 or auto, as for train.")
flags.DEFINE_float("min_accuracy", evaluation.DEFAULT_MIN_ACCURACY, "The Evaluators' floor: a "
                   "model whose test accuracy is below it is not blessed, so not pushed.")
flags.DEFINE_float("max_accuracy_drop", evaluation.DEFAULT_MAX_ACCURACY_DROP, "How far a model's "
                   "test accuracy may fall below that of the last model of the same trainer that "
                   "was blessed (none on a first run).")
flags.DEFINE_enum("runner", "local", ["local", "beam", "kubeflow_v2"],
                  "local: LocalDagRunner; beam: BeamDagRunner (both run here); kubeflow_v2: "
                  "compile a Kubeflow Pipelines v2 / Vertex AI job to --output, run nothing.")
flags.DEFINE_string("beam_pipeline_args", None, "The components' Beam options, one string as on "
                    "a command line (e.g. '--direct_running_mode=multi_processing "
                    "--direct_num_workers=4'); default: one in-process worker.")
flags.DEFINE_string("output", None, "kubeflow_v2: the PipelineJob JSON file to write.")
flags.DEFINE_string("image", None, "kubeflow_v2: the container image every component runs in, "
                    "with this project installed with its [tfx] extra (docs/tfx.md).")
for _name in ("min_accuracy", "max_accuracy_drop"):
    flags.register_validator(_name, lambda v: 0 <= v <= 1, message=f"--{_name} is a fraction of "
                             "the test split: give a number from 0 to 1")
cli.path_flags("data_dir", "pipeline_root", "serving_base", "metadata_path", "output")

TFX_PYTHON = (3, 10)  # TFX 1.16, the newest that installs here, requires Python <3.11
# Warnings nobody running this pipeline can act on: TFX's input resolution's internals, Beam's
# slower CRC without python-snappy for ExampleGen's small job. --library_logs shows them.
_TFX_NOISE = ("ArtifactQuery.property_predicate is not supported",
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
    remote = FLAGS.runner == "kubeflow_v2"
    if remote:
        missing = [f"--{name}" for name in ("output", "image", "data_dir") if not getattr(FLAGS, name)]
        if missing:
            raise UserError(f"--runner kubeflow_v2 needs {', '.join(missing)}: the job file to "
                            "write, the container image to run, the TFDS data dir it reads")
        local = [f"--{name} {getattr(FLAGS, name)}" for name in ("data_dir", "pipeline_root",
                 "serving_base") if not is_remote(getattr(FLAGS, name))]
        if local:
            raise UserError(f"--runner kubeflow_v2 runs on other machines, which cannot read "
                            f"this one's {', '.join(local)}: give gs:// URIs")
        if FLAGS.metadata_path:
            raise UserError("--metadata_path is for local and beam runs: Kubeflow and Vertex AI "
                            "keep their own ML Metadata")
    else:
        if FLAGS.output or FLAGS.image:
            raise UserError("--output and --image are for --runner kubeflow_v2, which compiles a "
                            f"job instead of running it; --runner {FLAGS.runner} runs here")
        remote_paths = [f"--{name} {getattr(FLAGS, name)}" for name in ("data_dir", "pipeline_root")
                        if is_remote(getattr(FLAGS, name) or "")]
        if remote_paths:
            raise UserError(f"--runner {FLAGS.runner} cuts the data into files on this machine "
                            f"first, so {', '.join(remote_paths)} must be local: copy the data "
                            "here, or compile a job with --runner kubeflow_v2")
    try:
        _beam_pipeline_args()
    except ValueError as exc:
        raise UserError(f"--beam_pipeline_args {FLAGS.beam_pipeline_args!r} is not one "
                        f"command-line string ({exc}): quote it as a shell would") from None


def _beam_pipeline_args():
    return None if FLAGS.beam_pipeline_args is None else shlex.split(FLAGS.beam_pipeline_args)


def _configs() -> dict:
    """The configs of the experiments the pipeline trains, by name."""
    from lenet_keras import experiments
    from lenet_keras.tfx_components import components

    return {name: experiments.get_config(name) for name in (components.TUNED, components.TRANSFER)}


def _create_pipeline(examples_folders, data_dir: str, metadata_path=None):
    from lenet_keras.tfx_components import components
    if FLAGS.runner == "kubeflow_v2":
        # The job trains on other machines: their run_fn and tuner_fn resolve `auto` there.
        policy = FLAGS.precision
    else:
        policy = precision.resolve(FLAGS.precision).policy  # `auto` logs what it picks, once
    return components.create_pipeline(
        _configs(), examples_folders, data_dir, FLAGS.pipeline_root, FLAGS.serving_base,
        metadata_path=metadata_path, epochs=FLAGS.epochs, max_trials=FLAGS.max_trials,
        tuner=FLAGS.tuner, precision=policy, min_accuracy=FLAGS.min_accuracy,
        max_accuracy_drop=FLAGS.max_accuracy_drop, beam_pipeline_args=_beam_pipeline_args())


def run(metadata_path: str) -> dict:
    """Exports the examples, builds the pipeline, runs it; node id -> its execution in this run."""
    from lenet_keras.data import tfds_source
    from lenet_keras.tfx_components import components, runners

    data_dir = os.path.abspath(tfds_source.default_data_dir(FLAGS.data_dir))
    folders = components.export_examples(_configs(), data_dir, FLAGS.pipeline_root)
    pipeline = _create_pipeline(folders, data_dir, metadata_path)
    try:
        return runners.run_pipeline(pipeline, metadata_path, FLAGS.runner,
                                    user_paths=[data_dir, FLAGS.serving_base])
    except runners.ComponentFailed as exc:
        if FLAGS.library_logs:
            cause = exc.__cause__
            traceback.print_exception(type(cause), cause, cause.__traceback__)
        raise


def report(nodes: dict) -> None:
    """One line per model: blessed or not, its accuracy against the thresholds, pushed where, and
    the model card written into a pushed version; then one error line for the data sets that
    validation refused (their models never trained)."""
    from lenet_keras.tfx_components import components, executions, model_cards, validation

    # The data set of each experiment's branch, in order: its nodes are named after it.
    refused = validation.refused_data(nodes, [config.dataset for config in _configs().values()])
    cards = model_cards.write_cards(nodes, FLAGS.min_accuracy, FLAGS.max_accuracy_drop)
    for pusher_id, model_name in components.PUSHERS.items():
        if components.EVALUATORS[pusher_id] not in nodes:  # its data set's branch did not run
            continue
        evaluator = nodes[components.EVALUATORS[pusher_id]]
        (evaluation_artifact,) = evaluator.outputs["evaluation"]
        verdict = evaluation.read_verdict(evaluation_artifact.uri, executions.blessed(evaluator))
        pusher = nodes[pusher_id]
        print(evaluation.describe(model_name, verdict, FLAGS.min_accuracy,
                                  FLAGS.max_accuracy_drop, executions.pushed_to(pusher),
                                  cached=pusher.state == "CACHED"))
        if model_name in cards:
            print(f"{model_name} model card: {cards[model_name]}")
    if refused:
        raise UserError(f"{' '.join(refused)}: fix the data and run the same command again "
                        "(finished components are reused)")


def main() -> None:
    _check_flags()
    if not FLAGS.library_logs:
        quiet_tfx()
    check_tfx()
    cli.import_tensorflow()
    from lenet_keras.tfx_components import components, runners

    if FLAGS.runner == "kubeflow_v2":
        pipeline = _create_pipeline(None, FLAGS.data_dir)
        job = runners.compile_kubeflow_v2(pipeline, FLAGS.output, FLAGS.image)
        print(f"Kubeflow Pipelines v2 job: {job}")
        print(runners.UNVERIFIED_ON_VERTEX, file=sys.stderr)
        return
    metadata_path = os.path.abspath(
        FLAGS.metadata_path or components.default_metadata_path(FLAGS.pipeline_root))
    report(run(metadata_path))
    print(f"ML Metadata: {metadata_path}")


if __name__ == "__main__":
    cli.run(main, tensorflow=False, on_interrupt="finished components are reused when the same "
            "command runs again")
