"""TFDS -> tf.data: train/validation/test pipelines of (uint8 image, int label) batches.

Validation is a slice of the official train split (``train[90%:]`` by default) so the test split is
only read by the final evaluation. Images are resized to the experiment's size (antialiased) once,
before ``cache()``, so the resize never runs again in later epochs; scaling happens in the model.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.error
import urllib.request
from typing import List, Optional

import tensorflow as tf
import tensorflow_datasets as tfds

from lenet_keras.errors import UserError, first_line

PROBE_TIMEOUT_S = 10
SHUFFLE_BUFFER = 50_000  # >= CIFAR-100's 45,000 training images: a full shuffle each epoch


@dataclasses.dataclass
class Splits:
    train: tf.data.Dataset
    val: tf.data.Dataset
    test: tf.data.Dataset
    num_classes: int
    class_names: List[str]
    train_examples: int
    val_examples: int
    test_examples: int


def default_data_dir(data_dir: Optional[str]) -> str:
    return os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")


def _builder(name: str, data_dir: str):
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise UserError(f"unknown TFDS dataset {name!r}: see tfds.list_builders()") from None
    except Exception as exc:
        raise UserError(
            f"cannot read the prepared {name} in {data_dir} ({first_line(exc)}): "
            f"delete {os.path.join(data_dir, name)} and prepare it again"
        ) from None


def ensure_available(name: str, data_dir: Optional[str]):
    """Returns the TFDS builder for ``name``, downloading if needed and possible.

    Without a network TFDS retries for minutes and dies in a traceback; instead, when the data is
    neither prepared nor in ``<data_dir>/downloads/manual/``, probe the source URL once with a short
    timeout and, if it is unreachable, say how to get the data there by hand.
    """
    data_dir = default_data_dir(data_dir)
    builder = _builder(name, data_dir)
    if builder.is_prepared():
        return builder
    manual_dir = os.path.join(data_dir, "downloads", "manual")
    url_infos = builder.url_infos or {}
    missing = [
        (url, info.filename)
        for url, info in url_infos.items()
        if not os.path.exists(os.path.join(manual_dir, info.filename or "\0"))
    ]
    for url, filename in missing:
        try:
            request = urllib.request.Request(url, method="HEAD")
            urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S).close()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise UserError(
                f"dataset {name} is not prepared in {data_dir} and cannot be downloaded from "
                f"{url} ({first_line(getattr(exc, 'reason', exc) or exc)}); offline: put "
                f"{filename} from that URL into {manual_dir}/, or pass --data_dir pointing at "
                "prepared TFDS data"
            ) from None
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
    except Exception as exc:
        raise UserError(f"preparing {name} in {data_dir} failed: {first_line(exc)}") from None
    return builder


def _to_pairs(image_size: int):
    def convert(example):
        image = example["image"]
        if image.shape[0] != image_size or image.shape[1] != image_size:
            image = tf.image.resize(image, (image_size, image_size), antialias=True)
            image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        return image, example["label"]

    return convert


def load_splits(config, data_dir: Optional[str] = None) -> Splits:
    """Batched, cached, prefetched train/val/test datasets for ``config`` (an ExperimentConfig)."""
    builder = ensure_available(config.dataset, data_dir)
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise UserError(f"{config.dataset} has no 'image' and 'label' features to classify")
    splits = [config.train_split, config.val_split, config.test_split]
    try:
        train, val, test = (
            builder.as_dataset(split=split, shuffle_files=False) for split in splits
        )
        sizes = [builder.info.splits[split].num_examples for split in splits]
    except (ValueError, KeyError) as exc:
        raise UserError(f"bad split for {config.dataset}: {first_line(exc)}") from None
    if min(sizes) == 0:
        sized = dict(zip(splits, sizes, strict=True))
        raise UserError(f"{config.dataset} split sizes {sized}: none may be empty, adjust the splits")

    convert = _to_pairs(config.image_size)
    auto = tf.data.AUTOTUNE

    def prepare(ds):
        return ds.map(convert, num_parallel_calls=auto).cache()

    train = (
        prepare(train)
        .shuffle(min(SHUFFLE_BUFFER, sizes[0]), seed=config.seed, reshuffle_each_iteration=True)
        .batch(config.batch_size)
        .prefetch(auto)
    )
    val = prepare(val).batch(config.eval_batch_size).prefetch(auto)
    test = prepare(test).batch(config.eval_batch_size).prefetch(auto)
    label = features["label"]
    return Splits(
        train=train,
        val=val,
        test=test,
        num_classes=label.num_classes,
        class_names=list(label.names),
        train_examples=sizes[0],
        val_examples=sizes[1],
        test_examples=sizes[2],
    )
