"""Classify image files with a trained model.

    python -m lenet_keras.predict --model PATH [--top_k 5] [--json] IMAGE...

PATH is a .keras file written by training (class names from the metrics.json beside it), an
exported SavedModel: a version folder <export_base>/<model_name>/<N>/, or the <model_name> folder
itself (its highest version, as TF Serving would pick), or an exported LiteRT model.tflite (class
names from the labels.txt beside it; run by the LiteRT interpreter). Images are PNG, JPEG, GIF or
BMP files of any size (WebP too where TensorFlow decodes it); they are resized exactly as the
training data was. A missing or unreadable image gets one
error line naming it after every other image was answered, and the exit status is then 2. See
docs/serving.md.

Which LiteRT model: int8 is the smallest (a third of float32's file) and the one for ARM phones'
integer kernels and microcontrollers. On an x86 server the faster one depends on the CPU: measured,
int8 on one with AVX-512 VNNI (13.5 against 20.5 µs per image), float32 on one with AVX2 only (31
against 94 µs); benchmarks/litert_latency.py measures yours.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, so Ctrl-C while the command imports is one line too
    from lenet_keras import startup

    startup.exit_on_interrupt()

import sys
from typing import List

from absl import flags

from lenet_keras import cli
from lenet_keras.errors import UserError

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None,
                    "A .keras file, an exported SavedModel folder or an exported .tflite file.")
flags.DEFINE_integer("top_k", 5, "How many classes to print per image, most probable first.",
                     **cli.COUNT_BOUNDS)
flags.DEFINE_bool("json", False, "Print one JSON document instead of text.")
cli.path_flags("model")  # and the images, its positional arguments


def main(images: List[str]) -> None:
    if not FLAGS.model:
        raise UserError("pass --model: a .keras file, an exported SavedModel folder or a .tflite file")
    if not images:
        raise UserError("pass one or more image files after the flags")
    from lenet_keras.serving.classify import predict_files, render
    from lenet_keras.serving.load import load_predictor

    results = predict_files(load_predictor(FLAGS.model), images, FLAGS.top_k)
    print(render(results, FLAGS.json))
    sys.stdout.flush()
    errors = [r["error"] for r in results if "error" in r]
    # Every image was answered; each file that was not gets its line, the last one as the exit.
    for error in errors[:-1]:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        raise UserError(errors[-1])


if __name__ == "__main__":
    cli.run(main, positional=True)
