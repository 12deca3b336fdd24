"""What transfer learns: STL-10 by default, or any TFDS image classifier, or a folder of images.

``retarget`` turns ``--target_dataset`` / ``--target_dir`` into config fields before anything
trains, so config.json records exactly which data and splits a transfer run used, and a bad
target fails within seconds instead of after the experiments that run before transfer.
"""

from __future__ import annotations

import os
from typing import List, Optional

import tensorflow_datasets as tfds

from lenet_keras.config import ExperimentConfig
from lenet_keras.data import folder_layout, tfds_source
from lenet_keras.errors import UserError


def tfds_target(config: ExperimentConfig, name: str, data_dir: Optional[str]) -> ExperimentConfig:
    """``config`` reading TFDS ``name``: its validation split if it has one, else train[90%:]."""
    try:
        tfds.core.naming.parse_builder_name_kwargs(name)
    except ValueError:
        raise UserError(
            f"--target_dataset {name!r} is not a TFDS dataset name (like cifar10 or "
            "svhn_cropped); for a folder of images use --target_dir"
        ) from None
    features = tfds_source.builder_of(name, tfds_source.default_data_dir(data_dir)).info.features
    image = features["image"] if "image" in features else None
    label = features["label"] if "label" in features else None
    if not isinstance(image, tfds.features.Image) or not isinstance(
        label, tfds.features.ClassLabel
    ):
        raise UserError(
            f"TFDS dataset {name} has no 'image' and class 'label' features, so it is not an "
            "image-classification data set: choose one that has (e.g. cifar10, svhn_cropped)"
        )
    channels = image.shape[-1]
    if channels not in (1, 3):
        raise UserError(f"TFDS dataset {name} has {channels}-channel images: only 1 or 3 work here")
    splits = tfds_source.ensure_available(name, data_dir).info.splits
    missing = [split for split in ("train", "test") if split not in splits]
    if missing:
        raise UserError(
            f"TFDS dataset {name} has splits {sorted(splits)} but transfer needs 'train' and "
            f"'test' ({', '.join(missing)} missing)"
        )
    if "validation" in splits:
        train_split, val_split = "train", "validation"
    else:  # as for STL-10: validation comes out of train, so test is only read once, at the end
        train_split, val_split = "train[:90%]", "train[90%:]"
    return config.replace(
        dataset=name, train_split=train_split, val_split=val_split, test_split="test"
    )


def folder_target(
    config: ExperimentConfig,
    directory: str,
    val_fraction: Optional[float] = None,
    test_fraction: Optional[float] = None,
) -> ExperimentConfig:
    """``config`` reading the image folder ``directory`` (see lenet_keras.data.folder_layout)."""
    path = os.path.abspath(os.path.expanduser(directory))
    if not folder_layout.is_utf8(path):
        raise UserError(f"--target_dir {folder_layout.shown(path)} is not UTF-8: config.json "
                        "records it, so rename the folder or pass a link to it with a UTF-8 name")
    folder_layout.scan(path)  # structure only; decoding waits until the run needs the images
    return config.replace_given(  # a fraction not given keeps the config's
        dataset=f"folder:{os.path.basename(path)}",
        image_dir=path,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )


def retarget(
    configs: List[ExperimentConfig],
    *,
    dataset: Optional[str] = None,
    directory: Optional[str] = None,
    val_fraction: Optional[float] = None,
    test_fraction: Optional[float] = None,
    data_dir: Optional[str] = None,
) -> List[ExperimentConfig]:
    """``configs`` with every transfer config pointed at the flags' target; the others unchanged."""
    if dataset and directory:
        raise UserError("give --target_dataset or --target_dir, not both")
    if not directory and (val_fraction is not None or test_fraction is not None):
        raise UserError(
            "--val_fraction and --test_fraction split a --target_dir; a TFDS data set uses its own "
            "splits"
        )
    if not dataset and not directory:
        return configs
    if not any(config.source_experiment for config in configs):
        raise UserError(
            "--target_dataset and --target_dir choose what transfer learns: use them with "
            "--exp transfer (or all)"
        )
    if dataset:
        return [tfds_target(c, dataset, data_dir) if c.source_experiment else c for c in configs]
    return [
        folder_target(c, directory, val_fraction, test_fraction) if c.source_experiment else c
        for c in configs
    ]
