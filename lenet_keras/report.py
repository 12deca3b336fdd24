"""The study's report: comparison table, learning curves, confusion matrices, test predictions,
and the architecture search.

    python -m lenet_keras.report --model_dir saved_models [--out_dir DIR] [--tune_dir DIR]

Reads what each training run left in <model_dir>/<exp>/ (metrics.json, predictions.npz) and writes
<model_dir>/report/REPORT.md with PNGs beside it. It loads no model and no data set, so it needs no
retraining and runs in seconds. When --tune_dir (default <model_dir>/tuning: the study's own search,
which is tune's default --tune_dir for the default --model_dir) holds a search of
`python -m lenet_keras.tune`, REPORT.md gets a search section: its trials best first, validation
accuracy against each decision, and the best trial's learning curve beside the tuned experiment's.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, so Ctrl-C while the command imports is one line too
    from lenet_keras import startup

    startup.exit_on_interrupt()

from absl import flags

from lenet_keras import cli
from lenet_keras.search import layout

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", "saved_models", "Where training wrote <model_dir>/<exp>/.")
flags.DEFINE_string("out_dir", None, "Where to write REPORT.md and PNGs (default <model_dir>/report).")
flags.DEFINE_string("tune_dir", None,
                    "The search to report on, when `python -m lenet_keras.tune` wrote one there "
                    f"(default <model_dir>/{layout.TUNING_FOLDER}).")
cli.require_writable_folder("out_dir")
cli.path_flags("model_dir", "tune_dir")


def main() -> None:
    from lenet_keras.errors import UserError
    from lenet_keras.experiments import STUDY_ORDER
    from lenet_keras.reporting import search_section
    from lenet_keras.reporting.document import write_report

    tune_dir = FLAGS.tune_dir or layout.study_tune_dir(FLAGS.model_dir)
    if not search_section.has_search(tune_dir):
        if FLAGS["tune_dir"].present:
            raise UserError(f"--tune_dir {tune_dir} holds no search (no lenet5/trial_*/trial.json): "
                            "run `python -m lenet_keras.tune` first, or leave out --tune_dir")
        tune_dir = None
    else:  # its readers import TensorFlow: quietly, as every command that uses it does
        cli.import_tensorflow()
    print(write_report(FLAGS.model_dir, FLAGS.out_dir, tune_dir, STUDY_ORDER))


if __name__ == "__main__":
    cli.run(main, tensorflow=False)
