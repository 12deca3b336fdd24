"""The TFX pipeline: the study's tuned and transfer experiments as TFX components.

    cifar100_examples -> Tuner -> tuned_trainer ----> tuned_evaluator ----> tuned_pusher
                                       |        tuned_baseline ^
    stl10_examples --------------> transfer_trainer -> transfer_evaluator -> transfer_pusher
                   (base_model: tuned_trainer's model)  transfer_baseline ^

Before that, each data set's cut is validated against the schema kept in the package
(``validation``: StatisticsGen, ImportSchemaGen, ExampleValidator, DataGate), and everything of a
data set downstream of its examples runs inside a ``tfx.dsl.Cond`` on its gate.

Local runs: each ImportExampleGen reads the ``train/ eval/ test/`` folder ``examples.export`` cut
from the prepared TFDS data set exactly as the training CLI splits it. Remote runs
(``examples_folders=None``: Kubeflow V2) cut inside the pipeline instead
(``tfds_example_gen.TfdsExampleGen``), so the compiled job is complete and reads nothing on the
compiling machine. The Tuner searches on train and validates on eval; the Trainers validate (and
pick their checkpoint) on eval and read test only for the final evaluation; each Evaluator scores
its Trainer's model on test (docs/tfx.md says why), against a floor and against its baseline, the
last model of *the same trainer* its Evaluator blessed (a Resolver over the channels of that
trainer and that evaluator only). A Pusher pushes only a blessed model. The modules are named by
dotted paths (``lenet_keras.experiments.tuned.run_fn``), so they run as the installed package, not as a
``module_file`` TFX would repackage as flat modules. TFX's cache key then holds only the names, so
every module's ``custom_config`` carries ``code_version``, a digest of the package's sources:
changed code reruns the components, unchanged code is cached. The experiments' configs come from
the command (``lenet_keras.pipeline``), which resolves their names; the dotted ``run_fn`` and
``tuner_fn`` are those same experiments' modules.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, Mapping, Optional, Sequence

from tfx import v1 as tfx

import lenet_keras
from lenet_keras.config import ExperimentConfig
from lenet_keras.data import tfds_source
from lenet_keras.tfx_components import evaluation, examples, validation
from lenet_keras.tfx_components.uris import local_or_remote

PIPELINE_NAME = "lenet_keras"
REMOTE_PIPELINE_NAME = "lenet-keras"  # Kubeflow's names allow no underscore
# The experiments the pipeline trains, in order: transfer starts from tuned's model.
TUNED, TRANSFER = "tuned", "transfer"
MODEL_NAMES = {TUNED: "lenet_tuned", TRANSFER: "lenet_transfer"}  # TF Serving's model names
PUSHERS = {f"{TUNED}_pusher": MODEL_NAMES[TUNED], f"{TRANSFER}_pusher": MODEL_NAMES[TRANSFER]}
EVALUATORS = {f"{TUNED}_pusher": f"{TUNED}_evaluator", f"{TRANSFER}_pusher": f"{TRANSFER}_evaluator"}
# Each Resolver of a baseline -> the Evaluator whose blessings it may read.
BASELINES = {f"{exp}_baseline": f"{exp}_evaluator" for exp in (TUNED, TRANSFER)}
TOP5_DATASETS = ("cifar100",)
METADATA_FILE = "metadata.sqlite"
# The components' Beam jobs (ExampleGen, Evaluator) unless --beam_pipeline_args says otherwise: one
# in-process worker; the data is small and the machine may be too.
BEAM_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def default_metadata_path(pipeline_root: str) -> str:
    return os.path.join(os.path.abspath(pipeline_root), METADATA_FILE)


def code_version() -> str:
    """A digest of the ``.py`` sources of the lenet_keras package (lenet_keras.experiments too) this
    process runs: TFX's cache does not see code behind a dotted ``run_fn``, but it sees
    custom_config."""
    digest = hashlib.sha256()
    root = os.path.dirname(os.path.abspath(lenet_keras.__file__))
    # followlinks: in a checkout lenet_keras/experiments is a link to the repository's experiments/.
    for folder, subfolders, files in os.walk(root, followlinks=True):
        subfolders[:] = sorted(s for s in subfolders if s != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                digest.update(f"lenet_keras/{os.path.relpath(path, root)}\0".encode())
                digest.update(f.read())
    return digest.hexdigest()[:16]


def export_examples(configs: Mapping[str, ExperimentConfig], data_dir: Optional[str],
                    pipeline_root: str) -> Dict[str, str]:
    """Experiment name -> the ImportExampleGen input folder of its data set, split as it trains;
    ``configs`` are the TUNED and TRANSFER experiments' configs."""
    root = os.path.join(os.path.abspath(pipeline_root), "examples")
    data_dir = os.path.abspath(tfds_source.default_data_dir(data_dir))
    examples.check_prepared([config.dataset for config in configs.values()], data_dir)
    return {name: examples.export(config.dataset, data_dir, root, examples.split_instructions(config))
            for name, config in configs.items()}


