"""Running the pipeline: in this process (``local``: LocalDagRunner; ``beam``: BeamDagRunner), or
compiled for Kubeflow Pipelines v2 / Vertex AI (``kubeflow_v2``: a PipelineJob JSON, not run).

A component that fails for a reason a user can cause and fix (lenet_keras's UserError, a path the
user gave, or one under it, that cannot be read or written, memory or disk exhausted) becomes
ComponentFailed, a UserError naming the component, read from ML Metadata. Anything else is a
programming error, a file error on a path the code made up among them: it is re-raised as it is,
with its traceback, after a log line naming the component.
"""

from __future__ import annotations

import errno
import json
import os
import re
from typing import Dict, Iterable, Optional, Sequence

import tensorflow as tf
from absl import logging
from tfx import v1 as tfx

from lenet_keras.errors import UserError, first_line, within_any
from lenet_keras.tfx_components import executions
from lenet_keras.tfx_components.components import BASELINES, PIPELINE_NAME

# Exhausted memory or disk: the machine's, whichever path the code was writing.
RESOURCE_ERRORS = (MemoryError, tf.errors.ResourceExhaustedError)
RESOURCE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.ENOMEM})
# Missing, unreadable or unwritable files and folders (TensorFlow's file system raises its own
# types for these, the Pusher's copy among them): the user's only on a path the user gave or one
# under it. The same error on a path the code made up is a bug, and keeps its traceback.
PATH_ERRORS = (OSError, tf.errors.NotFoundError, tf.errors.PermissionDeniedError,
               tf.errors.FailedPreconditionError, tf.errors.AlreadyExistsError,
               tf.errors.UnavailableError)


_BEAM_STEP = " [while running '"  # what Beam appends to a step's exception


# A path in an error's text: a URI, or an absolute path, up to a space or a quote.
_PATH_IN_TEXT = re.compile(r"""(?:[A-Za-z][A-Za-z0-9+.-]*://|/)[^\s'"`,;()\[\]]*""")


def on_user_path(exc: BaseException, user_paths: Iterable[str]) -> bool:
    """Whether ``exc`` is about one of ``user_paths``, a path under one, or a folder above one
    (a file in the way of a folder the user named): an OSError by its ``filename``s, TensorFlow's
    errors, which carry no path of their own, by the paths in their message."""
    roots = [path for path in user_paths if path]
    if isinstance(exc, OSError):
        named = [os.fsdecode(name) for name in (exc.filename, exc.filename2) if name is not None]
    else:
        named = [found.rstrip(":.") for found in _PATH_IN_TEXT.findall(str(exc))]
    return any(within_any(name, roots) or (name.rstrip("/") and any(
        within_any(root, [name]) for root in roots)) for name in named if name)


def user_caused(exc: BaseException, user_paths: Sequence[str] = ()) -> Optional[BaseException]:
    """The exception a user can fix behind ``exc``, or None for a programming error.

    ``user_paths`` are the paths the user gave (data dir, pipeline root, serving base, ML
    Metadata's file): a file error is the user's only on one of them or under one.
    BeamDagRunner runs each component as a Beam step, and Beam re-raises a step's exception with
    the step's name appended, as a RuntimeError chained to the original when it cannot rebuild
    the type (TensorFlow's errors, OSError): the original decides.
    """
    while (isinstance(exc, RuntimeError) and _BEAM_STEP in str(exc)
           and (exc.__cause__ or exc.__context__) is not None):
        exc = exc.__cause__ or exc.__context__
    if isinstance(exc, (UserError, *RESOURCE_ERRORS)):
        return exc
    if isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS:
        return exc
    if isinstance(exc, PATH_ERRORS) and on_user_path(exc, user_paths):
        return exc
    return None


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


def run_pipeline(pipeline: tfx.dsl.Pipeline, metadata_path: str, runner: str = "local",
                 user_paths: Sequence[str] = ()) -> Dict[str, executions.NodeExecution]:
    """Runs ``pipeline`` with ``runner`` (local or beam); returns each node's execution in this
    run. A user-caused failure (``user_caused``; ``metadata_path`` and the pipeline root count
    among ``user_paths``) becomes ComponentFailed, the original exception its ``__cause__``."""
    os.makedirs(os.path.dirname(os.path.abspath(metadata_path)), exist_ok=True)
    store = executions.connect(metadata_path)
    earlier_runs = set(executions.run_ids(store))
    try:
        _dag_runner(runner).run(pipeline)
    except Exception as exc:
        cause = user_caused(exc, [metadata_path, pipeline.pipeline_info.pipeline_root,
                                  *user_paths])
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


# Until a job has run there, what the compile command says of the baselines' queries.
UNVERIFIED_ON_VERTEX = (
    "warning: the drop gate (--max_accuracy_drop against each trainer's last blessed model) is "
    "unverified on Vertex AI: its baseline queries were checked only in this file, never run; "
    "see docs/tfx.md, 'The baselines on Vertex'")


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
    except PATH_ERRORS as exc:
        if not on_user_path(exc, [output]):
            raise
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
