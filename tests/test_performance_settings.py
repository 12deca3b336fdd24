"""The speed settings change how fast training runs, never what it computes."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from lenet_keras import experiments, models
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


@pytest.mark.slow
def test_steps_per_execution_trains_the_same_weights_as_one_step_per_call():
    one, one_history = train_weights(1)
    many, many_history = train_weights(4)
    for a, b in zip(one, many, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for key in ("loss", "accuracy", "top5_accuracy"):
        assert one_history[key] == pytest.approx(many_history[key], rel=1e-5)


@pytest.mark.slow
def test_xla_trains_the_same_weights_up_to_float_rounding():
    plain, plain_history = train_weights(4, jit_compile=False)
    xla, xla_history = train_weights(4, jit_compile=True)
    for a, b in zip(plain, xla, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    assert plain_history["loss"] == pytest.approx(xla_history["loss"], rel=1e-4)


ONEDNN_PROBE = """
import sys
import lenet_keras  # sets TF_ENABLE_ONEDNN_OPTS unless the user did
from tensorflow.python.util import _pywrap_util_port
print(_pywrap_util_port.IsMklEnabled())
if len(sys.argv) > 1:
    import numpy as np
    from tests.test_performance_settings import train_weights
    weights, history = train_weights(4)
    np.savez(sys.argv[1], *weights, loss=history["loss"])
"""


def probe_onednn(user_setting, *args):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if user_setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = user_setting
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", ONEDNN_PROBE, *args], env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    return out.stdout.split()[0] == "True"


@pytest.mark.slow
def test_importing_the_package_turns_onednn_on_unless_the_user_said_otherwise():
    assert probe_onednn(None)
    assert not probe_onednn("0")


@pytest.mark.slow
def test_onednn_trains_the_same_weights_as_eigen_up_to_float_rounding(tmp_path):
    assert probe_onednn("1", str(tmp_path / "onednn.npz"))
    assert not probe_onednn("0", str(tmp_path / "eigen.npz"))
    onednn, eigen = np.load(tmp_path / "onednn.npz"), np.load(tmp_path / "eigen.npz")
    assert len(onednn.files) == len(eigen.files) > 2
    for name in onednn.files:
        np.testing.assert_allclose(onednn[name], eigen[name], rtol=1e-3, atol=1e-4)


def test_steps_per_execution_must_be_positive():
    with pytest.raises(UserError, match="steps_per_execution"):
        experiments.get_config("vanilla").replace(steps_per_execution=0)
