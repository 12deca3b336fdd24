"""Tuned CIFAR-100 features on STL-10: images resized 96->32, everything frozen but a new last Dense.

The test split is STL-10's official 8,000-image test set (800 per class), not the 400/100-per-class
subsample the seed describes: the official split is what published STL-10 numbers use.
"""

from lenet_keras.experiments import tuned

# The architecture fields are the source model's (tuned); transfer only swaps and trains the head.
CONFIG = tuned.CONFIG.replace(
    name="transfer",
    dataset="stl10",
    train_split="train[:90%]",
    val_split="train[90%:]",
    test_split="test",
    image_size=32,
    learning_rate=1e-3,
    batch_size=64,
    epochs=10,
    source_experiment="tuned",
    freeze="all_but_head",
)


def run_fn(fn_args):
    """TFX Trainer entry point: trains this experiment, exports to fn_args.serving_model_dir."""
    from lenet_keras.tfx_components import entry_points

    return entry_points.run_fn(CONFIG, fn_args)
