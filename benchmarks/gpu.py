"""The training-throughput comparison on a CUDA GPU: Keras (JAX backend) vs PyTorch eager/compile.

For a GPU machine without TensorFlow (Keras 3 then runs on JAX, XLA-compiled); the model is still
``lenet_keras.models.build_lenet5`` compiled by ``compile_classifier``. Data is an in-memory uint8
array of CIFAR-100's shape (content does not change the arithmetic). Prints one JSON line and writes
it to --out.

    KERAS_BACKEND=jax python -m benchmarks.gpu --out gpu_results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # torch shares the GPU

import numpy as np  # noqa: E402

from benchmarks import stats  # noqa: E402
from benchmarks.flops import training_flops_per_image  # noqa: E402


def keras_trainer(images, labels, steps_per_execution):
    import keras

    from lenet_keras import models

    keras.utils.set_random_seed(0)
    model = models.build_lenet5(100)
    models.compile_classifier(model, 1e-3, steps_per_execution)
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    def epoch():
        model.fit(images, labels, batch_size=64, epochs=1, shuffle=True, verbose=0,
                  callbacks=[Timer()])
        return len(images) / times[-1]

    return model, epoch


def matmul_gflops(device, n=8192, repeats=5):
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False  # the float32 rate, not TF32's
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rates = []
    for _ in range(repeats + 1):
        sync()
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        sync()
        rates.append(10 * 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return stats.summary(rates[1:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=45_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="gpu_results.json")
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of this script")
    parser.add_argument("--compile", type=int, default=1, help="0: skip torch.compile")
    args = parser.parse_args(argv)

    import keras
    import torch

    from benchmarks.torch_lenet import Trainer

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 100, size=args.images).astype(np.int32)

    runners = {}
    for spe in (1, 64):
        model, epoch = keras_trainer(images, labels, spe)
        epoch()  # compiles
        name = f"Keras {keras.__version__} ({keras.backend.backend()}) fit, steps_per_execution={spe}"
        runners[name] = epoch
    for compiled in (False, True)[: 1 + args.compile]:
        trainer = Trainer(compile=compiled, device=args.device)
        trainer.epoch(images[:6400], labels[:6400])  # compiles / warms cuDNN
        name = f"PyTorch {torch.__version__} " + ("torch.compile" if compiled else "eager")
        runners[name] = (lambda t=trainer: t.epoch(images, labels))
    rates = {name: [] for name in runners}
    for _ in range(args.repeats):  # interleaved, so drift hits every contender alike
        for name, run in runners.items():
            rates[name].append(run())
    flops = training_flops_per_image(model)
    result = {
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else platform.machine(),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "images_per_run": args.images,
        "training_images_per_s": {k: stats.summary(v) for k, v in rates.items()},
        "matmul_fp32_gflops": matmul_gflops(args.device, 8192 if args.device == "cuda" else 512),
        "training_flops_per_image": flops,
    }
    line = json.dumps(result)
    print(line)
    with open(args.out, "w") as f:
        f.write(line + "\n")


if __name__ == "__main__":
    main()
