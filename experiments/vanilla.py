"""Classic LeNet-5 on CIFAR-100: tanh, average pooling, Dense 120/84, Adam 1e-3, batch 64, 10 epochs."""

from lenet_keras.config import ExperimentConfig

CONFIG = ExperimentConfig(
    name="vanilla",
    dataset="cifar100",
    activation="tanh",
    pooling="average",
    batch_norm=False,
    hidden_units=(120, 84),
    learning_rate=1e-3,
    batch_size=64,
    epochs=10,
)


def run_fn(fn_args):
    """TFX Trainer entry point: trains this experiment, exports to fn_args.serving_model_dir."""
    from lenet_keras.tfx_components import entry_points

    return entry_points.run_fn(CONFIG, fn_args)
