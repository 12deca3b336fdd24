"""Where the images come from, and the one tf.data tail they all end in.

- ``tfds_source``: TFDS data sets (CIFAR-100, STL-10, any image classifier), via the real loaders;
- ``image_folder``: a folder of your own PNG/JPEG files, one sub-folder per class;
- ``synthetic``: small learnable stand-ins for CIFAR-100 and STL-10 written in TFDS's format;
- ``targets``: what transfer learns (``--target_dataset`` / ``--target_dir``);
- ``tail``: the decode/resize functions and the shuffle -> batch -> prefetch tail of every source.
"""

from __future__ import annotations

from typing import Optional

# The sources are imported when used, not here: `python -m lenet_keras.data.synthetic` imports
# this package first, and TensorFlow must not start before the command can quiet its start-up.


def load_splits(config, data_dir: Optional[str] = None):
    """Batched train/val/test datasets (a ``tail.Splits``) for ``config``, from its source."""
    from lenet_keras.data import image_folder, tfds_source

    if config.image_dir:
        return image_folder.load_splits(config)
    return tfds_source.load_splits(config, data_dir)


def coarse_labels(config, data_dir: Optional[str] = None):
    """CIFAR-100's superclass labels for the report (see tfds_source.coarse_labels), else None."""
    from lenet_keras.data import tfds_source

    if config.image_dir:  # a folder of images has no superclasses
        return None
    return tfds_source.coarse_labels(config, data_dir)
