"""Export a trained model as a SavedModel that TF Serving loads.

    python -m lenet_keras.export --exp vanilla|tuned|transfer [--model_dir saved_models]
        [--export_base saved_models/serving] [--model_name lenet_<exp>] [--version N]
        [--source_model PATH.keras]

Writes ``<export_base>/<model_name>/<version>/`` (saved_model.pb + variables/), the layout TF
Serving polls, and prints that folder. The signature is described in lenet_keras.serving.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Optional, Sequence

from absl import app, flags

from lenet_keras.layout import MODEL_FILE

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Only when run as a program: importing this module must not clash with other CLIs' flags."""
    flags.DEFINE_string("exp", None, "Experiment to export: vanilla, tuned or transfer.")
    flags.DEFINE_string("model_dir", "saved_models", "Where training wrote <model_dir>/<exp>/.")
    flags.DEFINE_string("export_base", os.path.join("saved_models", "serving"),
                        "TF Serving's base folder; exports go to <export_base>/<model_name>/<N>/.")
    flags.DEFINE_string("model_name", None, "TF Serving model name (default: lenet_<exp>).")
    flags.DEFINE_integer("version", None, "Version to write (default: one above the highest).")
    flags.DEFINE_string("source_model", None,
                        "Export this .keras file instead of <model_dir>/<exp>/model.keras; its "
                        "class names come from the metrics.json beside it.")


def export_model(model, class_names: Sequence[str], image_size: int, export_base: str,
                 model_name: str, version: Optional[int] = None) -> str:
    """Writes <export_base>/<model_name>/<version>/ and returns its path; never overwrites one.

    The SavedModel is written into a hidden temporary folder beside the version folders (TF Serving
    ignores names that are not integers) and renamed into place in one step, so a server polling
    ``export_base`` sees either no new version or a complete one.
    """
    from lenet_keras.errors import UserError
    from lenet_keras.serving import build_archive, existing_versions

    if not model_name or "/" in model_name or model_name.startswith("."):
        raise UserError(f"--model_name {model_name!r} must be a folder name like lenet_tuned")
    model_base = os.path.join(export_base, model_name)
    if version is None:
        version = max(existing_versions(model_base), default=0) + 1
    if version <= 0:
        raise UserError(f"--version must be a positive integer, got {version}")
    final = os.path.join(model_base, str(version))
    if os.path.exists(final):
        raise UserError(f"{final} already exists and versions are never overwritten: "
                        "pass another --version or leave it out to get the next one")
    try:
        os.makedirs(model_base, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".export-{version}-", dir=model_base)
    except OSError as exc:
        raise UserError(f"cannot write to {model_base} ({exc.strerror}): "
                        "choose another --export_base") from None
    try:
        try:
            build_archive(model, class_names, image_size).write_out(staging, verbose=False)
        except OSError as exc:
            raise UserError(f"writing the SavedModel under {model_base} failed ({exc.strerror}): "
                            "free some space or choose another --export_base") from None
        try:
            # rename() refuses to replace a non-empty folder, so an export of the same version
            # that finished meanwhile is never overwritten.
            os.rename(staging, final)
        except OSError as exc:
            raise UserError(f"cannot create {final} ({exc.strerror}): another export may have "
                            "written it meanwhile; run again to get the next version") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def run(exp: Optional[str], model_dir: str, export_base: str, model_name: Optional[str] = None,
        version: Optional[int] = None, source_model: Optional[str] = None) -> str:
    """What the CLI does, with its flags as arguments: returns the new version folder."""
    from lenet_keras.errors import UserError
    from lenet_keras.serving import load_keras_classifier

    if source_model:
        path = source_model
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem == "model":  # training's <model_dir>/<exp>/model.keras: the folder names it
            stem = os.path.basename(os.path.dirname(os.path.abspath(path)))
        default_name = f"lenet_{exp or stem}"
    elif exp:
        import experiments

        experiments.get_config(exp)  # UserError for an unknown name
        path, default_name = os.path.join(model_dir, exp, MODEL_FILE), f"lenet_{exp}"
    else:
        raise UserError("say what to export: --exp vanilla|tuned|transfer or --source_model PATH")
    model, class_names, image_size = load_keras_classifier(path)
    return export_model(model, class_names, image_size, export_base, model_name or default_name,
                        version)


def main(argv):
    from lenet_keras.errors import one_line_errors, reject_positional

    reject_positional(argv)
    with one_line_errors("no partial version was left in --export_base"):
        print(run(FLAGS.exp, FLAGS.model_dir, FLAGS.export_base, FLAGS.model_name,
                  FLAGS.version, FLAGS.source_model))


if __name__ == "__main__":
    define_flags()
    app.run(main)
