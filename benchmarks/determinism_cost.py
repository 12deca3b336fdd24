"""What `--deterministic` (tf.config.experimental.enable_op_determinism) costs in training speed.

    python benchmarks/determinism_cost.py [--repeats 3] [--epochs 4] [--train 2000]

Trains vanilla on synthetic CIFAR-100 (real TFDS format) through the CLI, alternating runs with
and without --deterministic (op determinism is process-wide and cannot be switched off, hence one
process per run). Prints per-mode median/min/max of the epoch seconds after the first epoch (which
includes tracing), whether each mode repeats its metrics exactly, and whether the two modes agree.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train(data_dir: str, model_dir: str, epochs: int, deterministic: bool) -> dict:
    cmd = [sys.executable, "-m", "lenet_keras.train", "--exp", "vanilla", "--epochs", str(epochs),
           "--data_dir", data_dir, "--model_dir", model_dir, "--fresh"]
    if deterministic:
        cmd.append("--deterministic")
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode:
        sys.exit(proc.stderr[-2000:])
    with open(os.path.join(model_dir, "vanilla", "metrics.json")) as f:
        return json.load(f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train", type=int, default=2000, help="synthetic training images")
    args = parser.parse_args()
    sys.path.insert(0, REPO)
    from lenet_keras.data import synthetic as synthetic_data

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = os.path.join(tmp, "tfds")
        synthetic_data.prepare("cifar100", data_dir, train=args.train, test=200)
        seconds = {False: [], True: []}
        results = {False: [], True: []}
        for _ in range(args.repeats):
            for deterministic in (False, True):
                metrics = train(data_dir, os.path.join(tmp, "models"), args.epochs, deterministic)
                seconds[deterministic].append(statistics.median(metrics["epoch_seconds"][1:]))
                results[deterministic].append(
                    (metrics["history"], metrics["test_accuracy"], metrics["test_loss"]))
    for deterministic, values in seconds.items():
        label = "--deterministic" if deterministic else "default        "
        same = all(r == results[deterministic][0] for r in results[deterministic])
        print(f"{label}: epoch seconds median {statistics.median(values):.3f} "
              f"(min {min(values):.3f}, max {max(values):.3f}) over {len(values)} runs; "
              f"metrics identical across these runs: {same}")
    ratio = statistics.median(seconds[True]) / statistics.median(seconds[False])
    print(f"deterministic / default: {ratio:.2f}x; the two modes give identical metrics: "
          f"{results[True][0] == results[False][0]}")


if __name__ == "__main__":
    main()
