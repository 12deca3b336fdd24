"""The serving contract: the two signatures every exported model carries.

``serving_default`` takes ``images``: uint8 [batch, height, width, 3] of any size, resized inside
exactly as the training data was (``data.tail.resize_images``), and returns ``probabilities``
float32 [batch, classes], ``class_ids`` int64 [batch] (the top-1 class) and ``class_names`` string
[batch] (its label name). The full list of label names is kept in the SavedModel as the variable
collection ``class_names``, so a client that loads it can name every class, not only the top one.

``tf_example`` takes ``examples``: string [batch] of serialized ``tf.train.Example`` with the
features ExampleGen ingests from TFDS (``image``: encoded PNG/JPEG bytes; ``label``, if present, is
ignored), and returns the same outputs. Each image is decoded by ``data.tail.decode_image`` and
resized like ``serving_default``'s, so both agree on the same pixels. It is what TFMA (the TFX
Evaluator) calls, and TF Serving's Predict API with tf.Example payloads.
"""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from lenet_keras.data.tail import decode_image, resize_images

SIGNATURE = "serving_default"
INPUT_NAME = "images"
EXAMPLE_SIGNATURE = "tf_example"
EXAMPLE_INPUT_NAME = "examples"
IMAGE_FEATURE = "image"
CLASS_NAMES = "class_names"


def build_archive(model: keras.Model, class_names: Sequence[str], image_size: int):
    """A keras.export.ExportArchive with ``serving_default`` (uint8 images of any size) and
    ``tf_example`` (serialized tf.Examples)."""
    names = tf.Variable(list(class_names), trainable=False, dtype=tf.string, name=CLASS_NAMES)

    def classify(pixels):
        probabilities = model(tf.cast(pixels, model.inputs[0].dtype), training=False)
        class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {
            "probabilities": tf.cast(probabilities, tf.float32),
            "class_ids": class_ids,
            "class_names": tf.gather(names, class_ids),
        }

    def serve(images):
        # TF Serving checks neither the rank nor the channels of a request, so the graph does: a
        # wrong shape fails here naming the expected shape, not deep inside a convolution.
        images = tf.ensure_shape(images, [None, None, None, 3], name="images_must_be_NHW3")
        return classify(resize_images(images, image_size))

    def serve_examples(examples):
        # Only `image` is parsed: a label (as TFMA's test examples carry) is left alone.
        encoded = tf.io.parse_example(
            examples, {IMAGE_FEATURE: tf.io.FixedLenFeature([], tf.string)})[IMAGE_FEATURE]
        # Decoded one by one (sizes may differ within a batch); the resize of one image is the
        # same computation as that image's in a batch of `serve`.
        pixels = tf.map_fn(
            lambda image: resize_images(decode_image(image), image_size), encoded,
            fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8))
        return classify(pixels)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        SIGNATURE, serve,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT_NAME)],
    )
    archive.add_endpoint(
        EXAMPLE_SIGNATURE, serve_examples,
        input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLE_INPUT_NAME)],
    )
    archive.add_variable_collection(CLASS_NAMES, [names])
    return archive
