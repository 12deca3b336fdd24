"""Writing a trained classifier as a SavedModel version in TF Serving's layout.

``<export_base>/<model_name>/<version>/`` (saved_model.pb + variables/), the layout TF Serving
polls. The version is written into a hidden temporary folder beside the versions (TF Serving ignores
names that are not integers) and renamed into place in one step, so a server polling
``export_base`` sees either no new version or a complete one. This is the one export path: the
``export`` command and TFX's ``run_fn`` both end here.
"""

from __future__ import annotations

import errno
import os
from typing import List, Optional, Sequence, Tuple

import tensorflow as tf

from lenet_keras import models
from lenet_keras.errors import UserError, first_line
from lenet_keras.serving import choices
from lenet_keras.serving.signature import build_archive
from lenet_keras.training import atomic
from lenet_keras.training.artifacts import MODEL_FILE, class_names_beside


def existing_versions(model_base: str) -> List[int]:
    """The integer-named version folders TF Serving would see under ``model_base``."""
    try:
        entries = os.listdir(model_base)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(int(e) for e in entries
                  if e.isdigit() and os.path.isdir(os.path.join(model_base, e)))


def _write_contents(model, class_names: Sequence[str], staging: str) -> None:
    build_archive(model, class_names, models.image_size_of(model)).write_out(staging, verbose=False)
    keras_copy = os.path.join(staging, models.KERAS_IN_SAVED_MODEL)
    os.makedirs(os.path.dirname(keras_copy), exist_ok=True)
    model.save(keras_copy)


def write_saved_model(model, class_names: Sequence[str], folder: str) -> None:
    """The serving contract's SavedModel of ``model``, written into the new folder ``folder``,
    with the Keras model itself kept at ``models.KERAS_IN_SAVED_MODEL`` (to transfer from).

    ``folder`` appears complete or not at all: it is written beside under a hidden name and renamed.
    An empty ``folder`` (one TFX made for the run's output) is replaced.
    """
    if os.path.isdir(folder) and not os.listdir(folder):
        os.rmdir(folder)
    try:
        with atomic.new_folder(folder, prefix=f".export-{os.path.basename(folder)}-") as staging:
            _write_contents(model, class_names, staging)
    except (OSError, tf.errors.ResourceExhaustedError) as exc:
        raise version_write_error(folder, exc) from None


def version_write_error(folder: str, exc: Exception) -> UserError:
    """What a failed write of the new version ``folder`` (SavedModel or LiteRT) tells the user.

    A full disk reaches here as an OSError from Python's writes, or as ResourceExhaustedError from
    TensorFlow's own (SaveV2 writing the variables).
    """
    if (isinstance(exc, OSError) and exc.errno in (errno.ENOTEMPTY, errno.EEXIST)
            and os.path.isdir(folder)):
        return UserError(f"cannot create {folder} ({exc.strerror}): another export wrote it "
                         "meanwhile; run again without --version to get the next free one")
    if isinstance(exc, OSError):
        reason = exc.strerror or first_line(exc)
    else:  # TensorFlow's "<a temporary file in the staging folder>; <strerror>"
        reason = first_line(exc, limit=4096).rsplit("; ", 1)[-1][:200]
    return UserError(f"writing {folder} failed ({reason}): free some space or choose another "
                     "--export_base; no version was published")


def export_model(model, class_names: Sequence[str], export_base: str, model_name: str,
                 version: Optional[int] = None) -> str:
    """Writes <export_base>/<model_name>/<version>/ and returns its path; never overwrites one.

    Without ``version`` it takes the next free one when it is written, not when the export
    started: several exports into one base at once each get their own version.
    """
    final = new_version_folder(export_base, model_name, version)
    if version is not None:
        write_saved_model(model, class_names, final)
        return final
    model_base = os.path.dirname(final)
    try:
        with atomic.staging_folder(model_base, prefix=".export-") as staging:
            _write_contents(model, class_names, staging)
            return rename_to_next_version(staging, model_base)
    except (OSError, tf.errors.ResourceExhaustedError) as exc:
        raise version_write_error(f"a new version in {model_base}", exc) from None


def rename_to_next_version(staging: str, model_base: str) -> str:
    """Renames the finished ``staging`` to the next free version of ``model_base``; another export
    that took a number first (the rename refuses a non-empty folder) sends it to the next one."""
    while True:
        final = os.path.join(model_base, str(max(existing_versions(model_base), default=0) + 1))
        try:
            os.rename(staging, final)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            continue
        atomic.fsync_path(model_base)
        return final


def new_version_folder(export_base: str, model_name: str, version: Optional[int] = None) -> str:
    """<export_base>/<model_name>/<version>/ for a new version (default: one above the highest),
    not yet created; UserError for a bad name or version, or one that exists."""
    if not choices.is_model_name(model_name):
        raise UserError(f"{choices.MODEL_NAME_RULE}; got {model_name!r}")
    model_base = os.path.join(export_base, model_name)
    if version is None:
        version = max(existing_versions(model_base), default=0) + 1
    if version <= 0:
        raise UserError(f"--version must be a positive integer, got {version}")
    final = os.path.join(model_base, str(version))
    if os.path.exists(final):
        raise UserError(f"{final} already exists and versions are never overwritten: "
                        "pass another --version or leave it out to get the next one")
    return final


def load_trained(path: str):
    """(model, class_names) of a ``.keras`` file training wrote (names from its metrics.json)."""
    model = models.load_classifier(path)
    return model, class_names_beside(path, int(model.outputs[0].shape[-1]))


def export_trained(exp: Optional[str], model_dir: str, export_base: str,
                   model_name: Optional[str] = None, version: Optional[int] = None,
                   source_model: Optional[str] = None) -> str:
    """What ``python -m lenet_keras.export`` does: returns the new version folder."""
    path, default_name = trained_model_path(exp, model_dir, source_model)
    model, class_names = load_trained(path)
    return export_model(model, class_names, export_base, model_name or default_name, version)


def trained_model_path(exp: Optional[str], model_dir: str,
                       source_model: Optional[str] = None) -> Tuple[str, str]:
    """(the .keras file to export, its default model name lenet_<name>) for the export flags."""
    if source_model:
        stem = os.path.splitext(os.path.basename(source_model))[0]
        if stem == "model":  # training's <model_dir>/<exp>/model.keras: the folder names it
            stem = os.path.basename(os.path.dirname(os.path.abspath(source_model)))
        return source_model, f"lenet_{exp or stem}"
    if exp:  # a name the command checked against the experiments
        return os.path.join(model_dir, exp, MODEL_FILE), f"lenet_{exp}"
    raise UserError("say what to export: --exp vanilla|tuned|transfer or --source_model PATH")
