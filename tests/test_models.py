"""The one builder: shapes, layer types and parameter counts of each variant, and transfer freezing."""

import keras
import numpy as np
import pytest

import experiments
from lenet_keras import models


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