def _example_gen(config: ExperimentConfig, examples_folders: Optional[Mapping[str, str]],
                 data_dir: str):
    if examples_folders is None:  # remote: the cut is a step of the pipeline
        from lenet_keras.tfx_components.tfds_example_gen import TfdsExampleGen

        component = TfdsExampleGen(
            dataset=config.dataset, data_dir=data_dir, code_version=code_version(),
            splits=json.dumps(examples.split_instructions(config)))
    else:
        split = tfx.proto.Input.Split
        component = tfx.components.ImportExampleGen(
            input_base=examples_folders[config.name],
            input_config=tfx.proto.Input(splits=[split(name=name, pattern=f"{name}/*")
                                                 for name in examples.SPLIT_FIELDS]),
        )
    return component.with_id(f"{config.dataset}_examples")


def _tune_dir(pipeline_root: str, tuner_config: Mapping, examples_source: str) -> str:
    """keras-tuner's project outside the Tuner's working_dir (which TFX deletes), so a failed
    Tuner resumes its trials; named by the search's inputs, so a changed search starts anew."""
    key = json.dumps({"config": dict(tuner_config), "examples": examples_source}, sort_keys=True)
    return f"{pipeline_root.rstrip('/')}/tuning/{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _evaluated_pusher(config: ExperimentConfig, trainer, examples_gen, serving_base: str,
                      min_accuracy: float, max_accuracy_drop: float) -> list:
    """The Resolver of ``trainer``'s baseline, the Evaluator, and the Pusher it gates."""
    experiment = config.name
    evaluator_id = f"{experiment}_evaluator"
    # The last model of this trainer that this trainer's Evaluator blessed: Channels filtered by
    # producer, so the transfer model is never compared with the tuned one.
    baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model,
                              producer_component_id=trainer.id, output_key="model"),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing,
                                       producer_component_id=evaluator_id, output_key="blessing"),
    ).with_id(f"{experiment}_baseline")
    evaluator = tfx.components.Evaluator(
        examples=examples_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        example_splits=[evaluation.EVAL_SPLIT],
        eval_config=evaluation.eval_config(
            min_accuracy, max_accuracy_drop,
            with_top5=config.dataset in TOP5_DATASETS),
    ).with_id(evaluator_id)
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=f"{serving_base.rstrip('/')}/{MODEL_NAMES[experiment]}")),
    ).with_id(f"{experiment}_pusher")
    return [baseline, evaluator, pusher]


