"""The TFX pipeline: the study's tuned and transfer experiments as TFX components.

    cifar100_examples (ImportExampleGen) -> Tuner -> tuned_trainer -> tuned_pusher
    stl10_examples (ImportExampleGen) ----------------> transfer_trainer -> transfer_pusher
                                        (base_model: tuned_trainer's model)

Each ImportExampleGen reads the ``train/ eval/ test/`` folder ``examples.export`` cut from the
prepared TFDS data set exactly as the training CLI splits it. The Tuner searches on train and
validates on eval; the Trainers validate (and pick their checkpoint) on eval and read test only for
the final evaluation. The modules are named by dotted paths (``experiments.tuned.run_fn``), so they
run as the installed package, not as a ``module_file`` TFX would repackage as flat modules. TFX's
cache key then holds only the names, so every module's ``custom_config`` carries ``code_version``,
a digest of the package's sources: changed code reruns the components, unchanged code is cached.
``LocalDagRunner`` runs the components in this process, one after another; ML Metadata is SQLite.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, Mapping, Optional

from tfx import v1 as tfx

import experiments
import lenet_keras
from lenet_keras.data import tfds_source
from lenet_keras.errors import UserError, first_line
from lenet_keras.tfx_components import examples, executions

PIPELINE_NAME = "lenet_keras"
# The experiments the pipeline trains, in order: transfer starts from tuned's model.
TUNED, TRANSFER = "tuned", "transfer"
MODEL_NAMES = {TUNED: "lenet_tuned", TRANSFER: "lenet_transfer"}  # TF Serving's model names
PUSHERS = {f"{TUNED}_pusher": MODEL_NAMES[TUNED], f"{TRANSFER}_pusher": MODEL_NAMES[TRANSFER]}
METADATA_FILE = "metadata.sqlite"
# ImportExampleGen's Beam job: one in-process worker; the data is small and the machine may be too.
BEAM_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def default_metadata_path(pipeline_root: str) -> str:
    return os.path.join(os.path.abspath(pipeline_root), METADATA_FILE)


def code_version() -> str:
    """A digest of the ``.py`` sources of the lenet_keras and experiments packages this process
    runs: TFX's cache does not see code behind a dotted ``run_fn``, but it sees custom_config."""
    digest = hashlib.sha256()
    for package in (lenet_keras, experiments):
        root = os.path.dirname(os.path.abspath(package.__file__))
        for folder, subfolders, files in os.walk(root):
            subfolders[:] = sorted(s for s in subfolders if s != "__pycache__")
            for name in sorted(f for f in files if f.endswith(".py")):
                path = os.path.join(folder, name)
                with open(path, "rb") as f:
                    digest.update(f"{package.__name__}/{os.path.relpath(path, root)}\0".encode())
                    digest.update(f.read())
    return digest.hexdigest()[:16]


def export_examples(data_dir: Optional[str], pipeline_root: str) -> Dict[str, str]:
    """Experiment name -> the ImportExampleGen input folder of its data set, split as it trains."""
    root = os.path.join(os.path.abspath(pipeline_root), "examples")
    data_dir = os.path.abspath(tfds_source.default_data_dir(data_dir))
    configs = {name: experiments.get_config(name) for name in (TUNED, TRANSFER)}
    examples.check_prepared([config.dataset for config in configs.values()], data_dir)
    return {name: examples.export(config.dataset, data_dir, root, examples.split_instructions(config))
            for name, config in configs.items()}


def _example_gen(dataset: str, folder: str):
    split = tfx.proto.Input.Split
    return tfx.components.ImportExampleGen(
        input_base=folder,
        input_config=tfx.proto.Input(splits=[split(name=name, pattern=f"{name}/*")
                                             for name in examples.SPLIT_FIELDS]),
    ).with_id(f"{dataset}_examples")


def _tune_dir(pipeline_root: str, tuner_config: Mapping, examples_folder: str) -> str:
    """keras-tuner's project outside the Tuner's working_dir (which TFX deletes), so a failed
    Tuner resumes its trials; named by the search's inputs, so a changed search starts anew."""
    key = json.dumps({"config": dict(tuner_config), "examples": examples_folder}, sort_keys=True)
    return os.path.join(pipeline_root, "tuning", hashlib.sha256(key.encode()).hexdigest()[:12])


def _pusher(trainer, serving_base: str, experiment: str):
    return tfx.components.Pusher(
        model=trainer.outputs["model"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=os.path.join(serving_base, MODEL_NAMES[experiment]))),
    ).with_id(f"{experiment}_pusher")


