"""TFDS as a data source: the real ``tfds`` builders, prepared (or downloaded) into a data dir.

Validation is a slice of the official train split (``train[90%:]`` by default) so the test split is
only read by the final evaluation. Images are resized to the experiment's size (antialiased) once,
before ``cache()``, so the resize never runs again in later epochs; scaling happens in the model.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from google.protobuf import json_format
from tensorflow_datasets.core.download.download_manager import (  # a wrong manual download
    NonMatchingChecksumError as _NonMatchingChecksumError,
)

from lenet_keras.data import labels
from lenet_keras.data.tail import Splits, as_splits, to_pairs
from lenet_keras.errors import UserError, first_line

PROBE_TIMEOUT_S = 10
_DECODED: dict = {}  # (builder data dir, split, image size) -> decoded, cached tf.data.Dataset
_COARSE: dict = {}  # (builder data dir, train split, test split) -> coarse_labels' answer


def default_data_dir(data_dir: Optional[str]) -> str:
    return os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")


def builder_of(name: str, data_dir: str):
    """TFDS's builder for ``name`` in ``data_dir`` (prepared or not); UserError if it cannot be read."""
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise UserError(f"unknown TFDS dataset {name!r}: see tfds.list_builders()") from None
    except (OSError, ValueError, tf.errors.OpError, json_format.ParseError) as exc:
        # Damaged files, or files of another TFDS version: moving them aside loses nothing.
        raise UserError(
            f"cannot read the prepared {name} in {data_dir} ({first_line(exc)}): if another "
            f"tensorflow-datasets version prepared it or it is damaged, move "
            f"{os.path.join(data_dir, name)} aside and let it be prepared again"
        ) from None


def ensure_available(name: str, data_dir: Optional[str]):
    """Returns the TFDS builder for ``name``, downloading if needed and possible.

    Without a network TFDS retries for minutes and dies in a traceback; instead, when the data is
    neither prepared nor in ``<data_dir>/downloads/manual/``, probe the source URL once with a short
    timeout and, if it is unreachable, say how to get the data there by hand.
    """
    data_dir = default_data_dir(data_dir)
    builder = builder_of(name, data_dir)
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
    except (OSError, ValueError, tf.errors.OpError, _NonMatchingChecksumError) as exc:
        raise UserError(f"preparing {name} in {data_dir} failed: {first_line(exc)}") from None
    return builder


def forget_decoded() -> None:
    """Drops what ``load_splits`` and ``coarse_labels`` keep: the next call reads the data again."""
    _DECODED.clear()
    _COARSE.clear()


def load_splits(config, data_dir: Optional[str] = None) -> Splits:
    """Batched, cached, prefetched train/val/test datasets of the TFDS ``config.dataset``."""
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

    convert = to_pairs(config.image_size)

    def prepare(ds, split):
        # One decoded cache per split and image size in a process: `--exp all` and a tuner's
        # trials decode CIFAR-100 once, not once per experiment. Shuffling, batching and the
        # shuffle's seed stay per call, so results do not depend on what ran before.
        key = (builder.data_dir, split, config.image_size)
        if key not in _DECODED:
            check = labels.range_check(features["label"].num_classes, config.dataset, split,
                                       builder.data_dir)
            _DECODED[key] = ds.map(lambda example: check(*convert(example)),
                                   num_parallel_calls=tf.data.AUTOTUNE).cache()
        return _DECODED[key]

    return as_splits(prepare(train, config.train_split), prepare(val, config.val_split),
                     prepare(test, config.test_split), sizes, features["label"].names, config)


def coarse_labels(config, data_dir: Optional[str] = None):
    """``(test coarse labels, coarse class names, fine->coarse map)``, or None without ``coarse_label``.

    CIFAR-100's 20 superclasses make a confusion matrix people can read; the fine->coarse map (-1
    for a fine class seen in neither split) lets the report put predicted fine classes into them.
    Only the labels are decoded, and the test split is read in the same order as ``load_splits``.
    """
    builder = ensure_available(config.dataset, data_dir)
    features = builder.info.features
    if "coarse_label" not in features:
        return None
    # Read once per process, like the decoded images: vanilla and tuned share CIFAR-100's (~1.4 s).
    key = (builder.data_dir, config.train_split, config.test_split)
    if key not in _COARSE:
        _COARSE[key] = _read_coarse_labels(builder, config)
    test_coarse, names, fine_to_coarse = _COARSE[key]
    return test_coarse.copy(), list(names), fine_to_coarse.copy()


def _read_coarse_labels(builder, config):
    features = builder.info.features
    decoders = tfds.decode.PartialDecoding({"label": True, "coarse_label": True})

    def read(split):
        ds = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders, batch_size=-1)
        ds = tfds.as_numpy(ds)
        return ds["label"].astype(np.int32), ds["coarse_label"].astype(np.int32)

    fine_to_coarse = np.full(features["label"].num_classes, -1, dtype=np.int32)
    test_fine, test_coarse = read(config.test_split)
    for fine, coarse in (read(config.train_split), (test_fine, test_coarse)):
        fine_to_coarse[fine] = coarse
    return test_coarse, list(features["coarse_label"].names), fine_to_coarse
