"""Export a trained model as a SavedModel that TF Serving loads.

    python -m lenet_keras.export --exp vanilla|tuned|transfer [--model_dir saved_models]
        [--export_base saved_models/serving] [--model_name lenet_<exp>] [--version N]
        [--source_model PATH.keras]

Writes ``<export_base>/<model_name>/<version>/`` (saved_model.pb + variables/), the layout TF
Serving polls, and prints that folder. The signature is in lenet_keras/serving/signature.py and
docs/serving.md.
"""

from __future__ import annotations

import os

from absl import flags

from lenet_keras import cli

FLAGS = flags.FLAGS
flags.DEFINE_enum("exp", None, ["vanilla", "tuned", "transfer"],
                  "Experiment to export: vanilla, tuned or transfer.")
flags.DEFINE_string("model_dir", "saved_models", "Where training wrote <model_dir>/<exp>/.")
flags.DEFINE_string("export_base", os.path.join("saved_models", "serving"),
                    "TF Serving's base folder; exports go to <export_base>/<model_name>/<N>/.")
flags.DEFINE_string("model_name", None, "TF Serving model name (default: lenet_<exp>).")
flags.DEFINE_integer("version", None, "Version to write (default: one above the highest).",
                     lower_bound=1, upper_bound=2**63 - 1)
flags.DEFINE_string("source_model", None,
                    "Export this .keras file instead of <model_dir>/<exp>/model.keras; its "
                    "class names come from the metrics.json beside it.")
cli.require_writable_folder("export_base")
flags.register_validator(
    "model_name", lambda name: name is None or (name not in ("", ".", "..") and os.sep not in name),
    message="--model_name is one folder name under --export_base (no '/'), as TF Serving names it")


def main() -> None:
    from lenet_keras.serving.export import export_trained

    print(export_trained(FLAGS.exp, FLAGS.model_dir, FLAGS.export_base, FLAGS.model_name,
                         FLAGS.version, FLAGS.source_model))


if __name__ == "__main__":
    cli.run(main, on_interrupt="no partial version was left in --export_base")
