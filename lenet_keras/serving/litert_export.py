"""Publishing a LiteRT version: convert, check parity with Keras in the interpreter, then rename.

Every export is checked, not assumed: a conversion can succeed and still compute something else
(a SavedModel whose variables were never initialized converts without error into a model that
agrees with Keras on 0% of images). The check runs the written ``model.tflite`` in the LiteRT
interpreter on the experiment's whole test split, against the Keras model on the same images:

- float32: top-1 agreement >= 99.9% (the conversion is exact but for float rounding);
- float16 and int8, judged on what a user cares about, as a quantization report does:
  - test accuracy at most 1.0 point below the Keras model's; a split too small to resolve one
    point (1.645 paired standard errors above it, one-sided 95%) is judged within that sampling
    error instead, and the summary says which rule applied;
  - on the images Keras is sure of (top-1 probability >= 0.5), agreement >= 99% (one image is
    always allowed, since 1% of fewer than 100 images is less than one);
  - agreement on every image is printed, not gated: where LeNet-5 is as unsure as it is on real
    CIFAR-100, rounding flips close calls both ways without changing accuracy (float16 agreed
    on 99.88% of 8,000 such images, with accuracy 0.05 points lower).

Below a floor nothing is published (one ``error:`` line) unless ``allow_below_floor``. The version
is written into a hidden folder beside the versions and renamed into place, as SavedModels are, so an
interrupted or refused export leaves no version folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

from lenet_keras.config import ExperimentConfig
from lenet_keras.errors import UserError, first_line
from lenet_keras.serving import litert
from lenet_keras.serving.export import (
    load_trained,
    new_version_folder,
    rename_to_next_version,
    trained_model_path,
    version_write_error,
)
from lenet_keras.training import atomic
from lenet_keras.training.artifacts import CONFIG_FILE

CALIBRATION_IMAGES = 300
# Minimum top-1 agreement with Keras of the float32 conversion, over every test image.
FLOAT_AGREEMENT = {"none": 0.999}
# float16 and int8 (quantized weights): the largest drop in points of test accuracy below the Keras
# model's, and agreement on the images Keras is sure of (top-1 probability >= CONFIDENT).
MAX_ACCURACY_DROP = 1.0
CONFIDENT = 0.5
CONFIDENT_AGREEMENT = 0.99
Z_ONE_SIDED_95 = 1.645


@dataclasses.dataclass(frozen=True)
class Parity:
    """How a LiteRT model's answers compare with its Keras model's on the same test images."""

    quantize: str
    images: int
    agreement: float  # share of images whose top-1 class is the Keras model's
    keras_accuracy: float
    litert_accuracy: float
    keras_only: int = 0  # images the Keras model classifies right and LiteRT wrong
    litert_only: int = 0  # images LiteRT classifies right and the Keras model wrong
    confident_images: int = 0  # images Keras gives a top-1 probability >= CONFIDENT
    confident_disagreements: int = 0  # of those, images whose LiteRT top-1 class differs
    conversion: str = ""  # what the conversion did first (int8: the batch-norm fold)

    @property
    def drop_points(self) -> float:
        return 100 * (self.keras_accuracy - self.litert_accuracy)

    def allowed_drop(self) -> Tuple[float, str]:
        """(largest accuracy drop in points a quantized model may show, the rule that set it)."""
        n, b, c = self.images, self.keras_only, self.litert_only
        # Standard error of a paired difference of proportions (the images both models get right
        # or both wrong cancel out): what a split of n images can resolve.
        se_points = 100 * math.sqrt(max(b + c - (b - c) ** 2 / n, 0.0)) / n if n else 0.0
        resolvable = Z_ONE_SIDED_95 * se_points
        if resolvable <= MAX_ACCURACY_DROP:
            return MAX_ACCURACY_DROP, f"at most {MAX_ACCURACY_DROP} point below"
        return resolvable, (f"within the sampling error of {n:,} test images, {resolvable:.2f} "
                            f"points (too few images to resolve {MAX_ACCURACY_DROP} point)")

    def allowed_confident_disagreements(self) -> int:
        return max(1, math.floor(self.confident_images * (1 - CONFIDENT_AGREEMENT) + 1e-9))

    def shortfall(self) -> Optional[str]:
        """What falls below this quantization's floor, or None."""
        if self.quantize in FLOAT_AGREEMENT:
            floor = FLOAT_AGREEMENT[self.quantize]
            if self.agreement < floor:
                return (f"agrees with the Keras model on {self.agreement:.1%} of {self.images:,} "
                        f"test images, below the {floor:.1%} floor")
            return None
        allowed, rule = self.allowed_drop()
        if self.drop_points > allowed + 1e-9:
            return (f"test accuracy {self.litert_accuracy:.2%} is {self.drop_points:.2f} points "
                    f"below the Keras model's {self.keras_accuracy:.2%}; allowed: {rule}")
        if self.confident_disagreements > self.allowed_confident_disagreements():
            return (f"disagrees with the Keras model on {self.confident_disagreements:,} of the "
                    f"{self.confident_images:,} test images Keras is sure of (top-1 probability "
                    f">= {CONFIDENT}); at most {self.allowed_confident_disagreements():,} allowed "
                    f"({CONFIDENT_AGREEMENT:.0%} agreement)")
        return None

    def summary(self) -> str:
        head = f"LiteRT {self.quantize}: top-1 agreement with Keras {self.agreement:.2%}"
        accuracy = f"accuracy {self.litert_accuracy:.2%} (Keras {self.keras_accuracy:.2%}"
        if self.quantize in FLOAT_AGREEMENT:
            return (f"{head} (floor {FLOAT_AGREEMENT[self.quantize]:.1%}) on {self.images:,} "
                    f"test images; {accuracy})")
        _, rule = self.allowed_drop()
        if self.confident_images:
            sure = (f"on the {self.confident_images:,} images Keras is sure of (top-1 >= "
                    f"{CONFIDENT}) {1 - self.confident_disagreements / self.confident_images:.2%} "
                    f"(floor {CONFIDENT_AGREEMENT:.0%})")
        else:
            sure = f"no image has a Keras top-1 probability >= {CONFIDENT}"
        return (f"{head} on {self.images:,} test images (information), {sure}; {accuracy}, "
                f"{self.drop_points:.2f} points below; rule: {rule})"
                + (f"; {self.conversion}" if self.conversion else ""))


