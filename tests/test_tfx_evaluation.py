"""The Evaluators' thresholds (``lenet_keras.tfx_components.evaluation``) as TFX's own Evaluator
executor applies them to models trained on data as hard as real CIFAR-100 (``--difficulty hard``),
where LeNet-5 is unsure of its answers.

One training run of the tuned experiment on 10,000 hard images gives the models: its best
(the baseline, near real CIFAR-100's accuracy), and snapshots after epoch 3 (clearly worse) and
epoch 1 (near chance). Each is exported the product's way (``write_saved_model``: serving_default
and tf_example signatures) into a TFX Model artifact's ``Format-Serving`` folder, and judged by
``tfx.components.evaluator.executor.Executor`` with ``evaluation.eval_config`` on ExampleGen-style
files of the test split: the Beam job and blessing an Evaluator component runs, without the
orchestrator around it (tests/test_tfx_pipeline.py runs whole pipelines).
"""

from __future__ import annotations

import importlib.util
import os

import keras
import pytest

pytestmark = [
    pytest.mark.tfx, pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("tfx") is None,
                       reason="TFX is not installed: it needs Python 3.10"),
    pytest.mark.filterwarnings("ignore:You are using a non-supported Python version:FutureWarning"),
]

# The conftest's hard data (3,000 train images) is too small for LeNet-5 to leave chance in a few
# epochs; 10,000 reach ~0.28 in 8 epochs, as the full study does. 2,000 test images: a sampling
# error of one point, small beside the gaps between the models below.
TRAIN, TEST, EPOCHS = 10_000, 2_000, 8
SNAPSHOTS = (1, 3)  # epochs whose models are kept besides the run's best
# Five times chance: the change-threshold case sets it so that only the change threshold can refuse.
LOW_FLOOR = 0.05


class Snapshots(keras.callbacks.Callback):
    """Saves the model at the end of the given epochs (1-based) as ``<folder>/epoch<N>.keras``."""

    def __init__(self, folder: str, epochs):
        super().__init__()
        self.folder, self.epochs = folder, set(epochs)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 in self.epochs:
            self.model.save(os.path.join(self.folder, f"epoch{epoch + 1}.keras"))


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict:
    """{"best" | "epoch1" | "epoch3": a Model artifact's uri, "examples": an Examples artifact's uri,
    "accuracy": the trainer's test accuracy of "best"}."""
    from lenet_keras import experiments, models
    from lenet_keras.data import synthetic
    from lenet_keras.serving.export import write_saved_model
    from lenet_keras.training.run import run_experiment
    from tests.test_tfx_entry_points import examplegen_output

    root = tmp_path_factory.mktemp("hard_evaluation")
    data_dir = str(root / "tfds")
    synthetic.prepare("cifar100", data_dir, train=TRAIN, test=TEST, difficulty="hard")
    model_dir, snapshots = str(root / "trained"), str(root / "snapshots")
    os.makedirs(snapshots)
    metrics = run_experiment(experiments.get_config("tuned").replace(epochs=EPOCHS), data_dir,
                             model_dir, verbose=0,
                             extra_callbacks=[Snapshots(snapshots, SNAPSHOTS)])
    sources = {"best": os.path.join(model_dir, "tuned", "model.keras"),
               **{f"epoch{n}": os.path.join(snapshots, f"epoch{n}.keras") for n in SNAPSHOTS}}
    uris = {}
    for name, source in sources.items():
        uris[name] = str(root / "models" / name)
        write_saved_model(models.load_classifier(source), metrics["class_names"],
                          os.path.join(uris[name], "Format-Serving"))
    examples = str(root / "examples")
    examplegen_output(data_dir, "cifar100", examples)
    return {**uris, "examples": examples, "accuracy": metrics["test_accuracy"]}


