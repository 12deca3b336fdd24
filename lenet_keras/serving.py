"""The serving contract shared by export and predict: loading a trained classifier, the
``serving_default`` signature, and TF Serving's ``<model_name>/<version>/`` layout.

The signature takes ``images``: uint8 [batch, height, width, 3] of any size, resized inside
exactly as the training data was (lenet_keras.data.resize_images), and returns ``probabilities``
float32 [batch, classes], ``class_ids`` int64 [batch] (the top-1 class) and ``class_names`` string
[batch] (its label name). The full list of label names is kept in the SavedModel as the variable
collection ``class_names``, so a client that loads it can name every class, not only the top one.
"""

from __future__ import annotations

import json
import os
from typing import Callable, List, NamedTuple, Sequence

import keras
import numpy as np
import tensorflow as tf

from lenet_keras.data import resize_images
from lenet_keras.errors import UserError, first_line
from lenet_keras.layout import METRICS_FILE

SIGNATURE = "serving_default"
INPUT_NAME = "images"
CLASS_NAMES = "class_names"


class Classifier(NamedTuple):
    """Something that maps one batch of uint8 [n, H, W, 3] images to probabilities [n, classes]."""

    probabilities: Callable[[np.ndarray], np.ndarray]
    class_names: List[str]


def load_keras_classifier(path: str):
    """(model, class_names, image_size) of a trained .keras classifier, or UserError why not."""
    if not os.path.isfile(path):
        raise UserError(f"no trained model at {path}: train it first "
                        "(python -m lenet_keras.train --exp ...) or pass another path")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a file that is not a model
        raise UserError(f"{path} is not a loadable Keras model ({first_line(exc)})") from None
    if not isinstance(model, keras.Model) or len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UserError(f"{path} is not a single-input, single-output Keras model")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[3] != 3 or shape[1] is None or shape[1] != shape[2]:
        raise UserError(f"{path} takes inputs of shape {shape}; serving needs a classifier of "
                        "square RGB images, shape (None, size, size, 3)")
    num_classes = int(model.outputs[0].shape[-1])
    return model, read_class_names(path, num_classes), int(shape[1])


def read_class_names(model_path: str, num_classes: int) -> List[str]:
    """Label names from the metrics.json that training wrote beside ``model_path``."""
    metrics_path = os.path.join(os.path.dirname(os.path.abspath(model_path)), METRICS_FILE)
    try:
        with open(metrics_path) as f:
            names = json.load(f)["class_names"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(
            f"cannot read class_names from {metrics_path}, which training writes beside "
            f"{os.path.basename(model_path)}: use a model that lenet_keras.train produced"
        ) from None
    if len(names) != num_classes:
        raise UserError(f"{metrics_path} lists {len(names)} class names but the model has "
                        f"{num_classes} outputs: the two files come from different runs")
    return [str(n) for n in names]


def build_archive(model: keras.Model, class_names: Sequence[str], image_size: int):
    """A keras.export.ExportArchive whose ``serving_default`` takes uint8 images of any size."""
    names = tf.Variable(list(class_names), trainable=False, dtype=tf.string, name=CLASS_NAMES)

    def serve(images):
        # TF Serving checks neither the rank nor the channels of a request, so the graph does: a
        # wrong shape fails here naming the expected shape, not deep inside a convolution.
        images = tf.ensure_shape(images, [None, None, None, 3], name="images_must_be_NHW3")
        pixels = resize_images(images, image_size)
        probabilities = model(tf.cast(pixels, model.inputs[0].dtype), training=False)
        class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {
            "probabilities": tf.cast(probabilities, tf.float32),
            "class_ids": class_ids,
            "class_names": tf.gather(names, class_ids),
        }

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        SIGNATURE, serve,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT_NAME)],
    )
    archive.add_variable_collection(CLASS_NAMES, [names])
    return archive


def existing_versions(model_base: str) -> List[int]:
    """The integer-named version folders TF Serving would see under ``model_base``."""
    try:
        entries = os.listdir(model_base)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(int(e) for e in entries
                  if e.isdigit() and os.path.isdir(os.path.join(model_base, e)))


def load_saved_model(path: str) -> Classifier:
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
    except Exception as exc:  # a damaged SavedModel surfaces as many TF error types
        raise UserError(f"cannot load the SavedModel in {path} ({first_line(exc)})") from None
    if CLASS_NAMES not in signature.structured_outputs or not hasattr(loaded, CLASS_NAMES):
        raise UserError(f"{path} was not written by python -m lenet_keras.export "
                        f"(its {SIGNATURE} has no class_names): export the model again")
    names = [n.decode() for n in getattr(loaded, CLASS_NAMES)[0].numpy()]

    def probabilities(images: np.ndarray) -> np.ndarray:
        # Through `loaded`, not a bare signature: the loaded object owns the variables.
        outputs = loaded.signatures[SIGNATURE](**{INPUT_NAME: tf.constant(images)})
        return outputs["probabilities"].numpy()

    return Classifier(probabilities, names)


def load_classifier(path: str) -> Classifier:
    """A .keras file or an exported SavedModel folder, as one Classifier."""
    if os.path.isdir(path):
        return load_saved_model(path)
    model, names, image_size = load_keras_classifier(path)

    def probabilities(images: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(resize_images(tf.constant(images), image_size)))

    return Classifier(probabilities, names)