def measure_parity(model, runner: litert.LiteRTModel, images: np.ndarray, labels: np.ndarray,
                   quantize: str) -> Parity:
    """``runner`` (the interpreter) against ``model`` (Keras) on uint8 ``images`` with ``labels``."""
    if len(images) == 0:
        raise UserError("the experiment's test split is empty: parity cannot be checked")
    probabilities = np.asarray(model.predict(images, batch_size=1024, verbose=0))
    expected = probabilities.argmax(axis=1)
    got = runner.probabilities(images).argmax(axis=1)
    keras_right, litert_right = expected == labels, got == labels
    sure = probabilities.max(axis=1) >= CONFIDENT
    return Parity(quantize, len(images), float(np.mean(got == expected)),
                  float(np.mean(keras_right)), float(np.mean(litert_right)),
                  keras_only=int(np.sum(keras_right & ~litert_right)),
                  litert_only=int(np.sum(litert_right & ~keras_right)),
                  confident_images=int(np.sum(sure)),
                  confident_disagreements=int(np.sum(sure & (got != expected))))


def export_litert(model, class_names: Sequence[str], export_base: str, model_name: str,
                  version: Optional[int], quantize: str, calibration_images: Optional[np.ndarray],
                  test_images: np.ndarray, test_labels: np.ndarray,
                  allow_below_floor: bool = False) -> Tuple[str, Parity]:
    """Writes <export_base>/litert/<model_name>/<version>/ (model.tflite, labels.txt) if its parity
    meets the floor (or ``allow_below_floor``); returns (that folder, the parity measured)."""
    if len(class_names) != int(model.outputs[0].shape[-1]):
        raise UserError(f"{len(class_names)} class names for a model with "
                        f"{model.outputs[0].shape[-1]} outputs")
    final = new_version_folder(os.path.join(export_base, litert.LITERT_FOLDER), model_name, version)
    model_base = os.path.dirname(final)
    flatbuffer, conversion = litert.convert(model, quantize, calibration_images)

    def write_checked(staging: str) -> Parity:
        path = os.path.join(staging, litert.MODEL_FILE)
        with open(path, "wb") as f:
            f.write(flatbuffer)
        with open(os.path.join(staging, litert.LABELS_FILE), "w", encoding="utf-8") as f:
            f.write("".join(f"{name}\n" for name in class_names))
        # The written file, in the interpreter a device would run, not the converter's bytes.
        parity = dataclasses.replace(
            measure_parity(model, litert.LiteRTModel(path), test_images, test_labels, quantize),
            conversion=conversion)
        shortfall = parity.shortfall()
        if shortfall and not allow_below_floor:
            raise UserError(f"not published: the {quantize} LiteRT model {shortfall}; export "
                            "--quantize none, or pass --allow_below_floor to publish it anyway")
        for name in os.listdir(staging):
            atomic.fsync_path(os.path.join(staging, name))
        return parity

    try:
        if version is not None:
            with atomic.new_folder(final, prefix=f".export-{version}-") as staging:
                parity = write_checked(staging)
            return final, parity
        # Without --version, the next free version when it is published: several exports into
        # one base at once each get their own, as SavedModel exports do.
        with atomic.staging_folder(model_base, prefix=".export-") as staging:
            parity = write_checked(staging)
            return rename_to_next_version(staging, model_base), parity
    except OSError as exc:
        raise version_write_error(final, exc) from None


