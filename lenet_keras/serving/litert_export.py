"""Publishing a LiteRT version: convert, check parity with Keras in the interpreter, then rename.

Every export is checked, not assumed: a conversion can succeed and still compute something else
(a SavedModel whose variables were never initialized converts without error into a model that
agrees with Keras on 0% of images). The check runs the written ``model.tflite`` in the LiteRT
interpreter on the experiment's whole test split, against the Keras model on the same images:

- float32 and float16: top-1 agreement >= 99.9%;
- int8: agreement >= 98%, and test accuracy at most 1.5 points below the Keras model's.

Below a floor nothing is published (one ``error:`` line) unless ``allow_below_floor``. The version
is written into a hidden folder beside the versions and renamed into place, as SavedModels are, so an
interrupted or refused export leaves no version folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

from lenet_keras.config import ExperimentConfig
from lenet_keras.errors import UserError, first_line
from lenet_keras.serving import litert
from lenet_keras.serving.export import (
    load_trained,
    new_version_folder,
    trained_model_path,
    version_write_error,
)
from lenet_keras.training import atomic
from lenet_keras.training.artifacts import CONFIG_FILE

CALIBRATION_IMAGES = 300
# (minimum top-1 agreement with Keras, largest test-accuracy drop in points or None)
FLOORS = {"none": (0.999, None), "float16": (0.999, None), "int8": (0.98, 1.5)}


@dataclasses.dataclass(frozen=True)
class Parity:
    """How a LiteRT model's answers compare with its Keras model's on the same test images."""

    quantize: str
    images: int
    agreement: float  # share of images whose top-1 class is the Keras model's
    keras_accuracy: float
    litert_accuracy: float

    def shortfall(self) -> Optional[str]:
        """What falls below this quantization's floor, or None."""
        min_agreement, max_drop = FLOORS[self.quantize]
        if self.agreement < min_agreement:
            return (f"agrees with the Keras model on {self.agreement:.1%} of {self.images:,} test "
                    f"images, below the {min_agreement:.1%} floor")
        drop = 100 * (self.keras_accuracy - self.litert_accuracy)
        if max_drop is not None and drop > max_drop + 1e-9:  # 1.5 itself is within
            return (f"test accuracy {self.litert_accuracy:.2%} is {drop:.2f} points below the "
                    f"Keras model's {self.keras_accuracy:.2%} (at most {max_drop} allowed)")
        return None

    def summary(self) -> str:
        min_agreement, max_drop = FLOORS[self.quantize]
        accuracy = f"accuracy {self.litert_accuracy:.2%} (Keras {self.keras_accuracy:.2%}"
        accuracy += f", at most {max_drop} points below)" if max_drop is not None else ")"
        return (f"LiteRT {self.quantize}: top-1 agreement with Keras {self.agreement:.2%} "
                f"(floor {min_agreement:.1%}) on {self.images:,} test images; {accuracy}")


def measure_parity(model, runner: litert.LiteRTModel, images: np.ndarray, labels: np.ndarray,
                   quantize: str) -> Parity:
    """``runner`` (the interpreter) against ``model`` (Keras) on uint8 ``images`` with ``labels``."""
    if len(images) == 0:
        raise UserError("the experiment's test split is empty: parity cannot be checked")
    expected = np.asarray(model.predict(images, batch_size=1024, verbose=0)).argmax(axis=1)
    got = runner.probabilities(images).argmax(axis=1)
    return Parity(quantize, len(images), float(np.mean(got == expected)),
                  float(np.mean(expected == labels)), float(np.mean(got == labels)))


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
    flatbuffer = litert.convert(model, quantize, calibration_images)
    try:
        with atomic.new_folder(final, prefix=f".export-{os.path.basename(final)}-") as staging:
            path = os.path.join(staging, litert.MODEL_FILE)
            with open(path, "wb") as f:
                f.write(flatbuffer)
            with open(os.path.join(staging, litert.LABELS_FILE), "w", encoding="utf-8") as f:
                f.write("".join(f"{name}\n" for name in class_names))
            # The written file, in the interpreter a device would run, not the converter's bytes.
            parity = measure_parity(model, litert.LiteRTModel(path), test_images, test_labels,
                                    quantize)
            shortfall = parity.shortfall()
            if shortfall and not allow_below_floor:
                raise UserError(f"not published: the {quantize} LiteRT model {shortfall}; train "
                                "longer, or pass --allow_below_floor to publish it anyway")
            for name in os.listdir(staging):
                atomic.fsync_path(os.path.join(staging, name))
    except OSError as exc:
        raise version_write_error(final, exc) from None
    return final, parity


def run_config(model_path: str, exp: Optional[str]) -> ExperimentConfig:
    """The config the model was trained with (config.json beside it: the data it really used,
    e.g. a transfer retargeted to a folder), else, only if there is no config.json, the named
    experiment's: a damaged one must not send the parity check to other data."""
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
    if exp:
        import experiments

        return experiments.get_config(exp)
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


def export_trained_litert(exp: Optional[str], model_dir: str, export_base: str,
                          model_name: Optional[str] = None, version: Optional[int] = None,
                          source_model: Optional[str] = None, quantize: str = "none",
                          data_dir: Optional[str] = None, calibration: int = CALIBRATION_IMAGES,
                          allow_below_floor: bool = False) -> Tuple[str, Parity]:
    """What ``python -m lenet_keras.export --format litert`` does."""
    if quantize not in litert.QUANTIZATIONS:
        raise UserError(f"--quantize must be one of {', '.join(litert.QUANTIZATIONS)}, "
                        f"got {quantize!r}")
    if calibration <= 0:
        raise UserError(f"--calibration_images must be a positive integer, got {calibration}")
    path, default_name = trained_model_path(exp, model_dir, source_model)
    model_name = model_name or default_name
    # A taken --version or a bad name fails now, not after reading the data.
    new_version_folder(os.path.join(export_base, litert.LITERT_FOLDER), model_name, version)
    model, class_names = load_trained(path)
    config = run_config(path, exp)
    calibration_images, test_images, test_labels = experiment_images(
        config, data_dir, calibration if quantize == "int8" else 0)
    return export_litert(model, class_names, export_base, model_name, version, quantize,
                         calibration_images, test_images, test_labels, allow_below_floor)
