"""Transfer to any target: `train --exp transfer --target_dataset NAME | --target_dir PATH`."""

from __future__ import annotations

import json
import os
import shutil

import keras
import numpy as np
import pytest

from lenet_keras import experiments, models
from lenet_keras.data import synthetic as synthetic_data
from lenet_keras.data import targets
from lenet_keras.errors import UserError
from tests.conftest import assert_one_line_error, run_cli
from tests.test_image_folder import CLASSES, write_class_tree

TRANSFER = experiments.get_config("transfer")


@pytest.fixture(scope="module")
def source_model(tmp_path_factory) -> str:
    """A tuned-architecture CIFAR-100 model to transfer from (untrained: only its shape matters)."""
    path = str(tmp_path_factory.mktemp("source") / "tuned.keras")
    models.build_from_config(experiments.get_config("tuned"), 100).save(path)
    return path


def _train(*args):
    return run_cli("lenet_keras.train", "--exp", "transfer", "--epochs", "2", "--batch_size", "8",
                   *args)


def test_tfds_target_without_validation_split_carves_it_from_train(data_dir):
    config = targets.tfds_target(TRANSFER, "cifar100", data_dir)
    assert (config.dataset, config.train_split, config.val_split, config.test_split) == (
        "cifar100", "train[:90%]", "train[90%:]", "test")
    assert config.image_dir is None


def test_grayscale_tfds_images_become_three_channel_32x32():
    import tensorflow as tf

    from lenet_keras.data import tail

    gray = tf.constant(np.arange(28 * 28, dtype=np.uint8).reshape(28, 28, 1))
    image, label = tail.to_pairs(32)({"image": gray, "label": 4})
    assert image.shape == (32, 32, 3) and image.dtype == tf.uint8 and int(label) == 4
    np.testing.assert_array_equal(image[..., 0], image[..., 2])


@pytest.mark.parametrize("name, needle", [
    ("no_such_dataset", "unknown TFDS dataset 'no_such_dataset'"),
    ("cifar-10", "is not a TFDS dataset name"),
    ("imdb_reviews", "is not an image-classification data set"),
])
def test_tfds_names_that_cannot_be_targets(tmp_path, name, needle):
    with pytest.raises(UserError, match=needle):
        targets.tfds_target(TRANSFER, name, str(tmp_path))


def test_target_flags_that_do_not_fit_together(tmp_path):
    configs = [experiments.get_config(n) for n in experiments.STUDY_ORDER]
    write_class_tree(str(tmp_path / "photos"), per_class=3)
    with pytest.raises(UserError, match="not both"):
        targets.retarget(configs, dataset="cifar100", directory=str(tmp_path / "photos"))
    with pytest.raises(UserError, match="split a --target_dir"):
        targets.retarget(configs, dataset="cifar100", val_fraction=0.2)
    with pytest.raises(UserError, match="--exp transfer"):
        targets.retarget(configs[:1], directory=str(tmp_path / "photos"))
    with pytest.raises(UserError, match="val_fraction \\+ test_fraction"):
        targets.retarget(configs, directory=str(tmp_path / "photos"), val_fraction=0.5,
                         test_fraction=0.5)
    # With --exp all only the transfer experiment changes its data.
    vanilla, tuned, transfer = targets.retarget(configs, directory=str(tmp_path / "photos"))
    assert (vanilla, tuned) == tuple(configs[:2])
    assert transfer.image_dir == str(tmp_path / "photos")
    assert transfer.dataset == "folder:photos"


def test_a_target_dir_whose_own_name_is_not_utf8_is_refused_in_one_line(tmp_path):
    photos = os.fsdecode(os.path.join(os.fsencode(str(tmp_path)), b"ph\xf6tos"))
    write_class_tree(photos, per_class=3)
    with pytest.raises(UserError, match=r"ph\\xf6tos is not UTF-8: config.json records it"):
        targets.folder_target(TRANSFER, photos)


@pytest.mark.slow
def test_unknown_tfds_name_is_a_one_line_cli_error(tmp_path):
    proc = _train("--target_dataset", "no_such_dataset", "--model_dir", str(tmp_path))
    assert_one_line_error(proc, "no_such_dataset")
    assert not os.path.exists(tmp_path / "transfer")


