"""Names of what a training run leaves in ``<model_dir>/<exp>/``.

Kept free of TensorFlow so the report, serving and resume code can share them without importing
the trainer.
"""

MODEL_FILE = "model.keras"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.json"
PREDICTIONS_FILE = "predictions.npz"
STAGING = ".staging"  # an unfinished run's files; see lenet_keras.resume
