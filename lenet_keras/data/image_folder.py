"""A folder of your own images as train/val/test splits: one sub-folder per class, PNG or JPEG.

    photos/cat/001.jpg  photos/dog/a.png ...         -> stratified val/test split of each class
    photos/train/cat/...  photos/val/cat/...  photos/test/cat/...   -> these three used as given

The layout is the one ``keras.utils.image_dataset_from_directory`` reads; class names are the
sorted sub-folder names. Every image is decoded once, up front, so that an unreadable file is
named and skipped before training rather than killing an epoch, and it goes through
``tail.resize_images`` exactly as TFDS images do (grayscale becomes 3 channels, any size becomes
``image_size`` square). The decoded images are held in memory (3 KB each at 32x32): this is for
your own thousands of pictures, not for ImageNet.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from lenet_keras.data.tail import Splits, as_splits, decode_image, resize_images
from lenet_keras.errors import UserError, first_line

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
# The sub-folders that mean "splits given"; the first name of each is the one we ask for.
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}
# The val/test split of a folder must not move when --seed changes: comparing seeds should compare
# them on the same test images.
SPLIT_SEED = 20240601
MIN_IMAGES_TO_SPLIT = 3  # one each for train, val and test


@dataclasses.dataclass
class Layout:
    """Where each class's image files are, per split; ``split_given`` says which layout it was."""

    class_names: List[str]
    split_given: bool
    # split ("all" when not given, else train/val/test) -> class index -> sorted image paths
    files: Dict[str, Dict[int, List[str]]]
    ignored: List[str]  # files in class folders that are not PNG/JPEG by their name


def _sub_folders(path: str) -> List[str]:
    return sorted(
        name for name in os.listdir(path)
        if not name.startswith(".") and os.path.isdir(os.path.join(path, name))
    )


def _image_files(folder: str) -> Tuple[List[str], List[str]]:
    """Image paths under ``folder`` (recursively, sorted), and the other files' paths."""
    images, ignored = [], []
    for parent, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = os.path.join(parent, name)
            (images if name.lower().endswith(IMAGE_EXTENSIONS) else ignored).append(path)
    return images, ignored


def _class_files(root: str, class_names: List[str], ignored: List[str]) -> Dict[int, List[str]]:
    files = {}
    for index, name in enumerate(class_names):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            continue
        files[index], others = _image_files(folder)
        ignored += others
        if not files[index]:
            raise UserError(
                f"class folder {folder} has no PNG/JPEG images: add some or remove the folder"
            )
    return files


def _require_classes(class_names: List[str], folder: str) -> None:
    if not class_names:
        raise UserError(
            f"{folder} has no class sub-folders: put each class's images in {folder}/<class name>/"
        )
    if len(class_names) < 2:
        raise UserError(
            f"{folder} has one class folder only ({class_names[0]!r}): a classifier needs at least "
            "2, so add a sub-folder of images for each other class"
        )


def scan(root: str) -> Layout:
    """Checks the folder's structure (no decoding) and lists its image files; raises UserError."""
    if not os.path.isdir(root):
        raise UserError(f"{root} is not a folder: pass a folder of <class>/<image> files")
    top = _sub_folders(root)
    given = {
        split: next((name for name in names if name in top), None)
        for split, names in SPLIT_FOLDERS.items()
    }
    ignored = []
    if given["train"] is None:
        class_names = top
        _require_classes(class_names, root)
        files = {"all": _class_files(root, class_names, ignored)}
        return Layout(class_names, False, files, ignored)

    missing = [names[0] for split, names in SPLIT_FOLDERS.items() if given[split] is None]
    if missing:
        raise UserError(
            f"{root} has a train/ folder but no {' or '.join(m + '/' for m in missing)}: give "
            "all of train/, val/ and test/, or none of them to split val and test off automatically"
        )
    train_dir = os.path.join(root, given["train"])
    class_names = _sub_folders(train_dir)
    _require_classes(class_names, train_dir)
    files = {"train": _class_files(train_dir, class_names, ignored)}
    for split in ("val", "test"):
        split_dir = os.path.join(root, given[split])
        unknown = sorted(set(_sub_folders(split_dir)) - set(class_names))
        if unknown:
            raise UserError(
                f"{split_dir} has class folders {unknown} that {train_dir} does not: every class "
                "must have training images"
            )
        files[split] = _class_files(split_dir, class_names, ignored)
        if not files[split]:
            raise UserError(f"{split_dir} has no class folders with images: add some to it")
    return Layout(class_names, True, files, ignored)


def _decode(path, image_size: int) -> tf.Tensor:
    return resize_images(decode_image(tf.io.read_file(path)), image_size)


def read_resized_image(path: str, image_size: int) -> np.ndarray:
    """A PNG/JPEG file as uint8 [image_size, image_size, 3]; tf.errors.OpError if unreadable."""
    return _decode(path, image_size).numpy()


def _reason(exc: tf.errors.OpError) -> str:
    """TF's error message without the op-location prefix and suffix nobody needs to read."""
    text = re.sub(r"\{\{.*?\}\}\s*", "", exc.message or "")
    return first_line(Exception(re.sub(r"\s*\[Op:.*$", "", text, flags=re.S)))


def read_images(paths: List[str], image_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Every readable file of ``paths`` decoded (in parallel), and the index in ``paths`` of each.

    An unreadable file is skipped with a warning naming it: tf.data drops the failed element, and
    the indices that did not come back say which files those were.
    """
    indexed = tf.data.Dataset.from_tensor_slices((tf.range(len(paths)), tf.constant(paths)))
    decoded = (
        indexed.map(lambda i, path: (i, _decode(path, image_size)),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .ignore_errors()
        .batch(1024)
    )
    indices = [np.zeros([0], np.int32)]
    images = [np.zeros([0, image_size, image_size, 3], np.uint8)]
    for index, batch in decoded.as_numpy_iterator():
        indices.append(index)
        images.append(batch)
    indices = np.concatenate(indices)
    for missing in sorted(set(range(len(paths))) - set(indices.tolist())):
        try:  # once more, eagerly, only to learn why
            read_resized_image(paths[missing], image_size)
            reason = "unreadable"
        except tf.errors.OpError as exc:
            reason = _reason(exc)
        logging.warning("skipping unreadable image %s (%s)", paths[missing], reason)
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
                f"none of the {len(class_paths)} images in {os.path.dirname(class_paths[0])} "
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


def load_arrays(config) -> Tuple[Dict[str, Tuple[np.ndarray, np.ndarray]], List[str]]:
    """{"train"|"val"|"test": (uint8 images, int64 labels)} and the class names, for ``config``."""
    layout = scan(config.image_dir)
    if layout.ignored:
        logging.warning("ignored %d files that are not %s, such as %s", len(layout.ignored),
                        "/".join(IMAGE_EXTENSIONS), layout.ignored[0])
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
