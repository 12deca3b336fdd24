"""LiteRT (TensorFlow Lite) export: a ``.tflite`` classifier for phones and microcontrollers.

``<export_base>/litert/<model_name>/<version>/`` holds ``model.tflite`` and ``labels.txt`` (one class
name a line, in class-id order). The model takes uint8 [1, size, size, 3] raw pixels and returns
float32 [1, classes] probabilities; scaling happens inside, as in the SavedModel. The SavedModel
signature's any-size antialiased resize and its string class-name lookup are not LiteRT builtin
ops, so resizing is the caller's (``predict`` uses ``data.tail.resize_images``, as training did)
and the names are in ``labels.txt``.

The conversion is the route Keras's own ``Model.export(format="litert")`` takes (ExportArchive ->
SavedModel -> ``TFLiteConverter.from_saved_model``), written out here because that method only
exists from Keras 3.13 (this package supports 3.12, the TFX environment's), it forces
SELECT_TF_OPS, which full-integer int8 must not have, and its endpoint is the model's own
``__call__``, while int8 needs a float-input endpoint (``_float_input_twin``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from lenet_keras import models
from lenet_keras.errors import UserError, first_line
from lenet_keras.serving.batch_norm_fold import checked_fold
from lenet_keras.serving.choices import QUANTIZATIONS
from lenet_keras.serving.signature import INPUT_NAME, SIGNATURE

MODEL_FILE = "model.tflite"
LABELS_FILE = "labels.txt"
LITERT_FOLDER = "litert"  # under --export_base, beside TF Serving's model folders


def _float_input_twin(model: keras.Model) -> keras.Model:
    """``model``'s layers (shared weights) behind a float32 input taking pixel values 0-255.

    The converter quantizes a float input to the requested uint8 from its calibrated range; the
    model's own uint8 input would instead stay a float CAST in front of a QUANTIZE. LeNet-5 and
    its transfer variant are chains of single-input layers, which this relies on (parity checks it).
    """
    inputs = keras.Input(model.inputs[0].shape[1:], dtype="float32", name=INPUT_NAME)
    x = inputs
    for layer in model.layers[1:]:
        x = layer(x)
    return keras.Model(inputs, x, name=f"{model.name}_float_input")


def _write_conversion_saved_model(model: keras.Model, folder: str, int8: bool) -> None:
    size = models.image_size_of(model)
    served = _float_input_twin(model) if int8 else model
    dtype = tf.float32 if int8 else tf.uint8

    def serve(images):
        return {"probabilities": tf.cast(served(images, training=False), tf.float32)}

    archive = keras.export.ExportArchive()
    archive.track(served)
    # Batch 1 and a fixed size: what a device runs, and no dynamic shapes for the converter.
    archive.add_endpoint(SIGNATURE, serve,
                         input_signature=[tf.TensorSpec([1, size, size, 3], dtype, INPUT_NAME)])
    archive.write_out(folder, verbose=False)


def pin_input_range(images: np.ndarray) -> np.ndarray:
    """A copy of ``images`` whose first image holds one 0 and one 255 value, so the calibrated input
    range is exactly 0-255: the uint8 input's scale is then 1 and its zero point 0, i.e. raw pixels.
    Two pixels of one image change no other tensor's range measurably."""
    images = np.array(images, dtype=np.uint8, copy=True)
    images[0, 0, 0, 0], images[0, 0, 0, 1] = 0, 255
    return images


def calibrate_int8(converter, calibration_images: np.ndarray) -> None:
    """Sets ``converter`` (of ``_write_conversion_saved_model``'s int8 SavedModel) to full-integer
    int8, calibrated on uint8 ``calibration_images`` whose range is pinned to 0-255."""
    pinned = pin_input_range(calibration_images).astype(np.float32)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image[np.newaxis]] for image in pinned)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]


