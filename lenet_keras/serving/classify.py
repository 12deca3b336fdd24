"""Classifying image files with a loaded model: what ``python -m lenet_keras.predict`` prints."""

from __future__ import annotations

import json
from typing import List

import numpy as np
import tensorflow as tf

from lenet_keras.data.tail import decode_image
from lenet_keras.errors import UserError, first_line

# What tf.io.decode_image reads in every TensorFlow this package supports (2.16 on); newer ones also
# read WebP, and TensorFlow's own reason, kept in the message, lists what the installed one reads.
IMAGE_FORMATS = "PNG, JPEG, GIF or BMP"


def read_image_file(path: str) -> np.ndarray:
    """uint8 [H, W, 3] pixels of an image file (``IMAGE_FORMATS``), or UserError naming the file."""
    try:
        with open(path, "rb") as f:
            encoded = f.read()
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        return decode_image(encoded).numpy()
    except tf.errors.InvalidArgumentError as exc:
        raise UserError(f"{path}: not an image TensorFlow can decode ({first_line(exc)}): pass a "
                        f"{IMAGE_FORMATS} file") from None


def top_classes(probabilities: np.ndarray, class_names: List[str], k: int) -> List[dict]:
    """The ``k`` most probable classes of one probability vector, most probable first."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [
        {"class_id": int(i), "class_name": class_names[i], "probability": float(probabilities[i])}
        for i in order
    ]


def predict_files(classifier, paths: List[str], k: int) -> List[dict]:
    """One result per path, in order: {"file", "top_k"} or {"file", "error"}."""
    results = []
    for path in paths:
        try:
            image = read_image_file(path)
        except UserError as exc:
            results.append({"file": path, "error": str(exc)})
            continue
        probabilities = classifier.probabilities(image[np.newaxis])[0]
        top = top_classes(probabilities, classifier.class_names, k)
        results.append({"file": path, "top_k": top})
    return results


def render(results: List[dict], as_json: bool) -> str:
    """stdout's text: JSON of every result, or each answered image with its ranked classes."""
    if as_json:
        return json.dumps(results, indent=2)
    lines = []
    for result in results:
        if "error" in result:
            continue
        lines.append(result["file"])
        for rank, c in enumerate(result["top_k"], start=1):
            lines.append(f"  {rank}. {c['probability']:.4f}  {c['class_name']} ({c['class_id']})")
    return "\n".join(lines)
