"""The one tf.data tail every data source ends in, and the image operations they share.

A source (TFDS, a folder of images, TFX's TFRecords of tf.Example) yields (uint8 image, int label)
pairs; ``batched`` shuffles, batches and prefetches them the same way for all. Images are resized
once, before the cache, by ``resize_images``, which serving also uses, so a served image is exactly
what the model saw in training.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence

import tensorflow as tf

SHUFFLE_BUFFER = 50_000  # >= CIFAR-100's 45,000 training images: a full shuffle each epoch


@dataclasses.dataclass
class Splits:
    train: tf.data.Dataset
    val: tf.data.Dataset
    test: Optional[tf.data.Dataset]  # None where the source keeps test apart (a TFX pipeline)
    num_classes: int
    class_names: List[str]
    train_examples: int
    val_examples: int
    test_examples: int


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
    """PNG/JPEG (or GIF/BMP) bytes -> uint8 [H, W, 3]: alpha dropped, grayscale made RGB.

    The one decoder: image folders, TFX's tf.Examples and ``predict`` all read pixels through it.
    """
    return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def resize_images(images: tf.Tensor, image_size: int) -> tf.Tensor:
    """uint8 [..., H, W, C] -> uint8 [..., image_size, image_size, C], antialiased and rounded.

    The one resize of the project: training data and served requests go through it. Images
    already at ``image_size`` pass untouched (decided when tracing if the size is static, else at
    run time).
    """
    height, width = images.shape[-3], images.shape[-2]
    if height == image_size and width == image_size:
        return images

    def resize():
        resized = tf.image.resize(images, (image_size, image_size), antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

    if height is not None and width is not None:
        return resize()
    size = tf.shape(images)[-3:-1]
    same = tf.reduce_all(tf.equal(size, image_size))
    result = tf.cond(same, lambda: tf.identity(images), resize)
    return tf.ensure_shape(result, images.shape[:-3] + (image_size, image_size) + images.shape[-1:])


def to_pairs(image_size: int):
    """A map function: an {"image", "label"} example -> (uint8 [size, size, 3], label)."""

    def convert(example):
        image = example["image"]
        if image.shape[-1] == 1:  # e.g. mnist: the model takes 3 channels
            image = tf.image.grayscale_to_rgb(image)
        return resize_images(image, image_size), example["label"]

    return convert


def batched(train, val, test, config, shuffle_buffer: int):
    """The (train, val, test) datasets' shared tail, for every source: train shuffled with the
    experiment's seed and batched by ``batch_size``, val/test batched by ``eval_batch_size``, all
    prefetched and without autotuning. ``test`` may be None."""
    auto = tf.data.AUTOTUNE
    train = (
        train.shuffle(shuffle_buffer, seed=config.seed, reshuffle_each_iteration=True)
        .batch(config.batch_size)
        .prefetch(auto)
    )
    val, test = (None if ds is None else ds.batch(config.eval_batch_size).prefetch(auto)
                 for ds in (val, test))
    return tuple(None if ds is None else without_autotune(ds) for ds in (train, val, test))


def as_splits(train, val, test, sizes: Sequence[int], class_names: Sequence[str], config) -> Splits:
    """Every source's end: unbatched (image, label) datasets of ``sizes`` (train, val, test) through
    ``batched``, as Splits. ``test`` may be None (size 0)."""
    train, val, test = batched(train, val, test, config, min(SHUFFLE_BUFFER, sizes[0]))
    return Splits(
        train=train,
        val=val,
        test=test,
        num_classes=len(class_names),
        class_names=list(class_names),
        train_examples=sizes[0],
        val_examples=sizes[1],
        test_examples=sizes[2],
    )


def without_autotune(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """``dataset`` with tf.data's model-based autotuning off.

    Autotuning runs a model thread in every iterator, and Keras ``fit`` makes a new iterator each
    epoch: destroying the old one waited for that thread for 1.3-2.9 s in about half the epochs
    measured (benchmarks/ATTEMPTS.md, row 21), ~20 s of a study. After the first pass the data
    come from ``cache()``, so there is nothing left to tune: an AUTOTUNE ``map`` runs one call per
    core and an AUTOTUNE ``prefetch`` still sizes its buffer itself.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)