def create_pipeline(
    examples_folders: Mapping[str, str],
    data_dir: str,
    pipeline_root: str,
    serving_base: str,
    *,
    metadata_path: Optional[str] = None,
    epochs: Optional[int] = None,
    max_trials: Optional[int] = None,
    tuner: str = "hyperband",
    precision: str = "float32",
) -> tfx.dsl.Pipeline:
    """The pipeline over ``examples_folders`` (``export_examples``'s answer); cache enabled.

    ``data_dir`` is the TFDS data dir the examples came from (the modules read class names there);
    ``epochs`` caps the Tuner's and every Trainer's epochs; ML Metadata goes to ``metadata_path``
    (default ``<pipeline_root>/metadata.sqlite``).
    """
    pipeline_root, serving_base = os.path.abspath(pipeline_root), os.path.abspath(serving_base)
    common = {"data_dir": os.path.abspath(data_dir), "precision": precision,
              "code_version": code_version()}
    if epochs is not None:
        common["epochs"] = epochs
    tuner_config = {**common, "tuner": tuner}
    if max_trials is not None:
        tuner_config["max_trials"] = max_trials
    tuner_config["tune_dir"] = _tune_dir(pipeline_root, tuner_config, examples_folders[TUNED])

    tuned_examples = _example_gen(experiments.get_config(TUNED).dataset, examples_folders[TUNED])
    transfer_examples = _example_gen(experiments.get_config(TRANSFER).dataset,
                                     examples_folders[TRANSFER])
    search = tfx.components.Tuner(
        examples=tuned_examples.outputs["examples"],
        tuner_fn="experiments.tuned.tuner_fn",
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),  # the Tuner never sees test
        custom_config=tuner_config,
    )
    tuned_trainer = tfx.components.Trainer(
        examples=tuned_examples.outputs["examples"],
        hyperparameters=search.outputs["best_hyperparameters"],
        run_fn="experiments.tuned.run_fn",
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval", "test"]),  # test: the final evaluation only
        custom_config=common,
    ).with_id(f"{TUNED}_trainer")
    transfer_trainer = tfx.components.Trainer(
        examples=transfer_examples.outputs["examples"],
        base_model=tuned_trainer.outputs["model"],
        run_fn="experiments.transfer.run_fn",
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval", "test"]),
        custom_config=common,
    ).with_id(f"{TRANSFER}_trainer")
    return tfx.dsl.Pipeline(
        pipeline_name=PIPELINE_NAME,
        pipeline_root=pipeline_root,
        components=[tuned_examples, transfer_examples, search, tuned_trainer, transfer_trainer,
                    _pusher(tuned_trainer, serving_base, TUNED),
                    _pusher(transfer_trainer, serving_base, TRANSFER)],
        enable_cache=True,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata_path or default_metadata_path(pipeline_root)),
        beam_pipeline_args=BEAM_ARGS,
    )


class ComponentFailed(UserError):
    """A component raised: the message names it and gives the reason's first line."""


def _failure(exc: Exception, node_ids, store, earlier_runs) -> ComponentFailed:
    new_runs = sorted(set(executions.run_ids(store)) - earlier_runs)
    found = executions.node_executions(store, new_runs[-1], PIPELINE_NAME) if new_runs else {}
    reason = first_line(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {first_line(exc)}"
    return ComponentFailed(
        f"TFX component {executions.stopped_at(node_ids, found)} failed: {reason} (finished "
        "components are reused when the command runs again; --library_logs shows TFX's log)")


def run_pipeline(pipeline: tfx.dsl.Pipeline, metadata_path: str) -> Dict[str, executions.NodeExecution]:
    """Runs ``pipeline`` with ``LocalDagRunner``; returns each node's execution in this run.

    A failure becomes ComponentFailed naming the component it stopped at (read from ML Metadata),
    with the original exception as its ``__cause__``.
    """
    os.makedirs(os.path.dirname(os.path.abspath(metadata_path)), exist_ok=True)
    store = executions.connect(metadata_path)
    earlier_runs = set(executions.run_ids(store))
    try:
        tfx.orchestration.LocalDagRunner().run(pipeline)
    except Exception as exc:
        node_ids = [component.id for component in pipeline.components]
        raise _failure(exc, node_ids, store, earlier_runs) from exc
    run_id = max(set(executions.run_ids(store)) - earlier_runs)
    return executions.node_executions(store, run_id, PIPELINE_NAME)
