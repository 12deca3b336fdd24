"""The one builder: shapes, layer types and parameter counts of each variant, and transfer freezing."""

import keras
import numpy as np
import pytest

from lenet_keras import experiments, models


def layer_types(model):
    return [type(layer).__name__ for layer in model.layers]


def test_vanilla_is_classic_lenet5_with_69656_params():
    model = models.build_from_config(experiments.get_config("vanilla"), 100)
    assert model.count_params() == 69_656
    assert layer_types(model) == [
        "InputLayer", "Rescaling", "Conv2D", "AveragePooling2D", "Conv2D", "AveragePooling2D",
        "Flatten", "Dense", "Dense", "Dense",
    ]
    assert [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)] == [120, 84, 100]
    assert {layer.activation.__name__ for layer in model.layers[2:-1] if hasattr(layer, "activation")} == {
        "tanh"
    }
    assert model.input.dtype == "uint8" and tuple(model.input.shape) == (None, 32, 32, 3)
    assert tuple(model.output.shape) == (None, 100)


def test_tuned_has_relu_max_pool_and_batch_norm_after_first_dense():
    model = models.build_from_config(experiments.get_config("tuned"), 100)
    assert layer_types(model) == [
        "InputLayer", "Rescaling", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D",
        "Flatten", "Dense", "BatchNormalization", "Dense", "Dense",
    ]
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [64, 128, 100]
    assert [layer.activation.__name__ for layer in dense] == ["relu", "relu", "softmax"]
    # conv 456 + 2416, dense 400*64+64, BN 4*64, dense 64*128+128, head 128*100+100
    assert model.count_params() == 456 + 2416 + 25_664 + 256 + 8_320 + 12_900


def test_model_scales_raw_pixels_itself():
    model = models.build_lenet5(10)
    images = np.full((2, 32, 32, 3), 255, dtype=np.uint8)
    scaled = keras.Model(model.input, model.get_layer("scale").output)(images)
    assert float(np.max(scaled)) == pytest.approx(1.0)


def test_transfer_model_trains_only_the_new_head():
    source = models.build_from_config(experiments.get_config("tuned"), 100)
    model = models.build_transfer_model(source, 10)
    assert tuple(model.output.shape) == (None, 10)
    names = sorted(w.path for w in model.trainable_weights)
    assert names == ["classifier_transfer/bias", "classifier_transfer/kernel"]
    bn = model.get_layer("dense1_bn")
    assert bn.trainable is False  # Keras 3: a frozen BatchNormalization runs in inference mode


def test_load_classifier_rejects_non_models_and_wrong_shapes(tmp_path):
    from lenet_keras.errors import UserError

    not_a_model = tmp_path / "notes.keras"
    not_a_model.write_text("hello")
    with pytest.raises(UserError, match="not a loadable Keras model"):
        models.load_classifier(str(not_a_model))
    wrong = tmp_path / "wide.keras"
    models.build_lenet5(100, input_shape=(64, 32, 3)).save(wrong)
    with pytest.raises(UserError, match="shape"):
        models.load_classifier(str(wrong))


# Precision: every layer but the head under the policy, the head and the output float32.

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


def body_policies(model):
    return {layer.name: layer.dtype_policy.name for layer in model.layers[1:-1]}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", ["vanilla", "tuned"])
def test_every_layer_but_the_float32_head_computes_under_the_policy(name, policy):
    model = models.build_from_config(experiments.get_config(name).replace(precision=policy), 100)
    assert set(body_policies(model).values()) == {policy}
    head = model.get_layer(models.HEAD_NAME)
    assert head.dtype_policy.name == "float32" and head.compute_dtype == "float32"
    assert model.input.dtype == "uint8" and model.output.dtype == "float32"
    probabilities = model(np.zeros((2, 32, 32, 3), np.uint8))
    assert probabilities.dtype == "float32"
    # Variables stay float32 under the mixed policies: the same parameters, the same weights files.
    assert {w.dtype for w in model.weights} == {"float32"}
    if name == "vanilla":
        assert model.count_params() == 69_656


@pytest.mark.parametrize("policy", POLICIES)
def test_only_mixed_float16_trains_with_loss_scaling(policy):
    model = models.compile_from_config(
        models.build_from_config(experiments.get_config("vanilla").replace(precision=policy), 100),
        experiments.get_config("vanilla"),
    )
    scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (policy == "mixed_float16")
    inner = model.optimizer.inner_optimizer if scaled else model.optimizer
    assert isinstance(inner, keras.optimizers.Adam)


def test_loss_scaling_counts_the_steps_it_skips(monkeypatch, tmp_path):
    """A step skipped for an overflowing scale is still a step: resume reads epochs off it."""
    monkeypatch.setattr(models, "INITIAL_LOSS_SCALE", 2.0**100)  # float16 gradients overflow
    model = models.build_lenet5(10, hidden_units=(16, 8), precision="mixed_float16")
    models.compile_classifier(model, 1e-3)
    images = np.random.default_rng(0).integers(0, 256, (4 * 16, 32, 32, 3), dtype=np.uint8)
    model.fit(images, np.arange(4 * 16) % 10, batch_size=16, epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 4
    assert int(model.optimizer.inner_optimizer.iterations.numpy()) < 4  # some steps were skipped
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.optimizer, models.LossScaleOptimizer)
    assert int(loaded.optimizer.iterations.numpy()) == 4


@pytest.mark.parametrize("source_policy, policy", [
    ("float32", "mixed_bfloat16"), ("mixed_bfloat16", "float32"), ("mixed_float16", "mixed_bfloat16"),
])
def test_transfer_rebuilds_the_source_under_the_runs_policy_with_its_weights(source_policy, policy):
    source = models.build_from_config(
        experiments.get_config("tuned").replace(precision=source_policy), 100)
    model = models.build_transfer_model(source, 10, "all_but_head", precision=policy)
    assert set(body_policies(model).values()) == {policy}
    assert model.layers[-1].dtype_policy.name == "float32" and model.output.dtype == "float32"
    assert model.inputs[0].dtype == "uint8"
    for layer in source.layers[1:-1]:
        for mine, theirs in zip(model.get_layer(layer.name).weights, layer.weights, strict=True):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    names = sorted(w.path for w in model.trainable_weights)
    assert names == ["classifier_transfer/bias", "classifier_transfer/kernel"]
    assert model(np.zeros((2, 32, 32, 3), np.uint8)).dtype == "float32"


def test_transfer_under_the_sources_own_policy_uses_the_source_as_it_is():
    source = models.build_from_config(
        experiments.get_config("tuned").replace(precision="mixed_bfloat16"), 100)
    model = models.build_transfer_model(source, 10, precision="mixed_bfloat16")
    assert model.get_layer("conv1") is source.get_layer("conv1")
