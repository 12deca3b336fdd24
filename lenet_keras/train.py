"""Train the study's experiments.

    python -m lenet_keras.train --exp vanilla|tuned|transfer|all [--data_dir DIR] [--model_dir DIR]

Each run writes <model_dir>/<exp>/: model.keras (best validation accuracy), metrics.json,
config.json, predictions.npz (test-split predictions) and TensorBoard logs in logs/.
A killed run carries on from its last finished epoch when the same command runs again
(--fresh starts it over); a second run on the same <model_dir>/<exp> at once is refused.
See docs/training.md.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, so Ctrl-C while the command imports is one line too
    from lenet_keras import startup

    startup.exit_on_interrupt()

import dataclasses

from absl import flags, logging

from lenet_keras import cli
from lenet_keras.training import precision

FLAGS = flags.FLAGS
flags.DEFINE_enum("exp", "all", ["vanilla", "tuned", "transfer", "all"],
                  "Experiment: vanilla, tuned, transfer, or all (the three in order).")
flags.DEFINE_string("data_dir", None, "TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).")
flags.DEFINE_string("model_dir", "saved_models", "Where each run writes <model_dir>/<exp>/.")
flags.DEFINE_integer("epochs", None, "Override the experiment's epochs.", **cli.COUNT_BOUNDS)
flags.DEFINE_integer("batch_size", None, "Override the experiment's training batch size.",
                     **cli.BATCH_BOUNDS)
flags.DEFINE_float("learning_rate", None, "Override the experiment's Adam learning rate.")
flags.DEFINE_integer("seed", None, "Override the experiment's random seed.", **cli.SEED_BOUNDS)
flags.DEFINE_bool("fresh", False, "Discard an interrupted run of the experiment instead of resuming it.")
flags.DEFINE_bool(
    "deterministic", False,
    "Make TensorFlow ops deterministic too (tf.config.experimental.enable_op_determinism), so a "
    "--seed gives identical results on GPU as well; costs speed.",
)
flags.DEFINE_enum(
    "strategy", "default", ["default", "mirrored", "multi_worker", "tpu"],
    "tf.distribute strategy: default (one device), mirrored (every local GPU, else the CPU), "
    "multi_worker (the cluster in $TF_CONFIG) or tpu (the TPU in $TPU_NAME or attached).",
)
flags.DEFINE_integer(
    "global_batch_size", None,
    "Training batch summed over all replicas (default: --batch_size per replica x replicas).",
    **cli.BATCH_BOUNDS,
)
flags.DEFINE_string(
    "source_model", None,
    "transfer only: the .keras model to start from (default: <model_dir>/tuned/model.keras).",
)
flags.DEFINE_string(
    "target_dataset", None,
    "transfer only: a TFDS image-classification data set to transfer to instead of stl10.",
)
flags.DEFINE_string(
    "target_dir", None,
    "transfer only: a folder of <class>/<image>.png|jpg files (or train/ val/ test/ of those) "
    "to transfer to.",
)
flags.DEFINE_float("val_fraction", None, "--target_dir only: share of each class for val (0.1).")
flags.DEFINE_float("test_fraction", None, "--target_dir only: share of each class for test (0.1).")
flags.DEFINE_string(
    "hparams", None,
    "tuned (or all): a best_hyperparameters.json from `python -m lenet_keras.tune`; its "
    "architecture and learning rate replace the tuned experiment's (other flags still override).",
)
flags.DEFINE_enum(
    "precision", "float32", list(precision.CHOICES),
    "Keras dtype policy: float32 (the study's numbers; the default), mixed_bfloat16, "
    "mixed_float16 (GPUs; with loss scaling) or auto (mixed_bfloat16 where the CPU or GPU computes "
    "bfloat16 natively, else float32; logs which and why). See docs/performance.md.",
)

cli.require_positive("learning_rate")
cli.require_fraction("val_fraction")
cli.require_fraction("test_fraction")
cli.require_writable_folder("model_dir")
cli.path_flags("data_dir", "source_model", "target_dir", "hparams")


def resolve_configs(exp: str):
    """The configs `--exp` names, with flag overrides applied, in the order they must run."""
    from lenet_keras import experiments

    names = experiments.STUDY_ORDER if exp == "all" else (exp,)
    configs = [experiments.get_config(name) for name in names]
    if FLAGS.hparams:
        from lenet_keras.search import space

        configs = space.apply_file(configs, FLAGS.hparams)
    configs = [
        config.replace_given(epochs=FLAGS.epochs, batch_size=FLAGS.batch_size,
                       learning_rate=FLAGS.learning_rate, seed=FLAGS.seed)
        for config in configs
    ]
    from lenet_keras.data import targets

    return targets.retarget(
        configs, dataset=FLAGS.target_dataset, directory=FLAGS.target_dir,
        val_fraction=FLAGS.val_fraction, test_fraction=FLAGS.test_fraction, data_dir=FLAGS.data_dir,
    )


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a train command will do, decided and checked before it reads any data."""

    strategy: object  # tf.distribute.Strategy
    precision_choice: precision.Choice
    configs: list  # ExperimentConfig, with global batch sizes, in the order they run


