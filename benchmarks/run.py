"""Training throughput of lenet_keras vs PyTorch, the FLOP bound, the input pipeline, the study,
each Keras dtype policy against PyTorch in float32 and under its own bfloat16 autocast.

    pip install -e .[bench]          # torch==2.13.0, the peer
    python -m benchmarks.run         # writes benchmarks/BENCHMARKS.md and benchmarks/results.json

Prepares full-sized synthetic CIFAR-100/STL-10 in --data_dir if missing. Every contender runs once
to warm up (tracing, torch.compile, cache fill), then all run in turn --repeats times, so load from
other processes hits each alike; figures are the median (min–max) of those runs, ratios the median
of the per-round ratios.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", os.path.join("~", "tensorflow_datasets_bench"),
                    "TFDS data dir for full-sized synthetic CIFAR-100/STL-10 (prepared if missing).")
flags.DEFINE_string("out", os.path.join(os.path.dirname(__file__), "BENCHMARKS.md"), "Report to write.")
flags.DEFINE_integer("repeats", 5, "Timed runs of each contender.")
flags.DEFINE_integer("train_images", 0, "Training images per run (0: the experiment's whole train split).")
flags.DEFINE_integer("study_runs", 3, "Timed `train --exp all` runs (0: skip).")
flags.DEFINE_boolean("attempts", True, "Also time the previous product setting (XLA), and the "
                     "PyTorch eager peer inside this (TensorFlow's) process.")
flags.DEFINE_boolean("render_only", False, "Rewrite --out from the results.json beside it; measure nothing.")
flags.DEFINE_list(
    "precisions", ["float32", "mixed_bfloat16"],
    "Keras policies to time (product settings) and to run the study under; float32 and what "
    "--precision auto resolves to here are always included. mixed_float16 is left out by default: "
    "a CPU without AVX512-FP16 emulates float16, several times slower than float32 (MEASUREMENTS.md).")
flags.DEFINE_integer("torch_threads", 0, "PyTorch intra-op threads (0: its default, one per core). "
                     "On a machine shared with other jobs, 1 avoids OpenMP's collapse under contention.")


def keras_policies() -> tuple:
    """(the Keras policies to measure, float32 first; auto's Choice here)."""
    from lenet_keras.config import PRECISIONS
    from lenet_keras.errors import UserError
    from lenet_keras.training import precision

    unknown = sorted(set(FLAGS.precisions) - set(PRECISIONS))
    if unknown:
        raise UserError(f"--precisions {unknown} are not Keras policies: choose from {PRECISIONS}")
    auto = precision.resolve("auto")
    policies = ["float32"] + [p for p in PRECISIONS if p != "float32" and (
        p in FLAGS.precisions or p == auto.policy)]
    return policies, auto


def contenders(data_dir: str, train_images: int, attempts: bool, scratch: str, policies):
    """name -> runner, name -> its precision, and the per-experiment (float32) Keras runners;
    ``scratch`` holds the peer's arrays."""
    from benchmarks import measure

    product = measure.keras_runner("vanilla", data_dir, train_images)
    spe, jit = int(product.model.steps_per_execution), bool(product.model.jit_compile)
    from tensorflow.python.util import _pywrap_util_port

    onednn = _pywrap_util_port.IsMklEnabled()  # what TensorFlow runs, not what was asked for
    runners = {
        f"Keras fit, product settings (steps_per_execution={spe}, jit_compile={jit}, "
        f"oneDNN {'on' if onednn else 'off'})": product,
    }
    precision_of = {}
    for policy in policies[1:]:
        runners[f"Keras fit, product settings, {policy}"] = measure.keras_runner(
            "vanilla", data_dir, train_images, precision=policy)
        precision_of[f"Keras fit, product settings, {policy}"] = policy
    # TensorFlow's own defaults on a CPU without AVX-512 VNNI/BF16 or AMX: Eigen kernels.
    runners["Keras fit, seed settings (steps_per_execution=1, jit_compile=False, oneDNN off)"] = (
        measure.keras_process_runner("vanilla", data_dir, train_images,
                                     env={"TF_ENABLE_ONEDNN_OPTS": "0"},
                                     steps_per_execution=1, jit_compile=False))
    if attempts:
        # The previous product setting: XLA's CPU convolutions are Eigen's whatever oneDNN says.
        runners[f"Keras fit, steps_per_execution={spe}, jit_compile=True (XLA)"] = measure.keras_runner(
            "vanilla", data_dir, train_images, jit_compile=True)
    images, labels = measure.training_arrays(product.splits)
    import numpy as np

    arrays = os.path.join(scratch, "train.npz")
    np.savez(arrays, images=images, labels=labels)
    import torch

    if FLAGS.torch_threads:
        torch.set_num_threads(FLAGS.torch_threads)
    # The peers run as a PyTorch user runs them: in processes that never import TensorFlow; each
    # in float32 and under its own mixed precision (autocast to bfloat16), so Keras meets it at its best.
    for compile, kind in ((False, "eager"), (True, "torch.compile")):
        for autocast in (False, True):
            name = f"PyTorch {torch.__version__} {kind}" + (", autocast bfloat16" if autocast else "")
            runners[name] = measure.torch_process_runner(arrays, compile, FLAGS.torch_threads,
                                                         autocast)
            if autocast:
                precision_of[name] = "autocast bfloat16"
    if attempts:
        # For reference: the same eager peer inside this process, where TensorFlow came first.
        runners[f"PyTorch {torch.__version__} eager in the benchmark's TensorFlow process"] = (
            measure.torch_runner(images, labels, False))
    per_experiment = {"vanilla": product}
    for name in ("tuned", "transfer"):
        per_experiment[name] = measure.keras_runner(name, data_dir, train_images)
        runners[f"Keras fit, product settings, {name}"] = per_experiment[name]
    return runners, precision_of, per_experiment


def main(argv):
    from lenet_keras.errors import UserError

    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}: all options are --flags", file=sys.stderr)
        sys.exit(2)
    out_dir = os.path.dirname(os.path.abspath(FLAGS.out))
    results_path = os.path.join(out_dir, "results.json")
    from benchmarks import report

    if FLAGS.render_only:
        with open(results_path) as f:
            results = json.load(f)
        with open(FLAGS.out, "w") as f:
            f.write(report.render(results))
        return
    try:
        import torch  # noqa: F401
    except ImportError:
        print("error: the PyTorch peer is not installed: pip install -e .[bench]", file=sys.stderr)
        sys.exit(2)
    try:
        results = measure_all()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    os.makedirs(out_dir, exist_ok=True)
    with open(results_path, "w") as f:
        json.dump(results, f, indent=1)
    with open(FLAGS.out, "w") as f:
        f.write(report.render(results))
    print(f"wrote {FLAGS.out}")


