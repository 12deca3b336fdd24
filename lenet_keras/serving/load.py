"""Loading a model to classify with: a ``.keras`` file from training, an exported SavedModel, or an
exported LiteRT ``.tflite`` file."""

from __future__ import annotations

import os
from typing import Callable, List, NamedTuple

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError

from lenet_keras.data.tail import resize_images
from lenet_keras.errors import UserError, first_line
from lenet_keras.models import image_size_of
from lenet_keras.serving import litert
from lenet_keras.serving.export import existing_versions, load_trained
from lenet_keras.serving.signature import CLASS_NAMES, INPUT_NAME, SIGNATURE


class Predictor(NamedTuple):
    """Something that maps one batch of uint8 [n, H, W, 3] images to probabilities [n, classes]."""

    probabilities: Callable[[np.ndarray], np.ndarray]
    class_names: List[str]


def load_saved_model(path: str) -> Predictor:
    """An exported version folder, or a <model_name> folder (its highest version, as TF Serving)."""
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        versions = existing_versions(path)
        if not versions:
            raise UserError(f"{path} holds no saved_model.pb and no version folders: pass a "
                            "version folder written by python -m lenet_keras.export")
        path = os.path.join(path, str(versions[-1]))
    try:
        loaded = tf.saved_model.load(path)
        signature = loaded.signatures[SIGNATURE]
    except (tf.errors.OpError, OSError, ValueError, KeyError, DecodeError) as exc:
        raise UserError(f"cannot load the SavedModel in {path} ({first_line(exc)})") from None
    if CLASS_NAMES not in signature.structured_outputs or not hasattr(loaded, CLASS_NAMES):
        raise UserError(f"{path} was not written by python -m lenet_keras.export "
                        f"(its {SIGNATURE} has no class_names): export the model again")
    names = [n.decode() for n in getattr(loaded, CLASS_NAMES)[0].numpy()]

    def probabilities(images: np.ndarray) -> np.ndarray:
        # Through `loaded`, not a bare signature: the loaded object owns the variables.
        outputs = loaded.signatures[SIGNATURE](**{INPUT_NAME: tf.constant(images)})
        return outputs["probabilities"].numpy()

    return Predictor(probabilities, names)


def load_litert(path: str) -> Predictor:
    """An exported ``model.tflite`` (class names from the labels.txt beside it), run by the LiteRT
    interpreter one image at a time after the resize training used."""
    if not os.path.isfile(path):
        raise UserError(f"no LiteRT model at {path}: pass a model.tflite written by "
                        "python -m lenet_keras.export --format litert")
    model = litert.LiteRTModel(path)
    names = litert.read_labels(path, model.num_classes)

    def probabilities(images: np.ndarray) -> np.ndarray:
        return model.probabilities(resize_images(tf.constant(images), model.image_size).numpy())

    return Predictor(probabilities, names)


def load_predictor(path: str) -> Predictor:
    """A .keras file, an exported SavedModel folder or a .tflite file, as one Predictor."""
    if os.path.isdir(path):
        return load_saved_model(path)
    if path.endswith(".tflite"):
        return load_litert(path)
    model, names = load_trained(path)
    image_size = image_size_of(model)

    def probabilities(images: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(resize_images(tf.constant(images), image_size)))

    return Predictor(probabilities, names)
