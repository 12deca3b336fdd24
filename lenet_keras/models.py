"""The one LeNet-5 builder every variant, the tuner and transfer go through."""

from __future__ import annotations

from typing import Sequence

import keras

from lenet_keras import hparams as hparams_lib
from lenet_keras.errors import UserError

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


def build_from_hparams(hp, num_classes: int, base_config) -> keras.Model:
    """The compiled model keras-tuner's ``hp`` (or a TFX/best_hyperparameters dict) describes.

    Called with a ``keras_tuner.HyperParameters`` it also declares the search space, so this is
    the hypermodel the tuner runs; every value goes through ``hparams.apply`` to the same config
    fields and ``build_from_config`` that training uses.
    """
    if hasattr(hp, "Choice"):
        hparams_lib.define_search_space(hp)
    config = hparams_lib.apply(base_config, hp)
    return compile_from_config(build_from_config(config, num_classes), config)


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


def load_source_model(path: str, image_size: int = 32) -> keras.Model:
    """Loads a trained classifier to transfer from, or raises UserError saying why it can't be used."""
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a file that is not a model
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is not a loadable Keras model ({reason[:200]})") from None
    if not isinstance(model, keras.Model) or len(model.inputs) != 1:
        raise UserError(f"{path} is not a single-input Keras model")
    want = (None, image_size, image_size, 3)
    got = tuple(model.inputs[0].shape)
    if got != want:
        raise UserError(
            f"{path} takes inputs of shape {got}, but transfer needs {want}: "
            "pass a model trained by `--exp tuned` (or any 32x32x3 image classifier)"
        )
    if not isinstance(model.layers[-1], keras.layers.Dense):
        raise UserError(f"{path} does not end in a Dense classifier layer, so it has no head to swap")
    return model


def build_transfer_model(source: keras.Model, num_classes: int) -> keras.Model:
    """Source model's features with a new ``num_classes``-way Dense; every other layer is frozen.

    Freezing sets ``trainable = False`` on each layer, which also makes BatchNormalization run in
    inference mode (Keras 3 semantics), so its moving statistics stay those learned on the source.
    """
    features = source.layers[-2].output
    for layer in source.layers:
        layer.trainable = False
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=f"{HEAD_NAME}_transfer")(
        features
    )
    return keras.Model(source.inputs, outputs, name=f"{source.name}_transfer")
