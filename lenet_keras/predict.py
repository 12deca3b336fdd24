"""Classify image files with a trained model.

    python -m lenet_keras.predict --model PATH [--top_k 5] [--json] IMAGE...

PATH is a .keras file written by training (class names from the metrics.json beside it) or an
exported SavedModel: a version folder <export_base>/<model_name>/<N>/, or the <model_name> folder
itself (its highest version, as TF Serving would pick). Images are PNG/JPEG of any size; they are
resized exactly as the training data was. A missing or unreadable image gets one error line naming
it after every other image was answered, and the exit status is then 2.
"""

from __future__ import annotations

import json
import sys
from typing import List

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Only when run as a program: importing this module must not clash with other CLIs' flags."""
    flags.DEFINE_string("model", None, "A .keras file or an exported SavedModel folder.")
    flags.DEFINE_integer("top_k", 5, "How many classes to print per image, most probable first.")
    flags.DEFINE_bool("json", False, "Print one JSON document instead of text.")


def read_image(path: str) -> np.ndarray:
    """uint8 [H, W, 3] pixels of a PNG/JPEG (or GIF/BMP) file, or UserError naming the file."""
    import tensorflow as tf

    from lenet_keras.errors import UserError, first_line

    try:
        with open(path, "rb") as f:
            encoded = f.read()
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    except tf.errors.InvalidArgumentError as exc:
        raise UserError(f"{path}: not a PNG/JPEG image ({first_line(exc)})") from None
    return image.numpy()


def top_classes(probabilities: np.ndarray, class_names: List[str], k: int) -> List[dict]:
    """The ``k`` most probable classes of one probability vector, most probable first."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [
        {"class_id": int(i), "class_name": class_names[i], "probability": float(probabilities[i])}
        for i in order
    ]


def predict_files(classifier, paths: List[str], k: int) -> List[dict]:
    """One result per path, in order: {"file", "top_k"} or {"file", "error"}."""
    from lenet_keras.errors import UserError

    results = []
    for path in paths:
        try:
            image = read_image(path)
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


def main(argv):
    from lenet_keras.errors import UserError

    images = argv[1:]
    try:
        if not FLAGS.model:
            raise UserError("pass --model: a .keras file or an exported SavedModel folder")
        if not images:
            raise UserError("pass one or more image files after the flags")
        if FLAGS.top_k <= 0:
            raise UserError(f"--top_k must be a positive integer, got {FLAGS.top_k}")
        from lenet_keras.serving import load_classifier

        classifier = load_classifier(FLAGS.model)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    results = predict_files(classifier, images, FLAGS.top_k)
    print(render(results, FLAGS.json))
    sys.stdout.flush()
    errors = [r["error"] for r in results if "error" in r]
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        sys.exit(2)


if __name__ == "__main__":
    define_flags()
    app.run(main)
