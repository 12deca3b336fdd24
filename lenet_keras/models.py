"""The one LeNet-5 builder every variant, the tuner and transfer go through, and the one loader."""

from __future__ import annotations

import os
from typing import Sequence

import keras

from lenet_keras.config import FREEZE_POLICIES
from lenet_keras.errors import UserError, first_line

INPUT_SHAPE = (32, 32, 3)
HEAD_NAME = "classifier"


def build_lenet5(
    num_classes: int,
    *,
    activation: str = "tanh",
    pooling: str = "average",
    batch_norm: bool = False,
    hidden_units: Sequence[int] = (120, 84),
    input_shape: Sequence[int] = INPUT_SHAPE,
) -> keras.Model:
    """LeNet-5: conv 6@5x5, pool, conv 16@5x5, pool, Dense hidden_units..., Dense num_classes.

    Takes raw uint8 pixels: scaling to [0, 1] is the model's first layer, so a saved model needs no
    preprocessing from whoever serves it. ``batch_norm`` puts a BatchNormalization right after the
    first hidden Dense (the seed's tuned variant).
    """
    pool = {"average": keras.layers.AveragePooling2D, "max": keras.layers.MaxPooling2D}[pooling]
    inputs = keras.Input(shape=tuple(input_shape), dtype="uint8", name="images")
    x = keras.layers.Rescaling(1.0 / 255, name="scale")(inputs)
    x = keras.layers.Conv2D(6, 5, activation=activation, name="conv1")(x)
    x = pool(2, name="pool1")(x)
    x = keras.layers.Conv2D(16, 5, activation=activation, name="conv2")(x)
    x = pool(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(hidden_units, start=1):
        x = keras.layers.Dense(int(units), activation=activation, name=f"dense{i}")(x)
        if batch_norm and i == 1:
            x = keras.layers.BatchNormalization(name="dense1_bn")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=HEAD_NAME)(x)
    return keras.Model(inputs, outputs, name="lenet5")


def build_from_config(config, num_classes: int) -> keras.Model:
    """The model an ExperimentConfig describes."""
    return build_lenet5(
        num_classes,
        activation=config.activation,
        pooling=config.pooling,
        batch_norm=config.batch_norm,
        hidden_units=config.hidden_units,
        input_shape=(config.image_size, config.image_size, 3),
    )


def compile_from_config(model: keras.Model, config) -> keras.Model:
    """``compile_classifier`` with the config's learning rate and speed settings."""
    return compile_classifier(
        model, config.learning_rate, config.steps_per_execution, config.jit_compile
    )


def compile_classifier(
    model: keras.Model, learning_rate: float, steps_per_execution: int = 1, jit_compile="auto"
) -> keras.Model:
    """Adam + sparse categorical cross-entropy, with top-1 and top-5 accuracy."""
    model.compile(
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=[
            "accuracy",
            keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_accuracy"),
        ],
    )
    return model


def load_classifier(path: str) -> keras.Model:
    """A trained image classifier from a ``.keras`` file, or UserError saying why it can't be one.

    A classifier here takes one batch of square RGB images, shape (None, size, size, 3), and gives
    one probability vector per image.
    """
    if not os.path.isfile(path):
        raise UserError(f"no trained model at {path}: train it first "
                        "(python -m lenet_keras.train --exp ...) or pass another path")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a file that is not a model
        raise UserError(f"{path} is not a loadable Keras model ({first_line(exc)})") from None
    if not isinstance(model, keras.Model) or len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UserError(f"{path} is not a single-input, single-output Keras model")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[3] != 3 or shape[1] is None or shape[1] != shape[2]:
        raise UserError(f"{path} takes inputs of shape {shape}; a classifier of square RGB "
                        "images, shape (None, size, size, 3), is needed")
    return model


def image_size_of(model: keras.Model) -> int:
    return int(model.inputs[0].shape[1])


def build_transfer_model(
    source: keras.Model, num_classes: int, freeze: str = "all_but_head"
) -> keras.Model:
    """Source model's features with a new ``num_classes``-way Dense head.

    ``freeze="all_but_head"`` sets ``trainable = False`` on every source layer, which also makes
    BatchNormalization run in inference mode (Keras 3 semantics), so its moving statistics stay
    those learned on the source; only the new head trains. ``freeze="none"`` fine-tunes every
    layer, starting from the source's weights.
    """
    if freeze not in FREEZE_POLICIES:
        raise UserError(f"freeze must be one of {FREEZE_POLICIES}, got {freeze!r}")
    if not isinstance(source.layers[-1], keras.layers.Dense):
        raise UserError(f"model {source.name!r} does not end in a Dense classifier layer, so it "
                        "has no head to swap")
    features = source.layers[-2].output
    for layer in source.layers:
        layer.trainable = freeze == "none"
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=f"{HEAD_NAME}_transfer")(
        features
    )
    return keras.Model(source.inputs, outputs, name=f"{source.name}_transfer")
