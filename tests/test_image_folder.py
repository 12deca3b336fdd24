"""lenet_keras.image_folder: folders of real PNG/JPEG files the tests write, read as tail.Splits."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from lenet_keras.config import ExperimentConfig
from lenet_keras.data import folder_layout, image_folder, tail
from lenet_keras.errors import UserError

CLASSES = ("cat", "dog", "emu")
SIZES = ((20, 30), (96, 96), (45, 33), (120, 200), (32, 32))


def write_image(path: str, pixels: np.ndarray) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path)  # format from the extension
    return path


def write_class_tree(root: str, per_class: int = 10, seed: int = 0) -> str:
    """``root/<class>/`` with noisy images of mixed sizes and formats; the first is grayscale."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            h, w = SIZES[i % len(SIZES)]
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            pixels[..., c] = 255 - c  # one bright channel per class: learnable
            ext = "png" if i % 2 else "jpg"
            if i == 0:
                pixels = pixels[..., 0]
            write_image(os.path.join(root, name, f"{i:03d}.{ext}"), pixels)
    return root


def config_for(root: str, **overrides) -> ExperimentConfig:
    return ExperimentConfig(name="transfer", image_dir=root).replace(**overrides)


def test_images_are_resized_exactly_as_tfds_images(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    path = write_image(str(tmp_path / "a.png"), pixels)  # PNG is lossless: same pixels back
    stl10_way, _ = tail.to_pairs(32)({"image": tf.constant(pixels), "label": 0})
    from_file = image_folder.read_resized_image(path, 32)
    assert from_file.dtype == np.uint8 and from_file.shape == (32, 32, 3)
    np.testing.assert_array_equal(from_file, stl10_way.numpy())
    # The batch reader (tf.data, shapes unknown while tracing) gives the same pixels.
    batch, indices = image_folder.read_images([path], 32)
    np.testing.assert_array_equal(batch[0], from_file)
    assert indices.tolist() == [0]

    gray = write_image(str(tmp_path / "g.png"), pixels[..., 1])
    as_rgb = image_folder.read_resized_image(gray, 32)
    assert as_rgb.shape == (32, 32, 3)
    np.testing.assert_array_equal(as_rgb[..., 0], as_rgb[..., 2])


def test_stratified_split_is_deterministic_and_covers_every_class(tmp_path):
    root = write_class_tree(str(tmp_path / "photos"), per_class=10)
    arrays, names = image_folder.load_arrays(config_for(root, val_fraction=0.2, seed=1))
    assert names == list(CLASSES)
    for split, per_class in (("train", 7), ("val", 2), ("test", 1)):
        images, labels = arrays[split]
        assert images.shape[1:] == (32, 32, 3) and images.dtype == np.uint8
        assert np.bincount(labels, minlength=3).tolist() == [per_class] * 3, split
    seen = [img.tobytes() for split in arrays for img in arrays[split][0]]
    assert len(set(seen)) == len(seen) == 30  # every image once, in exactly one split

    # --seed changes training, not which images are held out.
    again, _ = image_folder.load_arrays(config_for(root, val_fraction=0.2, seed=7))
    for split in arrays:
        np.testing.assert_array_equal(again[split][0], arrays[split][0])
        np.testing.assert_array_equal(again[split][1], arrays[split][1])


def test_given_train_val_test_folders_are_used_as_they_are(tmp_path):
    root = str(tmp_path / "given")
    write_class_tree(os.path.join(root, "train"), per_class=4, seed=0)
    write_class_tree(os.path.join(root, "val"), per_class=1, seed=1)
    write_class_tree(os.path.join(root, "test"), per_class=2, seed=2)
    splits = image_folder.load_splits(config_for(root, batch_size=5))
    assert (splits.train_examples, splits.val_examples, splits.test_examples) == (12, 3, 6)
    assert splits.class_names == list(CLASSES) and splits.num_classes == 3
    test_images = np.concatenate([x.numpy() for x, _ in splits.test])
    expected = [
        image_folder.read_resized_image(os.path.join(root, "test", name, f"{i:03d}.{ext}"), 32)
        for name in CLASSES for i, ext in ((0, "jpg"), (1, "png"))
    ]
    np.testing.assert_array_equal(test_images, np.stack(expected))
    x, y = next(iter(splits.train))
    assert x.shape == (5, 32, 32, 3) and x.dtype == tf.uint8 and y.dtype == tf.int64
    # As data.load_splits: no autotuning thread to wait for when fit drops an epoch's iterator.
    assert all(ds.options().autotune.enabled is False for ds in (splits.train, splits.val, splits.test))


def test_unreadable_files_are_skipped_with_a_warning_naming_each(tmp_path, caplog):
    root = write_class_tree(str(tmp_path / "photos"), per_class=5)
    broken = os.path.join(root, "dog", "broken.jpg")
    with open(broken, "wb") as f:
        f.write(b"\xff\xd8 this is not a jpeg")
    with open(os.path.join(root, "cat", "notes.txt"), "w") as f:
        f.write("not an image, ignored")
    with caplog.at_level(logging.WARNING):
        arrays, _ = image_folder.load_arrays(config_for(root))
    assert sum(len(labels) for _, labels in arrays.values()) == 15
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(broken in w and "skipping" in w for w in warnings), warnings
    assert any("ignored 1 files" in w and "notes.txt" in w for w in warnings), warnings


def _empty(root):
    os.makedirs(root)


def _class_without_images(root):
    write_class_tree(root)
    os.makedirs(os.path.join(root, "yak"))


def _one_class(root):
    write_image(os.path.join(root, "only", "a.png"), np.zeros((9, 9, 3), np.uint8))


def _too_few_to_split(root):
    write_class_tree(root, per_class=2)


def _class_all_unreadable(root):
    write_class_tree(root, per_class=3)
    for name in os.listdir(os.path.join(root, "emu")):
        os.remove(os.path.join(root, "emu", name))
    open(os.path.join(root, "emu", "empty.png"), "wb").close()


def _train_and_test_but_no_val(root):
    for split in ("train", "test"):
        write_class_tree(os.path.join(root, split))


def _test_class_not_in_train(root):
    for split in ("train", "val", "test"):
        write_class_tree(os.path.join(root, split))
    write_image(os.path.join(root, "test", "yak", "a.png"), np.zeros((9, 9, 3), np.uint8))


BAD_FOLDERS = {
    "empty": (_empty, "has no class sub-folders"),
    "class-without-images": (_class_without_images, "yak has no PNG/JPEG images"),
    "one-class": (_one_class, "one class folder only ('only')"),
    "too-few-to-split": (_too_few_to_split, "'cat' has 2 readable images, too few"),
    "class-all-unreadable": (_class_all_unreadable, "none of the 1 images in"),
    "no-val": (_train_and_test_but_no_val, "no val/"),
    "test-class-not-in-train": (_test_class_not_in_train, "train/ lacks 'yak'"),
}


@pytest.mark.parametrize("case", list(BAD_FOLDERS))
def test_bad_folders_are_one_line_errors(tmp_path, case):
    make, needle = BAD_FOLDERS[case]
    root = str(tmp_path / "bad")
    make(root)
    with pytest.raises(UserError) as err:
        image_folder.load_splits(config_for(root))
    message = str(err.value)
    assert needle in message and "\n" not in message, message


def test_a_path_that_is_not_a_folder(tmp_path):
    with pytest.raises(UserError, match="is not a folder"):
        folder_layout.scan(str(tmp_path / "nope"))
