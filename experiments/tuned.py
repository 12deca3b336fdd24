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
