"""The Evaluators' configuration (TFMA's EvalConfig) and what the command says about each model.

Each trained model is evaluated by TFMA on its data set's ``test`` split through its ``tf_example``
signature (serialized tf.Example in; TFMA 0.47 loads a Keras-3 SavedModel as ``tf_generic``, so it
calls the signature itself). Metrics: ``accuracy``, and ``top5_accuracy`` for CIFAR-100 (of
STL-10's 10 classes, top-5 holds half by chance). ``accuracy`` carries both thresholds: a floor
(``min_accuracy``) and a change threshold against the baseline (``max_accuracy_drop``: the
candidate may be at most this much below the last blessed model of the same trainer). TFX's
Evaluator ignores the change threshold when there is no baseline yet (its ``rubber_stamp``), so a
first run checks only the floor.

TFMA and TensorFlow are imported where they are used: the command reads the defaults here before
it knows TFX is installed and before TensorFlow is quietly imported.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

ACCURACY, TOP5 = "accuracy", "top5_accuracy"
EVAL_SPLIT = "test"
LABEL_FEATURE = "label"
# A floor far above chance for both models (CIFAR-100 1%, STL-10 10%) and far below what the study's
# models reach on the real data; docs/tfx.md gives the numbers.
DEFAULT_MIN_ACCURACY = 0.2
# Three points: above retraining's noise where LeNet-5 is unsure. Retrains differing only in seed
# (synthetic --difficulty hard, 10,000 train / 10,000 test images) scored 0.270-0.295 (tuned, 8
# seeds, sd 0.9 points) and 0.568-0.585 (transfer): one point refused 11 and 13 of their 56
# candidate/baseline pairs, three points none (benchmarks/MEASUREMENTS.md).
DEFAULT_MAX_ACCURACY_DROP = 0.03


def eval_config(min_accuracy: float, max_accuracy_drop: float, with_top5: bool):
    """TFMA's EvalConfig of one Evaluator."""
    import tensorflow_model_analysis as tfma

    from lenet_keras.serving.signature import EXAMPLE_SIGNATURE

    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_accuracy}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -max_accuracy_drop}))
    # Keras metric classes: TFMA 0.47 builds them with tf_keras over the signature's outputs.
    metrics = [tfma.MetricConfig(class_name="SparseCategoricalAccuracy",
                                 config=f'"name": "{ACCURACY}"', threshold=threshold)]
    if with_top5:
        metrics.append(tfma.MetricConfig(class_name="SparseTopKCategoricalAccuracy",
                                         config=f'"k": 5, "name": "{TOP5}"'))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=EXAMPLE_SIGNATURE, model_type=tfma.TF_GENERIC,
                                    label_key=LABEL_FEATURE, prediction_key="probabilities")],
        slicing_specs=[tfma.SlicingSpec()],  # the whole split
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
    )


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What an Evaluator decided about one model, read back from its outputs."""

    blessed: bool
    accuracy: Optional[float]
    top5_accuracy: Optional[float]
    change: Optional[float]  # accuracy minus the baseline's; None without a baseline


def read_verdict(evaluation_uri: str, blessed: bool) -> Verdict:
    """The overall slice's metrics of an Evaluator's ``evaluation`` output."""
    import tensorflow_model_analysis as tfma

    values, change = {}, None
    for metrics in tfma.load_metrics(evaluation_uri):
        if metrics.slice_key.single_slice_keys:
            continue
        for entry in metrics.metric_keys_and_values:
            key, value = entry.key, entry.value.double_value.value
            if key.model_name == "baseline":
                continue
            if key.is_diff:
                change = value if key.name == ACCURACY else change
            else:
                values[key.name] = value
    return Verdict(blessed, values.get(ACCURACY), values.get(TOP5), change)


def describe(model_name: str, verdict: Verdict, min_accuracy: float, max_accuracy_drop: float,
             pushed_to: Optional[str], cached: bool) -> str:
    """One line: blessed or not, the accuracy against its thresholds, pushed where."""
    if verdict.accuracy is None:
        return f"{model_name}: NOT blessed (no accuracy was computed), not pushed"
    floor = ">=" if verdict.accuracy >= min_accuracy else "<"
    parts = [f"accuracy {verdict.accuracy:.4f} {floor} floor {min_accuracy:g}"]
    if verdict.change is None:
        parts.append("no baseline yet")
    else:
        parts.append(f"{verdict.change:+.4f} vs its last blessed model (allowed -{max_accuracy_drop:g})")
    if verdict.top5_accuracy is not None:
        parts.append(f"top-5 {verdict.top5_accuracy:.4f}")
    state = "blessed" if verdict.blessed else "NOT blessed"
    if pushed_to:
        where = f"pushed to {pushed_to}" + (" (unchanged, from TFX's cache)" if cached else "")
    else:
        where = "not pushed (its serving folder is unchanged)"
    return f"{model_name}: {state} ({'; '.join(parts)}), {where}"
