"""Per-image latency, file size and accuracy: the SavedModel against LiteRT float, float16 and int8.

    PYTHONPATH=. python benchmarks/litert_latency.py [--exp tuned] [--data_dir D] [--model_dir D]
        [--epochs 3] [--difficulty easy|hard] [--train 50000] [--runs 5] [--singles 300]

Trains ``--exp`` (default tuned) on synthetic data (prepared into --data_dir if missing, at
``--difficulty``: CIFAR-100 ``--train`` / 10,000, STL-10 5,000 / 8,000) unless --model_dir already
holds it, for ``--epochs`` (0: the experiment's own), then exports
it as a SavedModel and, through ``python -m lenet_keras.export --format litert``'s own function
(parity checked), as LiteRT float32, float16 and int8. All four run in this one process: the
SavedModel's ``serving_default`` through ``tf.saved_model.load`` (the graph TF Serving runs), the
``.tflite`` files through the LiteRT interpreter as ``predict`` calls it (``LiteRTModel``:
set_tensor, invoke, get_tensor in a Python loop), and ``invoke()`` alone. float32 and int8 also
run without the interpreter's default XNNPACK delegate (LiteRT's own kernels). Per run: the median
latency of ``--singles`` single-image calls (uint8 [1, 32, 32, 3]); figures are the median
(min–max) over ``--runs`` runs, contenders interleaved per run so load from other processes hits
each alike. Accuracy is on the whole test split. Goal (issue 22): int8 >= 10x faster per image
than the SavedModel, <= 80 KB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import lenet_keras  # noqa: F401  (first: it turns oneDNN on before TensorFlow is imported)

GOAL_SPEEDUP, GOAL_KB = 10.0, 80


def folder_bytes(path: str, skip: str = "assets.extra") -> int:
    """Bytes a server loads: every file under ``path`` except the Keras copy kept in assets.extra."""
    total = 0
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if d != skip]
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def trained_model(args) -> str:
    from lenet_keras import experiments
    from lenet_keras.data import synthetic, tfds_source
    from lenet_keras.training.run import run_experiment

    path = os.path.join(args.model_dir, args.exp, "model.keras")
    if os.path.exists(path):
        return path
    config = experiments.get_config(args.exp)
    needed = {"cifar100": (args.train, 10_000), "stl10": (5_000, 8_000)}
    for name in {"cifar100", config.dataset}:
        if not tfds_source.builder_of(name, args.data_dir).is_prepared():
            synthetic.prepare(name, args.data_dir, *needed[name], difficulty=args.difficulty)
    names = [config.source_experiment, args.exp] if config.source_experiment else [args.exp]
    for name in names:
        if os.path.exists(os.path.join(args.model_dir, name, "model.keras")):
            continue  # e.g. transfer's source, trained by an earlier run
        config = experiments.get_config(name)
        run_experiment(config.replace(epochs=args.epochs or config.epochs), args.data_dir,
                       args.model_dir, verbose=0)
    return path


def median_latency_us(call, image, singles: int) -> float:
    seconds = []
    for _ in range(singles):
        start = time.perf_counter()
        call(image)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds) * 1e6


def invoke_only(runner):
    """The interpreter's own work on one image already in its input tensor: no Python loop, no
    copies (what a device's C++ or Kotlin loop pays, less the copy of the 3 KB input)."""
    def call(image):
        runner.interpreter.invoke()
    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exp", default="tuned")
    parser.add_argument("--data_dir", default=os.path.expanduser("~/tensorflow_datasets_bench"))
    parser.add_argument("--model_dir", default=os.path.expanduser("~/lenet_litert_bench"))
    parser.add_argument("--epochs", type=int, default=3, help="0: the experiment's own")
    parser.add_argument("--difficulty", default="easy", help="of the synthetic data prepared")
    parser.add_argument("--train", type=int, default=50_000, help="CIFAR-100 training images")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--singles", type=int, default=300, help="single-image calls per run")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from benchmarks.stats import fmt, summary
    from lenet_keras import experiments
    from lenet_keras.serving import export, litert
    from lenet_keras.serving import litert_export as lx

    path = trained_model(args)
    model, names = export.load_trained(path)
    config = lx.run_config(path, args.exp and experiments.get_config(args.exp))
    calibration, test_images, test_labels = lx.experiment_images(
        config, args.data_dir, lx.CALIBRATION_IMAGES)
    rows = {}
    with tempfile.TemporaryDirectory() as base:
        saved = export.export_model(model, names, base, "m")
        loaded = tf.saved_model.load(saved)
        serve = loaded.signatures["serving_default"]

        def saved_model_probabilities(images):
            return serve(images=tf.constant(images))["probabilities"].numpy()

        probabilities = np.concatenate([saved_model_probabilities(test_images[i:i + 1024])
                                        for i in range(0, len(test_images), 1024)])
        rows["SavedModel (serving_default)"] = {
            "call": saved_model_probabilities, "bytes": folder_bytes(saved),
            "accuracy": float(np.mean(probabilities.argmax(1) == test_labels)), "agreement": None}
        for quantize in litert.QUANTIZATIONS:
            folder, parity = lx.export_litert(model, names, base, f"m_{quantize}", None, quantize,
                                              calibration, test_images, test_labels,
                                              allow_below_floor=True)
            tflite = os.path.join(folder, litert.MODEL_FILE)
            runner = litert.LiteRTModel(tflite)
            label = f"LiteRT {quantize if quantize != 'none' else 'float32'}"
            rows[label] = {
                "call": runner.probabilities, "invoke": invoke_only(runner),
                "bytes": os.path.getsize(tflite), "accuracy": parity.litert_accuracy,
                "agreement": parity.agreement, "shortfall": parity.shortfall(),
                "summary": parity.summary()}
            if quantize != "float16":
                plain = litert.LiteRTModel(tflite, default_delegate=False)
                rows[f"{label}, no default delegate"] = dict(
                    rows[label], call=plain.probabilities, invoke=invoke_only(plain))
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
        for row in rows.values():  # warm-up: first calls trace, allocate, plan
            for _ in range(20):
                row["call"](image)
        runs = {name: [] for name in rows}
        invokes = {name: [] for name, row in rows.items() if "invoke" in row}
        for _ in range(args.runs):
            for name, row in rows.items():
                runs[name].append(median_latency_us(row["call"], image, args.singles))
                if "invoke" in row:
                    invokes[name].append(median_latency_us(row["invoke"], image, args.singles))

    reference = "SavedModel (serving_default)"
    speedups = {name: summary([r / x for r, x in zip(runs[reference], runs[name], strict=True)])
                for name in rows}
    for name, row in rows.items():
        if "summary" in row and "no default delegate" not in name:
            print(row["summary"])
    print(f"{args.exp}, {len(test_images):,} test images, TF {tf.__version__}, "
          f"interpreter {litert.interpreter_class().__module__}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print("| model | per-image latency, µs | / SavedModel (speed-up) | invoke() alone, µs | "
          "file size | test accuracy | top-1 agreement with Keras |")
    print("|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        agreement = "—" if row["agreement"] is None else f"{row['agreement']:.2%}"
        if row.get("shortfall"):
            agreement += " (below the floor)"
        invoke = fmt(summary(invokes[name]), 1) if name in invokes else "—"
        print(f"| {name} | {fmt(summary(runs[name]), 1)} | {fmt(speedups[name], 1)}x | {invoke} | "
              f"{row['bytes'] / 1000:,.1f} KB | {row['accuracy']:.2%} | {agreement} |")
    int8 = "LiteRT int8"
    met = (speedups[int8]["median"] >= GOAL_SPEEDUP and rows[int8]["bytes"] <= GOAL_KB * 1000)
    print(f"Goal: int8 >= {GOAL_SPEEDUP:.0f}x faster per image than the SavedModel and <= "
          f"{GOAL_KB} KB: {'met' if met else 'NOT met'} ({speedups[int8]['median']:.1f}x, "
          f"{rows[int8]['bytes'] / 1000:.1f} KB).")
    print(json.dumps({name: {"latency_us": runs[name], "invoke_us": invokes.get(name),
                             "bytes": row["bytes"],
                             "accuracy": row["accuracy"], "agreement": row["agreement"]}
                      for name, row in rows.items()}))


if __name__ == "__main__":
    main()
