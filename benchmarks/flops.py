"""Analytic training FLOPs per image of a LeNet-5 (any Keras model of Conv2D and Dense layers).

Forward FLOPs are 2 x multiply-adds; training costs 3 x forward for a layer that is trained
(forward, gradient w.r.t. inputs, gradient w.r.t. weights) and 1 x forward for a frozen one (the
transfer model only trains its head). Pooling, activations and BatchNorm are O(activations), under
2% here, and left out.
"""

from __future__ import annotations


def layer_macs(layer) -> int:
    import keras

    if isinstance(layer, keras.layers.Conv2D):
        _, h, w, filters = layer.output.shape
        kh, kw = layer.kernel_size
        return int(h * w * filters * kh * kw * layer.input.shape[-1])
    if isinstance(layer, keras.layers.Dense):
        return int(layer.input.shape[-1] * layer.units)
    return 0


def training_flops_per_image(model) -> int:
    total = 0
    for layer in model.layers:
        forward = 2 * layer_macs(layer)
        total += 3 * forward if layer.trainable else forward
    return total