def _evaluate(served: dict, tmp_path, candidate: str, baseline: str | None, config):
    """(blessed, the product's Verdict, TFMA's ValidationResult) of the Evaluator's executor on
    ``candidate`` against ``baseline`` (None: a first run, no baseline yet)."""
    import tensorflow_model_analysis as tfma
    from tfx.components.evaluator import constants, executor
    from tfx.dsl.components.base import base_beam_executor
    from tfx.types import artifact_utils, standard_artifacts
    from tfx.types import standard_component_specs as specs
    from tfx.utils import json_utils, proto_utils

    from lenet_keras.tfx_components import evaluation
    from lenet_keras.tfx_components.components import BEAM_ARGS

    def artifact(kind, uri):
        made = kind()
        made.uri = uri
        return made

    examples = artifact(standard_artifacts.Examples, served["examples"])
    examples.split_names = artifact_utils.encode_split_names(["train", "eval", "test"])
    inputs = {specs.EXAMPLES_KEY: [examples],
              specs.MODEL_KEY: [artifact(standard_artifacts.Model, served[candidate])]}
    if baseline:
        inputs[specs.BASELINE_MODEL_KEY] = [artifact(standard_artifacts.Model, served[baseline])]
    evaluation_uri, blessing_uri = str(tmp_path / "evaluation"), str(tmp_path / "blessing")
    os.makedirs(evaluation_uri)
    os.makedirs(blessing_uri)
    outputs = {specs.EVALUATION_KEY: [artifact(standard_artifacts.ModelEvaluation, evaluation_uri)],
               specs.BLESSING_KEY: [artifact(standard_artifacts.ModelBlessing, blessing_uri)]}
    properties = {specs.EVAL_CONFIG_KEY: proto_utils.proto_to_json(config),
                  specs.EXAMPLE_SPLITS_KEY: json_utils.dumps([evaluation.EVAL_SPLIT])}
    context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=list(BEAM_ARGS),
                                                          tmp_dir=str(tmp_path / "tmp"))
    executor.Executor(context).Do(inputs, outputs, properties)
    blessed = os.path.exists(os.path.join(blessing_uri, constants.BLESSED_FILE_NAME))
    assert blessed != os.path.exists(os.path.join(blessing_uri, constants.NOT_BLESSED_FILE_NAME))
    return (blessed, evaluation.read_verdict(evaluation_uri, blessed),
            tfma.load_validation_result(evaluation_uri))


def _failed_thresholds(validation) -> set:
    """Which kinds of threshold refused the model: {"value_threshold", "change_threshold"}."""
    return {kind for per_slice in validation.metric_validations_per_slice
            for failure in per_slice.failures
            for kind in ("value_threshold", "change_threshold")
            if failure.metric_threshold.HasField(kind)}


def test_a_model_within_the_drop_of_its_baseline_is_blessed(served, tmp_path):
    """The pipeline's rerun: the last blessed model, evaluated again against itself (a change of
    0, inside ``--max_accuracy_drop``), passes both default thresholds."""
    from lenet_keras.tfx_components import evaluation

    config = evaluation.eval_config(evaluation.DEFAULT_MIN_ACCURACY,
                                    evaluation.DEFAULT_MAX_ACCURACY_DROP, with_top5=True)
    blessed, verdict, validation = _evaluate(served, tmp_path, "best", "best", config)
    assert blessed and validation.validation_ok, validation
    # TFMA's accuracy through the tf_example signature is the trainer's.
    assert verdict.accuracy == pytest.approx(served["accuracy"], abs=1e-4)
    assert verdict.accuracy > evaluation.DEFAULT_MIN_ACCURACY
    assert verdict.change == pytest.approx(0.0, abs=1e-6)


def test_a_clearly_worse_model_above_the_floor_is_refused_by_the_change_threshold(served, tmp_path):
    from lenet_keras.tfx_components import evaluation

    config = evaluation.eval_config(LOW_FLOOR, evaluation.DEFAULT_MAX_ACCURACY_DROP,
                                    with_top5=True)
    blessed, verdict, validation = _evaluate(served, tmp_path, "epoch3", "best", config)
    assert not blessed and not validation.validation_ok
    assert verdict.accuracy >= LOW_FLOOR
    assert verdict.change < -2 * evaluation.DEFAULT_MAX_ACCURACY_DROP
    assert _failed_thresholds(validation) == {"change_threshold"}, validation


def test_a_first_model_below_the_floor_is_refused_by_the_floor(served, tmp_path):
    """No baseline yet: TFX ignores the change threshold and the floor alone refuses."""
    from lenet_keras.tfx_components import evaluation

    config = evaluation.eval_config(evaluation.DEFAULT_MIN_ACCURACY,
                                    evaluation.DEFAULT_MAX_ACCURACY_DROP, with_top5=True)
    blessed, verdict, validation = _evaluate(served, tmp_path, "epoch1", None, config)
    assert not blessed and not validation.validation_ok
    assert verdict.accuracy < evaluation.DEFAULT_MIN_ACCURACY and verdict.change is None
    assert _failed_thresholds(validation) == {"value_threshold"}, validation