def measure_all() -> dict:
    from benchmarks import flops, machine, measure, stats

    policies, auto = keras_policies()
    data_dir = os.path.expanduser(FLAGS.data_dir)
    measure.prepare_data(data_dir)
    results = {"machine_before": machine.describe(), "flags": {
        "repeats": FLAGS.repeats, "train_images": FLAGS.train_images, "study_runs": FLAGS.study_runs,
        "torch_threads": FLAGS.torch_threads, "precisions": policies}, "auto": auto.to_dict()}
    print("pipelines", flush=True)
    pipes = {"vanilla": [], "transfer": []}
    for _ in range(FLAGS.repeats):
        for name in pipes:
            pipes[name].append(measure.pipeline_rates(name, data_dir, FLAGS.train_images))
    results["pipeline"] = {name: {"cold": stats.summary([c for c, _ in v]),
                                  "warm": stats.summary([w for _, w in v])} for name, v in pipes.items()}

    print("warming up the contenders", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        runners, precision_of, per_experiment = contenders(data_dir, FLAGS.train_images,
                                                           FLAGS.attempts, scratch, policies)
        for run in runners.values():
            if not getattr(run, "warms_itself", False):
                run()
        rates = {name: [] for name in runners}
        matmul = []
        for i in range(FLAGS.repeats):
            print(f"round {i + 1}/{FLAGS.repeats}", flush=True)
            matmul.append(measure.matmul_gflops())
            for name, run in runners.items():
                rates[name].append(run())
        for run in runners.values():
            getattr(run, "close", lambda: None)()
    results["matmul_gflops"] = stats.summary(matmul)
    results["training"] = {name: stats.summary(v) for name, v in rates.items()}
    results["rounds"] = rates
    results["training_precision"] = precision_of  # rows not named here are float32
    results["flops"] = {name: flops.training_flops_per_image(run.model)
                        for name, run in per_experiment.items()}
    results["bound_names"] = {name: next(k for k, r in runners.items() if r is run)
                              for name, run in per_experiment.items()}
    results["train_examples"] = {name: run.splits.train_examples for name, run in per_experiment.items()}

    study = []
    for i in range(FLAGS.study_runs):
        for policy in policies:  # interleaved, as the training rounds are
            print(f"study run {i + 1}/{FLAGS.study_runs}, {policy}", flush=True)
            study.append(measure.study_seconds(data_dir, policy))
    results["study"] = study
    results["machine_after"] = machine.describe()  # after set_num_threads: the threads torch used
    return results


if __name__ == "__main__":
    app.run(main)
