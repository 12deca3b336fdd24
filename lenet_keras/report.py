"""The study's report: comparison table, learning curves, confusion matrices, test predictions.

    python -m lenet_keras.report --model_dir saved_models [--out_dir DIR]

Reads what each training run left in <model_dir>/<exp>/ (metrics.json, predictions.npz) and writes
<model_dir>/report/REPORT.md with PNGs beside it. It loads no model and no data set, so it needs
neither TensorFlow nor retraining and runs in seconds.
"""

from __future__ import annotations

from absl import flags

from lenet_keras import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", "saved_models", "Where training wrote <model_dir>/<exp>/.")
flags.DEFINE_string("out_dir", None, "Where to write REPORT.md and PNGs (default <model_dir>/report).")
cli.require_writable_folder("out_dir")


def main() -> None:
    from lenet_keras.reporting.document import write_report

    print(write_report(FLAGS.model_dir, FLAGS.out_dir))


if __name__ == "__main__":
    cli.run(main, tensorflow=False)
