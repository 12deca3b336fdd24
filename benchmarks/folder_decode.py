"""Seconds to check and to decode a folder of images (lenet_keras/data/folder_layout, image_folder).

    PYTHONPATH=. python benchmarks/folder_decode.py [--images 2000] [--runs 5]

Writes ``--images`` 96x96 noise images (half PNG, half JPEG) into 10 class folders of a temporary
folder, then times, ``--runs`` times each: ``folder_layout.scan`` alone (the tree walk and its
rules, which ``--target_dir`` runs before anything trains) and ``image_folder.load_arrays`` (scan,
decode, resize to 32x32 and split). Prints the median and the range of each.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from PIL import Image

from benchmarks.stats import fmt, summary
from lenet_keras.config import ExperimentConfig
from lenet_keras.data import folder_layout, image_folder


def write_folder(root: str, images: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(images):
        folder = os.path.join(root, f"class{i % 10}")
        os.makedirs(folder, exist_ok=True)
        pixels = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"{i:05d}.{'png' if i % 2 else 'jpg'}"))


def timed(fn, runs: int) -> dict:
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return summary(seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        write_folder(root, args.images)
        config = ExperimentConfig(name="transfer", image_dir=root)
        image_folder.load_arrays(config)  # warm-up: TensorFlow's first op and tf.data's start
        scan = timed(lambda: folder_layout.scan(root), args.runs)
        load = timed(lambda: image_folder.load_arrays(config), args.runs)
    print(f"{args.images} images, {args.runs} runs, seconds: median (min–max)")
    print(f"scan (tree walk and rules): {fmt(scan, 3)}")
    print(f"load_arrays (scan, decode, resize, split): {fmt(load, 2)}")


if __name__ == "__main__":
    main()
