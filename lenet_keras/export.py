"""Export a trained model: a SavedModel that TF Serving loads, or a LiteRT model for devices.

    python -m lenet_keras.export --exp vanilla|tuned|transfer [--model_dir saved_models]
        [--export_base saved_models/serving] [--model_name lenet_<exp>] [--version N]
        [--source_model PATH.keras]
        [--format saved_model|litert] [--quantize none|float16|int8] [--data_dir D]
        [--calibration_images 300] [--allow_below_floor]

``--format saved_model`` (the default) writes ``<export_base>/<model_name>/<version>/``
(saved_model.pb + variables/), the layout TF Serving polls. ``--format litert`` writes
``<export_base>/litert/<model_name>/<version>/`` (model.tflite + labels.txt) after checking the
model in the LiteRT interpreter against Keras on the experiment's test split (read from
``--data_dir``); below the parity floor it publishes nothing unless ``--allow_below_floor``. Either
way a Markdown model card from the run's config.json and metrics.json (and, for LiteRT, the parity
measured) goes with the version (``lenet_keras.serving.model_card``), and the new folder is printed
last. See docs/serving.md.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, so Ctrl-C while the command imports is one line too
    from lenet_keras import startup

    startup.exit_on_interrupt()

import os

from absl import flags

from lenet_keras import cli, experiments
from lenet_keras.errors import UserError
from lenet_keras.serving import choices

FLAGS = flags.FLAGS
flags.DEFINE_enum("exp", None, list(experiments.EXPERIMENTS),
                  "Experiment to export: vanilla, tuned or transfer.")
flags.DEFINE_string("model_dir", "saved_models", "Where training wrote <model_dir>/<exp>/.")
flags.DEFINE_string("export_base", os.path.join("saved_models", "serving"),
                    "TF Serving's base folder; exports go to <export_base>/<model_name>/<N>/ "
                    "(LiteRT: <export_base>/litert/<model_name>/<N>/).")
flags.DEFINE_string("model_name", None, "Model folder name (default: lenet_<exp>).")
flags.DEFINE_integer("version", None, "Version to write (default: one above the highest).",
                     lower_bound=1, upper_bound=2**63 - 1)
flags.DEFINE_string("source_model", None,
                    "Export this .keras file instead of <model_dir>/<exp>/model.keras; its "
                    "class names come from the metrics.json beside it.")
flags.DEFINE_enum("format", "saved_model", ["saved_model", "litert"],
                  "saved_model for TF Serving, litert for a .tflite model on devices.")
flags.DEFINE_enum("quantize", "none", list(choices.QUANTIZATIONS),
                  "LiteRT only: float32 (none), float16 weights, or full-integer int8 calibrated "
                  "on training images.")
flags.DEFINE_string("data_dir", None,
                    "LiteRT only: TFDS data_dir of the experiment's data, for the parity check "
                    "and int8 calibration (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).")
flags.DEFINE_integer("calibration_images", 300,
                     "LiteRT int8 only: how many training images calibrate the quantization.",
                     **cli.COUNT_BOUNDS)
flags.DEFINE_bool("allow_below_floor", False,
                  "LiteRT only: publish even when parity with Keras is below the floor.")
cli.require_writable_folder("export_base")
cli.path_flags("model_dir", "source_model", "data_dir")
flags.register_validator("model_name", lambda name: name is None or choices.is_model_name(name),
                         message=choices.MODEL_NAME_RULE)


def main() -> None:
    if FLAGS.format == "saved_model":
        litert_only = [f"--{name}" for name in ("quantize", "data_dir", "calibration_images",
                                                "allow_below_floor") if FLAGS[name].present]
        if litert_only:
            raise UserError(f"{', '.join(litert_only)} can only be used with --format litert")
        from lenet_keras.serving.export import export_trained

        folder = export_trained(FLAGS.exp, FLAGS.model_dir, FLAGS.export_base, FLAGS.model_name,
                                FLAGS.version, FLAGS.source_model)
        print(f"model card: {_write_card(folder, 'SavedModel (TF Serving)', litert=False)}")
        print(folder)
        return
    from lenet_keras.serving.litert_export import export_trained_litert

    experiment = experiments.get_config(FLAGS.exp) if FLAGS.exp else None
    folder, parity = export_trained_litert(
        experiment, FLAGS.model_dir, FLAGS.export_base, FLAGS.model_name, FLAGS.version,
        FLAGS.source_model, FLAGS.quantize, FLAGS.data_dir, FLAGS.calibration_images,
        FLAGS.allow_below_floor)
    below = f"published below the floor (--allow_below_floor): it {parity.shortfall()}"
    card = _write_card(folder, f"LiteRT {FLAGS.quantize}", litert=True, parity=parity.summary()
                       + (f". P{below[1:]}." if parity.shortfall() else ""))
    print(f"model card: {card}")
    print(parity.summary())
    if parity.shortfall():
        print(below)
    print(folder)


def _write_card(folder: str, form: str, litert: bool, parity: str = "") -> str:
    """The new version's model card, from the run that trained the exported model."""
    from lenet_keras.serving import model_card
    from lenet_keras.serving.export import trained_model_path

    path, _ = trained_model_path(FLAGS.exp, FLAGS.model_dir, FLAGS.source_model)
    facts = model_card.from_run(path, os.path.basename(os.path.dirname(folder)),
                                os.path.basename(folder), form, parity)
    return model_card.write(model_card.card_path(folder, litert=litert), facts)


if __name__ == "__main__":
    cli.run(main, on_interrupt="no partial version was left in --export_base")
