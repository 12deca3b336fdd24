"""The speed settings change how fast training runs, never what it computes."""

import keras
import numpy as np
import pytest

import experiments
from lenet_keras import models
from lenet_keras.errors import UserError


def train_weights(steps_per_execution, jit_compile=False):
    keras.utils.set_random_seed(7)
    model = models.build_lenet5(10, hidden_units=(16, 8))
    models.compile_classifier(model, 1e-3, steps_per_execution, jit_compile)
    assert (model.steps_per_execution, model.jit_compile) == (steps_per_execution, jit_compile)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(8 * 16, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=8 * 16)
    history = model.fit(images, labels, batch_size=16, epochs=1, shuffle=False, verbose=0)
    return model.get_weights(), history.history


def test_steps_per_execution_trains_the_same_weights_as_one_step_per_call():
    one, one_history = train_weights(1)
    many, many_history = train_weights(4)
    for a, b in zip(one, many, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for key in ("loss", "accuracy", "top5_accuracy"):
        assert one_history[key] == pytest.approx(many_history[key], rel=1e-5)


def test_xla_trains_the_same_weights_up_to_float_rounding():
    plain, plain_history = train_weights(4, jit_compile=False)
    xla, xla_history = train_weights(4, jit_compile=True)
    for a, b in zip(plain, xla, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    assert plain_history["loss"] == pytest.approx(xla_history["loss"], rel=1e-4)


def test_steps_per_execution_must_be_positive():
    with pytest.raises(UserError, match="steps_per_execution"):
        experiments.get_config("vanilla").replace(steps_per_execution=0)
