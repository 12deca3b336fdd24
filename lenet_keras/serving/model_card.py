"""A Markdown model card beside every published model: what it is, what it was trained and
evaluated on, and where it must not be trusted.

Google's Model Card Toolkit cannot be installed beside TFX 1.16 (its last release wants
absl-py<1.1 and tensorflow-model-analysis<0.42), so the card is written here from what the study
already records: ``render`` takes ``CardFacts``; ``from_run`` fills them from a training run's
config.json and metrics.json (``python -m lenet_keras.export``), and the TFX pipeline fills them
from ML Metadata (``lenet_keras.tfx_components.model_cards``).

Where a card goes, so that TF Serving never reads it as a model (docs/serving.md):

- SavedModel ``<export_base>/<model_name>/<version>/assets.extra/model_card.md``: the SavedModel
  folder for files beside a model; TF Serving reads only its ``tf_serving_warmup_requests``;
- LiteRT ``<export_base>/litert/<model_name>/<version>/model_card.md``, beside model.tflite.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

from lenet_keras.errors import UserError
from lenet_keras.training import atomic
from lenet_keras.training.artifacts import CONFIG_FILE, METRICS_FILE

CARD_FILE = "model_card.md"
SAVED_MODEL_CARD = os.path.join("assets.extra", CARD_FILE)
ARCHITECTURE_FIELDS = ("activation", "pooling", "batch_norm", "hidden_units", "image_size")
TRAINING_FIELDS = ("epochs", "batch_size", "learning_rate", "seed", "precision",
                   "source_experiment", "freeze", "train_split", "val_split", "test_split")


@dataclasses.dataclass
class CardFacts:
    """Everything a card says. None or empty: not known where the card was written."""

    model_name: str
    version: str
    form: str  # what was published: "SavedModel (TF Serving)", "LiteRT int8", ...
    source: str  # the model file or artifact it was made from
    code_version: str
    dataset: str
    class_names: Sequence[str]
    split_sizes: Dict[str, int]
    config: Dict
    params: Optional[int] = None
    trainable_params: Optional[int] = None
    best_epoch: Optional[int] = None
    epochs_run: Optional[int] = None
    label_counts: Dict[str, Dict[str, int]] = dataclasses.field(default_factory=dict)
    hyperparameters: Dict = dataclasses.field(default_factory=dict)
    # (metric, value, what it is judged against): the card's evaluation table.
    evaluation: List[Tuple[str, str, str]] = dataclasses.field(default_factory=list)
    evaluated_on: str = ""
    blessing: str = ""
    parity: str = ""


def _value(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value) if all(isinstance(v, int) for v in value) \
            else ", ".join(str(v) for v in value)
    return "none" if value is None else str(value)


def _table(header: Tuple[str, ...], rows) -> List[str]:
    lines = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    lines += [f"| {' | '.join(_value(cell) for cell in row)} |" for row in rows]
    return lines


def render(facts: CardFacts) -> str:
    """The card of ``facts``, in Markdown."""
    config = facts.config or {}
    classes = len(facts.class_names)
    size = config.get("image_size", 32)
    out = [f"# Model card: {facts.model_name}, version {facts.version}", "",
           f"- Published as: {facts.form}",
           f"- Made from: `{facts.source}`",
           f"- Code version: {facts.code_version}",
           f"- Card written: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}", "",
           "## Model", "",
           f"A LeNet-5-family convolutional classifier (experiment `{config.get('name', '?')}`) of "
           f"{size}x{size} RGB images into the {classes} classes of `{facts.dataset}`. Its serving "
           f"signature takes raw pixels or encoded images and resizes them to {size}x{size} "
           "itself.", ""]
    architecture = [(field, config.get(field)) for field in ARCHITECTURE_FIELDS if field in config]
    architecture += [("parameters", facts.params), ("trainable parameters", facts.trainable_params)]
    out += _table(("architecture", "value"), architecture) + [""]
    out += ["## Data", "", f"Data set `{facts.dataset}`, {classes} classes "
            f"({', '.join(list(facts.class_names)[:10])}{', ...' if classes > 10 else ''}).", ""]
    out += _table(("split", "examples"), sorted(facts.split_sizes.items())) + [""]
    if facts.label_counts:
        out += ["Examples per label, from the pipeline's statistics (StatisticsGen):", ""]
        for split, counts in sorted(facts.label_counts.items()):
            shown = ", ".join(f"{label}: {n}" for label, n in sorted(counts.items(),
                                                                       key=lambda kv: int(kv[0])))
            out.append(f"- {split}: {shown}")
        out.append("")
    out += ["## Training", ""]
    training = [(field, config.get(field)) for field in TRAINING_FIELDS if field in config]
    training += [("epochs run", facts.epochs_run), ("best epoch (validation)", facts.best_epoch)]
    out += _table(("setting", "value"), training) + [""]
    if facts.hyperparameters:
        out += ["The tuner's best hyperparameters, which this model was trained with:", ""]
        out += _table(("hyperparameter", "value"), sorted(facts.hyperparameters.items())) + [""]
    out += ["## Evaluation", ""]
    if facts.evaluated_on:
        out += [facts.evaluated_on, ""]
    if facts.evaluation:
        out += _table(("metric", "value", "judged against"), facts.evaluation) + [""]
    else:
        out += ["No evaluation was recorded with this model.", ""]
    if facts.blessing:
        out += [facts.blessing, ""]
    if facts.parity:
        out += ["### LiteRT against Keras", "", facts.parity, ""]
    out += ["## Intended use and limits", "",
            f"- A study model: LeNet-5 at {size}x{size} pixels, trained to compare a vanilla, a "
            "tuned and a transferred LeNet-5. Not meant for decisions about people, safety or "
            "anything of consequence.",
            f"- Every number above was measured on the `{facts.dataset}` data this model was "
            "trained from. This project's tests and CI use synthetic stand-ins written under the "
            "same names (`lenet_keras.data.synthetic`); its accuracy on the real CIFAR-100 (or "
            "STL-10) could not be measured where this project was built, and no such accuracy is "
            "claimed here.",
            "- Not tested on: images that are not of these classes, photographs of other sizes "
            f"or aspect ratios than the data set's (everything is squeezed to {size}x{size}), "
            "grayscale or unusual colour, corrupted or adversarial inputs; the probabilities are "
            "not calibrated.",
            ""]
    return "\n".join(out)


def _read_json(path: str) -> Optional[dict]:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path} ({exc}): the model card is made from it; "
                        "train the experiment again or pass another --source_model") from None


def from_run(model_path: str, model_name: str, version: str, form: str,
             parity: Optional[str] = None) -> CardFacts:
    """The facts of the run that wrote ``model_path`` (its config.json and metrics.json beside)."""
    import lenet_keras

    folder = os.path.dirname(os.path.abspath(model_path))
    metrics = _read_json(os.path.join(folder, METRICS_FILE)) or {}
    config = _read_json(os.path.join(folder, CONFIG_FILE)) or metrics.get("config") or {}
    evaluation = []
    for key, name in (("test_accuracy", "accuracy"), ("test_top5_accuracy", "top-5 accuracy"),
                      ("test_loss", "loss")):
        if metrics.get(key) is not None:
            evaluation.append((name, metrics[key], "none: training records it, no gate"))
    if metrics.get("best_val_accuracy") is not None:
        evaluation.append(("best validation accuracy", metrics["best_val_accuracy"],
                           "picked the checkpoint"))
    return CardFacts(
        model_name=model_name, version=str(version), form=form, source=os.path.abspath(model_path),
        code_version=f"lenet_keras {lenet_keras.__version__}",
        dataset=metrics.get("dataset") or config.get("dataset", "unknown"),
        class_names=metrics.get("class_names", []),
        split_sizes={split: metrics[f"{split}_examples"] for split in ("train", "val", "test")
                     if metrics.get(f"{split}_examples") is not None},
        config=config, params=metrics.get("params"), trainable_params=metrics.get("trainable_params"),
        best_epoch=metrics.get("best_epoch"), epochs_run=metrics.get("epochs_run"),
        evaluation=evaluation,
        evaluated_on=("The run's test split, once, with the best-validation weights "
                      "(`metrics.json`)." if evaluation else
                      f"No metrics.json beside {model_path}: nothing about its evaluation is known."),
        parity=parity or "")


def card_path(version_folder: str, litert: bool) -> str:
    return os.path.join(version_folder, CARD_FILE if litert else SAVED_MODEL_CARD)


def write(path: str, facts: CardFacts) -> str:
    """Writes ``facts``' card at ``path`` (atomically); returns ``path``."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic.write_text(path, render(facts))
    except OSError as exc:
        raise UserError(f"the model was published, but writing its model card {path} failed "
                        f"({exc.strerror}): free some space and export again") from None
    return path