def convert(model: keras.Model, quantize: str = "none",
            calibration_images: Optional[np.ndarray] = None) -> Tuple[bytes, str]:
    """(the ``.tflite`` flatbuffer of ``model``, a line on what was done to it first): float32,
    float16 weights, or full-integer int8 calibrated on ``calibration_images`` (uint8
    [n, size, size, 3]) with a quantized uint8 input. For int8, a BatchNormalization after a ReLU'd
    layer is first folded back into that layer where that computes the same (``batch_norm_fold``);
    the line says whether it was."""
    if quantize not in QUANTIZATIONS:
        raise UserError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}")
    # Converted in float32 whatever policy it trained under: LiteRT's float16 is a weight format.
    model = models.with_precision(model, "float32")
    int8 = quantize == "int8"
    note = ""
    if int8:
        if calibration_images is None or len(calibration_images) == 0:
            raise UserError("int8 quantization needs calibration images from the training "
                            "split: check the experiment's data (--data_dir)")
        model, note = checked_fold(model, calibration_images)
    with tempfile.TemporaryDirectory(prefix="litert-") as folder:
        _write_conversion_saved_model(model, folder, int8)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        if quantize == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif int8:
            calibrate_int8(converter, calibration_images)
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.float32  # probabilities, as the contract says
        return converter.convert(), note


def interpreter_class():
    """LiteRT's interpreter (the ai-edge-litert package), else TensorFlow's deprecated one.

    Imported after TensorFlow, as every command does: the order LiteRT#8272 ("InterpreterWrapper
    already registered") is about, tested by tests/test_litert.py in a fresh process.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return tf.lite.Interpreter
    return Interpreter


class LiteRTModel:
    """A ``.tflite`` classifier of this package's contract, run by the LiteRT interpreter."""

    def __init__(self, path: str, default_delegate: bool = True):
        """``default_delegate=False`` runs LiteRT's own kernels without the XNNPACK delegate the
        interpreter applies by default (benchmarks/litert_latency.py times both)."""
        cls = interpreter_class()
        options = {}
        if not default_delegate:
            resolvers = sys.modules[cls.__module__].OpResolverType
            options["experimental_op_resolver_type"] = resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self.interpreter = cls(model_path=path, **options)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise UserError(f"cannot load the LiteRT model {path} ({first_line(exc)}): pass a "
                            "model.tflite written by python -m lenet_keras.export") from None
        (self.input_details,) = self.interpreter.get_input_details()
        (self.output_details,) = self.interpreter.get_output_details()
        shape = tuple(self.input_details["shape"])
        if (len(shape) != 4 or shape[0] != 1 or shape[3] != 3 or shape[1] != shape[2]
                or self.input_details["dtype"] != np.uint8):
            raise UserError(f"{path} takes {self.input_details['dtype'].__name__} {list(shape)}, "
                            "not uint8 [1, size, size, 3]: it was not written by lenet_keras.export")
        self.image_size = int(shape[1])
        scale, zero_point = self.input_details["quantization"]
        if scale and (scale, zero_point) != (1.0, 0):
            raise UserError(f"{path}'s uint8 input is quantized with scale {scale} and zero point "
                            f"{zero_point}, not raw pixels: export it again")
        self.num_classes = int(self.output_details["shape"][-1])

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """uint8 [n, size, size, 3] -> float32 [n, classes], one invocation per image."""
        out = np.empty((len(images), self.num_classes), np.float32)
        for i, image in enumerate(images):
            self.interpreter.set_tensor(self.input_details["index"], image[np.newaxis])
            self.interpreter.invoke()
            out[i] = self.interpreter.get_tensor(self.output_details["index"])[0]
        return out


def read_labels(model_path: str, num_classes: int) -> List[str]:
    """The class names of ``labels.txt`` beside a ``.tflite`` file, in class-id order."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), LABELS_FILE)
    try:
        # Only "\n" ends a line, as export writes it (newline="" keeps a "\r" as it is):
        # splitlines() would also break a name at \x85, \x0c or U+2028 and shift every later
        # label by one.
        with open(path, encoding="utf-8", newline="") as f:
            names = f.read().split("\n")
    except OSError as exc:
        raise UserError(f"cannot read {path} ({exc.strerror}), the class names export writes "
                        f"beside {os.path.basename(model_path)}: export the model again") from None
    if names[-1] == "":  # the last name's own newline
        names.pop()
    if len(names) != num_classes:
        raise UserError(f"{path} lists {len(names)} class names but the model has {num_classes} "
                        "outputs: the two files come from different exports")
    return names
