"""Search the LeNet-5 architecture with keras-tuner.

    python -m lenet_keras.tune [--tuner hyperband|random|bayesian] [--max_epochs 20] [--max_trials N]
        [--data_dir DIR] [--tune_dir saved_models/tuning] [--seed 42] [--overwrite]

Writes into --tune_dir keras-tuner's project (lenet5/: oracle.json, trial_*/),
best_hyperparameters.json (train it with `python -m lenet_keras.train --exp tuned --hparams ...`)
and trials_summary.md, and logs every trial to TensorBoard in tensorboard/ (curves and an HParams
session with its values: `tensorboard --logdir <tune_dir>/tensorboard`, printed at start and end).
Without --overwrite a rerun resumes the search and keeps finished trials.
Distributed: run the same command with KERASTUNER_TUNER_ID=chief|tuner0|tuner1...,
KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT set, and the chief given --worker_ids (see docs/search.md).
--parallel_trials N does that on this machine: a chief and N workers on 127.0.0.1, each worker with
cores/N TensorFlow threads.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, so Ctrl-C while the command imports is one line too
    from lenet_keras import startup

    startup.exit_on_interrupt()

from absl import flags, logging

from lenet_keras import cli
from lenet_keras.search.layout import DEFAULT_TUNE_DIR, TUNERS
from lenet_keras.training import precision

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).")
flags.DEFINE_string("tune_dir", DEFAULT_TUNE_DIR, "Where the search and its results are written.")
flags.DEFINE_enum("tuner", "hyperband", list(TUNERS), "keras-tuner algorithm.")
flags.DEFINE_integer(
    "max_trials", None,
    "Cap on the number of trials (models trained). random/bayesian: the trials to run (default "
    "30), each max_epochs long. hyperband: no cap by default, the search ends when its brackets "
    "are done (30 trials, 226 epochs in all for max_epochs 20, factor 3); with a cap it stops after "
    "that many trials, where each successive-halving round that continues a model is a trial.",
    **cli.COUNT_BOUNDS,
)
flags.DEFINE_integer(
    "max_epochs", 20,
    "hyperband: epochs of the longest-trained model (its budget). random/bayesian: epochs per trial.",
    **cli.COUNT_BOUNDS,
)
flags.DEFINE_integer("factor", 3, "hyperband only: keep the best 1/factor of models each round.",
                     lower_bound=2, upper_bound=100)
flags.DEFINE_integer("seed", 42, "Seed of the tuner's sampling and of model initialisation.",
                     **cli.SEED_BOUNDS)
flags.DEFINE_bool("overwrite", False, "Start a new search, deleting the one in --tune_dir.")
flags.DEFINE_integer(
    "parallel_trials", 1,
    "Train this many trials at once on this machine, each in a worker process with cores/N "
    "TensorFlow threads, through keras-tuner's chief/worker mode on 127.0.0.1 (workers' output: "
    "<tune_dir>/logs/). On 2 cores, 2 single-threaded workers train 1.30x the images/s of one "
    "two-threaded process (docs/search.md).",
    lower_bound=1, upper_bound=256,
)
flags.DEFINE_list(
    "worker_ids", [],
    "Chief of a distributed search only: its workers' KERASTUNER_TUNER_IDs (tuner0,tuner1,...). The "
    "chief then waits until each of them has been told the search is over; without it keras-tuner's "
    "chief exits once the workers it has heard from are done, and a worker that starts later (e.g. "
    "on a finished search) finds no chief. --parallel_trials passes it.",
)
flags.DEFINE_integer("tf_threads", 0, "TensorFlow intra-op threads of this process (0: TF's "
                     "default, one per core); --parallel_trials sets it for its workers.",
                     lower_bound=0, upper_bound=1024)
flags.DEFINE_enum("precision", "float32", list(precision.CHOICES),
                  "Keras dtype policy of every trial: float32, "
                    "mixed_bfloat16, mixed_float16 or auto, as for train (docs/performance.md).")

cli.require_writable_folder("tune_dir")
cli.path_flags("data_dir")

# The flags a --parallel_trials launch hands on to its chief and workers.
SEARCH_FLAGS = ("data_dir", "tune_dir", "tuner", "max_trials", "max_epochs", "factor", "seed",
                "precision")


def run() -> str:
    import keras
    import tensorflow as tf

    from lenet_keras import data, experiments
    from lenet_keras.search import tuner as tuning

    if FLAGS.tf_threads:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.tf_threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        logging.info("%d TensorFlow thread(s)", FLAGS.tf_threads)

    config = experiments.get_config("tuned").replace(seed=FLAGS.seed, precision=FLAGS.precision)
    keras.utils.set_random_seed(config.seed)
    splits = data.load_splits(config, FLAGS.data_dir)
    tuner = tuning.make_tuner(
        FLAGS.tuner, config, splits.num_classes, FLAGS.tune_dir,
        max_trials=FLAGS.max_trials, max_epochs=FLAGS.max_epochs, factor=FLAGS.factor,
        seed=FLAGS.seed, overwrite=FLAGS.overwrite, worker_ids=FLAGS.worker_ids,
        fresh_train=lambda: data.load_splits(config, FLAGS.data_dir).train,
    )
    tuning.search(tuner, splits, epochs=FLAGS.max_epochs, verbose=cli.keras_verbosity())
    if tuning.is_search_worker():
        return "worker done: the chief writes the results"
    return tuning.write_results(tuner, FLAGS.tune_dir, FLAGS.tuner, FLAGS.max_epochs)


def launch(workers: int) -> str:
    from lenet_keras.search import parallel

    args = [f"--{name}={FLAGS[name].value}" for name in SEARCH_FLAGS if FLAGS[name].value is not None]
    return parallel.launch(workers, args, FLAGS.tune_dir, FLAGS.overwrite)


def main() -> None:
    from lenet_keras.errors import UserError

    if FLAGS.parallel_trials > 1 and FLAGS.worker_ids:
        raise UserError("--parallel_trials names its own workers: leave out --worker_ids")
    from lenet_keras.search.lock import search_lock

    with search_lock(FLAGS.tune_dir):  # before any data is read or any trial deleted
        # Resolved once, here (auto logs its choice): --parallel_trials hands workers the
        # concrete policy.
        FLAGS.precision = precision.resolve(FLAGS.precision).policy
        from lenet_keras.search.layout import tensorboard_command

        watch = f"every trial's curves and hyperparameters: {tensorboard_command(FLAGS.tune_dir)}"
        print(watch, flush=True)
        print(launch(FLAGS.parallel_trials) if FLAGS.parallel_trials > 1 else run())
        print(watch)


if __name__ == "__main__":
    cli.run(main, on_interrupt="rerun the same command to resume the search in --tune_dir")
