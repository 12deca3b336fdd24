"""The serving contract: the ``serving_default`` signature every exported model carries.

It takes ``images``: uint8 [batch, height, width, 3] of any size, resized inside exactly as the
training data was (``data.tail.resize_images``), and returns ``probabilities`` float32
[batch, classes], ``class_ids`` int64 [batch] (the top-1 class) and ``class_names`` string [batch]
(its label name). The full list of label names is kept in the SavedModel as the variable
collection ``class_names``, so a client that loads it can name every class, not only the top one.
"""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from lenet_keras.data.tail import resize_images

SIGNATURE = "serving_default"
INPUT_NAME = "images"
CLASS_NAMES = "class_names"


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