@pytest.mark.slow
def test_tfds_target_with_its_own_validation_split(tmp_path, source_model):
    data_dir = str(tmp_path / "tfds")
    synthetic_data.prepare("stl10", data_dir, train=48, validation=24, test=24, seed=3)
    model_dir = str(tmp_path / "models")
    proc = _train("--target_dataset", "stl10", "--data_dir", data_dir, "--model_dir", model_dir,
                  "--source_model", source_model)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(model_dir, "transfer", "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["class_names"] == synthetic_data.STL10_CLASSES
    assert (metrics["train_examples"], metrics["val_examples"], metrics["test_examples"]) == (
        48, 24, 24)
    assert (metrics["config"]["train_split"], metrics["config"]["val_split"]) == (
        "train", "validation")
    model = keras.models.load_model(os.path.join(model_dir, "transfer", "model.keras"))
    assert model.layers[-1].units == 10


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory, source_model):
    """`train --exp transfer --target_dir photos` on a 3-class folder with one broken file, a link
    back up the tree and a file name that is not UTF-8 (as in archives from other systems)."""
    root = tmp_path_factory.mktemp("folder_run")
    photos = write_class_tree(str(root / "photos"), per_class=8)
    broken = os.path.join(photos, "emu", "broken.png")
    with open(broken, "wb") as f:
        f.write(b"\x89PNG truncated")
    os.symlink(".", os.path.join(photos, "zz"))
    os.rename(os.path.join(photos, "cat", "005.png"),
              os.path.join(os.fsencode(photos), b"cat", b"caf\xe9.png"))
    model_dir = str(root / "models")
    proc = _train("--target_dir", photos, "--model_dir", model_dir, "--source_model", source_model,
                  "--val_fraction", "0.25")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"photos": photos, "broken": broken, "stderr": proc.stderr,
            "model_dir": model_dir, "run_dir": os.path.join(model_dir, "transfer")}


@pytest.mark.slow
def test_folder_target_end_to_end(folder_run):
    assert f"skipping unreadable image {folder_run['broken']}" in folder_run["stderr"]
    run_dir = folder_run["run_dir"]
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["class_names"] == list(CLASSES)
    assert metrics["dataset"] == "folder:photos"
    assert metrics["config"]["image_dir"] == folder_run["photos"]
    # 8 per class: 2 val (25%), 1 test (10%, at least one), 5 train.
    assert (metrics["train_examples"], metrics["val_examples"], metrics["test_examples"]) == (
        15, 6, 3)
    model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
    assert model.layers[-1].units == len(CLASSES)
    assert not model.layers[-2].trainable  # only the new head learned
    predictions = np.load(os.path.join(run_dir, "predictions.npz"))
    assert sorted(predictions["labels"].tolist()) == [0, 1, 2]
    assert predictions["top5"].shape == (3, 3)  # fewer than 5 classes: all of them, ranked


@pytest.mark.slow
def test_a_link_up_the_tree_and_a_name_that_is_not_utf8_train_as_the_other_files(folder_run):
    assert "photos/zz (a folder link back into the tree: not followed)" in folder_run["stderr"]
    assert "Traceback" not in folder_run["stderr"]
    with open(os.path.join(folder_run["run_dir"], "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["class_names"] == list(CLASSES)  # no class "zz" holding every other image
    assert metrics["train_examples"] + metrics["val_examples"] + metrics["test_examples"] == 24


@pytest.mark.slow
def test_a_folder_that_fails_inside_the_run_loses_nothing(folder_run, source_model, tmp_path):
    run_dir = folder_run["run_dir"]
    before = {name: open(os.path.join(run_dir, name), "rb").read()
              for name in ("metrics.json", "model.keras")}
    photos = shutil.copytree(folder_run["photos"], str(tmp_path / "photos"), symlinks=True)
    for name in os.listdir(os.path.join(photos, "emu")):  # only decoding finds these out
        with open(os.path.join(photos, "emu", name), "wb") as f:
            f.write(b"not an image")
    proc = _train("--target_dir", photos, "--model_dir", folder_run["model_dir"],
                  "--source_model", source_model)
    assert_one_line_error(proc, "none of the 9 images in", "emu")
    for name, content in before.items():
        assert open(os.path.join(run_dir, name), "rb").read() == content


@pytest.mark.slow
def test_exported_model_answers_with_the_folders_class_names(folder_run, tmp_path):
    import tensorflow as tf

    from lenet_keras.data import image_folder
    from lenet_keras.serving import export, load
    from lenet_keras.serving.signature import SIGNATURE

    version = export.export_trained("transfer", folder_run["model_dir"], str(tmp_path / "serving"))
    assert load.load_saved_model(version).class_names == list(CLASSES)
    signature = tf.saved_model.load(version).signatures[SIGNATURE]
    model = keras.models.load_model(os.path.join(folder_run["run_dir"], "model.keras"))
    for name in ("cat/002.jpg", "dog/003.png", "emu/004.jpg"):  # 45x33, 120x200, 20x30
        path = os.path.join(folder_run["photos"], name)
        raw = tf.io.decode_image(tf.io.read_file(path), channels=3)
        served = signature(images=raw[tf.newaxis])
        expected = int(np.argmax(model.predict_on_batch(image_folder.read_resized_image(path, 32)[None])))
        assert int(served["class_ids"][0]) == expected
        assert served["class_names"][0].numpy().decode() == CLASSES[expected]
