"""The Markdown model card written beside every exported model (lenet_keras.serving.model_card)."""

from __future__ import annotations

import json
import os

from lenet_keras.serving import model_card


def test_a_runs_card_carries_its_metrics_config_and_limits(trained_dir):
    path = os.path.join(trained_dir, "tuned", "model.keras")
    with open(os.path.join(trained_dir, "tuned", "metrics.json")) as f:
        metrics = json.load(f)
    card = model_card.render(model_card.from_run(path, "lenet_tuned", "3", "SavedModel (TF Serving)"))
    assert card.startswith("# Model card: lenet_tuned, version 3\n")
    assert f"| accuracy | {metrics['test_accuracy']:.6g} |" in card
    assert f"| top-5 accuracy | {metrics['test_top5_accuracy']:.6g} |" in card
    assert f"| parameters | {metrics['params']} |" in card
    assert f"| train | {metrics['train_examples']} |" in card
    assert "| activation | relu |" in card and "| hidden_units | 64x128 |" in card
    assert "LeNet-5 at 32x32 pixels" in card
    assert "no such accuracy is claimed here" in card


def test_a_model_without_its_runs_files_says_so(trained_dir, tmp_path):
    lone = tmp_path / "model.keras"
    lone.write_bytes(open(os.path.join(trained_dir, "vanilla", "model.keras"), "rb").read())
    card = model_card.render(model_card.from_run(str(lone), "lenet_x", "1", "LiteRT none",
                                                 parity="LiteRT none: agreement 100.00%"))
    assert f"No metrics.json beside {lone}" in card
    assert "### LiteRT against Keras\n\nLiteRT none: agreement 100.00%" in card
