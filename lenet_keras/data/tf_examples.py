"""TFRecords of tf.Example as a data source: what a TFX ExampleGen hands a Trainer or Tuner.

Each record holds ``image`` (encoded PNG/JPEG bytes) and ``label`` (int64), the features TFDS
writes for CIFAR-100 and STL-10, so ImportExampleGen can ingest prepared TFDS files as they are.
Records are decoded by ``tail.decode_image``, resized by ``tail.resize_images``, cached,
then shuffled and batched by ``tail.batched``: the TFDS source's tail, from other files.
Files ending in ``.gz`` (ExampleGen's output) are read as GZIP, others as plain TFRecords.
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

import tensorflow as tf

from lenet_keras.data import labels
from lenet_keras.data.tail import Splits, as_splits, decode_image, to_pairs
from lenet_keras.errors import UserError, first_line

FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
}
# (files, image size, class count) -> (decoded, cached dataset, example count): once per process,
# as the TFDS source keeps its decoded splits, so a Tuner's trials (each given a fresh pipeline)
# neither count nor decode the files again.
_DECODED: dict = {}


def _files(patterns: Sequence[str], what: str) -> List[str]:
    files = sorted({path for pattern in patterns for path in tf.io.gfile.glob(pattern)})
    if not files:
        raise UserError(f"no {what} files match {list(patterns)}: point the run at ExampleGen's "
                        "output (Split-<name>/*.gz) or at TFRecord files of tf.Example")
    return files


def _records(files: List[str]) -> tf.data.Dataset:
    compressed = {path.endswith(".gz") for path in files}
    if len(compressed) > 1:
        raise UserError(f"{files[0]} and others mix .gz and plain TFRecord files: keep one kind")
    return tf.data.TFRecordDataset(files, compression_type="GZIP" if compressed.pop() else "")


def _count(files: List[str], what: str) -> int:
    try:
        return int(_records(files).reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
    except tf.errors.OpError as exc:
        raise UserError(f"cannot read the {what} TFRecords {files[0]}... ({first_line(exc)})") from None


def _examples(files: List[str], image_size: int, size: int, num_classes: int, name: str,
              split: str) -> tf.data.Dataset:
    convert = to_pairs(image_size)
    check = labels.range_check(num_classes, name, split, os.path.dirname(files[0]))

    def parse(record):
        example = tf.io.parse_single_example(record, FEATURES)
        return check(*convert({"image": decode_image(example["image"]), "label": example["label"]}))

    # A known size, as TFDS's datasets have, so fit knows an epoch's steps from the start.
    return (_records(files).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
            .apply(tf.data.experimental.assert_cardinality(size)).cache())


def _decoded(files: List[str], image_size: int, what: str, num_classes: int,
             name: str) -> Tuple[tf.data.Dataset, int]:
    key = (tuple(files), image_size, num_classes)
    if key not in _DECODED:
        size = _count(files, what)
        if size == 0:
            raise UserError(f"the {what} TFRecords hold no examples: {files}")
        _DECODED[key] = (_examples(files, image_size, size, num_classes, name, what), size)
    return _DECODED[key]


def load_splits(config, train_files: Sequence[str], eval_files: Sequence[str],
                test_files: Optional[Sequence[str]], class_names: Sequence[str]) -> Splits:
    """Batched train/val/test datasets of ``config`` read from files of tf.Example.

    ``eval_files`` is the validation split (it picks the checkpoint); ``test_files``, if given,
    is read only by the final evaluation.
    """
    parts = {"train": _files(train_files, "training"), "val": _files(eval_files, "validation")}
    if test_files:
        parts["test"] = _files(test_files, "test")
    decoded = {name: _decoded(files, config.image_size, name, len(class_names), config.dataset)
               for name, files in parts.items()}
    data = {name: dataset for name, (dataset, _) in decoded.items()}
    sizes = {name: size for name, (_, size) in decoded.items()}
    return as_splits(data["train"], data["val"], data.get("test"),
                     [sizes["train"], sizes["val"], sizes.get("test", 0)], class_names, config)
