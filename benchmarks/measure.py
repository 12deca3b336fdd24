"""The measurements behind BENCHMARKS.md; each returns a callable that does one timed run."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The real datasets' sizes, so a study run here costs what it costs on CIFAR-100 / STL-10.
FULL_SIZES = {"cifar100": (50_000, 10_000), "stl10": (5_000, 8_000)}


def prepare_data(data_dir: str) -> None:
    """Writes full-sized synthetic CIFAR-100 and STL-10 into data_dir unless they are there."""
    import tensorflow_datasets as tfds

    from lenet_keras.data import synthetic as synthetic_data
    from lenet_keras.errors import UserError

    for name, (train, test) in FULL_SIZES.items():
        builder = tfds.builder(name, data_dir=data_dir)
        if not builder.is_prepared():
            print(f"preparing synthetic {name} ({train} train / {test} test) in {data_dir}", flush=True)
            synthetic_data.prepare(name, data_dir, train=train, test=test)
            continue
        sizes = (builder.info.splits["train"].num_examples, builder.info.splits["test"].num_examples)
        if sizes != (train, test):
            raise UserError(f"{name} in {data_dir} has {sizes} train/test examples, not the real "
                            f"{(train, test)}: pass another --data_dir and it will be prepared")


def matmul_gflops(n: int = 1024, iterations: int = 20) -> float:
    """The float32 matmul rate TensorFlow reaches on this machine: the compute bound's unit."""
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    (a @ b).numpy()
    start = time.perf_counter()
    for _ in range(iterations):
        c = a @ b
    c.numpy()
    return iterations * 2 * n**3 / (time.perf_counter() - start) / 1e9


def _config(name: str, data_dir: str, train_images: int):
    """The experiment's config, its training split cut to train_images if that is smaller."""
    import tensorflow_datasets as tfds

    from lenet_keras import experiments

    config = experiments.get_config(name)
    available = tfds.builder(config.dataset, data_dir=data_dir).info.splits[config.train_split]
    if train_images and train_images < available.num_examples:
        config = config.replace(train_split=f"train[:{train_images}]")
    return config


def build_model(config, num_classes: int):
    from lenet_keras import experiments, models

    if config.source_experiment is None:
        return models.build_from_config(config, num_classes)
    source = experiments.get_config(config.source_experiment).replace(precision=config.precision)
    return models.build_transfer_model(models.build_from_config(source, 100), num_classes,
                                       precision=config.precision)


def keras_runner(name: str, data_dir: str, train_images: int = 0, steps_per_execution=None,
                 jit_compile=None, precision=None):
    """One epoch of ``model.fit`` on the experiment's real input pipeline; returns images/s.

    A setting left None is the experiment config's (the product's); ``precision`` is a concrete
    Keras policy (resolve ``auto`` first, as the commands do).
    """
    import keras

    from lenet_keras import data, models
    from lenet_keras.training import run as training

    config = _config(name, data_dir, train_images).replace_given(
        steps_per_execution=steps_per_execution, jit_compile=jit_compile, precision=precision)
    splits = data.load_splits(config, data_dir)
    keras.utils.set_random_seed(config.seed)
    model = models.compile_from_config(build_model(config, splits.num_classes), config)
    timer = training.EpochTimer()

    def run() -> float:
        model.fit(splits.train, epochs=1, verbose=0, callbacks=[timer])
        return splits.train_examples / timer.seconds[-1]

    run.model = model
    run.splits = splits
    return run


def keras_process_runner(name: str, data_dir: str, train_images: int = 0, env=None, **settings):
    """Like keras_runner, but each run is a fresh process (``benchmarks.keras_epoch``) whose
    environment adds ``env``: for TF_ENABLE_ONEDNN_OPTS, which TensorFlow reads at import. The
    process warms up itself, so the benchmark's warm-up round skips it."""
    command = [sys.executable, "-m", "benchmarks.keras_epoch", "--exp", name, "--data_dir", data_dir,
               "--train_images", str(train_images)]
    command += [f"--{key}={int(value)}" for key, value in settings.items()]

    def run() -> float:
        out = subprocess.run(command, check=True, cwd=REPO, capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=REPO, **(env or {})))
        return json.loads(out.stdout.strip().splitlines()[-1])["images_per_second"]

    run.warms_itself = True
    return run


