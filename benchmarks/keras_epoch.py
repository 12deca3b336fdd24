"""One Keras contender in a process of its own, for settings fixed when TensorFlow is imported.

    python -m benchmarks.keras_epoch --exp vanilla --data_dir DIR [--train_images N]
        [--steps_per_execution K] [--jit_compile 0|1] [--precision POLICY]

TF_ENABLE_ONEDNN_OPTS is read once, at TensorFlow's import, so a contender that runs TensorFlow's
own default kernels on this CPU (oneDNN off) cannot share the benchmark's process. Trains one epoch
to warm up (tracing, cache fill), times the next, and prints {"images_per_second": ...} as the last
line of stdout.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exp", default="vanilla")
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--train_images", type=int, default=0)
    parser.add_argument("--steps_per_execution", type=int, default=None)
    parser.add_argument("--jit_compile", type=int, choices=(0, 1), default=None)
    parser.add_argument("--precision", default=None, help="a concrete Keras dtype policy")
    args = parser.parse_args()
    from benchmarks import measure

    jit = None if args.jit_compile is None else bool(args.jit_compile)
    run = measure.keras_runner(args.exp, args.data_dir, args.train_images,
                               steps_per_execution=args.steps_per_execution, jit_compile=jit,
                               precision=args.precision)
    run()
    print(json.dumps({"images_per_second": run()}))


if __name__ == "__main__":
    main()
