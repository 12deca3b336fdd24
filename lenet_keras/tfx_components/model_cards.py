"""The model card of each model a Pusher published, from what ML Metadata recorded of the run.

After a local or beam run the command follows each Pusher that pushed back through ML Metadata's
lineage: its Evaluator (metrics against the floor and the baseline, the blessing), its Trainer
(``model_run/<exp>/metrics.json``: config, split sizes, parameters, epochs), the Tuner's best
hyperparameters (tuned), and its data set's StatisticsGen (examples per label). The card is
``lenet_keras.serving.model_card``'s, written into the pushed version at
``assets.extra/model_card.md``, where TF Serving reads nothing. A Kubeflow V2 job runs elsewhere,
so no card is written for it here.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Optional

from lenet_keras.serving import model_card
from lenet_keras.tfx_components import components, evaluation, executions

LABEL = "label"
BEST_HYPERPARAMETERS_FILE = "best_hyperparameters.txt"  # what TFX's Tuner writes
STATISTICS_FILE = "FeatureStats.pb"  # what StatisticsGen writes in each Split-<name>/


def label_counts(statistics_uri: str) -> Dict[str, Dict[str, int]]:
    """Split -> label -> examples, from StatisticsGen's rank histogram of the label (the schema
    makes it categorical)."""
    import tensorflow_data_validation as tfdv

    counts: Dict[str, Dict[str, int]] = {}
    for entry in sorted(os.listdir(statistics_uri)):
        path = os.path.join(statistics_uri, entry, STATISTICS_FILE)
        if not entry.startswith("Split-") or not os.path.exists(path):
            continue
        for dataset in tfdv.load_stats_binary(path).datasets:
            for feature in dataset.features:
                if list(feature.path.step) == [LABEL]:
                    buckets = feature.string_stats.rank_histogram.buckets
                    counts[entry[len("Split-"):]] = {b.label: int(b.sample_count) for b in buckets}
    return counts


def _best_hyperparameters(tuner) -> Dict:
    if tuner is None:
        return {}
    (artifact,) = tuner.outputs["best_hyperparameters"]
    with open(os.path.join(artifact.uri, BEST_HYPERPARAMETERS_FILE)) as f:
        return json.load(f).get("values", {})


def card_facts(nodes: Dict, pusher_id: str, min_accuracy: float, max_accuracy_drop: float,
               code_version: str) -> Optional[model_card.CardFacts]:
    """The card's facts for ``pusher_id``'s model, or None if it pushed nothing in this run."""
    pusher = nodes.get(pusher_id)
    pushed = executions.pushed_to(pusher) if pusher is not None else None
    if not pushed:
        return None
    exp = pusher_id[:-len("_pusher")]
    (model_run,) = nodes[f"{exp}_trainer"].outputs["model_run"]
    with open(os.path.join(model_run.uri, exp, "metrics.json")) as f:
        metrics = json.load(f)
    evaluator = nodes[components.EVALUATORS[pusher_id]]
    (evaluation_artifact,) = evaluator.outputs["evaluation"]
    verdict = evaluation.read_verdict(evaluation_artifact.uri, executions.blessed(evaluator))
    baseline = ("no baseline yet" if verdict.change is None else
                f"{verdict.change:+.4f} vs its last blessed model (allowed -{max_accuracy_drop:g})")
    rows = [("accuracy", verdict.accuracy, f"floor {min_accuracy:g}; {baseline}")]
    if verdict.top5_accuracy is not None:
        rows.append(("top-5 accuracy", verdict.top5_accuracy, "reported, no threshold"))
    statistics = nodes.get(f"{metrics['dataset']}_statistics")
    (blessing,) = evaluator.outputs[executions.BLESSING]
    return model_card.CardFacts(
        model_name=components.PUSHERS[pusher_id], version=os.path.basename(pushed.rstrip("/")),
        form="SavedModel (TF Serving), pushed by the TFX pipeline's " + pusher_id,
        source=model_run.uri, code_version=f"lenet_keras code {code_version}",
        dataset=metrics["dataset"], class_names=metrics["class_names"],
        split_sizes={split: metrics[f"{split}_examples"] for split in ("train", "val", "test")},
        config=metrics["config"], params=metrics["params"],
        trainable_params=metrics["trainable_params"], best_epoch=metrics["best_epoch"],
        epochs_run=metrics["epochs_run"],
        label_counts=label_counts(statistics.outputs["statistics"][0].uri) if statistics else {},
        hyperparameters=_best_hyperparameters(nodes.get("Tuner")) if exp == components.TUNED else {},
        evaluation=rows,
        evaluated_on=(f"The TFX Evaluator `{evaluator.node_id}` (TFMA) on the cut's test split "
                      f"({metrics['test_examples']} examples), through the tf_example signature."),
        blessing=(f"Blessed by `{evaluator.node_id}` (ModelBlessing artifact {blessing.id}); "
                  f"pushed by `{pusher_id}` to `{pushed}`."))


def write_cards(nodes: Dict, min_accuracy: float, max_accuracy_drop: float) -> Dict[str, str]:
    """Model name -> the card written for each model pushed in this run (cached pushes keep the
    card their first run wrote)."""
    written = {}
    for pusher_id, model_name in components.PUSHERS.items():
        facts = card_facts(nodes, pusher_id, min_accuracy, max_accuracy_drop,
                           components.code_version())
        if facts is None:
            continue
        pushed = executions.pushed_to(nodes[pusher_id])
        path = model_card.card_path(pushed, litert=False)
        if nodes[pusher_id].state == "CACHED" and os.path.exists(path):
            written[model_name] = path
            continue
        written[model_name] = model_card.write(path, facts)
    return written