def create_pipeline(
    configs: Mapping[str, ExperimentConfig],
    examples_folders: Optional[Mapping[str, str]],
    data_dir: str,
    pipeline_root: str,
    serving_base: str,
    *,
    metadata_path: Optional[str] = None,
    epochs: Optional[int] = None,
    max_trials: Optional[int] = None,
    tuner: str = "hyperband",
    precision: str = "float32",
    min_accuracy: float = evaluation.DEFAULT_MIN_ACCURACY,
    max_accuracy_drop: float = evaluation.DEFAULT_MAX_ACCURACY_DROP,
    beam_pipeline_args: Optional[Sequence[str]] = None,
) -> tfx.dsl.Pipeline:
    """The pipeline of the TUNED and TRANSFER experiments (``configs``, name -> config) over
    ``examples_folders`` (``export_examples``'s answer); cache enabled.

    ``examples_folders=None`` makes the remote pipeline: the TFDS cut is its first step, and no
    path is made absolute or read here (they are ``gs://`` URIs, and ML Metadata is the
    orchestrator's). ``data_dir`` is the TFDS data dir the examples come from (the modules read
    class names there); ``epochs`` caps the Tuner's and every Trainer's epochs; ML Metadata goes to
    ``metadata_path`` (default ``<pipeline_root>/metadata.sqlite``) for a local run.
    """
    remote = examples_folders is None
    pipeline_root, serving_base, data_dir = (
        local_or_remote(path) for path in (pipeline_root, serving_base, data_dir))
    common = {"data_dir": data_dir, "precision": precision, "code_version": code_version()}
    if epochs is not None:
        common["epochs"] = epochs
    tuner_config = {**common, "tuner": tuner}
    if max_trials is not None:
        tuner_config["max_trials"] = max_trials
    tuner_config["tune_dir"] = _tune_dir(
        pipeline_root, tuner_config, data_dir if remote else examples_folders[TUNED])

    tuned_examples = _example_gen(configs[TUNED], examples_folders, data_dir)
    transfer_examples = _example_gen(configs[TRANSFER], examples_folders, data_dir)
    # Each data set's Tuner and Trainers run only on a cut its schema blesses; transfer needs
    # tuned's model too, so its branch sits inside tuned's.
    tuned_checks, transfer_checks = (
        validation.data_validation(configs[exp].dataset, gen, pipeline_root, remote)
        for exp, gen in ((TUNED, tuned_examples), (TRANSFER, transfer_examples)))
    thresholds = (min_accuracy, max_accuracy_drop)
    with tfx.dsl.Cond(validation.gate_predicate(tuned_checks[-1])):
        search = tfx.components.Tuner(
            examples=tuned_examples.outputs["examples"],
            tuner_fn="lenet_keras.experiments.tuned.tuner_fn",
            train_args=tfx.proto.TrainArgs(splits=["train"]),
            eval_args=tfx.proto.EvalArgs(splits=["eval"]),  # the Tuner never sees test
            custom_config=tuner_config,
        )
        tuned_trainer = tfx.components.Trainer(
            examples=tuned_examples.outputs["examples"],
            hyperparameters=search.outputs["best_hyperparameters"],
            run_fn="lenet_keras.experiments.tuned.run_fn",
            train_args=tfx.proto.TrainArgs(splits=["train"]),
            eval_args=tfx.proto.EvalArgs(splits=["eval", "test"]),  # test: the final evaluation only
            custom_config=common,
        ).with_id(f"{TUNED}_trainer")
        tuned_evaluation = _evaluated_pusher(configs[TUNED], tuned_trainer, tuned_examples, serving_base,
                                             *thresholds)
        with tfx.dsl.Cond(validation.gate_predicate(transfer_checks[-1])):
            transfer_trainer = tfx.components.Trainer(
                examples=transfer_examples.outputs["examples"],
                base_model=tuned_trainer.outputs["model"],
                run_fn="lenet_keras.experiments.transfer.run_fn",
                train_args=tfx.proto.TrainArgs(splits=["train"]),
                eval_args=tfx.proto.EvalArgs(splits=["eval", "test"]),
                custom_config=common,
            ).with_id(f"{TRANSFER}_trainer")
            transfer_evaluation = _evaluated_pusher(configs[TRANSFER], transfer_trainer, transfer_examples,
                                                    serving_base, *thresholds)
    return tfx.dsl.Pipeline(
        pipeline_name=REMOTE_PIPELINE_NAME if remote else PIPELINE_NAME,
        pipeline_root=pipeline_root,
        components=[tuned_examples, transfer_examples, *tuned_checks, *transfer_checks, search,
                    tuned_trainer, transfer_trainer, *tuned_evaluation, *transfer_evaluation],
        enable_cache=True,
        metadata_connection_config=None if remote else
        tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata_path or default_metadata_path(pipeline_root)),
        beam_pipeline_args=list(BEAM_ARGS if beam_pipeline_args is None else beam_pipeline_args),
    )
