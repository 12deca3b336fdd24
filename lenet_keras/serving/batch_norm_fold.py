"""Folding a BatchNormalization that follows a ReLU'd layer back into that layer, before int8.

The tuned LeNet-5 puts a BatchNormalization after dense1's ReLU. TFLite's converter folds it
forward, into dense2's weights: BN's per-channel factors (0.66 to 31.6 in a model measured here)
then scale dense2's input rows, and int8's per-output-channel weight scale loses the small rows'
precision. On models as unsure as LeNet-5 is on CIFAR-100, that alone made the int8 model agree
with Keras on 70% of test images.

Folding backward is exact when every factor is positive: BN(y) = s*y + t per channel, and
s*relu(z) = relu(s*z), so s goes into the ReLU'd layer's kernel and bias; t is a constant after
the ReLU and goes into the next Dense's bias (through a Flatten, tiled over positions). Nothing
then sits between dense1 and dense2 for the converter to fold into dense2's weights.
``fold_batch_norms`` keeps a BN it cannot fold that way (a factor <= 0, no ReLU before it, no Dense
after it) for the converter, and ``checked_fold`` keeps the original model unless the folded one
computes the same probabilities (within ``FOLD_TOLERANCE``) on the images given.
"""

from __future__ import annotations

from typing import List, Tuple

import keras
import numpy as np

FOLD_TOLERANCE = 1e-4  # largest |probability difference| a folded model may show


def _is_relu_layer(layer) -> bool:
    return (isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))
            and layer.get_config().get("activation") == "relu")


def _bn_factors(bn: keras.layers.BatchNormalization) -> Tuple[np.ndarray, np.ndarray]:
    """(s, t) with BN(y) = s*y + t per channel, in inference mode."""
    mean = np.asarray(bn.moving_mean.numpy(), np.float64)
    variance = np.asarray(bn.moving_variance.numpy(), np.float64)
    gamma = np.asarray(bn.gamma.numpy(), np.float64) if bn.scale else np.ones_like(mean)
    beta = np.asarray(bn.beta.numpy(), np.float64) if bn.center else np.zeros_like(mean)
    s = gamma / np.sqrt(variance + bn.epsilon)
    return s, beta - s * mean


def _foldable(layers: List, i: int) -> bool:
    """Whether layers[i], a BatchNormalization, can be folded backward (see the module doc)."""
    bn = layers[i]
    if not isinstance(bn, keras.layers.BatchNormalization) or i == 0 or i + 1 >= len(layers):
        return False
    if bn.axis not in (-1, [-1], len(bn.input.shape) - 1, [len(bn.input.shape) - 1]):
        return False
    after = layers[i + 1:i + 3]
    dense_next = isinstance(after[0], keras.layers.Dense) or (
        isinstance(after[0], keras.layers.Flatten) and len(after) > 1
        and isinstance(after[1], keras.layers.Dense))
    return (_is_relu_layer(layers[i - 1]) and layers[i - 1].use_bias and dense_next
            and bool(np.all(_bn_factors(bn)[0] > 0)))


def fold_batch_norms(model: keras.Model) -> Tuple[keras.Model, List[str]]:
    """(a copy of ``model`` with every foldable BN folded backward, the names of those BNs), or
    (``model``, []) when none is. ``model`` is a chain of single-input layers, as LeNet-5 is."""
    layers = model.layers[1:]  # past the InputLayer
    folds = [i for i in range(len(layers)) if _foldable(layers, i)]
    if not folds:
        return model, []
    weights = {id(layer): [np.asarray(w) for w in layer.get_weights()] for layer in layers}
    for i in folds:
        s, t = _bn_factors(layers[i])
        kernel, bias = weights[id(layers[i - 1])]
        weights[id(layers[i - 1])] = [(kernel * s).astype(kernel.dtype), (bias * s).astype(bias.dtype)]
        nxt = layers[i + 1] if isinstance(layers[i + 1], keras.layers.Dense) else layers[i + 2]
        next_kernel, next_bias = weights[id(nxt)]
        positions = next_kernel.shape[0] // len(t)  # a Flatten between: channels-last order
        shift = np.tile(t, positions) @ next_kernel.astype(np.float64)
        weights[id(nxt)] = [next_kernel, (next_bias + shift).astype(next_bias.dtype)]
    skipped = {id(layers[i]) for i in folds}
    inputs = keras.Input(model.inputs[0].shape[1:], dtype=model.inputs[0].dtype,
                         name=model.inputs[0].name)
    x, rebuilt = inputs, []
    for layer in layers:
        if id(layer) in skipped:
            continue
        copy = layer.__class__.from_config(layer.get_config())
        x = copy(x)
        rebuilt.append((copy, weights[id(layer)]))
    for copy, layer_weights in rebuilt:
        copy.set_weights(layer_weights)
    return keras.Model(inputs, x, name=model.name), [layers[i].name for i in folds]


def checked_fold(model: keras.Model, images: np.ndarray) -> Tuple[keras.Model, str]:
    """(the model to convert, one line saying what was folded or why not).

    The folded model is used only if its probabilities on ``images`` are within
    ``FOLD_TOLERANCE`` of ``model``'s; otherwise the original, whose BN the converter folds.
    """
    folded, names = fold_batch_norms(model)
    if not names:
        return model, "no BatchNormalization to fold backward"
    expected = np.asarray(model.predict(images, batch_size=256, verbose=0))
    got = np.asarray(folded.predict(images, batch_size=256, verbose=0))
    worst = float(np.max(np.abs(expected - got))) if len(images) else 0.0
    if worst > FOLD_TOLERANCE:
        return model, (f"kept {', '.join(names)} for the converter: folded backward, the model "
                       f"differs by {worst:.1e} (> {FOLD_TOLERANCE:.0e})")
    return folded, (f"folded {', '.join(names)} into the layer before it (largest probability "
                    f"difference {worst:.1e} on {len(images):,} images)")