def run_config(model_path: str, experiment: Optional[ExperimentConfig]) -> ExperimentConfig:
    """The config the model was trained with (config.json beside it: the data it really used,
    e.g. a transfer retargeted to a folder), else, only if there is no config.json, ``experiment``
    (the one --exp named): a damaged one must not send the parity check to other data."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), CONFIG_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            return ExperimentConfig.from_dict(json.load(f))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, TypeError, AttributeError) as exc:  # unreadable, not JSON, wrong shape
        reason = getattr(exc, "strerror", None) or first_line(exc, 100)
        raise UserError(f"cannot use {path} ({reason}), the config that says which data the model "
                        "was trained on: train it again to rewrite it") from None
    if experiment is not None:
        return experiment
    raise UserError(f"no {CONFIG_FILE} beside {model_path} to say which data it was trained on: "
                    "pass --exp to check parity on that experiment's data")


def experiment_images(config: ExperimentConfig, data_dir: Optional[str],
                      calibration: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(``calibration`` shuffled training images, test images, test labels) of the experiment's
    source, TFDS or a folder, read and resized as training read them. ``calibration`` 0 reads no
    training images (the shuffle decodes the whole split first)."""
    from lenet_keras import data

    splits = data.load_splits(config, data_dir)
    if splits.test is None:
        raise UserError(f"{config.dataset} has no test split to check parity on")
    batches = list(splits.test.as_numpy_iterator())
    test_images = np.concatenate([images for images, _ in batches])
    test_labels = np.concatenate([labels for _, labels in batches])
    calibration_images: List[np.ndarray] = []
    if calibration == 0:
        return np.zeros((0, *test_images.shape[1:]), np.uint8), test_images, test_labels
    # The training pipeline's seeded shuffle: a folder source lists its images class by class.
    for images, _ in splits.train.as_numpy_iterator():
        calibration_images.extend(images[: calibration - len(calibration_images)])
        if len(calibration_images) >= calibration:
            break
    return np.stack(calibration_images), test_images, test_labels


def export_trained_litert(experiment: Optional[ExperimentConfig], model_dir: str, export_base: str,
                          model_name: Optional[str] = None, version: Optional[int] = None,
                          source_model: Optional[str] = None, quantize: str = "none",
                          data_dir: Optional[str] = None, calibration: int = CALIBRATION_IMAGES,
                          allow_below_floor: bool = False) -> Tuple[str, Parity]:
    """What ``python -m lenet_keras.export --format litert`` does; ``experiment`` is the config
    of the experiment --exp names."""
    if quantize not in litert.QUANTIZATIONS:
        raise UserError(f"--quantize must be one of {', '.join(litert.QUANTIZATIONS)}, "
                        f"got {quantize!r}")
    if calibration <= 0:
        raise UserError(f"--calibration_images must be a positive integer, got {calibration}")
    path, default_name = trained_model_path(experiment and experiment.name, model_dir, source_model)
    model_name = model_name or default_name
    # A taken --version or a bad name fails now, not after reading the data.
    new_version_folder(os.path.join(export_base, litert.LITERT_FOLDER), model_name, version)
    model, class_names = load_trained(path)
    config = run_config(path, experiment)
    calibration_images, test_images, test_labels = experiment_images(
        config, data_dir, calibration if quantize == "int8" else 0)
    return export_litert(model, class_names, export_base, model_name, version, quantize,
                         calibration_images, test_images, test_labels, allow_below_floor)
