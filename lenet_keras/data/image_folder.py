"""A folder of your own images as train/val/test splits: one sub-folder per class, PNG or JPEG.

Which files are whose images is decided by ``folder_layout.scan`` (the rules are there and in
docs/data.md). Every image is then decoded once, up front, so that an unreadable file is named and
skipped before training rather than killing an epoch, and it goes through ``tail.resize_images``
exactly as TFDS images do (grayscale becomes 3 channels, any size becomes ``image_size`` square).
The decoded images are held in memory (3 KB each at 32x32): this is for your own thousands of
pictures, not for ImageNet.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Dict, List, Tuple

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from lenet_keras.data.folder_layout import IMAGE_EXTENSIONS, Layout, scan, shown
from lenet_keras.data.tail import Splits, as_splits, decode_image, resize_images
from lenet_keras.errors import UserError, first_line

# The val/test split of a folder must not move when --seed changes: comparing seeds should compare
# them on the same test images.
SPLIT_SEED = 20240601
MIN_IMAGES_TO_SPLIT = 3  # one each for train, val and test
PROGRESS_FROM = 300  # images; fewer decode in about a second, and a bar would only flicker
PROGRESS_BATCH = 64  # images decoded between progress updates
LOG_EVERY_S = 10.0  # seconds between count lines when stdout is not a terminal


def _decode(path, image_size: int) -> tf.Tensor:
    return resize_images(decode_image(tf.io.read_file(path)), image_size)


def _as_tensor_paths(paths: List[str]) -> List[bytes]:
    # A name that is not UTF-8 is a str with lone surrogates in Python, which a TF string tensor
    # refuses; the file system's own bytes name the same file and TF takes them as they are.
    return [os.fsencode(path) for path in paths]


def read_resized_image(path: str, image_size: int) -> np.ndarray:
    """A PNG/JPEG file as uint8 [image_size, image_size, 3]; tf.errors.OpError if unreadable."""
    return _decode(os.fsencode(path), image_size).numpy()


class _Progress:
    """Decoding progress for ``total`` images: a Keras Progbar on a terminal, a count line every
    ``LOG_EVERY_S`` seconds in a log, nothing for fewer than ``PROGRESS_FROM`` images."""

    def __init__(self, total: int):
        self.total = total
        self.shown = total >= PROGRESS_FROM
        # Keras's Progbar counts every POSIX system as a terminal (it writes \r and colour codes
        # into a log file too), so it is used only where stdout is one: the rule of
        # cli.keras_verbosity, which picks fit's progress display the same way.
        self.bar = keras.utils.Progbar(total, unit_name="image") if (
            self.shown and sys.stdout.isatty()) else None
        self.logged_at = time.monotonic()
        self.done = 0
        if self.shown and self.bar is None:
            logging.info("decoding %d images", total)

    def update(self, done: int) -> None:
        if done <= self.done:  # the bar would print its last line twice
            return
        self.done = done
        if self.bar is not None:
            self.bar.update(done)
        elif self.shown and (done >= self.total or time.monotonic() - self.logged_at >= LOG_EVERY_S):
            logging.info("decoded %d of %d images", done, self.total)
            self.logged_at = time.monotonic()


def read_images(paths: List[str], image_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Every readable file of ``paths`` decoded (in parallel), and the index in ``paths`` of each.

    An unreadable file is skipped with a warning naming it: tf.data drops the failed element, and
    the indices that did not come back say which files those were. Decoding many shows progress.
    """
    indexed = tf.data.Dataset.from_tensor_slices(
        (tf.range(len(paths)), tf.constant(_as_tensor_paths(paths), tf.string)))
    decoded = (
        indexed.map(lambda i, path: (i, _decode(path, image_size)),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .ignore_errors()
        .batch(PROGRESS_BATCH)
    )
    indices = [np.zeros([0], np.int32)]
    images = [np.zeros([0, image_size, image_size, 3], np.uint8)]
    progress = _Progress(len(paths))
    for index, batch in decoded.as_numpy_iterator():
        indices.append(index)
        images.append(batch)
        progress.update(int(index[-1]) + 1)  # in order: every earlier file is done too
    progress.update(len(paths))
    indices = np.concatenate(indices)
    for missing in sorted(set(range(len(paths))) - set(indices.tolist())):
        try:  # once more, eagerly, only to learn why
            read_resized_image(paths[missing], image_size)
            reason = "unreadable"
        except tf.errors.OpError as exc:
            reason = first_line(exc)
        logging.warning("skipping unreadable image %s (%s)", shown(paths[missing]), reason)
    return np.concatenate(images), indices


def _decode_layout(layout: Layout, image_size: int) -> Dict[str, Dict[int, np.ndarray]]:
    """split -> class index -> uint8 images; raises UserError if a class has none readable."""
    groups = [(split, index) for split, per_class in layout.files.items() for index in per_class]
    paths = [path for split, index in groups for path in layout.files[split][index]]
    group_of_path = np.repeat(
        np.arange(len(groups)), [len(layout.files[split][index]) for split, index in groups]
    )
    images, read = read_images(paths, image_size)
    group_of_image = group_of_path[read]
    decoded = {split: {} for split in layout.files}
    for group, (split, index) in enumerate(groups):
        mine = group_of_image == group
        if not mine.any():
            class_paths = layout.files[split][index]
            raise UserError(
                f"none of the {len(class_paths)} images in {shown(os.path.dirname(class_paths[0]))} "
                "could be read (see the warnings above): replace them with PNG/JPEG files or "
                "remove the class folder"
            )
        decoded[split][index] = images[mine]
    return decoded


def _stratified_split(
    images: Dict[int, np.ndarray], val_fraction: float, test_fraction: float, class_names: List[str]
) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """The same fractions of every class go to val and test, at least one image each."""
    rng = np.random.default_rng(SPLIT_SEED)
    parts = {split: ([], []) for split in ("train", "val", "test")}
    for index in sorted(images):
        class_images = images[index]
        n = len(class_images)
        n_val = max(1, int(n * val_fraction + 0.5))
        n_test = max(1, int(n * test_fraction + 0.5))
        if n - n_val - n_test < 1:
            raise UserError(
                f"class {class_names[index]!r} has {n} readable images, too few to split into "
                f"train, val and test: give it at least {MIN_IMAGES_TO_SPLIT} (more is better), or "
                "give train/ val/ test/ sub-folders yourself"
            )
        order = rng.permutation(n)
        bounds = {"test": order[:n_test], "val": order[n_test:n_test + n_val],
                  "train": order[n_test + n_val:]}
        for split, chosen in bounds.items():
            parts[split][0].append(class_images[np.sort(chosen)])
            parts[split][1].append(np.full(len(chosen), index, dtype=np.int64))
    return {split: (np.concatenate(x), np.concatenate(y)) for split, (x, y) in parts.items()}


def _stack(images: Dict[int, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    order = sorted(images)
    labels = [np.full(len(images[i]), i, dtype=np.int64) for i in order]
    return np.concatenate([images[i] for i in order]), np.concatenate(labels)


def _warn_about(layout: Layout) -> None:
    if layout.ignored:
        logging.warning("ignored %d files that are not %s, such as %s", len(layout.ignored),
                        "/".join(IMAGE_EXTENSIONS), shown(layout.ignored[0]))
    for skipped in layout.skipped:
        logging.warning("skipping %s", skipped)


def load_arrays(config) -> Tuple[Dict[str, Tuple[np.ndarray, np.ndarray]], List[str]]:
    """{"train"|"val"|"test": (uint8 images, int64 labels)} and the class names, for ``config``."""
    layout = scan(config.image_dir)
    _warn_about(layout)
    decoded = _decode_layout(layout, config.image_size)
    if layout.split_given:
        arrays = {split: _stack(per_class) for split, per_class in decoded.items()}
    else:
        arrays = _stratified_split(
            decoded["all"], config.val_fraction, config.test_fraction, layout.class_names
        )
    return arrays, layout.class_names


def load_splits(config) -> Splits:
    """The folder ``config.image_dir`` as ``Splits``, batched as every source is."""
    arrays, class_names = load_arrays(config)

    def dataset(split):
        return tf.data.Dataset.from_tensor_slices(arrays[split])

    sizes = {split: len(labels) for split, (_, labels) in arrays.items()}
    logging.info("%s: %d classes, %d train / %d val / %d test images", config.image_dir,
                 len(class_names), sizes["train"], sizes["val"], sizes["test"])
    return as_splits(dataset("train"), dataset("val"), dataset("test"),
                     [sizes["train"], sizes["val"], sizes["test"]], class_names, config)
