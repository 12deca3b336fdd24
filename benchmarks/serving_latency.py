"""Latency and throughput of an exported SavedModel's serving_default, on this machine's CPU.

    PYTHONPATH=. python benchmarks/serving_latency.py [--model SAVED_MODEL_DIR] [--runs 5]

Loads the SavedModel with tf.saved_model.load and calls its ``serving_default`` signature, the
graph TF Serving runs (without TF Serving's HTTP/gRPC layer). Measures, per run: p50/p99 latency
of single 32x32 uint8 images, and images per second at batch 256; then prints the median of the
runs with their min and max. Without --model it exports the tuned architecture with untrained
weights into a temporary folder: weights do not change the amount of work.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import tensorflow as tf


def default_saved_model(folder: str) -> str:
    from lenet_keras import experiments, models
    from lenet_keras.serving import export

    config = experiments.get_config("tuned")
    model = models.build_from_config(config, num_classes=100)
    names = [f"class_{i}" for i in range(100)]
    return export.export_model(model, names, folder, "lenet_tuned")


def one_run(signature, singles: int, batches: int, batch_size: int, rng) -> dict:
    single = tf.constant(rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8))
    batch = tf.constant(rng.integers(0, 256, (batch_size, 32, 32, 3), dtype=np.uint8))
    for _ in range(10):  # warm-up: first calls pay for graph optimisation and allocation
        signature(images=single)
    signature(images=batch)
    seconds = []
    for _ in range(singles):
        start = time.perf_counter()
        signature(images=single)["probabilities"].numpy()
        seconds.append(time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(batches):
        signature(images=batch)["probabilities"].numpy()
    elapsed = time.perf_counter() - start
    ms = np.array(seconds) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "images_per_s": batches * batch_size / elapsed,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="exported version folder (default: a fresh export)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--singles", type=int, default=300, help="single-image calls per run")
    parser.add_argument("--batches", type=int, default=20, help="batch calls per run")
    parser.add_argument("--batch_size", type=int, default=256)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        path = args.model or default_saved_model(folder)
        loaded = tf.saved_model.load(path)
        signature = loaded.signatures["serving_default"]
        rng = np.random.default_rng(0)
        print(f"SavedModel {path if args.model else '(fresh export of the tuned architecture)'}; "
              f"TF {tf.__version__}, {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f}")
        runs = []
        for i in range(args.runs):
            runs.append(one_run(signature, args.singles, args.batches, args.batch_size, rng))
            r = runs[-1]
            print(f"run {i + 1}: p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
                  f"batch {args.batch_size}: {r['images_per_s']:,.0f} images/s")
    print(f"median of {args.runs} runs [min, max]:")
    for key, label in [("p50_ms", "single 32x32 p50 ms"), ("p99_ms", "single 32x32 p99 ms"),
                       ("images_per_s", f"batch {args.batch_size} images/s")]:
        values = [r[key] for r in runs]
        print(f"  {label:22s} {np.median(values):10.2f}  [{min(values):.2f}, {max(values):.2f}]")


if __name__ == "__main__":
    main()
