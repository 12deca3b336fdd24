"""Running the pipeline: in this process (``local``: LocalDagRunner; ``beam``: BeamDagRunner), or
compiled for Kubeflow Pipelines v2 / Vertex AI (``kubeflow_v2``: a PipelineJob JSON, not run).

A component that fails for a reason a user can cause and fix (lenet_keras's UserError, a file or
folder that cannot be read or written, memory or disk exhausted) becomes ComponentFailed, a
UserError naming the component, read from ML Metadata. Anything else is a programming error: it is
re-raised as it is, with its traceback, after a log line naming the component.
"""

from __future__ import annotations

import json
import os
from typing import Dict

import tensorflow as tf
from absl import logging
from tfx import v1 as tfx

from lenet_keras.errors import UserError, first_line
from lenet_keras.tfx_components import executions
from lenet_keras.tfx_components.components import BASELINES, PIPELINE_NAME

# What a user can cause: missing, unreadable or unwritable paths (TensorFlow's file system raises
# its own types for these, the Pusher's copy among them), and exhausted memory or disk.
USER_CAUSED = (UserError, OSError, MemoryError, tf.errors.NotFoundError,
               tf.errors.PermissionDeniedError, tf.errors.FailedPreconditionError,
               tf.errors.AlreadyExistsError, tf.errors.ResourceExhaustedError,
               tf.errors.UnavailableError)


_BEAM_STEP = " [while running '"  # what Beam appends to a step's exception


def user_caused(exc: BaseException):
    """The exception a user can fix behind ``exc``, or None for a programming error.

    BeamDagRunner runs each component as a Beam step, and Beam re-raises a step's exception with
    the step's name appended, as a RuntimeError chained to the original when it cannot rebuild
    the type (TensorFlow's errors, OSError): the original decides.
    """
    while (isinstance(exc, RuntimeError) and _BEAM_STEP in str(exc)
           and (exc.__cause__ or exc.__context__) is not None):
        exc = exc.__cause__ or exc.__context__
    return exc if isinstance(exc, USER_CAUSED) else None


class ComponentFailed(UserError):
    """A component raised what a user can fix: the message names it and gives the reason."""


def _stopped_at(pipeline, store, earlier_runs) -> str:
    new_runs = sorted(set(executions.run_ids(store)) - earlier_runs)
    found = executions.node_executions(store, new_runs[-1], PIPELINE_NAME) if new_runs else {}
    upstream = {node.id: [u.id for u in node.upstream_nodes] for node in pipeline.components}
    return executions.stopped_at(upstream, found)


def _dag_runner(runner: str):
    if runner == "beam":
        from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

        return BeamDagRunner()
    return tfx.orchestration.LocalDagRunner()


def run_pipeline(pipeline: tfx.dsl.Pipeline, metadata_path: str,
                 runner: str = "local") -> Dict[str, executions.NodeExecution]:
    """Runs ``pipeline`` with ``runner`` (local or beam); returns each node's execution in this
    run. A user-caused failure becomes ComponentFailed, the original exception its ``__cause__``."""
    os.makedirs(os.path.dirname(os.path.abspath(metadata_path)), exist_ok=True)
    store = executions.connect(metadata_path)
    earlier_runs = set(executions.run_ids(store))
    try:
        _dag_runner(runner).run(pipeline)
    except Exception as exc:
        cause = user_caused(exc)
        if cause is not None:
            reason = first_line(cause).split(_BEAM_STEP)[0]
            if not isinstance(cause, UserError):
                reason = f"{type(cause).__name__}: {reason}"
            raise ComponentFailed(
                f"TFX component {_stopped_at(pipeline, store, earlier_runs)} failed: {reason} "
                "(finished components are reused when the command runs again; --library_logs "
                "shows TFX's log)") from cause
        logging.error("TFX component %s failed with an error in the code (a bug: please report "
                      "it with the traceback below)", _stopped_at(pipeline, store, earlier_runs))
        raise
    run_id = max(set(executions.run_ids(store)) - earlier_runs)
    return executions.node_executions(store, run_id, PIPELINE_NAME)


def compile_kubeflow_v2(pipeline: tfx.dsl.Pipeline, output: str, image: str) -> str:
    """Writes ``pipeline`` as a Kubeflow Pipelines v2 PipelineJob JSON to ``output``, every
    component in ``image``; runs nothing and reads no data. Returns ``output``."""
    output = os.path.abspath(output)
    config = tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=config, output_dir=os.path.dirname(output), output_filename=os.path.basename(output))
    try:
        # Before TFX, which answers a file in the way with a RuntimeError.
        os.makedirs(os.path.dirname(output), exist_ok=True)
        runner.run(pipeline, write_out=True)
        with open(output) as f:
            job = json.load(f)
        _filter_baselines_by_producer(job["pipelineSpec"]["deploymentSpec"]["executors"])
        with open(output, "w") as f:
            json.dump(job, f, sort_keys=True)
    except (OSError, tf.errors.OpError) as exc:
        raise UserError(f"cannot write the job to {output} ({first_line(exc)}): choose another "
                        "--output") from None
    return output


def _filter_baselines_by_producer(executors: dict) -> None:
    """TFX 1.16's Kubeflow V2 compiler turns a LatestBlessedModelStrategy Resolver into a Vertex ML
    Metadata query for the latest blessed ModelBlessing of *any* Evaluator (step_builder.py drops
    the Channels' producers), so the transfer model could get the tuned one as its baseline. This
    narrows each query to its own Evaluator's blessings, by their URI: Vertex writes a task's
    outputs under ``<root>/<project>/<job>/<task>_<id>/<key>``, and ``uri`` takes ``*`` wildcards."""
    for resolver, evaluator in BASELINES.items():
        queries = executors[f"{resolver}-model-blessing-resolver_executor"]["resolver"][
            "outputArtifactQueries"]
        for query in queries.values():
            query["filter"] += f' AND uri="*/{evaluator}_*"'
