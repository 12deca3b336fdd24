"""The one LeNet-5 builder every variant, the tuner and transfer go through, and the one loader.

Every layer is built with an explicit Keras dtype policy (``precision``: float32, mixed_bfloat16
or mixed_float16) instead of reading Keras's global one, so a process can build models of several
policies and nothing leaks between them. The classifier head is float32 under every policy, as
the Keras mixed-precision guide says: the softmax, the loss and the metrics (top-5 accuracy's
InTopK takes only float32) then see float32 probabilities, and so do the saved model and the
SavedModel's ``probabilities``.
"""

from __future__ import annotations

import os
import zipfile
from typing import Sequence

import keras

from lenet_keras.config import FREEZE_POLICIES, PRECISIONS
from lenet_keras.errors import UserError, first_line

INPUT_SHAPE = (32, 32, 3)
HEAD_NAME = "classifier"
HEAD_DTYPE = "float32"
# Keras's default; a module constant so a test can force the skipped steps of an overflowing scale.
INITIAL_LOSS_SCALE = 2.0**15


@keras.saving.register_keras_serializable(package="lenet_keras")
class LossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras's dynamic loss scaling (for mixed_float16), whose ``iterations`` counts every step.

    Keras's wrapper reports its inner optimizer's step count, which does not advance on a step
    skipped for non-finite gradients; resuming reads the epoch off ``iterations``
    (training.resume), so a run with a skipped step would resume at the wrong epoch. This one
    counts every step in the wrapper's own ``iterations`` variable, which Keras creates, saves and
    restores but never advances; the inner optimizer (Adam's bias correction) is unchanged. (On
    TensorFlow, which trains here; JAX's stateless path would not count.)
    """

    @property
    def iterations(self):
        return self._iterations

    def apply(self, grads, trainable_variables=None):
        super().apply(grads, trainable_variables)
        self._iterations.assign_add(1)


def build_lenet5(
    num_classes: int,
    *,
    activation: str = "tanh",
    pooling: str = "average",
    batch_norm: bool = False,
    hidden_units: Sequence[int] = (120, 84),
    input_shape: Sequence[int] = INPUT_SHAPE,
    precision: str = "float32",
) -> keras.Model:
    """LeNet-5: conv 6@5x5, pool, conv 16@5x5, pool, Dense hidden_units..., Dense num_classes.

    Takes raw uint8 pixels: scaling to [0, 1] is the model's first layer, so a saved model needs no
    preprocessing from whoever serves it. ``batch_norm`` puts a BatchNormalization right after the
    first hidden Dense (the seed's tuned variant). ``precision`` is the dtype policy of every layer
    but the head, which is float32.
    """
    _check_precision(precision)
    p = precision
    pool = {"average": keras.layers.AveragePooling2D, "max": keras.layers.MaxPooling2D}[pooling]
    inputs = keras.Input(shape=tuple(input_shape), dtype="uint8", name="images")
    x = keras.layers.Rescaling(1.0 / 255, name="scale", dtype=p)(inputs)
    x = keras.layers.Conv2D(6, 5, activation=activation, name="conv1", dtype=p)(x)
    x = pool(2, name="pool1", dtype=p)(x)
    x = keras.layers.Conv2D(16, 5, activation=activation, name="conv2", dtype=p)(x)
    x = pool(2, name="pool2", dtype=p)(x)
    x = keras.layers.Flatten(name="flatten", dtype=p)(x)
    for i, units in enumerate(hidden_units, start=1):
        x = keras.layers.Dense(int(units), activation=activation, name=f"dense{i}", dtype=p)(x)
        if batch_norm and i == 1:
            x = keras.layers.BatchNormalization(name="dense1_bn", dtype=p)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=HEAD_NAME,
                                 dtype=HEAD_DTYPE)(x)
    return keras.Model(inputs, outputs, name="lenet5")


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def build_from_config(config, num_classes: int) -> keras.Model:
    """The model an ExperimentConfig describes."""
    return build_lenet5(
        num_classes,
        activation=config.activation,
        pooling=config.pooling,
        batch_norm=config.batch_norm,
        hidden_units=config.hidden_units,
        input_shape=(config.image_size, config.image_size, 3),
        precision=config.precision,
    )


def compile_from_config(model: keras.Model, config) -> keras.Model:
    """``compile_classifier`` with the config's learning rate and speed settings."""
    return compile_classifier(
        model, config.learning_rate, config.steps_per_execution, config.jit_compile
    )


def compile_classifier(
    model: keras.Model, learning_rate: float, steps_per_execution: int = 1, jit_compile="auto"
) -> keras.Model:
    """Adam + sparse categorical cross-entropy, with top-1 and top-5 accuracy.

    A model with float16 layers (mixed_float16) gets Adam wrapped in dynamic loss scaling, so
    small gradients do not underflow float16; ``fit`` and the custom loop scale the loss by it.
    """
    optimizer = keras.optimizers.Adam(learning_rate)
    if any(layer.dtype_policy.compute_dtype == "float16" for layer in model.layers):
        optimizer = LossScaleOptimizer(optimizer, initial_scale=INITIAL_LOSS_SCALE)
    model.compile(
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=[
            "accuracy",
            keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_accuracy"),
        ],
    )
    return model


# Where an exported SavedModel keeps the Keras model it serves (TF Serving ignores assets.extra/
# but for warm-up records), so that TFX's Trainer can start from an upstream Trainer's SavedModel.
KERAS_IN_SAVED_MODEL = os.path.join("assets.extra", "model.keras")


def load_classifier(path: str) -> keras.Model:
    """A trained image classifier from a ``.keras`` file, or from a SavedModel folder that
    ``lenet_keras`` exported (TFX's ``base_model``); UserError saying why it can't be one.

    A classifier here takes one batch of square RGB images, shape (None, size, size, 3), and gives
    one probability vector per image.
    """
    if os.path.isdir(path):
        inside = os.path.join(path, KERAS_IN_SAVED_MODEL)
        if not os.path.isfile(inside):
            raise UserError(f"{path} is a folder without {KERAS_IN_SAVED_MODEL}: pass a .keras "
                            "model, or a SavedModel exported by lenet_keras (export or TFX run_fn)")
        path = inside
    if not os.path.isfile(path):
        raise UserError(f"no trained model at {path}: train it first "
                        "(python -m lenet_keras.train --exp ...) or pass another path")
    try:
        # safe_mode is Keras's default, said here because it is what makes loading a .keras file
        # from elsewhere safe: no Python lambda in it is deserialized (docs/serving.md).
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, ValueError) and "safe_mode" in str(exc):
            # Keras's refusal says what it refused and why: all of it.
            raise UserError(f"{path} was refused by Keras's safe mode:\n{exc}") from None
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
    source: keras.Model, num_classes: int, freeze: str = "all_but_head", precision: str = "float32"
) -> keras.Model:
    """Source model's features with a new ``num_classes``-way Dense head.

    ``freeze="all_but_head"`` sets ``trainable = False`` on every source layer, which also makes
    BatchNormalization run in inference mode (Keras 3 semantics), so its moving statistics stay
    those learned on the source; only the new head trains. ``freeze="none"`` fine-tunes every
    layer, starting from the source's weights. The features compute under ``precision`` whatever
    policy the source was trained under (``with_precision``), the new head in float32.
    """
    if freeze not in FREEZE_POLICIES:
        raise UserError(f"freeze must be one of {FREEZE_POLICIES}, got {freeze!r}")
    if not isinstance(source.layers[-1], keras.layers.Dense):
        raise UserError(f"model {source.name!r} does not end in a Dense classifier layer, so it "
                        "has no head to swap")
    source = with_precision(source, precision)
    features = source.layers[-2].output
    for layer in source.layers:
        layer.trainable = freeze == "none"
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=f"{HEAD_NAME}_transfer",
                                 dtype=HEAD_DTYPE)(features)
    return keras.Model(source.inputs, outputs, name=f"{source.name}_transfer")


def with_precision(model: keras.Model, precision: str) -> keras.Model:
    """``model`` with every layer but its head computing under ``precision``, and its weights.

    ``model`` itself when that is already so (a float32 source under float32 is used as loaded, as
    before precision existed); otherwise a copy whose layers are rebuilt from their configs with
    the new policy. Variables are float32 under every policy, so the weights copy over unchanged.
    """
    _check_precision(precision)
    body = [layer for layer in model.layers[:-1] if not isinstance(layer, keras.layers.InputLayer)]
    if all(layer.dtype_policy.name == precision for layer in body):
        return model
    head = model.layers[-1]

    def rebuild(layer):
        config = layer.get_config()
        config["dtype"] = HEAD_DTYPE if layer is head else precision
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=rebuild, recursive=True)
    copy.set_weights(model.get_weights())
    return copy
