"""predict on real PNG/JPEG files of any size, with a .keras model and an exported SavedModel."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from lenet_keras import models
from lenet_keras.data.tail import resize_images
from lenet_keras.errors import UserError
from lenet_keras.serving import classify as predict
from lenet_keras.serving import export
from lenet_keras.serving import load as serving
from tests.conftest import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def vanilla_path(trained_dir):
    return os.path.join(trained_dir, "vanilla", "model.keras")


@pytest.fixture(scope="module")
def vanilla_export(vanilla_path, tmp_path_factory):
    """The <model_name> folder holding version 1 of the exported vanilla model."""
    base = str(tmp_path_factory.mktemp("serving"))
    model, names = export.load_trained(vanilla_path)
    return os.path.dirname(export.export_model(model, names, base, "lenet_vanilla"))


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """Real files as a user has them: RGB PNG, JPEG, odd-sized greyscale PNG, RGBA PNG."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    files = {
        "small.png": Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)),
        "stl.jpg": Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)),
        "odd grey.png": Image.fromarray(rng.integers(0, 256, (37, 50), dtype=np.uint8), "L"),
        "alpha.png": Image.fromarray(rng.integers(0, 256, (64, 20, 4), dtype=np.uint8), "RGBA"),
    }
    paths = {}
    for name, image in files.items():
        paths[name] = str(folder / name)
        image.save(paths[name])
    paths["notes.txt"] = str(folder / "notes.txt")
    with open(paths["notes.txt"], "w") as f:
        f.write("not an image\n")
    paths["missing.png"] = str(folder / "missing.png")
    return paths


def keras_probabilities(model_path, image_path):
    model, _ = export.load_trained(model_path)
    size = models.image_size_of(model)
    # TF's decoder, as predict: PIL's JPEG decoder differs from it by a level here and there.
    pixels = tf.io.decode_image(tf.io.read_file(image_path), channels=3)[tf.newaxis]
    return model(resize_images(pixels, size), training=False).numpy()[0]


@pytest.mark.slow
def test_cli_answers_every_image_then_names_the_bad_files(vanilla_export, image_files):
    order = ["small.png", "notes.txt", "stl.jpg", "missing.png", "odd grey.png", "alpha.png"]
    proc = run_cli("lenet_keras.predict", "--model", vanilla_export,
                   *[image_files[n] for n in order])
    assert_one_line_error(proc, image_files["missing.png"], "No such file")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2, proc.stderr
    assert image_files["notes.txt"] in errors[0] and "not an image TensorFlow can decode" in errors[0]
    lines = proc.stdout.strip().splitlines()
    answered = [line for line in lines if not line.startswith("  ")]
    assert answered == [image_files[n] for n in order if n not in ("notes.txt", "missing.png")]
    assert len(lines) == 4 * (1 + 5)  # default --top_k 5
    first = [float(line.split()[1]) for line in lines[1:6]]
    assert first == sorted(first, reverse=True) and 0 < sum(first) <= 1.0001


def test_an_undecodable_file_is_named_without_tensorflows_op_text_and_gif_bmp_are_read(tmp_path):
    pixels = np.random.default_rng(4).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for fmt in ("GIF", "BMP"):
        path = str(tmp_path / f"x.{fmt.lower()}")
        Image.fromarray(pixels).save(path)
        assert predict.read_image_file(path).shape == (20, 30, 3), fmt
    truncated = str(tmp_path / "cut.png")
    Image.fromarray(pixels).save(truncated)
    with open(truncated, "r+b") as f:
        f.truncate(60)
    with pytest.raises(UserError) as caught:
        predict.read_image_file(truncated)
    message = str(caught.value)
    assert message == (f"{truncated}: not an image TensorFlow can decode (Invalid PNG data, size "
                       "60): pass a PNG, JPEG, GIF or BMP file"), message


def test_json_top_k_matches_the_keras_model(trained_dir, image_files):
    model_path = os.path.join(trained_dir, "transfer", "model.keras")
    names = ["small.png", "stl.jpg", "odd grey.png"]
    classifier = serving.load_predictor(model_path)
    results = predict.predict_files(classifier, [image_files[n] for n in names], 3)
    results = json.loads(predict.render(results, as_json=True))
    assert [r["file"] for r in results] == [image_files[n] for n in names]
    with open(os.path.join(trained_dir, "transfer", "metrics.json")) as f:
        class_names = json.load(f)["class_names"]
    for result in results:
        expected = keras_probabilities(model_path, result["file"])
        top = result["top_k"]
        assert [c["class_id"] for c in top] == list(np.argsort(-expected, kind="stable")[:3])
        assert [c["class_name"] for c in top] == [class_names[c["class_id"]] for c in top]
        np.testing.assert_allclose([c["probability"] for c in top],
                                   expected[[c["class_id"] for c in top]], rtol=1e-5)


def test_saved_model_and_keras_file_give_the_same_answers(vanilla_path, vanilla_export,
                                                          image_files):
    paths = [image_files[n] for n in ("small.png", "stl.jpg", "odd grey.png", "notes.txt")]
    from_keras = predict.predict_files(serving.load_predictor(vanilla_path), paths, 100)
    from_saved = predict.predict_files(serving.load_predictor(vanilla_export), paths, 100)
    assert [r.get("error", "")[:20] for r in from_keras] == [r.get("error", "")[:20]
                                                            for r in from_saved]
    for a, b in zip(from_keras[:3], from_saved[:3], strict=True):
        assert [c["class_id"] for c in a["top_k"][:5]] == [c["class_id"] for c in b["top_k"][:5]]
        np.testing.assert_allclose([c["probability"] for c in a["top_k"]],
                                   [c["probability"] for c in b["top_k"]], rtol=1e-4, atol=1e-7)


def test_a_model_path_that_is_not_a_model_is_a_user_error(image_files, tmp_path):
    with pytest.raises(UserError, match="is not a loadable Keras model"):
        serving.load_predictor(image_files["notes.txt"])
    with pytest.raises(UserError, match="no saved_model.pb and no version folders"):
        serving.load_predictor(str(tmp_path))
