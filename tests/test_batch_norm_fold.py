"""Folding a BatchNormalization back into the ReLU'd layer before it, before int8 conversion."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from lenet_keras import models
from lenet_keras.data.synthetic import class_images
from lenet_keras.serving import batch_norm_fold as fold


@pytest.fixture(scope="module")
def images():
    labels = np.random.default_rng(0).integers(0, 10, 256)
    return class_images(labels, 32, 10, seed=3, difficulty="hard", group=2), labels


def tuned_lenet(images, labels, activation="relu", gamma=None):
    """The tuned architecture after a short fit (moving statistics away from their start), with
    BN's gamma set to ``gamma`` if given."""
    keras.utils.set_random_seed(0)
    model = models.compile_classifier(
        models.build_lenet5(10, activation=activation, pooling="max", batch_norm=True,
                            hidden_units=(64, 128)), 3e-3)
    model.fit(images, labels, epochs=2, batch_size=32, verbose=0)
    if gamma is not None:
        bn = model.get_layer("dense1_bn")
        bn.gamma.assign(gamma)
    return model


def test_a_bn_after_a_relu_dense_folds_into_it_and_computes_the_same(images):
    x, y = images
    model = tuned_lenet(x, y)
    bn = model.get_layer("dense1_bn")
    # Make the fold's work visible: factors far from 1, as a trained model's are (0.66-31.6).
    bn.gamma.assign(np.linspace(0.5, 30, 64).astype("float32"))
    bn.beta.assign(np.linspace(-1, 1, 64).astype("float32"))
    folded, names = fold.fold_batch_norms(model)
    assert names == ["dense1_bn"]
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    assert [layer.name for layer in folded.layers] == [
        layer.name for layer in model.layers if layer.name != "dense1_bn"]
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)
    # dense1 now carries BN's scale: its largest column grew about 30 times.
    ratio = (np.abs(folded.get_layer("dense1").kernel.numpy()).max(axis=0)
             / np.abs(model.get_layer("dense1").kernel.numpy()).max(axis=0))
    np.testing.assert_allclose(ratio, np.linspace(0.5, 30, 64)
                               / np.sqrt(bn.moving_variance.numpy() + bn.epsilon), rtol=1e-4)
    chosen, note = fold.checked_fold(model, x)
    assert chosen is not model and note.startswith("folded dense1_bn into the layer before it")


def test_a_bn_with_a_factor_not_above_zero_is_left_to_the_converter(images):
    x, y = images
    gamma = np.ones(64, "float32")
    gamma[5] = -0.5  # s * relu(z) != relu(s * z) for s < 0
    model = tuned_lenet(x, y, gamma=gamma)
    assert fold.fold_batch_norms(model) == (model, [])
    assert fold.checked_fold(model, x) == (model, "no BatchNormalization to fold backward")


def test_a_bn_after_a_tanh_dense_is_left_to_the_converter(images):
    x, y = images
    model = tuned_lenet(x, y, activation="tanh")
    assert fold.fold_batch_norms(model) == (model, [])


def test_a_fold_that_changes_the_model_falls_back_to_the_original(images, monkeypatch):
    x, y = images
    model = tuned_lenet(x, y)
    real_fold = fold.fold_batch_norms

    def off_by_a_little(model):
        folded, names = real_fold(model)
        head = folded.layers[-1]
        head.bias.assign(head.bias.numpy() + np.linspace(0, 0.5, 10).astype("float32"))
        return folded, names

    monkeypatch.setattr(fold, "fold_batch_norms", off_by_a_little)
    chosen, note = fold.checked_fold(model, x)
    assert chosen is model
    assert note.startswith("kept dense1_bn for the converter: folded backward, the model differs")
