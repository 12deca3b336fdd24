"""The PyTorch peer in a process of its own, as a PyTorch user runs it: TensorFlow is never imported.

    python -m benchmarks.torch_epoch --arrays ARRAYS.npz [--compile] [--autocast] [--threads N]

Why a process of its own: run alone, PyTorch eager takes ~700 minor page faults per training step
(glibc hands each step's freed activation memory back to the kernel, and the next step faults it in
again); in a process that imported TensorFlow first it takes none (TensorFlow's import evidently
raises glibc's dynamic mmap/trim thresholds) and trains ~15-20% faster (benchmarks/ATTEMPTS.md,
row 25). The benchmark wants the peer a user would pick, as a user runs it.

Loads ``images``/``labels`` from ARRAYS.npz, warms up (torch.compile compiles then), prints one JSON
line {"ready": true} and then, for every line read on stdin, trains one epoch and prints
{"images_per_second": ...}. Ends when stdin closes, so the benchmark can interleave it with
the other contenders round by round.
"""

from __future__ import annotations

import argparse
import json
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrays", required=True)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--autocast", action="store_true", help="torch.autocast to bfloat16")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    import numpy as np
    import torch

    from benchmarks.torch_lenet import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    with np.load(args.arrays) as arrays:
        images, labels = arrays["images"], arrays["labels"]
    trainer = Trainer(compile=args.compile, autocast=args.autocast)
    trainer.epoch(images[:1280], labels[:1280])  # torch.compile compiles here, outside the timing
    if "tensorflow" in sys.modules:
        raise SystemExit("error: TensorFlow was imported into the PyTorch peer's process")
    print(json.dumps({"ready": True}), flush=True)
    for _ in sys.stdin:
        print(json.dumps({"images_per_second": trainer.epoch(images, labels)}), flush=True)


if __name__ == "__main__":
    main()