def plan() -> Plan:
    """Every check ``main`` makes before it reads data, on the parsed flags: the strategy, the
    precision, the experiments with their overrides, the batch sizes. Raises UserError."""
    from lenet_keras.training import distribute

    strategy = None
    if FLAGS.strategy != "default":
        # Before resolve_configs, which may prepare a --target_dataset: MultiWorkerMirroredStrategy
        # must exist before TensorFlow runs anything else.
        strategy = distribute.resolve_strategy(FLAGS.strategy)
    choice = precision.resolve(FLAGS.precision)  # `auto` logs the policy it picks and why
    configs = [c.replace(precision=choice.policy) for c in resolve_configs(FLAGS.exp)]
    if strategy is None:
        strategy = distribute.resolve_strategy(FLAGS.strategy)
    configs = [
        distribute.batch_config(c, strategy, FLAGS.global_batch_size, FLAGS.batch_size)
        for c in configs
    ]
    for config in configs:
        config.validate()
    return Plan(strategy, choice, configs)


def main() -> None:
    checked = plan()
    strategy, choice, configs = checked.strategy, checked.precision_choice, checked.configs
    from lenet_keras.reporting.runs import Run
    from lenet_keras.reporting.tables import comparison_table
    from lenet_keras.training import distribute
    from lenet_keras.training.run import run_experiment
    from lenet_keras.training.study import Study

    if FLAGS.deterministic:  # a switch with nothing to check: set here, where the run starts
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    # Rerunning an interrupted study continues it instead of retraining what it had finished.
    study = Study(FLAGS.model_dir, configs) if len(configs) > 1 else None
    kept = [] if study is None or FLAGS.fresh else study.kept()
    writes = distribute.is_chief(strategy)  # other workers write nothing
    distribute.barrier(strategy)  # every worker has decided before the chief marks the study begun
    if study is not None and writes:
        study.begin()
    runs = []
    for i, config in enumerate(configs):
        source = FLAGS.source_model if config.source_experiment else None
        if i < len(kept):
            logging.info("%s: finished earlier in this study with the same settings, kept", config.name)
            metrics = kept[i]
        else:
            metrics = run_experiment(config, FLAGS.data_dir, FLAGS.model_dir, source_model=source,
                                     strategy=strategy, fresh=FLAGS.fresh, precision_choice=choice,
                                     verbose=cli.keras_verbosity())
        logging.info("%s: test accuracy %.4f (top-5 %.4f), best val %.4f at epoch %d",
                     config.name, metrics["test_accuracy"], metrics["test_top5_accuracy"],
                     metrics["best_val_accuracy"], metrics["best_epoch"])
        runs.append(Run(config.name, metrics=metrics))
    print(comparison_table(runs))
    if study is not None and writes:
        import os

        from lenet_keras.experiments import STUDY_ORDER
        from lenet_keras.reporting.document import write_study_report
        from lenet_keras.search.layout import study_tune_dir

        # The search the tuned experiment's --hparams came from; else the study's own, as report.
        tune_dir = (os.path.dirname(os.path.abspath(FLAGS.hparams)) if FLAGS.hparams
                    else study_tune_dir(FLAGS.model_dir))
        try:
            print(f"report: {write_study_report(FLAGS.model_dir, tune_dir, study_order=STUDY_ORDER)}")
        finally:  # the experiments are finished whatever became of the report
            study.end()


if __name__ == "__main__":
    cli.run(main, on_interrupt="earlier results in --model_dir are untouched; rerun to resume")