def training_arrays(splits):
    """The training images and labels as uint8/int arrays: what a PyTorch user holds in memory."""
    images, labels = zip(*((x.numpy(), y.numpy()) for x, y in splits.train), strict=True)
    return np.concatenate(images), np.concatenate(labels)


def torch_runner(images, labels, compile: bool, autocast: bool = False):
    from benchmarks.torch_lenet import Trainer

    trainer = Trainer(compile=compile, autocast=autocast)
    trainer.epoch(images[:1280], labels[:1280])  # torch.compile compiles here, outside the timing
    return lambda: trainer.epoch(images, labels)


def torch_process_runner(arrays_path: str, compile: bool, threads: int = 0, autocast: bool = False):
    """Like torch_runner, in a process that never imports TensorFlow (``benchmarks.torch_epoch``),
    kept alive between rounds: each run asks it for one epoch. It warms up as it starts."""
    command = [sys.executable, "-m", "benchmarks.torch_epoch", "--arrays", arrays_path,
               "--threads", str(threads)] + (["--compile"] if compile else [])
    command += ["--autocast"] if autocast else []
    process = subprocess.Popen(command, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def reply() -> dict:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"{' '.join(command)} exited with {process.wait()}")
        return json.loads(line)

    reply()  # {"ready": true}: warmed up

    def run() -> float:
        process.stdin.write("run\n")
        process.stdin.flush()
        return reply()["images_per_second"]

    run.warms_itself = True
    run.close = process.stdin.close  # the worker exits when its stdin ends
    return run


def pipeline_rates(name: str, data_dir: str, train_images: int = 0):
    """(cold, warm) images/s of the training pipeline alone: the first pass reads, decodes, resizes
    and fills the cache; the next three read the cache, as every later epoch does (their median).

    Consumed as ``fit`` consumes it: a new iterator per pass, drained by a traced function's loop
    of ``next`` calls. A Python ``for`` loop would time Python's per-batch round trip, and
    ``Dataset.reduce`` builds a function each call (~9 ms, a third of a cached STL-10 pass), both
    costs training never pays.
    """
    import math

    import tensorflow as tf

    from lenet_keras import data
    from lenet_keras.data import tfds_source

    config = _config(name, data_dir, train_images)
    tfds_source.forget_decoded()  # the first pass must decode, whatever ran before in this process
    splits = data.load_splits(config, data_dir)
    steps = tf.constant(math.ceil(splits.train_examples / config.batch_size))

    @tf.function
    def drain(iterator, steps):
        for _ in tf.range(steps):
            next(iterator)

    drain.get_concrete_function(tf.data.IteratorSpec(splits.train.element_spec), steps)  # traced now
    rates = []
    for _ in range(4):
        start = time.perf_counter()
        drain(iter(splits.train), steps)
        rates.append(splits.train_examples / (time.perf_counter() - start))
    return rates[0], statistics.median(rates[1:])  # later epochs: the middle of three


def study_seconds(data_dir: str, precision: str = "float32") -> dict:
    """Wall seconds of ``python -m lenet_keras.train --exp all --precision P`` in a fresh process,
    and each experiment's seconds and test accuracy from its metrics.json."""
    with tempfile.TemporaryDirectory() as model_dir:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "lenet_keras.train", "--exp", "all", "--data_dir", data_dir,
             "--model_dir", model_dir, "--precision", precision],
            check=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - start
        epochs = {}
        for name in ("vanilla", "tuned", "transfer"):
            with open(os.path.join(model_dir, name, "metrics.json")) as f:
                metrics = json.load(f)
            epochs[name] = {"epoch_seconds": sum(metrics["epoch_seconds"]),
                            "test_accuracy": metrics["test_accuracy"]}
    return {"wall": wall, "precision": metrics["config"]["precision"], "experiments": epochs}
