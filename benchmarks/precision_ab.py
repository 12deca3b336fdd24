"""A quick A/B of Keras dtype policies: the vanilla LeNet-5 on in-memory images, epochs interleaved.

    PYTHONPATH=. python benchmarks/precision_ab.py [--policies float32,mixed_bfloat16] [--images 12800]
        [--rounds 3] [--threads 0]

The product's model and compile settings (``models.build_lenet5`` + ``compile_classifier``,
batch 64, steps_per_execution 64), random uint8 images from memory (``cache()``d), one warm-up
epoch per policy, then ``--rounds`` rounds of one epoch per policy back to back, so load from other
processes hits each alike. Prints one JSON line: images/s per round per policy, and this machine's
bfloat16 verdict. Run it with TF_ENABLE_ONEDNN_OPTS=0 to see TensorFlow's Eigen kernels instead.
For the full comparison with PyTorch use ``python -m benchmarks.run``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import lenet_keras  # noqa: F401  (first: it turns oneDNN on before TensorFlow is imported)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", default="float32,mixed_bfloat16")
    parser.add_argument("--images", type=int, default=12_800)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow intra-op threads (0: all)")
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from lenet_keras import models
    from lenet_keras.training import precision

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 100, args.images)
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(64).cache()
    trained = {}
    for policy in args.policies.split(","):
        keras.utils.set_random_seed(0)
        model = models.compile_classifier(models.build_lenet5(100, precision=policy), 1e-3, 64, False)
        model.fit(data, epochs=1, verbose=0)  # tracing and cache fill
        trained[policy] = model
    rates = {policy: [] for policy in trained}
    for _ in range(args.rounds):
        for policy, model in trained.items():
            start = time.perf_counter()
            model.fit(data, epochs=1, verbose=0)
            rates[policy].append(round(args.images / (time.perf_counter() - start)))
    native, why = precision.native_bfloat16()
    print(json.dumps({"images_per_second": rates,
                      "median": {p: statistics.median(r) for p, r in rates.items()},
                      "bf16_native": native, "reason": why, "onednn": precision.onednn_enabled()}))


if __name__ == "__main__":
    main()
