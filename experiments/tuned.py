"""The seed's tuned LeNet-5: ReLU, max pooling, Dense 64 + BatchNorm, then Dense 128; 20 epochs."""

from lenet_keras.config import ExperimentConfig

CONFIG = ExperimentConfig(
    name="tuned",
    dataset="cifar100",
    activation="relu",
    pooling="max",
    batch_norm=True,
    hidden_units=(64, 128),
    learning_rate=1e-3,
    batch_size=64,
    epochs=20,
)


def run_fn(fn_args):
    """TFX Trainer entry point: trains this experiment, exports to fn_args.serving_model_dir."""
    from lenet_keras.tfx_components import entry_points

    return entry_points.run_fn(CONFIG, fn_args)


def tuner_fn(fn_args):
    """TFX Tuner entry point: a keras-tuner tuner over the search space, and its fit kwargs."""
    from lenet_keras.tfx_components import entry_points

    return entry_points.tuner_fn(CONFIG, fn_args)
